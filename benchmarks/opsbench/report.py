"""The report's sections: the main table, the spread, the interleaved rows, the targets of every
family in their order, the notes on this run's figures and the training-step benchmark's table."""

from __future__ import annotations

from pathlib import Path
from typing import List, Tuple

import torch

from .common import Results, Row, Targets, Workloads, ms, ratio
from .detectors import fine_grained_target, spectral_target
from .memory import memory_target, mib
from .operators import mix_target, step_target


def render_table(rows: List[Row], workloads: Workloads, results: Results) -> str:
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
            cells.append(ms(r))
            cells.append(ratio(r.median_s, clone) if row.key != "clone" else "1.00×")
            ref = res.get(row.opencv_ref) if row.opencv_ref else None
            cells.append(ratio(ref.median_s, r.median_s) if ref is not None else "")
            cells.append(mib(r, res["_batch"].peak_bytes))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def render_spread(rows: List[Row], workloads: Workloads, results: Results) -> str:
    head = ["Method"] + [f"B={b}, {s}²: min – max ms (calls/repeat)" for b, s, _ in workloads]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * len(workloads)) + "|"]
    for row in rows:
        cells = [row.label]
        for res in results:
            r = res.get(row.key)
            bad = r is None or r.error or not r.samples
            cells.append("–" if bad else f"{min(r.samples) * 1e3:.3f} – {max(r.samples) * 1e3:.3f} ({r.inner})")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def render_interleaved(rows: List[Row], workloads: Workloads, results: Results) -> str:
    head = ["Method"] + [f"B={b}, {s}²: ms (interleaved)" for b, s, _ in workloads]
    head += [f"B={b}, {s}²: min – max" for b, s, _ in workloads]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
    for row in rows:
        found = [res.get("interleaved:" + row.key) for res in results]
        if all(r is None for r in found):
            continue
        cells = [row.label]
        cells += ["–" if r is None or r.median_s is None else ms(r) for r in found]
        cells += [
            "–" if r is None or not r.samples else f"{min(r.samples) * 1e3:.3f} – {max(r.samples) * 1e3:.3f}"
            for r in found
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def render_targets(
    rows: List[Row], workloads: Workloads, results: Results, device: torch.device
) -> Tuple[str, List[str]]:
    """Every family's targets in their order (1 to 4, then the earlier one) and their verdicts."""
    targets = Targets()
    targets.extend(mix_target(rows, workloads, results))
    targets.extend(spectral_target(workloads, results))
    targets.extend(step_target(workloads, results))
    targets.extend(memory_target(rows, workloads, results))
    targets.extend(fine_grained_target(workloads, results, device))
    return "\n".join(targets.lines), targets.verdicts


def reading(workloads: Workloads, results: Results) -> str:
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
    path = Path(__file__).resolve().parents[1] / "train_step.md"
    if not path.is_file():
        return ""
    body = path.read_text(encoding="utf-8").strip()
    body = body.replace("# Training-step benchmark", "# Training step (issues 3, 9 and 10)", 1)
    return (
        "\n" + body + "\n\n(Copied from `benchmarks/train_step.md`, written by `benchmarks/train_step.py`; "
        "not re-measured by this script.)\n"
    )
