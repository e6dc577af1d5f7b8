"""Study 2's main table (regime A) from the runs of main.sh, merged over its three folders.

    .venv/bin/python study/study2/imagenette/report.py   # writes results.csv, results.md and the plots here
    .venv/bin/python study/study2/imagenette/report.py --fill RESULTS.md --fill docs/studies.md   # and their study2_* blocks

Reads ``main_{operator,fg,sr}/runs/<name>_s<seed>/metrics.json`` (finished runs only). Writes
``results.csv`` (one row per run: every number of its metrics.json) and ``results.md``:

* the main table: per method the test top-1 error mean ± std over its seeds, and the paired
  difference (method − reference over the seeds both finished) with its 95% t-interval against
  each reference; an interval containing 0 is marked "noise";
* robustness and calibration: the mean top-1 error over the fixed corruptions, the test ECE and
  NLL, each with its paired difference to no mixing;
* what differences the seeds can see: for RSM-seed against each rival, the paired std, the 95%
  interval's half-width, and the difference a paired test finds with power 0.8 at the seeds run
  and at 10 seeds; then the paired std over every pair of methods;
* cost: training minutes per run and the paired ratio of training time to no mixing and to CutMix
  (same seed; the CPU each run had is named where the run recorded it, and a ratio between runs on
  different CPUs is marked);
* the error under each corruption alone, per method;
* three figures, drawn by ``report_plots.py``: ``final_error.png`` (each method's seeds and their
  mean with its 95% t-interval), ``paired_differences.png`` (per reference, every method's per-seed
  differences and their mean with its 95% t-interval, against the zero line) and
  ``validation_curves.png`` (each method's validation error every ``--eval-every`` epochs, mean over
  its seeds, from the runs' ``log.jsonl``: whether it still improves when the schedule ends), with
  the table of the last evaluations beside it;
* with ``--fill``, also the ``study2_headline`` block of docs/studies.md: the compact table (error and the
  differences to no mixing, CutMix, the official SaliencyMix and GuidedMixup) and how many of the
  35 planned runs it holds.

``--root`` reads and writes another folder (the tests of this script use a folder of made-up runs);
it must hold at least one of the study's folders (``main_operator``, ``main_fg``, ``main_sr``).

A run counts only if it is the study's: its folder is named ``<method>_s<seed>``, its
``config.json`` (beside ``metrics.json``) shows regime A (data ``...imagenette2-224.tar``, 128 px,
``fast_resnet``, 80 epochs, bf16), every metric is a finite number, and no other folder holds the
same method and seed (a copied run). Anything else stops the report with a line naming the run and
what is wrong, before any file is written.
"""

from __future__ import annotations

import argparse
import csv
import functools
import json
import math
import statistics
import sys
from pathlib import Path
from typing import Callable, Dict, List, Optional

from rsmix.compare import mean_std_ci
from rsmix.robustness import CORRUPTIONS

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # study/
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # study/study2/
sys.path.insert(0, str(Path(__file__).resolve().parent))
import paired_stats  # study/study2/paired_stats.py: the comparisons' statistics
from blocks import fill_file  # study/blocks.py, shared with study 1's report
from report_plots import plot, plot_curves, plot_paired  # this folder's figures
from run_folders import read_runs  # study/study2/run_folders.py: the runs read and checked
from run_folders import wrong_flags as run_folders_wrong_flags

