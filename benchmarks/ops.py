"""Time the saliency detectors and mixing operators side by side, in one run, and write BENCHMARKS.md.

Usage::

    .venv/bin/python benchmarks/ops.py --out BENCHMARKS.md          # full run (about a minute on 2 CPU cores)
    .venv/bin/python benchmarks/ops.py --quick --out /tmp/quick.md  # smoke run: tiny batches, 1 repeat

Every number is the median time per batch over ``--repeats`` timed repeats after one warm-up call
(on CUDA each timing is bracketed by ``torch.cuda.synchronize()``). Calls shorter than
``--min-repeat-s`` (0.25 s) are run several times per repeat and averaged, so the memory floor
(``x.clone()``) is measured as precisely as the slow rows and a noisy machine disturbs less.
All ratios and targets come from this same run.

Next to each time is the row's peak extra memory: one more (untimed) call under
``torch.profiler.profile(profile_memory=True)``, whose raw allocator events (every allocation and
free of a torch tensor's storage on the device, in time order) are summed; the peak of that running
sum is the most memory the call held at once beyond what existed before it, its output included. On
CUDA it is ``torch.cuda.max_memory_allocated()`` over the call instead. "× x" divides it by the bytes
of the float32 batch ``x`` the operators receive.

timm's ``Mixup`` (``mode="elem"``, timm 1.0.31) is timed from ``timm/data/mixup.py`` read out of a timm
wheel as a standalone module (it needs only numpy and torch; the timm package is never imported):
``RSMIX_TIMM_WHEEL=/path/to/timm-*.whl``, else a wheel in ``/tmp/timm_wheel`` or the test suite's
pytest cache, else ``pip download timm==1.0.31 --no-deps``; without one its rows say why they are
missing. timm mixes in place, so it is given its own copy of the batch once (not timed).

The batches are real photographs (scikit-image's astronaut, chelsea, coffee, rocket) cut to size
by random crops and flips, so the saliency maps look like those of a real training batch; without
scikit-image they are smooth random images. Float batches are ImageNet-normalised.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import importlib.util
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
NUM_CLASSES = 10
MIN_REPEAT_S = 0.25  # calls shorter than this are looped within a repeat and averaged (less VM noise)
MAX_INNER = 1000

# (batch, side, target speed-up of batched fine_grained over the OpenCV loop on CPU)
FULL_WORKLOADS: List[Tuple[int, int, float]] = [(128, 32, 2.0), (64, 224, 3.0)]
QUICK_WORKLOADS: List[Tuple[int, int, float]] = [(8, 32, 2.0), (4, 64, 3.0)]
GPU_DETECTOR_TARGET = 100.0
STEP_OVER_DETECTOR_TARGET = 1.5  # RandSaliencyMix(**SALIENCY_ON) step / its detector alone
MAPS_OVER_CUTMIX_TARGET = 2.0  # RandSaliencyMix(**SALIENCY_ON) with maps given / CutMix(mode="sample")
MIX_OVER_CLONE_TARGET = 3.0  # MixUp and CutMix at the large workload: at most 3 passes of memory traffic
PEAK_OVER_BATCH_TARGET = 4.0  # extra memory of any operator / bytes of the batch
TIMM_VERSION = "1.0.31"


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------


def _photos() -> Optional[List[np.ndarray]]:
    try:
        from skimage import data
    except ImportError:
        return None
    return [np.ascontiguousarray(getattr(data, n)()[..., :3]) for n in ("astronaut", "chelsea", "coffee", "rocket")]


def make_batch_u8(batch: int, side: int, seed: int = 0) -> Tuple[torch.Tensor, str]:
    """(B, 3, side, side) uint8: random crops (50-100% of the short side) and flips of real photos."""
    rng = np.random.default_rng(seed)
    photos = _photos()
    if photos is None:
        # Smooth random content: low-resolution noise upsampled, plus a little fine noise.
        g = torch.Generator().manual_seed(seed)
        low = torch.rand(batch, 3, 6, 6, generator=g)
        x = F.interpolate(low, size=(side, side), mode="bicubic", align_corners=False)
        x = x + 0.05 * torch.randn(batch, 3, side, side, generator=g)
        return (x.clamp(0, 1) * 255).round().to(torch.uint8), "random smooth noise (scikit-image not installed)"
    out = []
    for _ in range(batch):
        img = photos[rng.integers(len(photos))]
        h, w = img.shape[:2]
        s = int(rng.uniform(0.5, 1.0) * min(h, w))
        top, left = int(rng.integers(0, h - s + 1)), int(rng.integers(0, w - s + 1))
        crop = img[top : top + s, left : left + s]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        t = torch.from_numpy(np.ascontiguousarray(crop)).permute(2, 0, 1).float()[None]
        t = F.interpolate(t, size=(side, side), mode="bilinear", antialias=True, align_corners=False)[0]
        out.append(t.round().clamp(0, 255).to(torch.uint8))
    return torch.stack(out), "scikit-image photos (astronaut, chelsea, coffee, rocket), random crops 50-100% + h-flips"


def normalise(x8: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(IMAGENET_MEAN, device=x8.device).reshape(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x8.device).reshape(1, 3, 1, 1)
    return ((x8.float() / 255.0 - mean) / std).contiguous()


# --------------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------------


@dataclass
class Result:
    median_s: Optional[float] = None
    samples: List[float] = field(default_factory=list)
    inner: int = 1
    error: Optional[str] = None
    peak_bytes: Optional[int] = None  # peak extra memory of one call (see measure_peak)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn: Callable[[], object], repeats: int, device: torch.device, min_repeat_s: float) -> Result:
    def once(n: int) -> float:
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        _sync(device)
        return (time.perf_counter() - t0) / n

    warm = once(1)  # warm-up: first-call costs (allocations, caches, CUDA kernels) are not counted
    inner = 1
    if warm < min_repeat_s:
        probe = once(1)  # the warm-up overstates a fast call; calibrate on a second one
        inner = max(1, min(MAX_INNER, math.ceil(min_repeat_s / max(probe, 1e-7))))
    samples = [once(inner) for _ in range(repeats)]
    return Result(median_s=statistics.median(samples), samples=samples, inner=inner)


def measure_peak(fn: Callable[[], object], device: torch.device) -> int:
    """Peak extra memory (bytes) of one call: the most that torch's allocator held at once during
    the call beyond what it held before (the result, kept until the end, included)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        result = fn()
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device) - before
        del result
        return int(peak)
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        result = fn()
        del result
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]  # type: ignore[union-attr]
    running = peak = 0
    for e in sorted(events, key=lambda e: e.start_ns()):
        if e.device_type() != torch.autograd.DeviceType.CPU:
            continue
        running += e.nbytes()
        peak = max(peak, running)
    return peak


