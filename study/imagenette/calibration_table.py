"""The calibration table of study/imagenette/CALIBRATION.md, from the runs' log.jsonl files.

    .venv/bin/python study/imagenette/calibration_table.py           # print the table
    .venv/bin/python study/imagenette/calibration_table.py --write   # and put it in CALIBRATION.md

Rows: every validated epoch (1-based) of the runs in study/imagenette/calibration/ (``none`` and
``cutmix`` over 20 epochs, ``none_40ep`` over 40, ``none_40ep_bf16`` the same in bf16, issue 16): the validation top-1 error of each run and the
seconds of that training epoch.
Then the mean seconds per epoch, against one fast_cnn CIFAR-10 epoch (45,000 images) measured by
calibrate.sh on the same machine (``cifar10_fast_cnn_1ep``) and the CIFAR study's epochs
(study/full, RESULTS.md). A run still going shows the epochs it has logged.
"""

from __future__ import annotations

import glob
import json
import statistics
import sys
from pathlib import Path
from typing import Dict, List

HERE = Path(__file__).resolve().parent
RUNS = HERE / "calibration"
METHODS = ("none", "cutmix", "none_40ep", "none_40ep_bf16")
BEGIN, END = "<!-- BEGIN table -->", "<!-- END table -->"


def read_log(path: Path) -> List[Dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def table() -> str:
    logs = {m: read_log(RUNS / m / "log.jsonl") for m in METHODS}
    configs = {
        m: json.loads((RUNS / m / "config.json").read_text()) for m in METHODS if (RUNS / m / "config.json").is_file()
    }
    val = {m: {r["epoch"] + 1: r for r in log if "val_top1_err" in r} for m, log in logs.items()}
    epochs = sorted(set().union(*(v.keys() for v in val.values())))
    head = " | ".join(f"{m}: val top-1 err (%)" for m in METHODS)
    secs = " | ".join(f"{m}: s/epoch" for m in METHODS)
    lines = [f"| epoch | {head} | {secs} |", "|---:|" + "---:|" * (2 * len(METHODS))]
    for e in epochs:
        errs = [f"{val[m][e]['val_top1_err']:.2f}" if e in val[m] else "" for m in METHODS]
        times = [f"{val[m][e]['seconds']:.0f}" if e in val[m] else "" for m in METHODS]
        lines.append(f"| {e} | " + " | ".join(errs + times) + " |")
    lines.append("")
    for m in METHODS:
        done = len(logs[m])
        if not done:
            lines.append(f"- `{m}`: not started.")
            continue
        mean = statistics.mean(r["seconds"] for r in logs[m])
        state = "finished" if (RUNS / m / "metrics.json").is_file() else "running"
        best = min(val[m].values(), key=lambda r: r["val_top1_err"]) if val[m] else None
        at = f"; lowest validation error {best['val_top1_err']:.2f}% at epoch {best['epoch'] + 1}" if best else ""
        minutes = sum(r["seconds"] for r in logs[m]) / 60
        lines.append(
            f"- `{m}`: {done}/{configs[m]['epochs']} epochs ({state}), {configs[m]['image_size']} px, "
            f"mean {mean:.0f} s per training epoch ({minutes:.0f} min of training){at}."
        )
    cifar = read_log(RUNS / "cifar10_fast_cnn_1ep" / "log.jsonl")
    # The CIFAR comparisons are of fp32 epochs (the bf16 run is issue 16's, compared in its own section).
    imagenette = [
        r["seconds"] for m in METHODS if configs.get(m, {}).get("precision", "fp32") == "fp32" for r in logs[m]
    ]
    if cifar:
        ref = cifar[0]["seconds"]
        ratio = (
            f"; a 128-px Imagenette epoch takes {statistics.mean(imagenette) / ref:.2f}x that (fp32 runs)"
            if imagenette
            else ""
        )
        lines.append(
            f"- One fast_cnn CIFAR-10 epoch (45,000 images, the CIFAR study's preset, one thread), measured "
            f"by calibrate.sh on the same machine just before: {ref:.0f} s{ratio}."
        )
    study = [json.loads(line)["seconds"] for f in glob.glob(str(HERE.parent / "full" / "runs" / "*" / "log.jsonl"))
             for line in Path(f).read_text().splitlines() if line.strip()]  # fmt: skip
    if study:
        ratio = f" ({statistics.mean(imagenette) / statistics.mean(study):.2f}x)" if imagenette else ""
        lines.append(
            f"- The CIFAR study's fast_cnn epochs (study/full, {len(study)} epochs, two one-thread runs at a "
            f"time on a less loaded machine): mean {statistics.mean(study):.0f} s{ratio}."
        )
    return "\n".join(lines)


def main(argv: List[str]) -> int:
    text = table()
    print(text)
    if "--write" in argv:
        doc = HERE / "CALIBRATION.md"
        body = doc.read_text()
        start, stop = body.index(BEGIN) + len(BEGIN), body.index(END)
        doc.write_text(body[:start] + "\n" + text + "\n" + body[stop:])
        print(f"wrote {doc}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
