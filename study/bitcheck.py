"""Is the study's numerics unchanged? Two-epoch runs of every method the study runs, with the code of
a base commit and with the working tree, must give the same log (but its timings) and the same weights
bit for bit (CPU, bf16, channels_last, the saliency sources the study uses; part 2's CAM source and
self-CAM labels too).

    .venv/bin/python study/bitcheck.py BASE_COMMIT [--methods none,cutmix,...]

The base commit's sources are checked out into a temporary git worktree and put first on the
PYTHONPATH of its runs; the working tree's runs use the installed package. Exit status 1 on any
difference. Runs on the procedural dataset at 32 px (about a minute on one core).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Tuple

import torch

ROOT = Path(__file__).resolve().parents[1]
# name -> (method, saliency source, further flags): part 1's methods with its sources (cached detector
# maps for the saliency methods but the official one), and part 2's screen: RandSaliencyMix on the
# model's CAM at tau 8, and self-CAM labels on CutMix and on RandSaliencyMix.
METHODS: Dict[str, Tuple[str, str, Tuple[str, ...]]] = {
    "none": ("none", "operator", ()), "mixup": ("mixup", "operator", ()), "cutmix": ("cutmix", "operator", ()),
    "saliencymix": ("saliencymix", "operator", ()),
    "saliencymix_per_sample": ("saliencymix_per_sample", "fine_grained_cached", ()),
    "randsaliencymix": ("randsaliencymix", "fine_grained_cached", ()),
    "guidedmixup": ("guidedmixup", "spectral_cached", ()),
    "rsm_cam8": ("randsaliencymix", "cam", ("--mix-opt", "p=1", "--mix-opt", "tau_src=8", "--mix-opt", "tau_dst=8")),
    "cutmix_selfcam": ("cutmix", "operator", ("--self-cam", "0.5")),
    "rsm_cam8_selfcam": ("randsaliencymix", "cam", ("--mix-opt", "tau_src=8", "--mix-opt", "tau_dst=8",
                                                    "--self-cam", "0.5")),
}  # fmt: skip


def run(src: Path, name: str, out: Path) -> Tuple[List[Dict], Dict[str, torch.Tensor]]:
    method, source, flags = METHODS[name]
    env = dict(os.environ, PYTHONPATH=str(src), OMP_NUM_THREADS="1")
    # The command line's module: the top-level package rsmix, or before it the harness inside the library.
    cli = "rsmix" if (src / "rsmix" / "cli.py").is_file() else "randsaliencymix.harness.cli"
    cmd = [sys.executable, "-m", cli, "train", "--data", "procedural:400:100",
           "--batch-size", "32", "--model", "fast_cnn", "--threads", "1", "--no-progress", "--method", method,
           "--epochs", "2", "--precision", "bf16", "--channels-last", "--saliency", source, *flags, "--out", str(out)]  # fmt: skip
    subprocess.run(cmd, env=env, check=True, capture_output=True)
    log = [{k: v for k, v in json.loads(line).items() if "seconds" not in k} for line in open(out / "log.jsonl")]
    return log, torch.load(out / "checkpoint.pt", weights_only=False)["model"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("base", help="the commit whose numerics the working tree must keep")
    ap.add_argument("--methods", default=",".join(METHODS))
    args = ap.parse_args(argv)
    methods = [m for m in args.methods.split(",") if m]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise SystemExit(f"bitcheck.py: unknown methods {unknown}; accepted: {', '.join(METHODS)}")
    different = 0
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "base"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "-q", "--detach", str(base), args.base], check=True)
        try:
            for method in methods:
                a = run(base / "src", method, Path(tmp) / "a" / method)
                b = run(ROOT / "src", method, Path(tmp) / "b" / method)
                same = a[0] == b[0] and a[1].keys() == b[1].keys() and all(torch.equal(a[1][k], b[1][k]) for k in a[1])
                different += not same
                print(f"{method}: {'bit-identical' if same else 'DIFFERENT'}", flush=True)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base)], check=False)
    print(f"{len(methods) - different} of {len(methods)} methods bit-identical to {args.base}")
    return 1 if different else 0


if __name__ == "__main__":
    raise SystemExit(main())