# --------------------------------------------------------------------------------------------
# timm's mixup.py, read from a wheel
# --------------------------------------------------------------------------------------------

_TIMM: Dict[str, object] = {}


def _timm_wheel() -> Path:
    given = os.environ.get("RSMIX_TIMM_WHEEL")
    if given:
        if not Path(given).is_file():
            raise RuntimeError(f"RSMIX_TIMM_WHEEL={given} is not a file")
        return Path(given)
    root = Path(__file__).resolve().parent.parent
    for folder in (Path(tempfile.gettempdir()) / "timm_wheel", root / ".pytest_cache" / "d" / "timm_wheel"):
        found = sorted(folder.glob(f"timm-{TIMM_VERSION}-*.whl"))
        if found:
            return found[0]
    folder = Path(tempfile.gettempdir()) / "timm_wheel"
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check"]
    cmd += ["--timeout", "20", "--retries", "1", "-q", "-d", str(folder), f"timm=={TIMM_VERSION}"]
    try:
        subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    except (OSError, subprocess.SubprocessError) as exc:
        raise RuntimeError(f"no timm wheel (pip download failed: {type(exc).__name__}); set RSMIX_TIMM_WHEEL") from exc
    found = sorted(folder.glob(f"timm-{TIMM_VERSION}-*.whl"))
    if not found:
        raise RuntimeError(f"no timm wheel (pip download timm=={TIMM_VERSION} found none); set RSMIX_TIMM_WHEEL")
    return found[0]


def timm_mixup_module() -> ModuleType:
    """timm's ``timm/data/mixup.py`` as a standalone module (its only imports: numpy, torch)."""
    if "module" not in _TIMM:
        if "error" in _TIMM:
            raise RuntimeError(str(_TIMM["error"]))
        try:
            with zipfile.ZipFile(_timm_wheel()) as wheel:
                source = wheel.read("timm/data/mixup.py")
            path = Path(tempfile.mkdtemp(prefix="timm_reference_")) / "timm_reference_mixup.py"
            path.write_bytes(source)
            spec = importlib.util.spec_from_file_location("timm_reference_mixup", path)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        except Exception as exc:
            _TIMM["error"] = f"timm's mixup.py unavailable: {exc}"
            raise RuntimeError(str(_TIMM["error"])) from exc
        _TIMM["module"] = module
    return _TIMM["module"]  # type: ignore[return-value]


# Rows timed again interleaved (one call of each in turn, round after round) for the targets that
# compare them: the cost of a fresh batch (page faults) drifts with what ran before, and rows
# measured one after the other can land in different states.
INTERLEAVED = (
    "clone",
    "copy",
    "mixup",
    "mixup_s",
    "mixup_s_out",
    "cutmix_s",
    "cutmix_s_out",
    "timm_mixup",
    "timm_cutmix",
    "fg_f",
    "rsm",
    "rsm_maps",
)
INTERLEAVED_ROUNDS = 7


def time_interleaved(
    fns: Dict[str, Callable[[], object]], rounds: int, device: torch.device, min_repeat_s: float
) -> Dict[str, Result]:
    """Median time per call of each function, timed in turn within each round (each call looped
    to about ``min_repeat_s``), so that all of them see the same machine and allocator state."""
    inner: Dict[str, int] = {}
    for key, fn in fns.items():
        fn()  # warm-up
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        inner[key] = max(1, min(MAX_INNER, math.ceil(min_repeat_s / max(time.perf_counter() - t0, 1e-7))))
    samples: Dict[str, List[float]] = {key: [] for key in fns}
    for _ in range(rounds):
        for key, fn in fns.items():
            _sync(device)
            t0 = time.perf_counter()
            for _ in range(inner[key]):
                fn()
            _sync(device)
            samples[key].append((time.perf_counter() - t0) / inner[key])
    return {key: Result(median_s=statistics.median(v), samples=v, inner=inner[key]) for key, v in samples.items()}


# --------------------------------------------------------------------------------------------
# What is timed
# --------------------------------------------------------------------------------------------


@dataclass
class Row:
    key: str
    label: str
    group: str
    build: Callable[[Dict[str, object]], Callable[[], object]]
    opencv_ref: Optional[str] = None  # key of the OpenCV loop row this row is compared with


