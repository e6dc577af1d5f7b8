"""Study 2, stage 3: the screen's table and RSM-tuned by SCREEN.md's rule, from the finished runs.

    .venv/bin/python study/study2/imagenette/screen_report.py [--fill RESULTS.md]

Reads each candidate's runs (``screen_operator/`` and ``screen_cam/``, written by ``screen.sh``) and
part 1's references at seeds 0-2 (CutMix, official SaliencyMix, RSM-seed): the final-epoch
validation top-1 error of each run. Writes ``screen/results.csv`` (one row a run) and
``screen/results.md`` (every candidate, each seed, mean ± std, its cost against ``rsm_uniform``'s
step, and the selection), and fills the ``study2_screen`` block of the files given with ``--fill``.

A run counts only if its config is the screen's regime (80 epochs, ``fast_resnet`` at 128 px, bf16,
the validation split of ``--split-seed 0``): a run of another regime in a screen folder stops the
report with its name, never joins a row. Runs in flight (no ``metrics.json``) are left out.
"""

from __future__ import annotations

import argparse
import csv
import functools
import json
import statistics
import sys
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))  # study/
sys.path.insert(0, str(HERE.parent))  # study/study2/
from blocks import fill_file  # noqa: E402  (study/blocks.py)
from run_folders import read_runs  # noqa: E402  (study/study2/run_folders.py: the runs read and checked)

SEEDS = (0, 1, 2)
# name, folder, cost class (SCREEN.md: 1 no saliency pass, 2 cached detector maps, 3 an extra CAM forward)
CANDIDATES: Tuple[Tuple[str, str, int], ...] = (
    ("rsm_uniform", "screen_operator", 1),
    ("rsm_selfcam", "screen_operator", 1),
    ("rsm_seed", "main_fg", 2),  # part 1's runs: a RandSaliencyMix candidate and a reference
    ("rsm_cam8", "screen_cam", 3),
    ("rsm_cam16", "screen_cam", 3),
    ("rsm_cam8_hard", "screen_cam", 3),
    ("rsm_cam8_seedrepo", "screen_cam", 3),
    ("rsm_cam8_selfcam", "screen_cam", 3),
)
OTHERS: Tuple[Tuple[str, str], ...] = (("cutmix_selfcam", "screen_operator"),)
REFERENCES: Tuple[Tuple[str, str], ...] = (("cutmix", "main_operator"), ("saliencymix", "main_operator"))
REGIME = {
    "epochs": 80, "model": "fast_resnet", "image_size": 128, "precision": "bf16", "val_fraction": 0.1,
    "split_seed": 0, "augment": "resized_crop", "batch_size": 256,
}  # fmt: skip
TIE = 0.1  # points: within this of the lowest mean, the cheaper candidate wins


def check_regime(run: Path, config: Dict) -> Dict:
    """The run's config columns of the table (self-CAM kappa, saliency source, mix); SystemExit naming
    a run of another regime and every key that differs."""
    wrong = {k: (config.get(k), v) for k, v in REGIME.items() if config.get(k, REGIME_DEFAULTS.get(k)) != v}
    if wrong:
        said = ", ".join(f"{k} {got!r} (the screen's is {want!r})" for k, (got, want) in wrong.items())
        raise SystemExit(f"screen_report.py: {run} is not a run of the screen's regime: {said}")
    return {
        "self_cam": config.get("self_cam", 0.0), "saliency": config.get("saliency", "operator"),
        "mix": json.dumps(config.get("mix", {}), sort_keys=True),
    }  # fmt: skip


REGIME_DEFAULTS = {"precision": "fp32", "image_size": 0, "augment": "pad_crop"}  # keys older configs lack


