"""Memory: the floor rows (a fresh copy of the batch, and the same pass into a reused buffer), the
peak extra memory of one call, and target 4 (every operator's peak against the batch's bytes)."""

from __future__ import annotations

from typing import Callable, List, Optional

import torch

from .common import Result, Results, Row, Targets, Workloads, verdict

PEAK_OVER_BATCH_TARGET = 4.0  # extra memory of any operator / bytes of the batch


def floor_rows() -> List[Row]:
    def copy_build(ctx):
        x = ctx["x"]
        out = torch.empty_like(x)
        return lambda: out.copy_(x)

    return [
        Row("clone", "`x.clone()` (memory floor)", "floor", lambda c: lambda: c["x"].clone()),
        Row("copy", "`out.copy_(x)` (one pass into a reused buffer: the traffic alone)", "floor", copy_build),
    ]


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


def mib(r: Result, batch: Optional[int]) -> str:
    if r.error is not None or r.peak_bytes is None:
        return "–"
    text = f"{r.peak_bytes / 2**20:.1f}" if r.peak_bytes >= 2**20 else f"{r.peak_bytes / 2**20:.2f}"
    if batch:
        text += f" ({r.peak_bytes / batch:.2f}×)"
    return text


def memory_target(rows: List[Row], workloads: Workloads, results: Results) -> Targets:
    """Target 4: the peak extra memory of every operator of this library against the batch."""
    out = Targets()
    out.lines.append(
        f"\n**4. Peak extra memory of every operator at most {PEAK_OVER_BATCH_TARGET:g}× the batch "
        '(the float32 `x`; operators of this library, rows of the "operator" group).**\n'
    )
    for (b, s, _), res in zip(workloads, results):
        batch = res["_batch"].peak_bytes or 1
        measured = [(row, res[row.key]) for row in rows if row.group == "operator" and res[row.key].peak_bytes]
        if not measured:
            out.add(f"- B={b}, {s}²: **NOT MEASURED**", "NOT MEASURED", f"memory B={b} {s}²")
            continue
        worst_row, worst = max(measured, key=lambda item: item[1].peak_bytes or 0)
        q = (worst.peak_bytes or 0) / batch
        over = [row.label for row, r in measured if (r.peak_bytes or 0) > PEAK_OVER_BATCH_TARGET * batch]
        text = (
            f"- B={b}, {s}²: batch {batch / 2**20:.1f} MiB; the largest is {worst_row.label} with "
            f"{(worst.peak_bytes or 0) / 2**20:.1f} MiB = **{q:.2f}×** (target ≤ {PEAK_OVER_BATCH_TARGET:g}×): "
            f"**{verdict(not over)}**" + (f" (over: {', '.join(over)})" if over else "")
        )
        out.add(text, verdict(not over), f"memory B={b} {s}²")
    return out