def _rows() -> List[Row]:
    import randsaliencymix as rsm
    from randsaliencymix import reference, saliency

    norm = dict(mean=IMAGENET_MEAN, std=IMAGENET_STD)
    on = rsm.SALIENCY_ON  # every saliency idea switched on (the defaults before the study)

    def op_call(make: Callable[[], torch.nn.Module], with_maps: bool = False, with_out: bool = False):
        def build(ctx):
            op = make()
            x, y = ctx["x"], ctx["y"]
            gen = torch.Generator(device=ctx["device"]).manual_seed(0)
            out = torch.empty_like(x) if with_out else None  # one buffer, reused by every call
            if with_maps:
                maps = ctx["maps"]
                return lambda: op(x, y, generator=gen, saliency=maps, out=out)
            return lambda: op(x, y, generator=gen, out=out)

        return build

    def timm_call(**kw):
        def build(ctx):
            module = timm_mixup_module()
            np.random.seed(0)
            op = module.Mixup(num_classes=k, label_smoothing=0.0, mode="elem", **kw)
            x = ctx["x"].clone()  # timm mixes in place: its own copy of the batch, made once
            y = ctx["y"]
            return lambda: op(x, y)

        return build

    def maps_call(fn: Callable[[Dict[str, object]], Callable[[], object]]):
        def build(ctx):
            if ctx["maps"] is None:
                raise RuntimeError("no precomputed maps (fine_grained failed)")
            return fn(ctx)

        return build

    def pairing_build(kind: str):
        from randsaliencymix.pairing import (
            complementary_pairing,
            confusion_sources,
            guided_maps,
            saliency_distances,
            uniform_confusion,
        )

        def build(ctx):
            maps = ctx["maps"]
            if kind == "distances":
                return lambda: saliency_distances(guided_maps(maps))
            if kind == "greedy":
                d = saliency_distances(guided_maps(maps))
                return lambda: complementary_pairing(d)
            e = uniform_confusion(k).to(ctx["device"])
            gen = torch.Generator(device=ctx["device"]).manual_seed(0)
            return lambda: confusion_sources(e, ctx["y"], gen)

        return maps_call(build)

    def cam_build(ctx):
        from randsaliencymix.harness.models import build_model

        torch.manual_seed(0)
        model = build_model("fast_resnet", k).to(ctx["device"]).train()
        x, y = ctx["x"], ctx["y"]
        return lambda: rsm.cam_and_logits(model, x, y)

    def kornia_call(name: str, **kw):
        def build(ctx):
            import kornia.augmentation as K

            op = getattr(K, name)(data_keys=["input", "class"], **kw)
            x, y = ctx["x"], ctx["y"]
            return lambda: op(x, y)

        return build

    def copy_build(ctx):
        x = ctx["x"]
        out = torch.empty_like(x)
        return lambda: out.copy_(x)

    k = NUM_CLASSES
    return [
        Row("clone", "`x.clone()` (memory floor)", "floor", lambda c: lambda: c["x"].clone()),
        Row("copy", "`out.copy_(x)` (one pass into a reused buffer: the traffic alone)", "floor", copy_build),
        Row(
            "fg_u8",
            "`fine_grained(x8)` (uint8)",
            "batched detector",
            lambda c: lambda: saliency.fine_grained(c["x8"]),
            "cv_fg",
        ),
        Row(
            "sr_u8",
            "`spectral_residual(x8)` (uint8)",
            "batched detector",
            lambda c: lambda: saliency.spectral_residual(c["x8"]),
            "cv_sr",
        ),
        Row(
            "fg_f",
            "`fine_grained(x, mean, std)` (float, incl. to uint8)",
            "batched detector",
            lambda c: lambda: saliency.fine_grained(c["x"], **norm),
            "cv_fg",
        ),
        Row(
            "sr_f",
            "`spectral_residual(x, mean, std)` (float, incl. to uint8)",
            "batched detector",
            lambda c: lambda: saliency.spectral_residual(c["x"], **norm),
            "cv_sr",
        ),
        Row(
            "cv_fg",
            'OpenCV loop `opencv_saliency(x8, "fine_grained")`',
            "OpenCV per image",
            lambda c: lambda: reference.opencv_saliency(c["x8"], "fine_grained"),
            "cv_fg",
        ),
        Row(
            "cv_sr",
            'OpenCV loop `opencv_saliency(x8, "spectral")`',
            "OpenCV per image",
            lambda c: lambda: reference.opencv_saliency(c["x8"], "spectral"),
            "cv_sr",
        ),
        Row("mixup", '`MixUp(mode="batch")`', "operator", op_call(lambda: rsm.MixUp(num_classes=k, mode="batch"))),
        Row("mixup_s", '`MixUp(mode="sample")`', "operator", op_call(lambda: rsm.MixUp(num_classes=k, mode="sample"))),
        Row(
            "mixup_s_out",
            '`MixUp(mode="sample")` with `out=` (a reused buffer)',
            "operator",
            op_call(lambda: rsm.MixUp(num_classes=k, mode="sample"), with_out=True),
        ),
        Row("cutmix_b", '`CutMix(mode="batch")`', "operator", op_call(lambda: rsm.CutMix(num_classes=k, mode="batch"))),
        Row(
            "cutmix_s", '`CutMix(mode="sample")`', "operator", op_call(lambda: rsm.CutMix(num_classes=k, mode="sample"))
        ),
        Row(
            "cutmix_s_out",
            '`CutMix(mode="sample")` with `out=` (a reused buffer)',
            "operator",
            op_call(lambda: rsm.CutMix(num_classes=k, mode="sample"), with_out=True),
        ),
        Row(
            "timm_mixup",
            f'timm {TIMM_VERSION} `Mixup(mode="elem", cutmix_alpha=0)` (MixUp per sample, in place)',
            "timm",
            timm_call(mixup_alpha=1.0, cutmix_alpha=0.0),
        ),
        Row(
            "timm_cutmix",
            f'timm {TIMM_VERSION} `Mixup(mode="elem", mixup_alpha=0)` (CutMix per sample, in place)',
            "timm",
            timm_call(mixup_alpha=0.0, cutmix_alpha=1.0),
        ),
        Row(
            "smix_off",
            '`SaliencyMix(mode="official")` (1 OpenCV map / batch)',
            "operator",
            op_call(lambda: rsm.SaliencyMix(num_classes=k, mode="official", **norm)),
            "cv_fg",
        ),
        Row(
            "smix_ps",
            '`SaliencyMix(mode="per_sample")`',
            "operator",
            op_call(lambda: rsm.SaliencyMix(num_classes=k, mode="per_sample", **norm)),
            "cv_fg",
        ),
        Row(
            "rsm",
            "`RandSaliencyMix(**SALIENCY_ON)`",
            "operator",
            op_call(lambda: rsm.RandSaliencyMix(num_classes=k, **on, **norm)),
            "cv_fg",
        ),
        Row(
            "rsm_beta",
            '`RandSaliencyMix(**SALIENCY_ON, eta="beta", mixup_prob=0.3)`',
            "operator",
            op_call(lambda: rsm.RandSaliencyMix(num_classes=k, **{**on, "eta": "beta", "mixup_prob": 0.3}, **norm)),
            "cv_fg",
        ),
        Row(
            "rsm_sr",
            '`RandSaliencyMix(**SALIENCY_ON, detector="spectral")`',
            "operator",
            op_call(lambda: rsm.RandSaliencyMix(num_classes=k, detector="spectral", **on, **norm)),
            "cv_sr",
        ),
        Row(
            "rsm_maps",
            "`RandSaliencyMix(**SALIENCY_ON)` given maps (sampling + apply only)",
            "operator",
            op_call(lambda: rsm.RandSaliencyMix(num_classes=k, **on, **norm), with_maps=True),
        ),
        Row(
            "rsm_default",
            "`RandSaliencyMix()` (the study's defaults: no saliency, detector skipped)",
            "operator",
            op_call(lambda: rsm.RandSaliencyMix(num_classes=k, **norm)),
        ),
        Row(
            "rsm_noise",
            "`RandSaliencyMix(**SALIENCY_ON, patch_noise=0.4)`",
            "operator",
            op_call(lambda: rsm.RandSaliencyMix(num_classes=k, patch_noise=0.4, **on, **norm)),
            "cv_fg",
        ),
        Row(
            "rsm_comp",
            '`RandSaliencyMix(**SALIENCY_ON, pairing="complementary")`',
            "operator",
            op_call(lambda: rsm.RandSaliencyMix(num_classes=k, pairing="complementary", **on, **norm)),
            "cv_fg",
        ),
        Row(
            "rsm_conf",
            '`RandSaliencyMix(**SALIENCY_ON, pairing="confusion")`',
            "operator",
            op_call(lambda: rsm.RandSaliencyMix(num_classes=k, pairing="confusion", **on, **norm)),
            "cv_fg",
        ),
        Row(
            "rsm_maps_comp",
            '`RandSaliencyMix(**SALIENCY_ON, pairing="complementary")` given maps',
            "operator",
            op_call(lambda: rsm.RandSaliencyMix(num_classes=k, pairing="complementary", **on, **norm), with_maps=True),
        ),
        Row(
            "pair_dist",
            "pairing: `saliency_distances(guided_maps(maps))` (blur, normalise, B×B L2)",
            "pairing",
            pairing_build("distances"),
        ),
        Row(
            "pair_greedy",
            "pairing: `complementary_pairing(D)` (greedy cycle, B-2 steps)",
            "pairing",
            pairing_build("greedy"),
        ),
        Row("pair_conf", "pairing: `confusion_sources(E, y, g)`", "pairing", pairing_build("confusion")),
        Row(
            "guided",
            "`GuidedMixup(p=1)` (SR: spectral detector inside, complementary pairing)",
            "operator",
            op_call(lambda: rsm.GuidedMixup(num_classes=k, p=1.0, **norm)),
            "cv_sr",
        ),
        Row(
            "guided_maps",
            "`GuidedMixup(p=1)` given maps (complementary pairing)",
            "operator",
            op_call(lambda: rsm.GuidedMixup(num_classes=k, p=1.0, **norm), with_maps=True),
        ),
        Row(
            "guided_maps_rand",
            '`GuidedMixup(p=1, pairing="random")` given maps',
            "operator",
            op_call(lambda: rsm.GuidedMixup(num_classes=k, p=1.0, pairing="random", **norm), with_maps=True),
        ),
        Row("cam", "`cam_and_logits(fast_resnet, x, y)` (CAM: one no-grad forward, train mode)", "saliency", cam_build),
        Row("k_cutmix", "kornia `RandomCutMixV2`", "kornia", kornia_call("RandomCutMixV2", use_correct_lambda=True)),
        Row("k_mixup", "kornia `RandomMixUpV2`", "kornia", kornia_call("RandomMixUpV2")),
    ]