HERE = Path(__file__).resolve().parent
FOLDERS = ("main_operator", "main_fg", "main_sr")
ORDER = ("none", "mixup", "cutmix", "saliencymix", "saliencymix_per_sample", "guided_sr", "rsm_seed")
REFERENCES = ("none", "cutmix", "saliencymix", "saliencymix_per_sample", "guided_sr")
METRIC = "test_top1_err"
ROBUSTNESS = (
    ("test_corruption_mean_top1_err", "corruption mean top-1 err (%)"),
    ("test_ece", "test ECE (%)"),
    ("test_nll", "test NLL"),
)
PLOT_REFERENCES = ("none", "cutmix", "saliencymix", "guided_sr")
PLANNED_SEEDS = 5  # PROTOCOL.md: 5 paired seeds for every method of the main table
LABELS = {
    "none": "no mixing", "mixup": "MixUp", "cutmix": "CutMix", "saliencymix": "SaliencyMix (official)",
    "saliencymix_per_sample": "SaliencyMix (per-sample)", "guided_sr": "GuidedMixup (SR)",
    "rsm_seed": "RandSaliencyMix, seed design (untuned)",
}  # fmt: skip
HEADLINE_REFERENCES = ("none", "cutmix", "saliencymix", "guided_sr")
FOCUS = "rsm_seed"  # the method the study asks about: its sensitivity against each rival
MORE_SEEDS = 10  # the protocol's ceiling on added seeds


REGIME = {"image_size": 128, "model": "fast_resnet", "epochs": 80, "precision": "bf16"}  # PROTOCOL.md's regime A
DATA_SUFFIX = "imagenette2-224.tar"  # config "data": the path differs between machines, the archive does not


def check_regime(run: Path, config: Dict) -> None:
    """SystemExit naming the run and every key where its config is not the study's regime."""
    wrong = [f"{k} {config.get(k)!r} (the study's is {v!r})" for k, v in REGIME.items() if config.get(k) != v]
    data = config.get("data")
    if not (isinstance(data, str) and data.endswith(DATA_SUFFIX)):
        wrong.insert(0, f"data {data!r} (the study's ends in {DATA_SUFFIX!r})")
    if wrong:
        raise SystemExit(f"report.py: {run} is not a run of study 2's regime: {', '.join(wrong)}")


def runs(root: Path) -> List[Dict]:
    """One row per finished run of the study's folders (``run_folders.read_runs``: SystemExit, before
    anything is written, naming a run that cannot count)."""
    return read_runs(root, FOLDERS, check_regime, "report.py")


def fmt(m: float, half: float) -> str:
    return f"{m:+.2f} ± {half:.2f}" if not math.isnan(half) else f"{m:+.2f} (one seed)"


def seed_diffs(a: Dict[int, float], b: Dict[int, float]) -> List[float]:
    """a − b per seed, over the seeds both finished, in seed order."""
    return [a[s] - b[s] for s in sorted(set(a) & set(b))]


def paired(a: Dict[int, float], b: Dict[int, float]) -> Optional[str]:
    diffs = seed_diffs(a, b)
    if not diffs:
        return None
    d, _, half = mean_std_ci(diffs)
    return fmt(d, half) + (" noise" if not math.isnan(half) and abs(d) <= half else "")


def mean_sd(values: List[float], digits: int = 2) -> str:
    m, sd, _ = mean_std_ci(values)
    return f"{m:.{digits}f}" + (f" ± {sd:.{digits}f}" if not math.isnan(sd) else "")


def by_metric(rows: List[Dict], metric: str) -> Dict[str, Dict[int, float]]:
    return {n: {r["seed"]: float(r[metric]) for r in rows if r["name"] == n and metric in r} for n in ORDER}


def main_table(rows: List[Dict]) -> List[str]:
    by = by_metric(rows, METRIC)
    lines = [
        "Test top-1 error (%), mean ± std over seeds; each difference column: method − reference, per seed,",
        'mean ± half-width of the 95% t-interval over the seeds both finished ("noise" when the interval',
        "contains 0).",
        "",
        "| method | seeds | test top-1 err (%) | " + " | ".join(f"− {r}" for r in REFERENCES) + " |",
        "|---|---:|---:|" + "---:|" * len(REFERENCES),
    ]
    for name in ORDER:
        if not by[name]:
            continue
        cells = ["" if ref == name else (paired(by[name], by[ref]) or "") for ref in REFERENCES]
        seeds = ",".join(str(s) for s in sorted(by[name]))
        lines.append(f"| {name} | {seeds} | {mean_sd(list(by[name].values()))} | " + " | ".join(cells) + " |")
    return lines


