"""The occlusion diagnostic of study 2 (issue 17): on the final no-mixing models, the test top-1
error when the window each saliency source finds most salient is filled with the mean colour,
against its least salient window and a random window of the same area, at three window sizes.

    .venv/bin/python study/study2/imagenette/occlusion.py RUN [RUN ...]   # one CSV per run
    .venv/bin/python study/study2/imagenette/occlusion.py --summary       # occlusion.md over the CSVs

The no-mixing runs of main.sh finish in different sessions, and their checkpoints are not kept
(never committed): each RUN is scored in the session it finished in, into
``occlusion/<run folder name>.csv``, and ``--summary`` merges every CSV there. A run already scored
is skipped only while its scores are current: a CSV's modification time is set to the moment its
scoring began, and a run whose ``checkpoint.pt`` or ``metrics.json`` has been written since (it
trained on, or finished, after a score of an earlier checkpoint) is scored again. Each RUN is a
run folder named ``<method>_s<seed>`` with its checkpoint (or that ``checkpoint.pt``: its folder
is the run); every RUN is checked before any is scored. The test split is the one the runs were
scored on (Imagenette's val/), at the run's image size. Sources: fine-grained and spectral
residual (the detectors, on the stored images) and CAM (the run's own model, its predicted class).
Windows of 32, 48 and 64 px at 128 px: 1/16, 9/64 and 1/4 of the area.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import re
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import torch

from rsmix.compare import mean_std_ci
from rsmix.data import load_dataset
from rsmix.errors import UsageError
from rsmix.evaluate import load_trained_model
from rsmix.occlusion import occlusion_errors, source_maps
from rsmix.precision import cpu_name

HERE = Path(__file__).resolve().parent
CSV_DIR = HERE / "occlusion"
SOURCES = ("fine_grained", "spectral", "cam")
FIELDS = ("run", "seed", "source", "side", "kind", "top1_err", "images", "cpu", "seconds")
RUN_NAME = re.compile(r".+_s(?P<seed>0|[1-9][0-9]*)")  # <method>_s<seed>, as main.sh names its runs


def run_folder(path: Path) -> Path:
    """The run folder RUN names (a checkpoint file stands for its folder); SystemExit in one line for a
    path that is not there or a folder not named ``<method>_s<seed>``."""
    if path.is_file():
        path = path.parent
    if not path.is_dir():
        raise SystemExit(f"occlusion.py: {path}: no such run folder")
    if RUN_NAME.fullmatch(path.name) is None:
        raise SystemExit(f"occlusion.py: {path}: the run folder's name does not end in _s<seed> (an integer)")
    return path


def rescore_reason(run: Path, target: Path) -> Optional[str]:
    """Why ``run`` is to be scored into ``target``, or None while ``target``'s scores are current.
    ``target``'s modification time is the moment its scoring began (``main`` sets it), so a checkpoint
    or metrics.json written after it (or in the same tick of the file clock) means the scores are of
    an earlier checkpoint. Without a checkpoint the scores are kept: there is nothing to score again."""
    if not target.exists():
        return "not scored yet"
    checkpoint, metrics = run / "checkpoint.pt", run / "metrics.json"
    if not checkpoint.is_file():
        return None
    scored = target.stat().st_mtime_ns
    # ctime: also moved by the rename that puts a checkpoint written before in place
    if checkpoint.stat().st_ctime_ns >= scored:
        return "its checkpoint is newer than its scores"
    if metrics.is_file() and metrics.stat().st_ctime_ns >= scored:
        return "the run has finished since it was scored"
    return None


def score(run: Path, data: str, split: str, sides: List[int]) -> List[Dict]:
    start = time.perf_counter()
    trained = load_trained_model(run, "cpu", channels=3)
    ds = load_dataset(data, split, size=trained.image_size or None)
    dev = torch.device("cpu")
    maps = source_maps(trained.model, ds.images, SOURCES, trained.mean, trained.std, device=dev,
                       precision=trained.precision)  # fmt: skip
    scores = occlusion_errors(
        trained.model, ds.images, ds.labels, maps, sides, trained.mean, trained.std, device=dev,
        channels_last=trained.channels_last, precision=trained.precision,
    )  # fmt: skip
    seconds = round(time.perf_counter() - start, 1)
    named = RUN_NAME.fullmatch(run.name)
    assert named is not None, run  # run_folder refuses other names before any scoring
    seed = int(named["seed"])
    common = {"images": len(ds.labels), "cpu": cpu_name(), "seconds": seconds}
    return [
        {"run": run.name, "seed": seed, "source": source, "side": side, "kind": kind, "top1_err": err, **common}
        for (source, side, kind), err in scores.items()
    ]


def summary(out: Path) -> str:
    rows: List[Dict[str, str]] = []
    for path in sorted(CSV_DIR.glob("*.csv")):
        with open(path, newline="") as fh:
            rows.extend(csv.DictReader(fh))
    if not rows:
        raise SystemExit(f"no per-run CSV in {CSV_DIR}: score runs first")
    cells: Dict[tuple, Dict[int, float]] = {}
    for r in rows:
        cells.setdefault((r["source"], int(r["side"]), r["kind"]), {})[int(r["seed"])] = float(r["top1_err"])
    seeds = sorted(cells[("clean", 0, "none")])
    sides = sorted({k[1] for k in cells if k[0] != "clean"})

    def cell(values: List[float]) -> str:
        m, sd, _ = mean_std_ci(values)
        return f"{m:.2f}" + (f" ± {sd:.2f}" if not math.isnan(sd) else "")

    def diff(a: Dict[int, float], b: Dict[int, float]) -> str:
        d, _, half = mean_std_ci([a[s] - b[s] for s in seeds])
        if math.isnan(half):
            return f"{d:+.2f} (one seed)"
        return f"{d:+.2f} ± {half:.2f}" + (" noise" if abs(d) <= half else "")

    n = int(rows[0]["images"])
    lines = [
        "# Occlusion diagnostic: does each saliency source see what the classifier uses?",
        "",
        "`python study/study2/imagenette/occlusion.py RUN ...` per finished no-mixing run of main.sh, then",
        "`python study/study2/imagenette/occlusion.py --summary` (this file). Per-run numbers: `occlusion/*.csv`.",
        f"Models: the final no-mixing runs, seeds {', '.join(map(str, seeds))}; test split: {n} images of",
        "Imagenette's `val/` at 128 px. A window of the given side is filled with the training mean colour:",
        "the one each source finds **most** salient, its **least** salient, and a **random** one (seeded).",
        f"CPUs: {'; '.join(sorted({r['cpu'] for r in rows}))}; torch {torch.__version__}.",
        "",
        f"Clean test top-1 error: {cell(list(cells[('clean', 0, 'none')].values()))}%",
        "",
        "Top-1 error (%) with the window occluded (mean ± std over seeds), and the paired difference",
        "most − random, most − centre and least − random (mean ± half-width of the 95% t-interval over seeds;",
        "with one seed, the point only). A source that finds what the classifier uses costs more accuracy at",
        "its most salient window than at a random one (most − random > 0), and less at its least salient",
        "(least − random < 0). Photographs centre their object, so the centre window is the prior to beat:",
        "most − centre > 0 says the source finds more than the centre does.",
        "",
        "| source | window | most salient | least salient | random | centre | most − random | most − centre "
        "| least − random |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for source in SOURCES:
        for side in sides:
            most, least, rand, centre = (cells[(source, side, k)] for k in ("most", "least", "random", "centre"))
            values = " | ".join(cell(list(v.values())) for v in (most, least, rand, centre))
            lines.append(
                f"| {source} | {side} px | {values} | {diff(most, rand)} | {diff(most, centre)} | {diff(least, rand)} |"
            )
    if len(seeds) == 1:
        half = 1.96 * math.sqrt(0.25 / n) * 100 * math.sqrt(2)
        lines += [
            "",
            f"One model so far: a difference of two errors on {n} images is within noise below about {half:.1f} "
            "points (the widest binomial 95% interval of a difference; paired, it is narrower).",
        ]
    text = "\n".join(lines) + "\n"
    out.write_text(text)
    return text


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="*", type=Path)
    ap.add_argument("--data", default="../shared/data/imagenette2-224.tar")
    ap.add_argument("--split", default="val")
    ap.add_argument("--sides", default="32,48,64")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--summary", action="store_true", help="merge occlusion/*.csv into occlusion.md")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        sides = [int(s) for s in args.sides.split(",")]
    except ValueError:
        ap.error(f"--sides {args.sides!r}: give whole pixels separated by commas, e.g. 32,48,64")
    # Every RUN is checked before any is scored: a bad one found after an hour of scoring would cost it.
    runs: Dict[Path, Path] = {}  # resolved -> as given (a checkpoint file: its folder)
    for given in args.runs:
        run = run_folder(given)
        other = next((o for r, o in runs.items() if r.name == run.name and r != run.resolve()), None)
        if other is not None:
            raise SystemExit(f"occlusion.py: {other} and {run} would both be scored into {run.name}.csv: give one")
        runs.setdefault(run.resolve(), run)
    todo = []
    for run in runs.values():
        target = CSV_DIR / f"{run.name}.csv"
        reason = rescore_reason(run, target)
        if reason is None:
            print(f"{run}: scored already ({target}), skipped", flush=True)
            continue
        if not (run / "checkpoint.pt").is_file():
            raise SystemExit(f"occlusion.py: {run}: no checkpoint.pt to score (nothing was scored)")
        todo.append((run, target, reason))
    CSV_DIR.mkdir(exist_ok=True)
    for run, target, reason in todo:
        if target.exists():
            print(f"{run}: scoring again: {reason} ({target})", flush=True)
        if not (run / "metrics.json").is_file():
            print(f"{run}: not finished: scored as it is now, and again once it has finished", flush=True)
        tmp = target.with_suffix(".csv.tmp")
        tmp.write_text("")
        began = tmp.stat().st_mtime_ns  # before the checkpoint is read, on the files' clock: the CSV's mtime
        try:
            rows = score(run, args.data, args.split, sides)
        except UsageError as exc:
            tmp.unlink()
            raise SystemExit(f"occlusion.py: {run}: {exc}") from None
        with open(tmp, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(FIELDS))
            writer.writeheader()
            writer.writerows(rows)
        os.utime(tmp, ns=(began, began))
        tmp.replace(target)
        clean = next(r["top1_err"] for r in rows if r["source"] == "clean")
        print(f"{run}: clean {clean:.2f}%, {rows[0]['seconds']} s -> {target}", flush=True)
    if args.summary:
        print(summary(HERE / "occlusion.md"), end="")
    elif not args.runs:
        ap.error("give RUN folders to score, or --summary")
    return 0


if __name__ == "__main__":
    sys.exit(main())