def run_workload(
    batch: int,
    side: int,
    device: torch.device,
    repeats: int,
    min_repeat_s: float,
    rows: List[Row],
    log: Callable[[str], None],
) -> Tuple[Dict[str, Result], str]:
    from randsaliencymix import saliency

    x8_cpu, content = make_batch_u8(batch, side, seed=side)
    x8 = x8_cpu.to(device)
    x = normalise(x8)
    y = torch.randint(NUM_CLASSES, (batch,), generator=torch.Generator().manual_seed(1)).to(device)
    ctx: Dict[str, object] = {"x8": x8, "x": x, "y": y, "device": device}
    results_batch_bytes = x.numel() * x.element_size()
    try:
        ctx["maps"] = saliency.fine_grained(x, mean=IMAGENET_MEAN, std=IMAGENET_STD)
    except Exception as exc:
        ctx["maps"] = None
        log(f"  precomputing maps failed: {type(exc).__name__}: {exc}")
    results: Dict[str, Result] = {}
    for row in rows:
        t0 = time.perf_counter()
        try:
            if row.key in ("rsm_maps", "rsm_maps_comp", "guided_maps", "guided_maps_rand") and ctx["maps"] is None:
                raise RuntimeError("no precomputed maps (fine_grained failed)")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fn = row.build(ctx)
                res = time_call(fn, repeats, device, min_repeat_s)
                res.peak_bytes = measure_peak(fn, device)
        except Exception as exc:
            msg = f"{type(exc).__name__}: {exc}".replace("\n", " ").replace("|", "/")
            res = Result(error=msg[:160])
        results[row.key] = res
        shown = f"{res.median_s * 1e3:10.3f} ms" if res.error is None else f"ERROR {res.error}"
        if res.peak_bytes is not None:
            shown += f"  peak {res.peak_bytes / 2**20:8.2f} MiB"
        log(f"  {row.key:10s} {shown}   ({time.perf_counter() - t0:.1f} s)")
    results["_batch"] = Result(peak_bytes=results_batch_bytes)  # bytes of x, for the "× x" columns
    fns: Dict[str, Callable[[], object]] = {}
    for row in rows:
        if row.key in INTERLEAVED and results[row.key].error is None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fns[row.key] = row.build(ctx)
    t0 = time.perf_counter()
    rounds = INTERLEAVED_ROUNDS if repeats > 1 else 1
    for key, res in time_interleaved(fns, rounds, device, min_repeat_s).items():
        results["interleaved:" + key] = res
    log(f"  interleaved: {', '.join(fns)} ({time.perf_counter() - t0:.1f} s)")
    return results, content


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