def collect(root: Path) -> List[Dict]:
    """The rows of the screen's runs and the references at seeds 0-2 (``run_folders.read_runs``: every
    run of their folders checked, SystemExit before anything is written naming one that cannot count);
    the CPU is its kind (its name and bf16 units: an Intel Xeon with AMX runs the step about twice as
    fast as one without, under the same name), so that costs are compared on one kind only."""
    wanted = [(n, f) for n, f, _ in CANDIDATES] + list(OTHERS) + list(REFERENCES)
    rows = read_runs(root, sorted({f for _, f in wanted}), check_regime, "screen_report.py")
    by_run = {(r["folder"], r["name"], r["seed"]): r for r in rows}
    out = []
    for name, folder in wanted:
        for seed in SEEDS:
            r = by_run.get((folder, name, seed))
            if r is None:
                continue  # in flight, or not begun
            if not isinstance(r.get("val_top1_err"), (int, float)):
                raise SystemExit(f"screen_report.py: {root / folder / 'runs' / f'{name}_s{seed}'}/metrics.json "
                                 "has no val_top1_err")  # fmt: skip
            out.append(
                {**{k: r.get(k) for k in COLUMNS}, "val_top1_err": float(r["val_top1_err"]), "cpu": r["cpu_kind"]}
            )
    return out


COLUMNS = ["name", "folder", "seed", "val_top1_err", "train_seconds", "cpu", "self_cam", "saliency", "mix"]


def errors_by_name(rows: List[Dict]) -> Dict[str, Dict[int, float]]:
    out: Dict[str, Dict[int, float]] = {}
    for r in rows:
        out.setdefault(r["name"], {})[r["seed"]] = r["val_top1_err"]
    return out


def select(errors: Dict[str, Dict[int, float]]) -> Tuple[Optional[str], str]:
    """(RSM-tuned or None, the sentence saying why) by SCREEN.md's rule."""
    eligible = {
        n: statistics.mean(errors[n].values()) for n, _, _ in CANDIDATES if len(errors.get(n, {})) == len(SEEDS)
    }
    missing = [n for n, _, _ in CANDIDATES if n not in eligible]
    if missing:
        return None, f"Not yet selected: {len(missing)} candidate(s) without all three seeds ({', '.join(missing)})."
    cost = {n: c for n, _, c in CANDIDATES}
    best = min(eligible.values())
    tied = [n for n, m in eligible.items() if m <= best + TIE + 1e-9]
    chosen = min(tied, key=lambda n: (cost[n], eligible[n]))
    return chosen, (
        f"**RSM-tuned = `{chosen}`** (mean {eligible[chosen]:.2f}%): the lowest mean is {best:.2f}%; the candidates "
        f"within {TIE} points ({', '.join(sorted(tied))}) tie, and the cheapest cost class wins."
    )


def cutmix_selfcam_joins(errors: Dict[str, Dict[int, float]]) -> Tuple[Optional[bool], str]:
    """(whether ``cutmix_selfcam`` joins stage 4, None while a run is missing; the sentence saying why)
    by SCREEN.md: it joins at 10 seeds only if its mean is lower than every RandSaliencyMix candidate's."""
    names = [n for n, _, _ in CANDIDATES] + [n for n, _ in OTHERS]
    if any(len(errors.get(n, {})) < len(SEEDS) for n in names):
        return None, "`cutmix_selfcam` joins stage 4 or not once every candidate and it have all three seeds."
    own = statistics.mean(errors["cutmix_selfcam"].values())
    best = min(statistics.mean(errors[n].values()) for n, _, _ in CANDIDATES)
    joins = own < best
    return joins, (
        f"`cutmix_selfcam` (mean {own:.2f}%) {'joins' if joins else 'does not join'} stage 4: its mean is "
        f"{'lower' if joins else 'not lower'} than every RandSaliencyMix candidate's (the lowest {best:.2f}%)."
    )


def selection(root: Path) -> Tuple[Optional[str], Optional[bool]]:
    """RSM-tuned (None until every candidate has three seeds) and whether ``cutmix_selfcam`` joins
    stage 4 (None likewise), by SCREEN.md's rules over the finished runs under ``root``."""
    errors = errors_by_name(collect(root))
    return select(errors)[0], cutmix_selfcam_joins(errors)[0]


