"""The training step of each of study 2's screen candidates, side by side on one machine.

    .venv/bin/python benchmarks/screen_step.py --out benchmarks/screen_step.md

The candidates' specs (method options, saliency source, self-CAM kappa) are read from the file the
screen's lanes take them from (study/study2/imagenette/regime_a.sh), so the rows are the runs'
settings, plus part 1's CutMix reference. Each row is one (model, optimiser, operator, loader) of benchmarks/train_step.py, stepped
in turn with the others (step k of every row, then step k + 1: a slow spell of a shared machine hits
every row alike); the table gives each row's median step and its ratio to CutMix's and to
rsm_uniform's. Default: ``fast_resnet`` at 128 px with random-resized-crop, bf16 where the CPU has it,
batch 256, one thread, channels_last: the screen's regime.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import importlib.util
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import List, Optional, Tuple

import torch

from rsmix.compare import parse_method
from rsmix.precision import cpu_bf16_flags, cpu_name, resolve_precision

ROOT = Path(__file__).resolve().parents[1]
REGIME_A = ROOT / "study" / "study2" / "imagenette" / "regime_a.sh"


def _train_step():
    spec = importlib.util.spec_from_file_location("train_step", Path(__file__).with_name("train_step.py"))
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def screen_candidates(regime_a: Path = REGIME_A) -> List[Tuple[str, str, float, str]]:
    """(name, saliency source, self-CAM kappa, method spec) of every screen candidate, as regime_a.sh
    expands them for the lanes (SCREEN_NAMES through regime_a_method, evaluated by bash)."""
    script = (
        f'source "{regime_a}"\n'
        'for n in "${SCREEN_NAMES[@]}"; do regime_a_method "$n"; '
        'printf "%s %s %s %s\\n" "$n" "$M_SOURCE" "${M_SELFCAM[1]:-0}" "$M_METHODS"; done\n'
    )
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True).stdout
    found = []
    for line in out.splitlines():
        name, source, kappa, methods = line.split()
        found.append((name, source, float(kappa), methods.removeprefix(f"{name}=").removesuffix(";")))
    return found


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="benchmarks/screen_step.md")
    ap.add_argument("--setup", default="fast_resnet@128:resized_crop", help="MODEL@SIZE[:AUGMENT]")
    ap.add_argument("--data", default="procedural:2048:16")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--precision", default="auto", help="auto (bf16 where native), bf16 or fp32")
    ap.add_argument("--only", default="", help="comma-separated candidate names (default: all)")
    args = ap.parse_args(argv)
    candidates = [("cutmix (part 1's reference)", "operator", 0.0, "cutmix:alpha=1,p=1"), *screen_candidates()]
    only = {n for n in args.only.split(",") if n}
    unknown = only - {c[0] for c in candidates}
    if unknown:
        raise SystemExit(f"screen_step.py: error: unknown candidates {sorted(unknown)}")
    ts = _train_step()
    torch.set_num_threads(args.threads)
    precision = resolve_precision(args.precision, "cpu")
    ((model_name, size, augment),) = ts._parse_setups(args.setup)
    ds = ts._load(args.data, size)
    mean, std = ds.channel_stats()
    setup = f"{model_name}@{ds.image_size[0]} {augment}"
    rows = []
    for name, source, kappa, spec in candidates:
        if only and name not in only and not name.startswith("cutmix ("):
            continue
        _, method, options = parse_method(spec)
        row_args = argparse.Namespace(
            batch_size=args.batch_size, channels_last=True, self_cam=kappa, precision_list=[precision]
        )
        row = ts._Row(
            row_args, torch.device("cpu"), torch.channels_last, ds, model_name, setup, augment, method, options,
            f"{source}+self-cam" if kappa > 0 else source, {}, mean, std, precision,
        )  # fmt: skip
        rows.append((name, source, kappa, row))
    for step in range(args.steps + 2):  # interleaved; the first two steps of each row are warm-up
        for *_, row in rows:
            row.step(timed=step >= 2)
    results = [(name, source, kappa, row.result()) for name, source, kappa, row in rows]
    step_ms = {name: r[3] + r[4] + r[5] for name, _, _, r in results}
    cutmix = step_ms[results[0][0]]
    uniform = step_ms.get("rsm_uniform")
    cmd = "python benchmarks/screen_step.py " + " ".join(argv if argv is not None else sys.argv[1:])
    flags = ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in cpu_bf16_flags().items())
    lines = [
        "# The screen's candidates: one training step each, side by side",
        "",
        f"Command: `{cmd}`  ",
        f"Date: {_dt.datetime.now().isoformat(timespec='seconds')}  ",
        f"Hardware: {cpu_name()} ({flags}), {torch.get_num_threads()} torch threads, "
        f"load average {os.getloadavg()[0]:.1f} at the end  ",
        f"Versions: python {platform.python_version()}, torch {torch.__version__}  ",
        f"Setup {setup}, {precision}, data `{args.data}`, batch {args.batch_size}, channels_last, median of "
        f"{args.steps} steps after 2 warm-up steps, the rows stepped in turn. Specs from `{REGIME_A.relative_to(ROOT)}`.",
        "",
        "| candidate | saliency | self-CAM | images/s | step ms | mixing ms (CAM forward included) | vs CutMix "
        "| vs rsm_uniform |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, source, kappa, r in results:
        ms = step_ms[name]
        vs_uniform = f"{ms / uniform:.2f}x" if uniform else "—"
        lines.append(
            f"| {name} | {source} | {kappa:g} | {r[2]:.0f} | {ms:.0f} | {r[4]:.0f} | {ms / cutmix:.2f}x | {vs_uniform} |"
        )
        print(lines[-1], flush=True)
    lines += [
        "",
        "A step here is the input pipeline, the mixing (with the CAM source: its no-grad forward of the clean "
        "batch) and the forward, backward and update; evaluation is not included. Ratios are of medians "
        "measured in one run; on a loaded machine they move by several percent.",
    ]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