def _ms(r: Result) -> str:
    if r.error is not None:
        return f"error: {r.error}"
    v = r.median_s * 1e3
    return f"{v:.3f}" if v < 10 else f"{v:.1f}"


def _ratio(num: Optional[float], den: Optional[float]) -> str:
    if num is None or den is None or den <= 0:
        return "–"
    q = num / den
    return f"{q:.2f}×" if q < 100 else f"{q:.0f}×"


def _mib(r: Result, batch: Optional[int]) -> str:
    if r.error is not None or r.peak_bytes is None:
        return "–"
    text = f"{r.peak_bytes / 2**20:.1f}" if r.peak_bytes >= 2**20 else f"{r.peak_bytes / 2**20:.2f}"
    if batch:
        text += f" ({r.peak_bytes / batch:.2f}×)"
    return text


def render_table(rows: List[Row], workloads: List[Tuple[int, int, float]], results: List[Dict[str, Result]]) -> str:
    head = ["Method"]
    for b, s, _ in workloads:
        w = f"B={b}, 3×{s}×{s}"
        head += [f"{w}: ms/batch", "× clone", "OpenCV loop ÷ this", "peak extra MiB (× x)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
    for row in rows:
        cells = [row.label]
        for res in results:
            r = res[row.key]
            clone = res["clone"].median_s
            cells.append(_ms(r))
            cells.append(_ratio(r.median_s, clone) if row.key != "clone" else "1.00×")
            ref = res.get(row.opencv_ref) if row.opencv_ref else None
            cells.append(_ratio(ref.median_s, r.median_s) if ref is not None else "")
            cells.append(_mib(r, res["_batch"].peak_bytes))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def render_spread(rows: List[Row], workloads: List[Tuple[int, int, float]], results: List[Dict[str, Result]]) -> str:
    head = ["Method"] + [f"B={b}, {s}²: min – max ms (calls/repeat)" for b, s, _ in workloads]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * len(workloads)) + "|"]
    for row in rows:
        cells = [row.label]
        for res in results:
            r = res[row.key]
            cells.append("–" if r.error else f"{min(r.samples) * 1e3:.3f} – {max(r.samples) * 1e3:.3f} ({r.inner})")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def render_interleaved(
    rows: List[Row], workloads: List[Tuple[int, int, float]], results: List[Dict[str, Result]]
) -> str:
    head = ["Method"] + [f"B={b}, {s}²: ms (interleaved)" for b, s, _ in workloads]
    head += [f"B={b}, {s}²: min – max" for b, s, _ in workloads]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
    for row in rows:
        found = [res.get("interleaved:" + row.key) for res in results]
        if all(r is None for r in found):
            continue
        cells = [row.label]
        cells += ["–" if r is None or r.median_s is None else _ms(r) for r in found]
        cells += ["–" if r is None else f"{min(r.samples) * 1e3:.3f} – {max(r.samples) * 1e3:.3f}" for r in found]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _verdict(ok: bool) -> str:
    return "MET" if ok else "NOT MET"


def _quotient(
    res: Dict[str, Result], num: str, den: str, target: float, at_most: bool, what: str, where: str
) -> Tuple[str, str]:
    """One target line ``num / den`` against ``target`` (at most, or at least), and its verdict."""
    a, b = res[num], res[den]
    if a.error or b.error or a.median_s is None or b.median_s is None:
        verdict = "NOT MEASURED"
        return f"- {where}: {what}: **{verdict}** ({a.error or 'ok'}; {b.error or 'ok'})", verdict
    q = a.median_s / b.median_s
    ok = q <= target if at_most else q >= target
    sign = "≤" if at_most else "≥"
    text = (
        f"- {where}: {what}: {a.median_s * 1e3:.2f} ms / {b.median_s * 1e3:.2f} ms = **{q:.2f}×** "
        f"(target {sign} {target:g}×): **{_verdict(ok)}**"
    )
    return text, _verdict(ok)


MIX_ROWS = ("mixup", "mixup_s", "cutmix_s")
TIMM_OF = {"mixup": "timm_mixup", "mixup_s": "timm_mixup", "cutmix_s": "timm_cutmix"}


