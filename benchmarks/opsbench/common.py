"""What every family of ``benchmarks/ops.py`` shares: the constants, the batches, a timed row and
its result, the timing loops, and the formatting of times, ratios and targets."""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass, field
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
Workloads = List[Tuple[int, int, float]]
FULL_WORKLOADS: Workloads = [(128, 32, 2.0), (64, 224, 3.0)]
QUICK_WORKLOADS: Workloads = [(8, 32, 2.0), (4, 64, 3.0)]


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
# What is timed, and its result
# --------------------------------------------------------------------------------------------


@dataclass
class Row:
    key: str
    label: str
    group: str
    build: Callable[[Dict[str, object]], Callable[[], object]]
    opencv_ref: Optional[str] = None  # key of the OpenCV loop row this row is compared with


@dataclass
class Result:
    median_s: Optional[float] = None
    samples: List[float] = field(default_factory=list)
    inner: int = 1
    error: Optional[str] = None
    peak_bytes: Optional[int] = None  # peak extra memory of one call (see memory.measure_peak)


Results = List[Dict[str, Result]]


# --------------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------------


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn: Callable[[], object], repeats: int, device: torch.device, min_repeat_s: float) -> Result:
    def once(n: int) -> float:
        sync(device)
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        sync(device)
        return (time.perf_counter() - t0) / n

    warm = once(1)  # warm-up: first-call costs (allocations, caches, CUDA kernels) are not counted
    inner = 1
    if warm < min_repeat_s:
        probe = once(1)  # the warm-up overstates a fast call; calibrate on a second one
        inner = max(1, min(MAX_INNER, math.ceil(min_repeat_s / max(probe, 1e-7))))
    samples = [once(inner) for _ in range(repeats)]
    return Result(median_s=statistics.median(samples), samples=samples, inner=inner)


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
    to about ``min_repeat_s``), so that all of them see the same machine and allocator state. A
    function that raises is reported as failed (its error in its Result) and leaves the rounds;
    the others are timed as if it had not been there."""
    inner: Dict[str, int] = {}
    failed: Dict[str, Result] = {}

    def fail(key: str, exc: Exception) -> None:
        msg = f"{type(exc).__name__}: {exc}".replace("\n", " ").replace("|", "/")
        failed[key] = Result(error=f"failed when timed interleaved: {msg}"[:160])

    for key, fn in fns.items():
        try:
            fn()  # warm-up
            sync(device)
            t0 = time.perf_counter()
            fn()
            sync(device)
        except Exception as exc:  # a row that fails here is reported, not fatal
            fail(key, exc)
            continue
        inner[key] = max(1, min(MAX_INNER, math.ceil(min_repeat_s / max(time.perf_counter() - t0, 1e-7))))
    samples: Dict[str, List[float]] = {key: [] for key in inner}
    for _ in range(rounds):
        for key in [k for k in samples if k not in failed]:
            fn = fns[key]
            try:
                sync(device)
                t0 = time.perf_counter()
                for _ in range(inner[key]):
                    fn()
                sync(device)
            except Exception as exc:
                fail(key, exc)
                continue
            samples[key].append((time.perf_counter() - t0) / inner[key])
    timed = {
        key: Result(median_s=statistics.median(v), samples=v, inner=inner[key])
        for key, v in samples.items()
        if key not in failed
    }
    return {**timed, **failed}


def interleaved(results: Dict[str, Result]) -> Dict[str, Result]:
    """The rows of one workload's results that were timed interleaved, by their own keys."""
    return {k.split(":", 1)[1]: v for k, v in results.items() if k.startswith("interleaved:")}


# --------------------------------------------------------------------------------------------
# Formatting
# --------------------------------------------------------------------------------------------


def ms(r: Result) -> str:
    if r.error is not None:
        return f"error: {r.error}"
    v = r.median_s * 1e3
    return f"{v:.3f}" if v < 10 else f"{v:.1f}"


def ratio(num: Optional[float], den: Optional[float]) -> str:
    if num is None or den is None or den <= 0:
        return "–"
    q = num / den
    return f"{q:.2f}×" if q < 100 else f"{q:.0f}×"


def verdict(ok: bool) -> str:
    return "MET" if ok else "NOT MET"


def quotient(
    res: Dict[str, Result], num: str, den: str, target: float, at_most: bool, what: str, where: str
) -> Tuple[str, str]:
    """One target line ``num / den`` against ``target`` (at most, or at least), and its verdict."""
    # A row that failed in the main table is not timed interleaved, so it may be missing here.
    missing = Result(error="not timed (its row failed; see the main table)")
    a, b = res.get(num, missing), res.get(den, missing)
    if a.error or b.error or a.median_s is None or b.median_s is None:
        found = "NOT MEASURED"
        return f"- {where}: {what}: **{found}** ({a.error or 'ok'}; {b.error or 'ok'})", found
    q = a.median_s / b.median_s
    ok = q <= target if at_most else q >= target
    sign = "≤" if at_most else "≥"
    text = (
        f"- {where}: {what}: {a.median_s * 1e3:.2f} ms / {b.median_s * 1e3:.2f} ms = **{q:.2f}×** "
        f"(target {sign} {target:g}×): **{verdict(ok)}**"
    )
    return text, verdict(ok)


class Targets:
    """The lines of a targets section and the verdict of each target, in the order they are added."""

    def __init__(self) -> None:
        self.lines: List[str] = []
        self.verdicts: List[str] = []

    def add(self, text: str, found: str, name: str) -> None:
        self.lines.append(text)
        self.verdicts.append(f"{name}: {found}")

    def extend(self, other: Targets) -> None:
        self.lines += other.lines
        self.verdicts += other.verdicts
