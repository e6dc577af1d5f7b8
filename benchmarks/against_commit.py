"""This working tree against an earlier commit, side by side in one run: operator times and the
time of a training epoch, each version in its own subprocess, interleaved over several rounds.

Usage::

    .venv/bin/python benchmarks/against_commit.py --commit b3fb696 --out benchmarks/against_commit.md

The earlier commit is checked out with ``git worktree`` into a temporary folder and imported from
its ``src/`` (same venv, same torch). Every round runs the old version, then the new one (the
order alternates between rounds), so a slow period of a shared machine hits both alike. The
table gives the median over rounds of each version's median time and the ratio new / old; a
ratio within the rounds' spread of 1 is noise.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, List

ROOT = Path(__file__).resolve().parent.parent

# Runs inside each version's subprocess: prints {row: seconds} as JSON.
_PROBE = r"""
import json, statistics, sys, tempfile, time
import torch
torch.set_num_threads(int(sys.argv[1]))
import randsaliencymix as rsm
from randsaliencymix.saliency import fine_grained, spectral_residual

def timed(fn, repeats=5):
    fn()
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter(); fn(); out.append(time.perf_counter() - t0)
    return statistics.median(out)

rows = {}
g = torch.Generator().manual_seed(0)
norm = dict(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
for b, side in ((128, 32), (32, 224)):
    x8 = (torch.rand(b, 3, side, side, generator=g) * 255).to(torch.uint8)
    x = (x8.float() / 255 - 0.45) / 0.225
    y = torch.randint(0, 10, (b,), generator=g)
    ops = {
        "NoMix": rsm.NoMix(num_classes=10),
        "MixUp": rsm.MixUp(num_classes=10),
        "CutMix(mode=sample)": rsm.CutMix(num_classes=10, mode="sample"),
        "SaliencyMix(per_sample)": rsm.SaliencyMix(num_classes=10, variant="per_sample", **norm),
        "RandSaliencyMix()": rsm.RandSaliencyMix(num_classes=10, **norm),
        "RandSaliencyMix(**SALIENCY_ON)": rsm.RandSaliencyMix(num_classes=10, **rsm.SALIENCY_ON, **norm),
    }
    for name, op in ops.items():
        gen = torch.Generator().manual_seed(1)
        rows[f"{name} B={b} {side}x{side}"] = timed(lambda: op(x, y, generator=gen))
    rows[f"fine_grained B={b} {side}x{side}"] = timed(lambda: fine_grained(x8))
    rows[f"spectral_residual B={b} {side}x{side}"] = timed(lambda: spectral_residual(x8))

# The command line by its module: python -m rsmix, or python -m randsaliencymix before the harness moved out.
import subprocess
import os
cli = "rsmix" if os.path.isfile("rsmix/cli.py") else "randsaliencymix"
for method in ("none", "randsaliencymix"):
    out = tempfile.mkdtemp() + "/run"
    subprocess.run([sys.executable, "-m", cli, "train", "--data", "procedural:2304:16", "--epochs", "1",
                    "--batch-size", "256", "--val-fraction", "0", "--method", method, "--threads", sys.argv[1],
                    "--precision", "fp32",
                    "--no-progress", "--out", out], check=True, stdout=subprocess.DEVNULL)
    rows[f"train epoch, fast_cnn, 2304 images, {method}"] = json.load(open(out + "/metrics.json"))["train_seconds"]
print("RESULT " + json.dumps(rows))
"""


def _run(src: Path, threads: int) -> Dict[str, float]:
    env = dict(os.environ, PYTHONPATH=str(src), OMP_NUM_THREADS=str(threads))
    env["RSMIX_CACHE"] = tempfile.mkdtemp(prefix="rsmix-bench-cache-")
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, str(threads)], env=env, capture_output=True, text=True, check=True, cwd=src
    )
    line = next(line for line in proc.stdout.splitlines() if line.startswith("RESULT "))
    return json.loads(line[len("RESULT ") :])


def main(argv: List[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--commit", required=True, help="the earlier commit to compare against")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="benchmarks/against_commit.md")
    args = ap.parse_args(argv)

    old_tree = Path(tempfile.mkdtemp(prefix="rsmix-old-")) / "tree"
    subprocess.run(["git", "worktree", "add", "--detach", str(old_tree), args.commit], cwd=ROOT, check=True)
    try:
        runs: Dict[str, List[Dict[str, float]]] = {"old": [], "new": []}
        for r in range(args.rounds):
            order = ["old", "new"] if r % 2 == 0 else ["new", "old"]
            for version in order:
                src = (old_tree if version == "old" else ROOT) / "src"
                runs[version].append(_run(src, args.threads))
                print(f"round {r + 1}/{args.rounds}: {version} done", flush=True)
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(old_tree)], cwd=ROOT, check=False)

    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout
    lines = [
        f"# This tree against commit {args.commit}",
        "",
        f"Command: `.venv/bin/python benchmarks/against_commit.py --commit {args.commit} --rounds {args.rounds} "
        f"--threads {args.threads} --out {args.out}`  ",
        f"Date: {_dt.datetime.now(_dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}; new = working tree at "
        f"{head.strip()} (plus uncommitted changes, if any)  ",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, {args.threads} torch thread(s) per process; "
        f"python {platform.python_version()}",
        "",
        "Median over rounds of each version's time (operators: median of 5 calls after a warm-up; training: "
        "the epoch's `train_seconds`), random uint8/normalised float images, 10 classes. Ratio = new / old; "
        "spread = the ratio's range over rounds.",
        "",
        "| what | old (ms) | new (ms) | new / old | spread over rounds |",
        "|---|---:|---:|---:|---:|",
    ]
    for key in runs["new"][0]:
        old = [r[key] for r in runs["old"] if key in r]
        new = [r[key] for r in runs["new"]]
        if not old:
            continue
        ratios = [n / o for n, o in zip(new, old)]
        lines.append(
            f"| {key} | {statistics.median(old) * 1e3:.1f} | {statistics.median(new) * 1e3:.1f} | "
            f"{statistics.median(new) / statistics.median(old):.2f} | {min(ratios):.2f}-{max(ratios):.2f} |"
        )
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