def cost_ratios(rows: List[Dict]) -> Dict[str, str]:
    """Each candidate's training time over rsm_uniform's, per seed on the same CPU, as the mean ratio."""
    base = {(r["seed"], r["cpu"]): r["train_seconds"] for r in rows if r["name"] == "rsm_uniform"}
    out: Dict[str, str] = {}
    for name in {r["name"] for r in rows}:
        ratios = [
            r["train_seconds"] / base[(r["seed"], r["cpu"])]
            for r in rows
            if r["name"] == name and r["cpu"] and base.get((r["seed"], r["cpu"])) and r["train_seconds"]
        ]
        out[name] = f"{statistics.mean(ratios):.2f}x ({len(ratios)})" if ratios else "—"
    return out


def table(rows: List[Dict]) -> List[str]:
    errors, costs = errors_by_name(rows), cost_ratios(rows)
    cls = {n: str(c) for n, _, c in CANDIDATES}
    lines = [
        "Final-epoch validation top-1 error (%, 947 images of the training set held out; seeds 0-2), mean ± std",
        "over the seeds finished; cost: training time over `rsm_uniform`'s at the same seed on the same CPU kind",
        "(its name and bf16 units; mean of the ratios, the number of pairs; the load beside a run moves it, so",
        "the step costs measured side by side are in benchmarks/train_step_selfcam.md); class: SCREEN.md's",
        "cost class (1 no saliency pass, 2 cached maps, 3 an extra CAM forward). The screen ranks; it tests",
        "nothing: one run's validation error has a binomial standard error of about 1.1 points.",
        "",
        "| run | kind | class | seed 0 | seed 1 | seed 2 | mean ± std | cost |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    groups = [("candidate", [n for n, _, _ in CANDIDATES]), ("CutMix + self-CAM", [n for n, _ in OTHERS])]
    groups.append(("reference (part 1)", [n for n, _ in REFERENCES]))
    for kind, names in groups:
        for name in names:
            per = errors.get(name, {})
            cells = [f"{per[s]:.2f}" if s in per else "" for s in SEEDS]
            vals = list(per.values())
            summary = (
                f"{statistics.mean(vals):.2f} ± {statistics.stdev(vals):.2f}"
                if len(vals) > 1
                else (f"{vals[0]:.2f}" if vals else "")
            )
            lines.append(
                f"| {name} | {kind} | {cls.get(name, '')} | {' | '.join(cells)} | {summary} | {costs.get(name, '—')} |"
            )
    _, sentence = select(errors)
    lines += [
        "",
        sentence,
        cutmix_selfcam_joins(errors)[1],
        f"{len(rows)} runs read ({sum(1 for r in rows if r['folder'].startswith('screen'))} of 24 screen runs).",
    ]
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=HERE)
    ap.add_argument("--out", type=Path, default=None, help="folder of results.csv/.md (default ROOT/screen)")
    ap.add_argument("--fill", type=Path, action="append", default=[], help="fill its study2_screen block")
    args = ap.parse_args(argv)
    for path in args.fill:
        if not path.is_file():
            raise SystemExit(f"screen_report.py: --fill {path}: no such file")
    rows = collect(args.root)
    out = args.out or args.root / "screen"
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "results.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    lines = table(rows)
    text = "\n".join(
        ["# Study 2, stage 3: the screen", "", "`python study/study2/imagenette/screen_report.py`", "", *lines]
    )
    (out / "results.md").write_text(text + "\n")
    print(text)
    blocks: Dict[str, Callable[[], str]] = {"study2_screen": functools.partial(str, "\n".join(lines))}
    for path in args.fill:
        changed = fill_file(path, blocks)
        print(f"{path}: {'block rewritten' if changed else 'unchanged'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