def headline_table(rows: List[Dict]) -> List[str]:
    """The compact table of docs/studies.md: error, seeds and the paired differences that answer the question,
    with a status line that says how many of the planned runs it holds."""
    by = by_metric(rows, METRIC)
    done, planned = sum(len(v) for v in by.values()), PLANNED_SEEDS * len(ORDER)
    status = (
        f"All {planned} runs finished ({PLANNED_SEEDS} seeds per method)."
        if done >= planned
        else f"**Interim: {done} of {planned} runs finished**; the table changes as seeds arrive, and a"
        " difference at fewer than 5 seeds is not a result."
    )
    lines = [
        status,
        "",
        "| method | seeds | test top-1 err (%) | "
        + " | ".join(f"Δ vs {LABELS[r]}" for r in HEADLINE_REFERENCES)
        + " |",
        "|---|---:|---:|" + "---:|" * len(HEADLINE_REFERENCES),
    ]
    for name in ORDER:
        if by[name]:
            cells = ["—" if ref == name else (paired(by[name], by[ref]) or "") for ref in HEADLINE_REFERENCES]
            lines.append(
                f"| {LABELS[name]} | {len(by[name])} | {mean_sd(list(by[name].values()))} | " + " | ".join(cells) + " |"
            )
    return lines


def robustness_table(rows: List[Dict]) -> List[str]:
    tables = {metric: by_metric(rows, metric) for metric, _ in ROBUSTNESS}
    if not any(any(t.values()) for t in tables.values()):
        return []
    head = " | ".join(f"{label} | − none" for _, label in ROBUSTNESS)
    lines = [
        "The same final models on the test split under the fixed corruptions of `--robustness` (mean top-1",
        "error over them), and the clean test split's expected calibration error and NLL; mean ± std over",
        "seeds, and the paired difference to no mixing (95% t-interval).",
        "",
        f"| method | {head} |",
        "|---|" + "---:|---:|" * len(ROBUSTNESS),
    ]
    for name in ORDER:
        cells = []
        for metric, _ in ROBUSTNESS:
            values = tables[metric][name]
            digits = 3 if metric == "test_nll" else 2
            cells.append(mean_sd(list(values.values()), digits) if values else "")
            cells.append("" if name == "none" or not values else (paired(values, tables[metric]["none"]) or ""))
        if any(cells):
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def corruption_table(rows: List[Dict]) -> List[str]:
    tables = {c: by_metric(rows, f"test_{c}_top1_err") for c in CORRUPTIONS}
    if not any(any(t.values()) for t in tables.values()):
        return []
    lines = [
        "Each corruption alone: test top-1 error (%), mean ± std over seeds.",
        "",
        "| method | " + " | ".join(CORRUPTIONS) + " |",
        "|---|" + "---:|" * len(CORRUPTIONS),
    ]
    for name in ORDER:
        cells = [mean_sd(list(tables[c][name].values())) if tables[c][name] else "" for c in CORRUPTIONS]
        if any(cells):
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def detectable(sd: float, n: int) -> float:
    """The true mean difference a paired two-sided 5% t-test over ``n`` seeds finds with power 0.8
    when the per-seed differences scatter with std ``sd``: about (t_0.975 + t_0.80) · sd / √n, for
    any ``n >= 2`` (``paired_stats.detectable``; the confirmation runs 20 seeds)."""
    return paired_stats.detectable(sd, n)


