"""A paired-seed design read as its protocol committed it: the methods' table (mean ± std and every
seed), the primary comparison and the Holm-corrected secondary ones (exact sign-flip test deciding,
the t-interval and the seeds-and-images interval beside it), a reading only at the full design, the
power reached, each seed's CPU kind, and the report's files written. Regime B's report
(cifar/report.py) and stage 4's (imagenette/confirm_report.py) are built on it.

Rows are ``run_folders.read_runs`` rows (``name``, ``folder``, ``seed`` and the run's metrics).
"""

from __future__ import annotations

import csv
import functools
import math
import sys
from pathlib import Path
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # study/, for blocks.py
import paired_stats  # study/study2/paired_stats.py
from blocks import fill_file  # study/blocks.py: the reports' one block writer
from run_folders import wrong_flags  # study/study2/run_folders.py


class Design(NamedTuple):
    """What a protocol fixed before its runs: the methods in table order, the seeds each must finish
    (the full design), the primary pair ``(a, b)`` read as a − b, the secondary pairs, the metric, the
    split whose per-image predictions give the seeds-and-images interval, and the level."""

    order: Tuple[str, ...]
    seeds: Dict[str, Tuple[int, ...]]
    primary: Tuple[str, str]
    secondary: Tuple[Tuple[str, str], ...]
    metric: str = "test_top1_err"
    split: str = "test"
    alpha: float = 0.05


def mean_sd(values: Sequence[float]) -> str:
    from rsmix.compare import mean_std_ci  # here, not above: it imports torch, which a plan does not need

    m, sd, _ = mean_std_ci(values)  # the harness's one mean and sample std (the Imagenette report's too)
    return f"{m:.2f}" + (f" ± {sd:.2f}" if not math.isnan(sd) else "")


def by_method(rows: List[Dict], order: Sequence[str], metric: str) -> Dict[str, Dict[int, float]]:
    """``{method: {seed: value}}`` for every method of ``order`` (empty where none finished)."""
    return {n: {r["seed"]: float(r[metric]) for r in rows if r["name"] == n and metric in r} for n in order}


def complete(design: Design, rows: List[Dict]) -> bool:
    """Whether every method has finished every seed the design gives it."""
    by = by_method(rows, design.order, design.metric)
    return all(set(by[name]) >= set(design.seeds[name]) for name in design.order)


def table_lines(design: Design, rows: List[Dict], label: str, caption: str = "") -> List[str]:
    """The methods' table: ``label`` heads the value column; ``caption`` (default ``label``) says what it is."""
    by = by_method(rows, design.order, design.metric)
    seeds = sorted({s for name in design.order for s in design.seeds[name]})
    lines = [
        f"{caption or label}, mean ± std over the seeds finished, and every seed.",
        "",
        f"| method | seeds | {label} | " + " | ".join(f"s{s}" for s in seeds) + " |",
        "|---|---:|---:|" + "---:|" * len(seeds),
    ]
    for name in design.order:
        if by[name]:
            cells = [f"{by[name][s]:.2f}" if s in by[name] else "" for s in seeds]
            lines.append(
                f"| {name} | {len(by[name])} | {mean_sd(list(by[name].values()))} | " + " | ".join(cells) + " |"
            )
    return lines


def comparisons(design: Design, rows: List[Dict], root: Path, prog: str) -> List[Dict]:
    """Every planned comparison over the seeds both methods finished (at least 2): mean difference,
    t half-width, seeds-and-images interval (None where a run lacks its predictions), sign-flip p,
    per-seed std, and for the secondary ones Holm's adjusted p (over those computed)."""
    import numpy as np

    by = by_method(rows, design.order, design.metric)
    folder = {(r["name"], r["seed"]): r["folder"] for r in rows}
    out: List[Dict[str, Any]] = []
    for role, (a, b) in [("primary", design.primary)] + [("secondary", pair) for pair in design.secondary]:
        seeds = sorted(set(by[a]) & set(by[b]))
        if len(seeds) < 2:
            continue
        diffs = [by[a][s] - by[b][s] for s in seeds]
        mean, half = paired_stats.t_interval(diffs)
        flags = {
            (name, s): wrong_flags(root / folder[(name, s)] / "runs" / f"{name}_s{s}", design.split, prog)
            for name in (a, b)
            for s in seeds
        }
        # The seeds-and-images interval over the seeds whose two runs saved their predictions (runs
        # older than the file have none: part 1's); at least two such seeds, else none.
        with_flags = [s for s in seeds if flags[(a, s)] is not None and flags[(b, s)] is not None]
        images: Optional[Tuple[float, float]] = None
        if len(with_flags) >= 2:
            rows_a = [flags[(a, s)] or [] for s in with_flags]
            rows_b = [flags[(b, s)] or [] for s in with_flags]
            n = len(rows_a[0]) // 2
            if any(f[:n] != rows_a[0][:n] for f in rows_a + rows_b):
                raise SystemExit(f"{prog}: {a} and {b} were scored on different {design.split} images (labels differ)")
            wa, wb = np.array([f[n:] for f in rows_a]), np.array([f[n:] for f in rows_b])
            _, lo, hi = paired_stats.seed_image_interval(wa, wb, reps=2000, seed=0)
            images = (lo, hi)
        out.append({
            "role": role, "a": a, "b": b, "seeds": seeds, "mean": mean, "half": half, "images": images,
            "image_seeds": with_flags if images else [], "p": paired_stats.sign_flip_p(diffs),
            "sd": float(np.std(diffs, ddof=1)),
        })  # fmt: skip
    secondary = [c for c in out if c["role"] == "secondary"]
    for c, adjusted in zip(secondary, paired_stats.holm([c["p"] for c in secondary]) if secondary else []):
        c["holm"] = adjusted
    return out


