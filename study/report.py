"""Fill the generated tables of RESULTS.md from the study's raw results.

    .venv/bin/python study/report.py            # rewrites every <!-- BEGIN x --> ... <!-- END x --> block

Every number in those blocks is computed here from ``study/*/results.csv`` (written by
``rsmix compare``); nothing is typed by hand. Blocks whose results are missing say so. The
``environment`` block is not rewritten: it names the machine the runs ran on (an AMD EPYC), which
the machine running this script need not be.
"""

from __future__ import annotations

import csv
import math
import sys
from pathlib import Path
from typing import Dict, List, Sequence

from rsmix.compare import mean_std_ci
from rsmix.robustness import CORRUPTIONS

sys.path.insert(0, str(Path(__file__).resolve().parent))
from blocks import fill_file

ROOT = Path(__file__).resolve().parents[1]
STUDY = ROOT / "study"


def rows(folder: str) -> List[Dict[str, str]]:
    path = STUDY / folder / "results.csv"
    if not path.exists():
        return []
    with open(path) as fh:
        return list(csv.DictReader(fh))


def by_name(table: List[Dict[str, str]], metric: str) -> Dict[str, Dict[int, float]]:
    out: Dict[str, Dict[int, float]] = {}
    for r in table:
        if r.get(metric) not in (None, ""):
            out.setdefault(r["name"], {})[int(r["seed"])] = float(r[metric])
    return out


def fmt(values: Sequence[float], digits: int = 2) -> str:
    m, sd, _ = mean_std_ci(list(values))
    if math.isnan(m):
        return "n/a"
    return f"{m:.{digits}f}" if math.isnan(sd) else f"{m:.{digits}f} ± {sd:.{digits}f}"


def paired(a: Dict[int, float], b: Dict[int, float]) -> str:
    shared = sorted(set(a) & set(b))
    if not shared:
        return "n/a"
    m, _, ci = mean_std_ci([a[s] - b[s] for s in shared])
    if math.isnan(ci):
        return f"{m:+.2f} (n={len(shared)})"
    mark = "" if abs(m) > ci else " (noise)"
    return f"{m:+.2f} ± {ci:.2f}{mark}"


def tuning_table() -> str:
    table = rows("tuning_lowdata")
    if not table:
        return "_no tuning results yet_"
    lines = ["| candidate | method | options | val top-1 err (%) | train min |", "|---|---|---|---:|---:|"]
    import json

    for r in sorted(table, key=lambda r: (r["method"], float(r["val_top1_err"]))):
        cfg = json.loads((STUDY / "tuning_lowdata" / "runs" / f"{r['name']}_s{r['seed']}" / "config.json").read_text())
        opts = ", ".join(f"{k}={v}" for k, v in sorted(cfg["mix"].items())) or "—"
        lines.append(
            f"| {r['name']} | {r['method']} | {opts} | {float(r['val_top1_err']):.2f} | "
            f"{float(r['train_seconds']) / 60:.1f} |"
        )
    return "\n".join(lines)


def main_table(folder: str, references: Sequence[str] = ("saliencymix", "cutmix")) -> str:
    table = rows(folder)
    if not table:
        return "_no results yet_"
    test = by_name(table, "test_top1_err")
    val = by_name(table, "val_top1_err")
    nll = by_name(table, "test_nll")
    ece = by_name(table, "test_ece")
    minutes = {n: {s: v / 60 for s, v in d.items()} for n, d in by_name(table, "train_seconds").items()}
    names = list(dict.fromkeys(r["name"] for r in table))
    head = (
        "| method | seeds | test top-1 err (%) | 95% CI | val top-1 err | test NLL | test ECE (%) | "
        + "".join(f"Δ vs {r} (paired, 95% CI) | " for r in references)
        + "train min/run |"
    )
    lines = [head, "|---|---:|---:|---:|---:|---:|---:|" + "---:|" * len(references) + "---:|"]
    for n in names:
        values = list(test.get(n, {}).values())
        m, sd, ci = mean_std_ci(values)
        deltas = "".join(("—" if n == r else paired(test.get(n, {}), test.get(r, {}))) + " | " for r in references)
        lines.append(
            f"| {n} | {len(values)} | {m:.2f} ± {sd:.2f} | [{m - ci:.2f}, {m + ci:.2f}] | "
            f"{fmt(val.get(n, {}).values())} | {fmt(nll.get(n, {}).values(), 3)} | "
            f"{fmt(ece.get(n, {}).values())} | {deltas}{fmt(minutes.get(n, {}).values(), 1)} |"
        )
    return "\n".join(lines)


