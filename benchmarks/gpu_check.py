"""The GPU check, ready to run on a CUDA machine in one call (issue 28): the CUDA tests, the operator
and detector benchmark on CUDA under ``torch.cuda.set_sync_debug_mode("error")`` at 256×3×32² and
64×3×224², and the training-step benchmark of ``fast_resnet``@128 and ``resnet18_imagenet``@128 in
bf16 (with the self-CAM and CAM rows), each table written to the folder given.

    .venv/bin/python benchmarks/gpu_check.py OUT_DIR            # on a CUDA machine: about 5-8 minutes
    .venv/bin/python benchmarks/gpu_check.py OUT_DIR --dry      # anywhere: the same steps, tiny, on CPU

Each step runs as its own process with a time limit (the budget is 8 minutes in all); a step that
fails or runs out of time is written to ``OUT_DIR/summary.md`` as such and the others still run. The
exit status is 1 when any step failed. ``--dry`` checks the script itself on a CPU: the test
selection is collected (not run), and the benchmarks run their smallest settings on CPU without the
sync-debug mode (which needs CUDA). Copy the tables into BENCHMARKS.md's "On a GPU" section.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import subprocess
import sys
import time
from pathlib import Path
from typing import List, Tuple

ROOT = Path(__file__).resolve().parents[1]
# the CUDA tests: marked `cuda` by tests/conftest.py (every test skipped without a CUDA device)
CUDA_TESTS = "cuda"


def steps(out: Path, dry: bool) -> List[Tuple[str, List[str], int]]:
    """(name, command, time limit in seconds) of each step."""
    py = sys.executable
    if dry:
        ops = ["--device", "cpu", "--quick", "--workloads", "4x32", "--repeats", "1"]
        train = ["--device", "cpu", "--precisions", "fp32", "--batch-size", "8", "--steps", "1",
                 "--data", "procedural:32:8", "--setups", "fast_cnn@32,fast_resnet@64:resized_crop"]  # fmt: skip
        tests = ["--collect-only", "-q"]
    else:
        ops = ["--device", "cuda", "--sync-debug", "--workloads", "256x32,64x224"]
        train = ["--device", "cuda", "--precisions", "bf16", "--batch-size", "256", "--steps", "6",
                 "--setups", "fast_resnet@128:resized_crop,resnet18_imagenet@128:resized_crop"]  # fmt: skip
        tests = ["-q", "-rs"]
    return [
        ("cuda_tests", [py, "-m", "pytest", "-p", "no:cacheprovider", "-m", CUDA_TESTS, *tests, "tests"], 150),
        ("ops", [py, "benchmarks/ops.py", *ops, "--out", str(out / "ops_cuda.md")], 150),
        (
            "train_step",
            [
                py,
                "benchmarks/train_step.py",
                *train,
                "--channels-last",
                "--methods",
                "none,cutmix,randsaliencymix",
                "--sources",
                "fine_grained_cached,cam",
                "--self-cam",
                "0.5",
                "--out",
                str(out / "train_step_cuda.md"),
            ],
            180,
        ),
    ]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path, help="folder for the tables (created)")
    ap.add_argument("--dry", action="store_true", help="check this script on a CPU: tiny settings, tests collected")
    args = ap.parse_args(argv)
    if not args.dry:
        import torch

        if not torch.cuda.is_available():
            ap.error("no CUDA device here: run with --dry to check the script on a CPU")
    args.out.mkdir(parents=True, exist_ok=True)
    lines = [
        "# GPU check" + (" (dry run on CPU: the script's wiring, not a GPU's figures)" if args.dry else ""),
        "",
        f"Command: `{' '.join([Path(sys.executable).name, 'benchmarks/gpu_check.py', *(argv or sys.argv[1:])])}`  ",
        f"Date: {_dt.datetime.now(_dt.timezone.utc).strftime('%Y-%m-%d %H:%M:%S UTC')}",
        "",
        "| step | status | seconds | output |",
        "|---|---|---:|---|",
    ]
    failed = 0
    for name, cmd, limit in steps(args.out, args.dry):
        log = args.out / f"{name}.log"
        t0 = time.perf_counter()
        try:
            with open(log, "w") as fh:
                code = subprocess.run(cmd, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT, timeout=limit).returncode
            status = "ok" if code == 0 else f"FAILED (exit {code})"
        except subprocess.TimeoutExpired:
            status = f"TIMED OUT ({limit} s)"
        failed += status != "ok"
        seconds = time.perf_counter() - t0
        lines.append(f"| {name} | {status} | {seconds:.0f} | `{log.name}` |")
        print(f"{name}: {status} ({seconds:.0f} s)", flush=True)
    (args.out / "summary.md").write_text("\n".join(lines) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