def comparison_lines(design: Design, found: List[Dict], full: bool, protocol: str) -> List[str]:
    if not found:
        return ["No pair of methods has two common seeds yet."]
    level = f"{design.alpha:g}"
    lines = [
        "Each comparison: method − method, in points, paired by seed. The exact two-sided sign-flip test",
        f"decides ({protocol}): the primary at p < {level}, the secondary ones at Holm-adjusted p < {level} (Holm",
        "over the secondary ones computed). Beside it: the 95% t-interval over seeds and the 95% interval of",
        f"2,000 replicates that draw seeds and, within each, {design.split} images with replacement (over the",
        "seeds whose runs saved per-image predictions, at least two; the cell says how many when not all).",
        "",
        "| comparison | role | seeds | mean difference | 95% t-interval | 95% interval (seeds and images) "
        "| sign-flip p | Holm p | reading |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for c in found:
        t_cell = f"[{c['mean'] - c['half']:+.2f}, {c['mean'] + c['half']:+.2f}]"
        img = f"[{c['images'][0]:+.2f}, {c['images'][1]:+.2f}]" if c["images"] else "(no predictions)"
        if c["images"] and len(c["image_seeds"]) < len(c["seeds"]):
            img += f" ({len(c['image_seeds'])} seeds with predictions)"
        p_used = c["p"] if c["role"] == "primary" else c["holm"]
        holm = f"{c['holm']:.3f}" if c["role"] == "secondary" else ""
        reading = ("detected" if p_used < design.alpha else "not detected") if full else "interim: none"
        lines.append(
            f"| {c['a']} − {c['b']} | {c['role']} | {len(c['seeds'])} | {c['mean']:+.2f} | {t_cell} | {img} "
            f"| {c['p']:.3f} | {holm} | {reading} |"
        )
    if not full:
        lines += [
            "",
            "**Interim**: not every method has finished the seeds the design gives it; no difference is read.",
        ]
    return lines


def power_lines(design: Design, found: List[Dict]) -> List[str]:
    primary = next((c for c in found if c["role"] == "primary"), None)
    if primary is None:
        return []
    n, sd = len(primary["seeds"]), primary["sd"]
    planned = min(len(design.seeds[name]) for name in design.primary)
    return [
        f"The primary pair's per-seed differences scatter with std {sd:.2f} points over {n} seeds. The true",
        f"difference a paired t-test (two-sided 5%) detects 4 times in 5: {paired_stats.detectable(sd, n):.2f} points"
        f" at {n} seeds, {paired_stats.detectable(sd, planned):.2f} at {planned} if the std stays as it is.",
    ]


def hardware_lines(design: Design, rows: List[Dict]) -> List[str]:
    """The CPU kind (name and bf16 units, the kind the lanes keep a seed on) of each seed's runs
    ("unknown" for a run that did not record it), and each method's training minutes per run."""
    kinds: Dict[int, set] = {}
    for r in rows:
        kinds.setdefault(r["seed"], set()).add(r["cpu_kind"] or "unknown")
    minutes = by_method(rows, design.order, "train_seconds")
    lines = ["| seed | CPU |", "|---:|---|"] + [f"| {s} | {', '.join(sorted(kinds[s]))} |" for s in sorted(kinds)]
    lines += ["", "| method | training minutes per run (mean ± std) |", "|---|---:|"]
    lines += [f"| {n} | {mean_sd([v / 60 for v in minutes[n].values()])} |" for n in design.order if minutes[n]]
    return lines


def write_report(
    out: Path, design: Design, rows: List[Dict], header: List[str], body: List[str], block: str, fill: List[Path]
) -> None:
    """``out/results.csv`` (one row a run, seed-major in the design's order), ``out/results.md``
    (``header`` then ``body``), printed, and ``body`` into the ``block`` of every file of ``fill``."""
    keys = ["name", "folder", "seed"] + sorted({k for r in rows for k in r} - {"name", "folder", "seed"})
    rank = {name: i for i, name in enumerate(design.order)}
    with open(out / "results.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=keys)
        writer.writeheader()
        writer.writerows(sorted(rows, key=lambda r: (r["seed"], rank.get(r["name"], len(rank)))))
    text = "\n".join([*header, "", *body])
    (out / "results.md").write_text(text + "\n")
    print(text)
    for path in fill:
        changed = fill_file(path, {block: functools.partial(str, "\n".join(body))})
        print(f"{path}: {'block rewritten' if changed else 'unchanged'} ({block})")