def render_targets(
    rows: List[Row], workloads: List[Tuple[int, int, float]], results: List[Dict[str, Result]], device: torch.device
) -> Tuple[str, List[str]]:
    lines: List[str] = []
    verdicts: List[str] = []
    gpu = device.type == "cuda"
    labels = {row.key: row.label for row in rows}
    big = len(workloads) - 1  # the ImageNet-sized workload

    def add(text: str, verdict: str, name: str) -> None:
        lines.append(text)
        verdicts.append(f"{name}: {verdict}")

    b, s, _ = workloads[big]
    res = {k.split(":", 1)[1]: v for k, v in results[big].items() if k.startswith("interleaved:")}
    lines.append(
        "Targets 1 and 3 compare rows timed interleaved (see the last table): one call of each row in turn, "
        f"{INTERLEAVED_ROUNDS} rounds, medians. Target 2 compares rows of the main table.\n"
    )
    lines.append(
        f"**1. MixUp and per-sample CutMix at B={b}, {s}²: at most {MIX_OVER_CLONE_TARGET:g} passes of memory "
        f"traffic (≤ {MIX_OVER_CLONE_TARGET:g}× `x.clone()`), and no slower than timm's `elem` mode.**\n"
    )
    for key in MIX_ROWS:
        for out_key in (key, f"{key}_out") if f"{key}_out" in res else (key,):
            text, v = _quotient(res, out_key, "clone", MIX_OVER_CLONE_TARGET, True, labels[out_key] + " ÷ clone", "")
            add(text.replace("- : ", "- "), v, f"{out_key} / clone {s}²")
            text, v = _quotient(res, out_key, TIMM_OF[key], 1.0, True, labels[out_key] + " ÷ timm `elem`", "")
            add(text.replace("- : ", "- "), v, f"{out_key} / timm {s}²")
    small = {k.split(":", 1)[1]: v for k, v in results[0].items() if k.startswith("interleaved:")}
    parts = []
    for key in MIX_ROWS:
        r, c, t = small.get(key), small.get("clone"), small.get(TIMM_OF[key])
        if r and c and r.median_s and c.median_s:
            parts.append(
                f"{labels[key]} {r.median_s * 1e3:.2f} ms = {r.median_s / c.median_s:.0f}× clone"
                + (f", {r.median_s / t.median_s:.2f}× timm" if t and t.median_s else "")
            )
    if parts:
        lines.append(
            f"\n(At B={workloads[0][0]}, {workloads[0][1]}², for information, where a clone is "
            "microseconds and every operator's cost is per-call overhead: " + "; ".join(parts) + ".)\n"
        )

    lines.append(
        "**2. `spectral_residual` faster than OpenCV's per-image loop at both sizes (uint8 batch; within 1e-4 of "
        "OpenCV with the same argmax, checked by the tests).**\n"
    )
    for (b, s, _), res in zip(workloads, results):
        text, v = _quotient(res, "cv_sr", "sr_u8", 1.0, False, "OpenCV loop ÷ `spectral_residual(x8)`", f"B={b}, {s}²")
        add(text, v, f"spectral speed-up B={b} {s}²")
        if res["sr_f"].median_s and res["cv_sr"].median_s:
            lines.append(
                f"  (float batch incl. the uint8 conversion: {res['sr_f'].median_s * 1e3:.2f} ms, "
                f"{res['cv_sr'].median_s / res['sr_f'].median_s:.2f}× the OpenCV loop)"
            )

    lines.append(
        f"\n**3. `RandSaliencyMix(**SALIENCY_ON)`: at most {STEP_OVER_DETECTOR_TARGET:g}× its detector alone "
        f"(`fine_grained` on the same float batch, incl. the uint8 conversion); with maps given, within "
        f'{MAPS_OVER_CUTMIX_TARGET:g}× of `CutMix(mode="sample")`.**\n'
    )
    for (b, s, _), res_all in zip(workloads, results):
        res = {k.split(":", 1)[1]: v for k, v in res_all.items() if k.startswith("interleaved:")}
        text, v = _quotient(res, "rsm", "fg_f", STEP_OVER_DETECTOR_TARGET, True, "step ÷ detector", f"B={b}, {s}²")
        add(text, v, f"step/detector B={b} {s}²")
        text, v = _quotient(
            res, "rsm_maps", "cutmix_s", MAPS_OVER_CUTMIX_TARGET, True, "maps given ÷ CutMix", f"B={b}, {s}²"
        )
        add(text, v, f"maps/cutmix B={b} {s}²")

    lines.append(
        f"\n**4. Peak extra memory of every operator at most {PEAK_OVER_BATCH_TARGET:g}× the batch "
        '(the float32 `x`; operators of this library, rows of the "operator" group).**\n'
    )
    for (b, s, _), res in zip(workloads, results):
        batch = res["_batch"].peak_bytes or 1
        measured = [(row, res[row.key]) for row in rows if row.group == "operator" and res[row.key].peak_bytes]
        if not measured:
            add(f"- B={b}, {s}²: **NOT MEASURED**", "NOT MEASURED", f"memory B={b} {s}²")
            continue
        worst_row, worst = max(measured, key=lambda item: item[1].peak_bytes or 0)
        q = (worst.peak_bytes or 0) / batch
        over = [row.label for row, r in measured if (r.peak_bytes or 0) > PEAK_OVER_BATCH_TARGET * batch]
        text = (
            f"- B={b}, {s}²: batch {batch / 2**20:.1f} MiB; the largest is {worst_row.label} with "
            f"{(worst.peak_bytes or 0) / 2**20:.1f} MiB = **{q:.2f}×** (target ≤ {PEAK_OVER_BATCH_TARGET:g}×): "
            f"**{_verdict(not over)}**" + (f" (over: {', '.join(over)})" if over else "")
        )
        add(text, _verdict(not over), f"memory B={b} {s}²")

    cpu_targets = ", ".join(f"≥ {t:g}× at {s}²" for _, s, t in workloads) + " on CPU"
    lines.append(
        "\n**Earlier target (issue 2): speed-up of the batched `fine_grained` (uint8 batch) over the OpenCV "
        f"per-image loop ({cpu_targets if not gpu else f'≥ {GPU_DETECTOR_TARGET:g}× on GPU'}).**\n"
    )
    for (b, s, cpu_target), res in zip(workloads, results):
        target = GPU_DETECTOR_TARGET if gpu else cpu_target
        text, v = _quotient(res, "cv_fg", "fg_u8", target, False, "OpenCV loop ÷ `fine_grained(x8)`", f"B={b}, {s}²")
        add(text, v, f"detector speed-up B={b} {s}²")
    return "\n".join(lines), verdicts


