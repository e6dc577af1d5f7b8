"""Time the saliency detectors and mixing operators side by side, in one run, and write BENCHMARKS.md.

Usage::

    .venv/bin/python benchmarks/ops.py --out BENCHMARKS.md          # full run (about a minute on 2 CPU cores)
    .venv/bin/python benchmarks/ops.py --quick --out /tmp/quick.md  # smoke run: tiny batches, 1 repeat

Every number is the median time per batch over ``--repeats`` timed repeats after one warm-up call
(on CUDA each timing is bracketed by ``torch.cuda.synchronize()``). Calls shorter than
``--min-repeat-s`` (0.25 s) are run several times per repeat and averaged, so the memory floor
(``x.clone()``) is measured as precisely as the slow rows and a noisy machine disturbs less.
All ratios and targets come from this same run.

The batches are real photographs (scikit-image's astronaut, chelsea, coffee, rocket) cut to size
by random crops and flips, so the saliency maps look like those of a real training batch; without
scikit-image they are smooth random images. Float batches are ImageNet-normalised.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
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
STEP_OVER_DETECTOR_TARGET = 1.5


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

    def op_call(make: Callable[[], torch.nn.Module], with_maps: bool = False):
        def build(ctx):
            op = make()
            x, y = ctx["x"], ctx["y"]
            gen = torch.Generator(device=ctx["device"]).manual_seed(0)
            if with_maps:
                maps = ctx["maps"]
                return lambda: op(x, y, generator=gen, saliency=maps)
            return lambda: op(x, y, generator=gen)

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
        from randsaliencymix.models import build_model

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

    k = NUM_CLASSES
    return [
        Row("clone", "`x.clone()` (memory floor)", "floor", lambda c: lambda: c["x"].clone()),
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
        Row("cutmix_b", '`CutMix(mode="batch")`', "operator", op_call(lambda: rsm.CutMix(num_classes=k, mode="batch"))),
        Row(
            "cutmix_s", '`CutMix(mode="sample")`', "operator", op_call(lambda: rsm.CutMix(num_classes=k, mode="sample"))
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
        except Exception as exc:
            msg = f"{type(exc).__name__}: {exc}".replace("\n", " ").replace("|", "/")
            res = Result(error=msg[:160])
        results[row.key] = res
        shown = f"{res.median_s * 1e3:10.3f} ms" if res.error is None else f"ERROR {res.error}"
        log(f"  {row.key:10s} {shown}   ({time.perf_counter() - t0:.1f} s)")
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


def render_table(rows: List[Row], workloads: List[Tuple[int, int, float]], results: List[Dict[str, Result]]) -> str:
    head = ["Method"]
    for b, s, _ in workloads:
        w = f"B={b}, 3×{s}×{s}"
        head += [f"{w}: ms/batch", "× clone", "OpenCV loop ÷ this"]
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


def render_targets(
    workloads: List[Tuple[int, int, float]], results: List[Dict[str, Result]], device: torch.device
) -> Tuple[str, List[str]]:
    lines, verdicts = [], []
    gpu = device.type == "cuda"
    cpu_targets = ", ".join(f"≥ {t:g}× at {s}²" for _, s, t in workloads) + " on CPU"
    lines.append(
        "Speed-up of the batched `fine_grained` (uint8 batch) over the OpenCV per-image loop "
        f"(target {cpu_targets if not gpu else f'≥ {GPU_DETECTOR_TARGET:g}× on GPU'}):\n"
    )
    for (b, s, cpu_target), res in zip(workloads, results):
        target = GPU_DETECTOR_TARGET if gpu else cpu_target
        cv, fg = res["cv_fg"], res["fg_u8"]
        if cv.error or fg.error:
            verdict = "NOT MEASURED"
            text = f"- B={b}, {s}²: **{verdict}** (cv: {cv.error or 'ok'}; batched: {fg.error or 'ok'})"
        else:
            sp = cv.median_s / fg.median_s
            verdict = "MET" if sp >= target else "NOT MET"
            text = (
                f"- B={b}, {s}²: OpenCV loop {cv.median_s * 1e3:.2f} ms / batched {fg.median_s * 1e3:.2f} ms"
                f" = **{sp:.2f}×** (target ≥ {target:g}×): **{verdict}**"
            )
        verdicts.append(f"detector speed-up B={b} {s}²: {verdict}")
        lines.append(text)
    lines.append(
        "\n`RandSaliencyMix()` step (default, float batch, maps computed inside) ÷ `fine_grained` "
        f"on the same float batch (incl. the uint8 conversion) (target ≤ {STEP_OVER_DETECTOR_TARGET}×):\n"
    )
    for (b, s, _), res in zip(workloads, results):
        step, det = res["rsm"], res["fg_f"]
        if step.error or det.error:
            verdict = "NOT MEASURED"
            text = f"- B={b}, {s}²: **{verdict}** (step: {step.error or 'ok'}; detector: {det.error or 'ok'})"
        else:
            q = step.median_s / det.median_s
            verdict = "MET" if q <= STEP_OVER_DETECTOR_TARGET else "NOT MET"
            text = (
                f"- B={b}, {s}²: step {step.median_s * 1e3:.2f} ms / detector {det.median_s * 1e3:.2f} ms"
                f" = **{q:.2f}×** (target ≤ {STEP_OVER_DETECTOR_TARGET}×): **{verdict}**"
            )
            maps = res["rsm_maps"]
            if maps.error is None:
                text += f"; sampling + apply alone (maps given): {maps.median_s * 1e3:.2f} ms"
        verdicts.append(f"step/detector B={b} {s}²: {verdict}")
        lines.append(text)
    return "\n".join(lines), verdicts


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
    targets, verdicts = render_targets(workloads, results, device)
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
- "× clone" is the time over `x.clone()` of the same batch (the memory floor, with the allocator warm: looped clones reuse memory, a cold first clone costs page faults on top); "OpenCV loop ÷ this" is the speed-up over the OpenCV per-image loop of the matching detector (fine-grained, or spectral for spectral rows).

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
"""
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(doc, encoding="utf-8")
        print(f"Wrote {args.out}")
    for v in verdicts:
        print(v)
    return 0


if __name__ == "__main__":
    sys.exit(main())