def sensitivity_table(rows: List[Dict]) -> List[str]:
    """How large a difference the seeds can see: for FOCUS against each rival, the paired std, the
    interval's half-width at the seeds run, and the difference found with power 0.8 at those seeds
    and at MORE_SEEDS; then the paired std over every pair of methods."""
    by = by_metric(rows, METRIC)
    body = []
    for ref in ORDER:
        d = seed_diffs(by[FOCUS], by[ref]) if ref != FOCUS else []
        if len(d) >= 2:
            m, sd, half = mean_std_ci(d)
            body.append(
                f"| {ref} | {len(d)} | {m:+.2f} | {sd:.2f} | {half:.2f} | {detectable(sd, len(d)):.2f} "
                f"| {detectable(sd, MORE_SEEDS):.2f} |"
            )
    if not body:
        return []
    sds = sorted(
        mean_std_ci(d)[1] for i, a in enumerate(ORDER) for b in ORDER[i + 1 :] if len(d := seed_diffs(by[a], by[b])) >= 2
    )  # fmt: skip
    return [
        f"For {FOCUS} against each rival: the std of the per-seed differences (paired std), the",
        "half-width of the 95% t-interval at the seeds run (the smallest mean difference not called",
        "noise), and the true difference a paired test finds 4 times in 5 (power 0.8, two-sided 5%),",
        f"about (t_0.975 + t_0.80) · sd / √n, at the seeds run and at {MORE_SEEDS} seeds if the paired std stays as it is.",
        "",
        f"| {FOCUS} − | seeds | mean difference | paired std | 95% half-width | detectable (n seeds) "
        f"| detectable ({MORE_SEEDS} seeds) |",
        "|---|---:|---:|---:|---:|---:|---:|",
        *body,
        "",
        f"Over all {len(sds)} pairs of methods the paired std has median {statistics.median(sds):.2f} points"
        f" (range {sds[0]:.2f}-{sds[-1]:.2f}).",
    ]


def wrong_flags(root: Path, row: Dict, split: str = "test") -> Optional[List[int]]:
    """The run's labels and per-image misclassification flags on ``split`` (``run_folders.wrong_flags``);
    None for a run without its predictions file (part 1's runs predate it)."""
    return run_folders_wrong_flags(root / row["folder"] / "runs" / f"{row['name']}_s{row['seed']}", split, "report.py")


