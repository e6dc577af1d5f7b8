"""The occlusion diagnostic of study 2 (issue 17): on the final no-mixing models, the test top-1
error when the window each saliency source finds most salient is filled with the mean colour,
against its least salient window and a random window of the same area, at three window sizes.

    .venv/bin/python study/study2/imagenette/occlusion.py RUN [RUN ...]   # one CSV per run
    .venv/bin/python study/study2/imagenette/occlusion.py --summary       # occlusion.md over the CSVs

The no-mixing runs of main.sh finish in different sessions, and their checkpoints are not kept
(never committed): each RUN is scored in the session it finished in, into
``occlusion/<run folder name>.csv`` (a run already scored is skipped), and ``--summary`` merges
every CSV there. Each RUN is a run folder with its checkpoint; the test split is the one the runs
were scored on (Imagenette's val/), at the run's image size. Sources: fine-grained and spectral
residual (the detectors, on the stored images) and CAM (the run's own model, its predicted class).
Windows of 32, 48 and 64 px at 128 px: 1/16, 9/64 and 1/4 of the area.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
import time
from pathlib import Path
from typing import Dict, List

import torch

from randsaliencymix.harness.compare import mean_std_ci
from randsaliencymix.harness.data import load_dataset
from randsaliencymix.harness.evaluate import load_trained_model
from randsaliencymix.harness.occlusion import occlusion_errors, source_maps
from randsaliencymix.harness.precision import cpu_name

HERE = Path(__file__).resolve().parent
CSV_DIR = HERE / "occlusion"
SOURCES = ("fine_grained", "spectral", "cam")
FIELDS = ("run", "seed", "source", "side", "kind", "top1_err", "images", "cpu", "seconds")


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
    seed = int(run.name.rpartition("_s")[2])
    common = {"images": len(ds.labels), "cpu": cpu_name(), "seconds": seconds}
    return [
        {"run": run.name, "seed": seed, "source": source, "side": side, "kind": kind, "top1_err": err, **common}
        for (source, side, kind), err in scores.items()
    ]


def summary(out: Path) -> str:
    rows = []
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
    sides = [int(s) for s in args.sides.split(",")]
    CSV_DIR.mkdir(exist_ok=True)
    for run in args.runs:
        target = CSV_DIR / f"{run.name}.csv"
        if target.exists():
            print(f"{run}: scored already ({target}), skipped", flush=True)
            continue
        rows = score(run, args.data, args.split, sides)
        tmp = target.with_suffix(".csv.tmp")
        with open(tmp, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(FIELDS))
            writer.writeheader()
            writer.writerows(rows)
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
