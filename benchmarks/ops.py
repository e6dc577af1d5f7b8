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

This file runs the benchmark and writes the report; its parts, one job each (timing, memory,
detectors against OpenCV, operators against timm and kornia, the report), are in
``benchmarks/opsbench/``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import sys
import time
import warnings
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import torch

from opsbench.common import (
    FULL_WORKLOADS,
    IMAGENET_MEAN,
    IMAGENET_STD,
    INTERLEAVED,
    INTERLEAVED_ROUNDS,
    MIN_REPEAT_S,
    NUM_CLASSES,
    QUICK_WORKLOADS,
    Result,
    Row,
    make_batch_u8,
    normalise,
    time_call,
    time_interleaved,
)
from opsbench.detectors import detector_rows
from opsbench.environment import command, environment
from opsbench.memory import floor_rows, measure_peak
from opsbench.operators import operator_rows
from opsbench.report import reading, render_interleaved, render_spread, render_table, render_targets, train_step_section
from opsbench.timm_reference import TIMM_VERSION


def all_rows() -> List[Row]:
    """Every row, in the order of the tables: the memory floor, the detectors and OpenCV's loop,
    then the operators (this library's, timm's, the pairing steps, CAM, kornia's)."""
    return floor_rows() + detector_rows() + operator_rows()


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
    ap.add_argument(
        "--workloads",
        default=None,
        help="comma-separated BxS (batch x side), e.g. 256x32,64x224 (default: the full or --quick set)",
    )
    ap.add_argument(
        "--sync-debug",
        action="store_true",
        help="CUDA: torch.cuda.set_sync_debug_mode('error'), so a row whose call synchronises with the host "
        "fails (and says so in its cell) instead of being timed",
    )
    args = ap.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda asked for, but torch.cuda.is_available() is False")
    repeats = args.repeats if args.repeats is not None else (1 if args.quick else 5)
    if repeats < 1:
        ap.error("--repeats must be >= 1")
    device = torch.device(args.device)
    workloads = QUICK_WORKLOADS if args.quick else FULL_WORKLOADS
    if args.workloads:
        try:
            pairs = [w.lower().split("x") for w in args.workloads.split(",") if w.strip()]
            workloads = [(int(b), int(s), 2.0 if int(s) <= 64 else 3.0) for b, s in pairs]
        except ValueError:
            ap.error(f"--workloads: expected BxS pairs like 256x32,64x224, but got {args.workloads!r} instead")
        if not workloads or any(b < 2 or s < 8 for b, s, _ in workloads):
            ap.error(f"--workloads: expected batches >= 2 and sides >= 8, but got {args.workloads!r} instead")
    if args.sync_debug:
        if args.device != "cuda":
            ap.error("--sync-debug is for --device cuda (a CPU has no host synchronisation to catch)")
        torch.cuda.set_sync_debug_mode("error")
    min_repeat_s = args.min_repeat_s if args.min_repeat_s is not None else (0.0 if args.quick else MIN_REPEAT_S)
    if min_repeat_s < 0:
        ap.error("--min-repeat-s must be >= 0")

    started = _dt.datetime.now(_dt.timezone.utc)
    t_start = time.perf_counter()
    rows = all_rows()
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

- Command: `{command()}`
- Date: {started.strftime("%Y-%m-%d %H:%M:%S UTC")}
- Total benchmark time: {total_s:.1f} s
- Timing: median time per batch over {repeats} timed repeat(s) after 1 warm-up call{", bracketed by `torch.cuda.synchronize()`" if device.type == "cuda" else ""}{f"; calls under {min_repeat_s * 1e3:.0f} ms are looped within a repeat and averaged (calls/repeat in the Spread table)" if min_repeat_s > 0 else ""}.
- Data: float32 images, ImageNet-normalised (mean {IMAGENET_MEAN}, std {IMAGENET_STD}); `x8` is the same batch as uint8. Content: {content}. Labels: `(B,)` ints, {NUM_CLASSES} classes.
- Operators run forward on the float batch `x` with an explicit `torch.Generator`; saliency operators get `mean=`/`std=` (ImageNet).
- "× clone" is the time over `x.clone()` of the same batch: one read and one write of the batch into a freshly allocated tensor, the memory floor of an operator that returns a new batch. At 224² the batch (37 MiB) is above glibc's largest mmap threshold (32 MiB), so every fresh allocation is a new mapping whose pages fault in on first write: that is most of `x.clone()`'s time, and `out.copy_(x)` (the same pass into a reused buffer) shows the traffic alone. "OpenCV loop ÷ this" is the speed-up over the OpenCV per-image loop of the matching detector (fine-grained, or spectral for spectral rows).
- "peak extra MiB (× x)": the most memory a call held at once beyond what existed before it, its output included, from torch's own allocator events: one more (untimed) call under `torch.profiler.profile(profile_memory=True)`, whose raw `[memory]` events (each allocation and free of a tensor's storage, on CPU) are summed in time order; on CUDA, `torch.cuda.max_memory_allocated()` over the call. "× x" divides by the bytes of the float32 batch `x` (uint8 rows too). OpenCV's own allocations are not torch tensors and show as 0.
- timm: `timm/data/mixup.py` of timm {TIMM_VERSION}, read out of its wheel as a standalone module (the timm package is not imported), `Mixup(mode="elem", label_smoothing=0, num_classes={NUM_CLASSES})` with MixUp only or CutMix only. It mixes in place (its `x_orig = x.clone()` plus a Python loop over the batch), so it is given its own copy of the batch once, outside the timing.
- `out=`: the opt-in output buffer of `Mixer.forward`/`apply_params` and `apply_mix` (the default returns a new tensor and never modifies `x`); one buffer is allocated before timing and reused by every call.
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
