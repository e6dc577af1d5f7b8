"""The occlusion diagnostic of study 2 (issue 17): on the final no-mixing models, the test top-1
error when the window each saliency source finds most salient is filled with the mean colour,
against its least salient window and a random window of the same area, at three window sizes.

    .venv/bin/python study/study2/imagenette/occlusion.py RUN [RUN ...] --out study/study2/imagenette/occlusion.md

Each RUN is a run folder with its checkpoint (the no-mixing runs of main.sh, one per seed). The
test split is the one the runs were scored on (Imagenette's val/), at the run's image size. Sources:
fine-grained and spectral residual (the detectors, on the stored images) and CAM (the run's own
model, its predicted class). Windows of 32, 48 and 64 px at 128 px: 1/16, 9/64 and 1/4 of the area.
"""

from __future__ import annotations

import argparse
import csv
import platform
import statistics
import sys
from pathlib import Path

import torch

from randsaliencymix.harness.data import load_dataset
from randsaliencymix.harness.evaluate import load_trained_model
from randsaliencymix.harness.occlusion import occlusion_errors, source_maps

SOURCES = ("fine_grained", "spectral", "cam")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--data", default="../shared/data/imagenette2-224.tar")
    ap.add_argument("--split", default="val")
    ap.add_argument("--sides", default="32,48,64")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    sides = [int(s) for s in args.sides.split(",")]
    rows = []
    for run in args.runs:
        trained = load_trained_model(run, "cpu", channels=3)
        ds = load_dataset(args.data, args.split, size=trained.image_size or None)
        dev = torch.device("cpu")
        maps = source_maps(trained.model, ds.images, SOURCES, trained.mean, trained.std, device=dev,
                           precision=trained.precision)  # fmt: skip
        scores = occlusion_errors(
            trained.model, ds.images, ds.labels, maps, sides, trained.mean, trained.std, device=dev,
            channels_last=trained.channels_last, precision=trained.precision,
        )  # fmt: skip
        for (source, side, kind), err in scores.items():
            rows.append({"run": str(run), "source": source, "side": side, "kind": kind, "top1_err": err})
        print(f"{run}: clean {scores[('clean', 0, 'none')]:.2f}%", flush=True)
    with open(args.out.with_suffix(".csv"), "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    # Mean over runs (seeds) of each cell: source x side x kind.
    cells = {}
    for r in rows:
        cells.setdefault((r["source"], r["side"], r["kind"]), []).append(r["top1_err"])
    lines = [
        "# Occlusion diagnostic",
        "",
        f"Command: `python {' '.join(sys.argv)}`  ",
        f"Runs: {len(args.runs)}; split `{args.split}` of `{args.data}`; torch {torch.__version__}, "
        f"python {platform.python_version()}",
        "",
        f"Clean top-1 error: {statistics.mean(cells[('clean', 0, 'none')]):.2f}%",
        "",
        "| source | window | most salient occluded | least salient occluded | random window |",
        "|---|---:|---:|---:|---:|",
    ]
    for source in SOURCES:
        for side in sides:
            values = [statistics.mean(cells[(source, side, k)]) for k in ("most", "least", "random")]
            lines.append(f"| {source} | {side} px | " + " | ".join(f"{v:.2f}" for v in values) + " |")
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