def robustness_table(folder: str, references: Sequence[str] = ("saliencymix", "cutmix")) -> str:
    table = rows(folder)
    names = list(dict.fromkeys(r["name"] for r in table))
    if not table or not any("test_corruption_mean_top1_err" in r for r in table):
        return "_no robustness results yet_"
    columns = ["test_top1_err"] + [f"test_{c}_top1_err" for c in CORRUPTIONS] + ["test_corruption_mean_top1_err"]
    titles = ["clean"] + list(CORRUPTIONS) + ["mean of corruptions"]
    data = {c: by_name(table, c) for c in columns}
    lines = [
        "| method | " + " | ".join(titles) + "".join(f" | Δ mean vs {r} (paired)" for r in references) + " |",
        "|---|" + "---:|" * (len(titles) + len(references)),
    ]
    mean_col = data[columns[-1]]
    for n in names:
        cells = [fmt(data[c].get(n, {}).values()) for c in columns]
        cells += ["—" if n == r else paired(mean_col.get(n, {}), mean_col.get(r, {})) for r in references]
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    ece_cols = [f"test_{c}_ece" for c in CORRUPTIONS]
    ece = {c: by_name(table, c) for c in ece_cols}
    lines += [
        "",
        "ECE (%) under each corruption (mean ± std over seeds):",
        "",
        "| method | " + " | ".join(CORRUPTIONS) + " |",
        "|---|" + "---:|" * len(CORRUPTIONS),
    ]
    for n in names:
        lines.append(f"| {n} | " + " | ".join(fmt(ece[c].get(n, {}).values()) for c in ece_cols) + " |")
    return "\n".join(lines)


def ablation_table(
    folder: str = "ablation_lowdata", main: str = "lowdata", base: str = "saliencymix_per_sample"
) -> str:
    abl = rows(folder)
    if not abl:
        return "_no ablation results yet_"
    seeds = sorted({int(r["seed"]) for r in abl})
    merged = [r for r in rows(main) if int(r["seed"]) in seeds and r["name"] in (base, "randsaliencymix")] + abl
    test = by_name(merged, "test_top1_err")
    val = by_name(merged, "val_top1_err")
    names = list(dict.fromkeys([base] + [r["name"] for r in abl] + ["randsaliencymix"]))
    lines = [
        f"| variant | seeds | test top-1 err (%) | val top-1 err (%) | Δ test vs {base} (paired, 95% CI) | "
        "Δ test vs randsaliencymix (paired) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for n in names:
        lines.append(
            f"| {n} | {len(test.get(n, {}))} | {fmt(test.get(n, {}).values())} | "
            f"{fmt(val.get(n, {}).values())} | "
            f"{'—' if n == base else paired(test.get(n, {}), test.get(base, {}))} | "
            f"{'—' if n == 'randsaliencymix' else paired(test.get(n, {}), test.get('randsaliencymix', {}))} |"
        )
    return "\n".join(lines)


def budget() -> str:
    lines = [
        "| stage | folder | runs | training CPU-minutes (sum) | minutes per run (mean) |",
        "|---|---|---:|---:|---:|",
    ]
    total = 0.0
    for stage, folder in [
        ("tuning", "tuning_lowdata"),
        ("low-data main", "lowdata"),
        ("full main", "full"),
        ("ablations", "ablation_lowdata"),
        ("longer schedule", "lowdata_30ep"),
    ]:
        seconds = [float(r["train_seconds"]) for r in rows(folder) if r.get("train_seconds")]
        total += sum(seconds)
        mean = f"{sum(seconds) / len(seconds) / 60:.1f}" if seconds else "n/a"
        lines.append(f"| {stage} | `study/{folder}` | {len(seconds)} | {sum(seconds) / 60:.0f} | {mean} |")
    lines.append(f"| all | | | {total / 60:.0f} | |")
    return "\n".join(lines)


def headline() -> str:
    """The studies page's headline table (docs/studies.md): test error and paired differences in both regimes."""
    full, low = rows("full"), rows("lowdata")
    if not full or not low:
        return "_the study has not finished_"
    lines = [
        "| method | full: test err (%) | Δ vs SaliencyMix | Δ vs CutMix | low-data: test err (%) | "
        "Δ vs SaliencyMix | Δ vs CutMix |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    f_err, l_err = by_name(full, "test_top1_err"), by_name(low, "test_top1_err")
    for n in dict.fromkeys(r["name"] for r in full):
        cells = []
        for err in (f_err, l_err):
            cells.append(fmt(err.get(n, {}).values()))
            cells += ["—" if n == r else paired(err.get(n, {}), err.get(r, {})) for r in ("saliencymix", "cutmix")]
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


BLOCKS = {
    "headline": headline,
    "budget": budget,
    "tuning": tuning_table,
    "main_full": lambda: main_table("full"),
    "main_lowdata": lambda: main_table("lowdata"),
    "robustness_full": lambda: robustness_table("full"),
    "ablation": ablation_table,
    "longer": lambda: main_table("lowdata_30ep"),
}


if __name__ == "__main__":
    for path in (ROOT / "RESULTS.md", ROOT / "docs" / "studies.md"):
        fill_file(path, BLOCKS)
        print(f"filled {path}")
