"""Study 2, stage 4: the confirmation's plan and its reading, RSM-tuned against CutMix at 20 paired seeds.

    .venv/bin/python study/study2/imagenette/confirm_report.py --plan    # its runs, "name seed" a line
    .venv/bin/python study/study2/imagenette/confirm_report.py [--fill RESULTS.md]

The design is SCREEN.md's stage 4, with the names the screen's rules give (``screen_report.py``):
RSM-tuned and CutMix at seeds 0-19, official SaliencyMix at 0-9, ``cutmix_selfcam`` at 0-9 if the
screen says it joins, GuidedMixup (SR) and no mixing at part 1's seeds 0-4. Primary comparison:
RSM-tuned − CutMix; secondary (Holm): RSM-tuned against SaliencyMix, GuidedMixup and no mixing, and
``cutmix_selfcam`` − CutMix where it joins. Stage 4's own issue commits this design again, in full,
before its first run, and may change it there; this file is then made to match it.

``--plan`` prints every run of the design, seed-major (``confirm.sh`` trains those not finished:
part 1's runs at seeds 0-4 count); exit status 3, with the reason, while the screen has not selected.
The report reads the finished runs of part 1's folders and ``confirm_*`` (every run checked by
``run_folders.read_runs``: regime A at 80 epochs with the test split, Imagenette's ``val/``; any
other stops the report by name) and writes ``confirm/results.csv`` and ``confirm/results.md``: the
table (final-epoch test top-1 error), the planned comparisons (exact sign-flip deciding, the
t-interval and the seeds-and-images interval beside it, a reading only at the full design), the
power reached and each seed's CPU kind.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Dict, List, Optional, Tuple

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import screen_report  # noqa: E402  (this folder: the screen's rules; it puts study/ and study/study2/ on the path)
from paired_design import (  # noqa: E402  (study/study2/paired_design.py)
    Design,
    comparison_lines,
    comparisons,
    complete,
    hardware_lines,
    power_lines,
    table_lines,
    write_report,
)
from run_folders import read_runs  # noqa: E402  (study/study2/run_folders.py)

PROG = "confirm_report.py"
FOLDERS = ("main_operator", "main_fg", "main_sr", "confirm_operator", "confirm_fg", "confirm_cam", "confirm_sr")
PAIRED = tuple(range(20))  # RSM-tuned and CutMix (part 1's CutMix seeds 0-4 count)
TEN = tuple(range(10))  # official SaliencyMix; cutmix_selfcam where it joins
PART1 = tuple(range(5))  # GuidedMixup (SR) and no mixing: part 1's runs, no new ones
TEST = {"test": True, "test_split": "val", "robustness": True}  # part 1's test flags (regime_a.sh's REGIME_A_TEST)


def design(tuned: str, joins: bool) -> Design:
    """Stage 4's design for RSM-tuned ``tuned``, with ``cutmix_selfcam`` where it ``joins``."""
    order = (tuned, "cutmix", "saliencymix") + (("cutmix_selfcam",) if joins else ()) + ("guided_sr", "none")
    seeds = {tuned: PAIRED, "cutmix": PAIRED, "saliencymix": TEN, "cutmix_selfcam": TEN, "guided_sr": PART1}
    secondary: Tuple[Tuple[str, str], ...] = ((tuned, "saliencymix"), (tuned, "guided_sr"), (tuned, "none"))
    if joins:
        secondary += (("cutmix_selfcam", "cutmix"),)
    return Design(
        order=order,
        seeds={name: seeds.get(name, PART1) for name in order},
        primary=(tuned, "cutmix"),
        secondary=secondary,
    )


def screened(root: Path) -> Design:
    """The design the screen's finished runs give; SystemExit(3) naming what is missing before it has."""
    tuned, joins = screen_report.selection(root)
    if tuned is None or joins is None:
        print(f"{PROG}: the screen has not finished: RSM-tuned and cutmix_selfcam's place are not chosen yet "
              "(screen_report.py says which runs are missing)", file=sys.stderr)  # fmt: skip
        raise SystemExit(3)
    return design(tuned, joins)


def plan(d: Design) -> List[Tuple[str, int]]:
    """Every run of the design, seed-major, the methods in table order within a seed."""
    seeds = sorted({s for name in d.order for s in d.seeds[name]})
    return [(name, s) for s in seeds for name in d.order if s in d.seeds[name]]


def check_regime(run: Path, config: Dict) -> Dict:
    """The screen's regime check (80 epochs, fast_resnet at 128 px, bf16, --split-seed 0) and the test
    flags: SystemExit naming a run that did not read the test split as part 1 did."""
    columns = screen_report.check_regime(run, config)
    wrong = [f"{k} {config.get(k)!r} (stage 4's is {v!r})" for k, v in TEST.items() if config.get(k) != v]
    if wrong:
        raise SystemExit(f"{PROG}: {run} is not a run of stage 4's regime: {', '.join(wrong)}")
    return columns


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=HERE, help="the folder of the run folders (tests use another)")
    ap.add_argument("--plan", action="store_true", help="print the design's runs, 'name seed' a line, and stop")
    ap.add_argument(
        "--fill", type=Path, action="append", default=[], help="rewrite this file's study2_confirmation block"
    )
    args = ap.parse_args(argv)
    if not args.root.is_dir():
        ap.error(f"--root {args.root}: no such folder")
    for path in args.fill:
        if not path.is_file():
            ap.error(f"--fill {path}: no such file")
    d = screened(args.root)
    if args.plan:
        print("\n".join(f"{name} {seed}" for name, seed in plan(d)))
        return 0
    # Everything is read and checked before anything is written; only the design's runs count.
    planned = set(plan(d))
    rows = [r for r in read_runs(args.root, FOLDERS, check_regime, PROG) if (r["name"], r["seed"]) in planned]
    untested = [f"{r['folder']}/runs/{r['name']}_s{r['seed']}" for r in rows if d.metric not in r]
    if untested:
        raise SystemExit(f"{PROG}: {untested[0]} has no {d.metric}")
    found = comparisons(d, rows, args.root, PROG)
    sections = {
        "Table": table_lines(d, rows, "test top-1 err (%)", "Final-epoch test top-1 error (%)"),
        "Comparisons": comparison_lines(d, found, complete(d, rows), "stage 4's protocol"),
        "Power": power_lines(d, found),
        "Hardware and cost": hardware_lines(d, rows) if rows else [],
    }
    body = [f"RSM-tuned is `{d.primary[0]}` (the screen's rule). {len(rows)} of {len(planned)} runs finished."]
    for title, lines in sections.items():
        if lines:
            body += ["", f"### {title}", "", *lines]
    out = args.root / "confirm"
    out.mkdir(exist_ok=True)
    header = [
        "# Study 2, stage 4: the confirmation",
        "",
        "`python study/study2/imagenette/confirm_report.py` over the finished runs of part 1 and `confirm.sh`.",
        "Regime A (`fast_resnet` at 128 px, bf16, 80 epochs); every number is a final-epoch number on the",
        "test split (Imagenette's `val/` folder, 3,925 images), read once per run.",
    ]
    write_report(out, d, rows, header, body, "study2_confirmation", args.fill)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
