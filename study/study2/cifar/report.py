"""Study 2's regime B (REGIME_B.md) from the runs of regime_b.sh: the calibration's schedule, every
method's test error over the paired seeds, and the comparisons decided before the runs.

    .venv/bin/python study/study2/cifar/report.py                   # writes results.csv and results.md here
    .venv/bin/python study/study2/cifar/report.py --fill RESULTS.md # and its study2_regime_b block

Reads ``calibration_{60,120}/runs/cutmix_s0`` and ``main_{operator,fg,sr}/runs/<name>_s<seed>``
(finished runs only; ``run_folders.read_runs`` refuses, before anything is written, a run that
cannot count: another regime or schedule, an unreadable or non-finite metric, a copied run).
Writes ``results.csv`` (one row per main run) and ``results.md``:

* the schedule: CutMix's validation error at 60 and 120 epochs and the rule's choice;
* the table: each method's final test top-1 error, mean ± std and every seed;
* the comparisons of REGIME_B.md over the seeds both methods finished: mean difference, 95%
  t-interval, the 95% interval that resamples seeds and test images together (from the runs'
  per-image predictions), the exact sign-flip p and, for the secondary ones, Holm's adjusted p; a
  reading ("detected" / "not detected") only at the full design, every method at seeds 0-9;
* the power reached: the difference the seeds detect with probability 0.8 at the primary pair's std;
* the hardware: the CPU kind of each seed and each method's minutes per run.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # study/
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # study/study2/
from paired_design import (
    Design,
    by_method,
    comparison_lines,
    comparisons,
    complete,
    hardware_lines,
    power_lines,
    table_lines,
    write_report,
)
from run_folders import read_json, read_runs  # study/study2/run_folders.py

HERE = Path(__file__).resolve().parent
PROG = "report.py"
FOLDERS = ("main_operator", "main_fg", "main_sr")
ORDER = ("none", "cutmix", "guided_sr", "rsm_seed", "rsm_uniform", "cutmix_selfcam")
SEEDS = tuple(range(10))
DESIGN = Design(  # REGIME_B.md: every method at seeds 0-9, the primary and the secondary comparisons
    order=ORDER,
    seeds={name: SEEDS for name in ORDER},
    primary=("rsm_seed", "cutmix"),
    secondary=(
        ("rsm_uniform", "cutmix"),
        ("cutmix_selfcam", "cutmix"),
        ("guided_sr", "cutmix"),
        ("rsm_seed", "rsm_uniform"),
        ("none", "cutmix"),
    ),
)
METRIC = DESIGN.metric
REGIME = {"model": "fast_cnn", "precision": "fp32", "train_fraction": 0.1, "val_fraction": 0.1, "split_seed": 0}
DATA_SUFFIX = "cifar10-jpeg.tar.gz"
SCHEDULES = (60, 120)


def regime_checker(epochs: Optional[int]) -> Callable[[Path, Dict], None]:
    """A check that a run's config is regime B's (and, where the calibration has chosen one, at its
    schedule): SystemExit naming the run and every key that differs."""

    def check(run: Path, config: Dict) -> None:
        wrong = [f"{k} {config.get(k)!r} (regime B's is {v!r})" for k, v in REGIME.items() if config.get(k) != v]
        data = config.get("data")
        if not (isinstance(data, str) and data.endswith(DATA_SUFFIX)):
            wrong.insert(0, f"data {data!r} (regime B's ends in {DATA_SUFFIX!r})")
        if epochs is not None and config.get("epochs") != epochs:
            wrong.append(f"epochs {config.get('epochs')!r} (the calibration chose {epochs})")
        if wrong:
            raise SystemExit(f"{PROG}: {run} is not a run of regime B: {', '.join(wrong)}")

    return check


def schedule(root: Path) -> Tuple[Dict[int, float], Optional[int]]:
    """CutMix's final validation error at each finished calibration schedule, and the rule's choice
    (120 if at least 1.0 point lower than at 60, else 60; None until both have finished)."""
    errors = {}
    for epochs in SCHEDULES:
        run = root / f"calibration_{epochs}" / "runs" / "cutmix_s0"
        if (run / "metrics.json").exists():
            regime_checker(epochs)(run, read_json(run / "config.json", "config.json", PROG))
            err = read_json(run / "metrics.json", "metrics.json", PROG).get("val_top1_err")
            if not isinstance(err, (int, float)) or not math.isfinite(err):
                raise SystemExit(f"{PROG}: {run}/metrics.json has no finite val_top1_err")
            errors[epochs] = float(err)
    if len(errors) < len(SCHEDULES):
        return errors, None
    return errors, 120 if errors[60] - errors[120] >= 1.0 else 60


def schedule_lines(errors: Dict[int, float], epochs: Optional[int]) -> List[str]:
    cells = ", ".join(f"{errors[e]:.2f}% at {e} epochs" for e in SCHEDULES if e in errors) or "no run finished"
    choice = f"**the schedule is {epochs} epochs**" if epochs else "the rule waits for both runs"
    return [
        f"CutMix at seed 0, final validation top-1 error: {cells}.",
        f"Rule (REGIME_B.md): 120 epochs if the error at 120 is at least 1.0 point lower than at 60, else 60: {choice}.",
    ]


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=HERE, help="the folder of the run folders (tests use another)")
    ap.add_argument("--fill", type=Path, action="append", default=[], help="rewrite this file's study2_regime_b block")
    args = ap.parse_args(argv)
    if not args.root.is_dir():
        ap.error(f"--root {args.root}: no such folder")
    for path in args.fill:
        if not path.is_file():
            ap.error(f"--fill {path}: no such file")
    # Everything is read and checked before anything is written.
    errors, epochs = schedule(args.root)
    rows = read_runs(args.root, FOLDERS, regime_checker(epochs), PROG)
    if rows and epochs is None:
        raise SystemExit(f"{PROG}: main runs without a finished calibration: the schedule they ran is unchecked")
    untested = [f"{r['folder']}/runs/{r['name']}_s{r['seed']}" for r in rows if METRIC not in r]
    if untested:
        raise SystemExit(f"{PROG}: {untested[0]} has no {METRIC} (a run without --test cannot count)")
    by = by_method(rows, ORDER, METRIC)
    found = comparisons(DESIGN, rows, args.root, PROG)
    table = table_lines(DESIGN, rows, "test top-1 err (%)", "Final-epoch test top-1 error (%)")
    sections = {
        "Schedule (stage B1)": schedule_lines(errors, epochs),
        "Table (stage B2)": table if rows else ["No main run finished yet."],
        "Comparisons": comparison_lines(DESIGN, found, complete(DESIGN, rows), "REGIME_B.md"),
        "Power": power_lines(DESIGN, found),
        "Hardware and cost": hardware_lines(DESIGN, rows) if rows else [],
    }
    status = f"{sum(len(v) for v in by.values())} of {len(ORDER) * len(SEEDS)} main runs finished."
    body = [status]
    for title, lines in sections.items():
        if lines:
            body += ["", f"### {title}", "", *lines]
    header = [
        "# Study 2, regime B: CIFAR-10 low-data in fp32",
        "",
        "`python study/study2/cifar/report.py` over the finished runs of `regime_b.sh` (protocol:",
        "`REGIME_B.md`). `fast_cnn` at 32 px on 4,500 training images; every table number is a",
        "final-epoch number on the test split (10,000 images), read once per run.",
    ]
    write_report(args.root, DESIGN, rows, header, body, "study2_regime_b", args.fill)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