def resampled_table(rows: List[Dict], root: Path) -> List[str]:
    """For FOCUS against each rival over the paired seeds whose runs saved per-image test predictions:
    the t-interval over seeds beside the interval that resamples seeds and test images together
    (``paired_stats.seed_image_interval``)."""
    import numpy as np

    flags = {(r["name"], r["seed"]): f for r in rows if (f := wrong_flags(root, r)) is not None}
    body = []
    for ref in ORDER:
        seeds = sorted(s for (n, s) in flags if n == FOCUS and (ref, s) in flags) if ref != FOCUS else []
        if len(seeds) < 2:
            continue
        a = [flags[(FOCUS, s)] for s in seeds]
        b = [flags[(ref, s)] for s in seeds]
        if any(x[: len(x) // 2] != a[0][: len(a[0]) // 2] for x in a + b):
            raise SystemExit(f"report.py: {FOCUS} and {ref} were scored on different test images (labels differ)")
        half = len(a[0]) // 2
        wa, wb = np.array([x[half:] for x in a]), np.array([x[half:] for x in b])
        diffs = (wa.mean(axis=1) - wb.mean(axis=1)) * 100
        m, t_half = paired_stats.t_interval(diffs.tolist())
        _, lo, hi = paired_stats.seed_image_interval(wa, wb, reps=2000, seed=0)
        body.append(
            f"| {ref} | {len(seeds)} | {m:+.2f} | [{m - t_half:+.2f}, {m + t_half:+.2f}] | [{lo:+.2f}, {hi:+.2f}] |"
        )
    if not body:
        return ["No paired runs with per-image test predictions yet (part 1's runs predate them)."]
    return [
        f"{FOCUS} − each rival (test top-1 error, points) over the paired seeds with per-image predictions: the",
        "95% t-interval over seeds, and the 95% percentile interval of 2,000 replicates that each draw the",
        "seeds and, within each, the test images with replacement (the same images for both methods).",
        "",
        f"| {FOCUS} − | seeds | mean difference | 95% t-interval (seeds) | 95% interval (seeds and images) |",
        "|---|---:|---:|---:|---:|",
        *body,
    ]


def cost_table(rows: List[Dict]) -> List[str]:
    seconds = by_metric(rows, "train_seconds")
    cpus = {(r["name"], r["seed"]): r["cpu"] for r in rows}
    lines = [
        "Training minutes per run (one core, two runs at a time; mean ± std over seeds) and the paired ratio",
        "of training time to no mixing and to CutMix (same seed; mean of the per-seed ratios over the seeds",
        "where both runs recorded the same CPU, their count in brackets). Where no seed qualifies, the ratio",
        "is over every shared seed and marked `*`: it mixes machines, or runs that did not record theirs.",
        "Training minutes also move with whatever else the machine ran at the time (a session's builds",
        "and tests): the step's cost measured side by side, every method stepping in turn in one process,",
        "is `step_cost.md` (`benchmarks/train_step.py`, its command inside).",
        "",
        "| method | training minutes | ÷ none | ÷ cutmix |",
        "|---|---:|---:|---:|",
    ]

    def ratio(name: str, ref: str) -> str:
        seeds = sorted(set(seconds[name]) & set(seconds[ref]))
        if name == ref or not seeds:
            return ""
        same = [s for s in seeds if cpus[(name, s)] and cpus[(name, s)] == cpus[(ref, s)]]
        used = same or seeds
        values = [seconds[name][s] / seconds[ref][s] for s in used]
        return f"{sum(values) / len(values):.2f}× ({len(used)})" + ("" if same else "*")

    for name in ORDER:
        if seconds[name]:
            minutes = [v / 60 for v in seconds[name].values()]
            lines.append(f"| {name} | {mean_sd(minutes, 1)} | {ratio(name, 'none')} | {ratio(name, 'cutmix')} |")
    minutes = sorted(v / 60 for by_seed in seconds.values() for v in by_seed.values())
    cpu_names = sorted({c for c in cpus.values() if c})
    lines += [
        "",
        f"Total: {sum(minutes) / 60:.2f} CPU-hours of training over {len(minutes)} runs"
        + (f" ({minutes[0]:.1f}-{minutes[-1]:.1f} minutes a run)." if minutes else "."),
        "",
        "CPUs recorded: " + ("; ".join(cpu_names) if cpu_names else "none (runs before metrics named it)"),
    ]
    return lines


def validation_curves(rows: List[Dict], root: Path) -> Dict[str, Dict[int, float]]:
    """Per method in table order, epoch (1-based) -> the mean validation top-1 error over its finished
    seeds, from each run's log."""
    curves: Dict[str, Dict[int, List[float]]] = {}
    for r in rows:
        log = root / r["folder"] / "runs" / f"{r['name']}_s{r['seed']}" / "log.jsonl"
        if not log.exists():
            continue
        for number, line in enumerate(log.read_text().splitlines(), 1):
            try:
                entry = json.loads(line)
            except ValueError:
                raise SystemExit(f"report.py: {log}: line {number} is not JSON (a truncated log?)") from None
            if not isinstance(entry, dict):
                raise SystemExit(f"report.py: {log}: line {number} is not a JSON object")
            if "val_top1_err" in entry and "epoch" in entry:
                curves.setdefault(r["name"], {}).setdefault(int(entry["epoch"]) + 1, []).append(entry["val_top1_err"])
    return {n: {e: statistics.fmean(v) for e, v in curves[n].items()} for n in ORDER if n in curves}


def curves_table(curves: Dict[str, Dict[int, float]], last: int = 3) -> List[str]:
    """The mean validation error at each method's last ``last`` evaluations: the figures beside the plot."""
    if not curves:
        return []
    epochs = sorted(next(iter(curves.values())))[-last:]
    lines = [
        "Validation top-1 error (%) at the last evaluations, mean over each method's finished seeds.",
        "",
        "| method | " + " | ".join(f"epoch {e}" for e in epochs) + " |",
        "|---|" + "---:|" * len(epochs),
    ]
    for name, curve in curves.items():
        cells = [f"{curve[e]:.2f}" if e in curve else "" for e in epochs]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=HERE)
    ap.add_argument(
        "--fill", type=Path, action="append", default=[],
        help="rewrite this Markdown file's <!-- BEGIN study2_main|study2_robustness|study2_sensitivity|study2_resampled|study2_cost|"
        "study2_headline --> blocks (repeatable)",
    )  # fmt: skip
    args = ap.parse_args(argv)
    root = args.root
    if not root.is_dir():
        ap.error(f"--root {root}: no such folder")
    if not any((root / folder).is_dir() for folder in FOLDERS):
        ap.error(
            f"--root {root} holds none of study 2's folders ({', '.join(FOLDERS)}): not its results.csv and"
            " results.md to write"
        )
    for path in args.fill:
        if not path.is_file():
            ap.error(f"--fill {path}: no such file")
    # Everything is read and checked before anything is written: a refused run leaves the files as they were.
    rows = runs(root)
    keys = ["name", "folder", "method", "seed"] + sorted(
        {k for r in rows for k in r} - {"name", "folder", "method", "seed"}
    )
    robustness, corruptions = robustness_table(rows), corruption_table(rows)
    tables = {
        "study2_main": main_table(rows),
        "study2_robustness": robustness + [""] + corruptions if robustness and corruptions else robustness,
        "study2_sensitivity": sensitivity_table(rows),
        "study2_resampled": resampled_table(rows, root),
        "study2_cost": cost_table(rows),
    }
    headline = headline_table(rows)
    curves = validation_curves(rows, root)
    with open(root / "results.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)
    titles = {
        "study2_main": "Main table",
        "study2_robustness": "Robustness and calibration",
        "study2_sensitivity": "What differences these seeds can see",
        "study2_resampled": "Seeds and test images resampled together",
        "study2_cost": "Cost",
    }
    lines = [
        "# Study 2, regime A: the main table",
        "",
        "`python study/study2/imagenette/report.py` over the finished runs of `main.sh` (protocol:",
        "`PROTOCOL.md`). Imagenette at 128 px, `fast_resnet`, 80 epochs, bf16; every number is a final-epoch",
        "number on the test split (`val/`, 3,925 images), read once per run.",
    ]
    for name, table in tables.items():
        if table:
            lines += ["", f"## {titles[name]}", "", *table]
    by = by_metric(rows, METRIC)
    if plot(by, root / "final_error.png"):
        lines += ["", "![final test error per method](final_error.png)"]
    names = [n for n in ORDER if by[n]]
    diffs = {ref: {n: seed_diffs(by[n], by[ref]) for n in names if n != ref} for ref in PLOT_REFERENCES if by[ref]}
    if plot_paired(names, diffs, root / "paired_differences.png"):
        lines += ["", "![paired differences to each reference](paired_differences.png)"]
    if curves:
        lines += ["", "## Validation curves", "", *curves_table(curves)]
    if plot_curves(curves, LABELS, root / "validation_curves.png"):
        lines += ["", "![validation error during training](validation_curves.png)"]
    (root / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    for path in args.fill:
        texts = {name: "\n".join(table) for name, table in tables.items() if table}
        texts["study2_headline"] = "\n".join(headline)
        blocks: Dict[str, Callable[[], str]] = {name: functools.partial(str, text) for name, text in texts.items()}
        changed = fill_file(path, blocks)
        print(f"{path}: {'blocks rewritten' if changed else 'unchanged'} ({', '.join(blocks)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