def reading(workloads: List[Tuple[int, int, float]], results: List[Dict[str, Result]]) -> str:
    """Notes on this run's figures, with numbers from this run."""
    notes = [
        "This is a shared 2-core VM: runs of the same script move by 20-40% (see the Spread table), and "
        "rows that are not side by side in one run are not comparable. Each target above is a ratio of "
        "two rows of this one run."
    ]
    res = results[-1]
    b, s, _ = workloads[-1]
    clone, copy = res["clone"].median_s, res["copy"].median_s
    again = res.get("interleaved:clone")
    if clone and again and again.median_s:
        notes.append(
            f"The same `x.clone()` at B={b}, {s}² took {clone * 1e3:.1f} ms in the main table and "
            f"{again.median_s * 1e3:.1f} ms interleaved with the operators: the cost of a fresh batch depends "
            "on the kernel's state (pages freed just before by other work are cheap to map again), which "
            "is why the targets that compare with it use the interleaved rows."
        )
    inter_clone, inter_copy = res.get("interleaved:clone"), res.get("interleaved:copy")
    if inter_clone and inter_copy and inter_clone.median_s and inter_copy.median_s:
        clone, copy = inter_clone.median_s, inter_copy.median_s
    if clone and copy:
        notes.append(
            f"Interleaved at B={b}, {s}², a fresh batch costs `x.clone()` = {clone * 1e3:.1f} ms and the pass "
            f"alone `out.copy_(x)` = {copy * 1e3:.1f} ms: mapping the new allocation's pages is "
            f"{max(clone - copy, 0.0) / clone:.0%} of a clone. Every operator that returns a new batch pays it "
            "once; with `out=` an operator writes into a buffer whose pages are already mapped, which is how "
            "`out=` MixUp and CutMix run faster than a clone."
        )
    ratios = []
    for ours, theirs in (("mixup_s", "timm_mixup"), ("cutmix_s", "timm_cutmix")):
        a, t = res.get("interleaved:" + ours), res.get("interleaved:" + theirs)
        if a and t and a.median_s and t.median_s:
            ratios.append(f"{a.median_s / t.median_s:.2f}x ({ours})")
    if ratios:
        notes.append(
            f"By default (a new output), per-sample MixUp and CutMix at B={b}, {s}² take "
            f"{' and '.join(ratios)} the time of timm's `elem` mode, which mixes in place after one "
            "`x.clone()` of its own: both allocate one batch per call, and the rest is one gather and one "
            "blend. The allocation is most of the cost, hence the opt-in `out=`."
        )
    notes.append(
        "At 32x32 every operator's time is per-call overhead (hundreds of small tensor ops at about 5-20 us "
        "each), not memory traffic: RandSaliencyMix's window draws, the labels and the shifted paste are "
        "about twice the ops of CutMix's draw, which is why its 32x32 ratios are the ones near or over "
        "their targets."
    )
    return "\n\n".join(n for n in notes if n) + "\n"


def train_step_section() -> str:
    """benchmarks/train_step.md (the training-step benchmark: every method and saliency source,
    the CPU presets at 32 and 128 px; its own command), appended as is."""
    path = Path(__file__).resolve().parent / "train_step.md"
    if not path.is_file():
        return ""
    body = path.read_text(encoding="utf-8").strip()
    body = body.replace("# Training-step benchmark", "# Training step (issues 3, 9 and 10)", 1)
    return (
        "\n" + body + "\n\n(Copied from `benchmarks/train_step.md`, written by `benchmarks/train_step.py`; "
        "not re-measured by this script.)\n"
    )


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(module: str) -> str:
    try:
        mod = __import__(module)
        return str(getattr(mod, "__version__", "?"))
    except Exception as exc:
        return f"not available ({type(exc).__name__})"


def _git_state() -> str:
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "src"], cwd=root, capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if not head:
        return "unknown"
    return head + (" (src/ has uncommitted changes)" if dirty else "")


def environment(device: torch.device) -> List[Tuple[str, str]]:
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 0
    cv_threads = "?"
    try:
        import cv2

        cv_threads = str(cv2.getNumThreads())
    except ImportError:
        pass
    info = [
        ("CPU", _cpu_model()),
        ("CPU cores (usable / total)", f"{cores} / {os.cpu_count()}"),
        ("torch threads", str(torch.get_num_threads())),
        ("OpenCV threads", cv_threads),
    ]
    if device.type == "cuda":
        info.append(("GPU", torch.cuda.get_device_name(device)))
    info += [
        ("device", str(device)),
        ("python", platform.python_version()),
        ("torch", torch.__version__),
        ("numpy", np.__version__),
        ("opencv", _version("cv2")),
        ("kornia", _version("kornia")),
        ("scikit-image", _version("skimage")),
        ("randsaliencymix", f"{_version('randsaliencymix')} at git {_git_state()}"),
        ("OS", platform.platform()),
    ]
    return info


def _command() -> str:
    exe = sys.executable
    try:
        rel = os.path.relpath(exe)
        if not rel.startswith(".."):
            exe = rel
    except ValueError:
        pass
    return " ".join(shlex.quote(a) for a in [exe] + sys.argv)


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=None, help="markdown file to write (e.g. BENCHMARKS.md)")
    ap.add_argument("--repeats", type=int, default=None, help="timed repeats per row (default 5; 1 with --quick)")
    ap.add_argument("--quick", action="store_true", help="smoke run: tiny batches, 1 repeat")
    ap.add_argument(
        "--min-repeat-s",
        type=float,
        default=None,
        help=f"loop calls shorter than this within one repeat and average them "
        f"(default {MIN_REPEAT_S}; 0 with --quick)",
    )
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda asked for, but torch.cuda.is_available() is False")
    repeats = args.repeats if args.repeats is not None else (1 if args.quick else 5)
    if repeats < 1:
        ap.error("--repeats must be >= 1")
    device = torch.device(args.device)
    workloads = QUICK_WORKLOADS if args.quick else FULL_WORKLOADS
    min_repeat_s = args.min_repeat_s if args.min_repeat_s is not None else (0.0 if args.quick else MIN_REPEAT_S)
    if min_repeat_s < 0:
        ap.error("--min-repeat-s must be >= 0")

    started = _dt.datetime.now(_dt.timezone.utc)
    t_start = time.perf_counter()
    rows = _rows()
    results: List[Dict[str, Result]] = []
    content = ""
    for b, s, _ in workloads:
        print(f"B={b} x 3x{s}x{s} on {device}, {repeats} repeat(s):", flush=True)
        res, content = run_workload(b, s, device, repeats, min_repeat_s, rows, lambda m: print(m, flush=True))
        results.append(res)
    total_s = time.perf_counter() - t_start

    table = render_table(rows, workloads, results)
    targets, verdicts = render_targets(rows, workloads, results, device)
    print()
    print(table)
    print()
    print(targets)
    print(f"\nTotal benchmark time: {total_s:.1f} s")

    if args.out is not None:
        env = "\n".join(f"| {k} | {v} |" for k, v in environment(device))
        doc = f"""# Benchmarks: batched saliency and mixing operators

Generated by `benchmarks/ops.py`{" (**--quick smoke run: tiny batches, not representative**)" if args.quick else ""}.

- Command: `{_command()}`
- Date: {started.strftime("%Y-%m-%d %H:%M:%S UTC")}
- Total benchmark time: {total_s:.1f} s
- Timing: median time per batch over {repeats} timed repeat(s) after 1 warm-up call{", bracketed by `torch.cuda.synchronize()`" if device.type == "cuda" else ""}{f"; calls under {min_repeat_s * 1e3:.0f} ms are looped within a repeat and averaged (calls/repeat in the Spread table)" if min_repeat_s > 0 else ""}.
- Data: float32 images, ImageNet-normalised (mean {IMAGENET_MEAN}, std {IMAGENET_STD}); `x8` is the same batch as uint8. Content: {content}. Labels: `(B,)` ints, {NUM_CLASSES} classes.
- Operators run forward on the float batch `x` with an explicit `torch.Generator`; saliency operators get `mean=`/`std=` (ImageNet).
- "× clone" is the time over `x.clone()` of the same batch: one read and one write of the batch into a freshly allocated tensor, the memory floor of an operator that returns a new batch. At 224² the batch (37 MiB) is above glibc's largest mmap threshold (32 MiB), so every fresh allocation is a new mapping whose pages fault in on first write: that is most of `x.clone()`'s time, and `out.copy_(x)` (the same pass into a reused buffer) shows the traffic alone. "OpenCV loop ÷ this" is the speed-up over the OpenCV per-image loop of the matching detector (fine-grained, or spectral for spectral rows).
- "peak extra MiB (× x)": the most memory a call held at once beyond what existed before it, its output included, from torch's own allocator events: one more (untimed) call under `torch.profiler.profile(profile_memory=True)`, whose raw `[memory]` events (each allocation and free of a tensor's storage, on CPU) are summed in time order; on CUDA, `torch.cuda.max_memory_allocated()` over the call. "× x" divides by the bytes of the float32 batch `x` (uint8 rows too). OpenCV's own allocations are not torch tensors and show as 0.
- timm: `timm/data/mixup.py` of timm {TIMM_VERSION}, read out of its wheel as a standalone module (the timm package is not imported), `Mixup(mode="elem", label_smoothing=0, num_classes={NUM_CLASSES})` with MixUp only or CutMix only. It mixes in place (its `x_orig = x.clone()` plus a Python loop over the batch), so it is given its own copy of the batch once, outside the timing.
- `out=`: the opt-in output buffer of `Mixer.forward`/`apply` and `apply_mix` (the default returns a new tensor and never modifies `x`); one buffer is allocated before timing and reused by every call.
{"- Device: CUDA (timings bracketed by synchronisation, memory by the CUDA allocator's peak)." if device.type == "cuda" else "- No GPU was available to this run: every figure is CPU. The CUDA path of the script (synchronised timing, `torch.cuda.max_memory_allocated` for memory, `--device cuda`) is kept."}

## Environment

| | |
|---|---|
{env}

## Results

{table}

## Targets

{targets}

## Spread

{render_spread(rows, workloads, results)}

## Interleaved (targets 1 and 3)

{render_interleaved(rows, workloads, results)}

## Reading these numbers

{reading(workloads, results)}
{train_step_section()}"""
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(doc, encoding="utf-8")
        print(f"Wrote {args.out}")
    for v in verdicts:
        print(v)
    return 0


if __name__ == "__main__":
    sys.exit(main())
