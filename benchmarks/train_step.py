"""Images/s of one training step of a preset with each mixing operator, and the operator's share.

Usage::

    .venv/bin/python benchmarks/train_step.py --out benchmarks/train_step.md [--model fast_cnn]

For each method the same batches go through: the input pipeline (batched crop + flip + normalise
from the uint8 dataset on the device), the mixing operator, and forward + backward + SGD step. Each
part is timed separately (median over steps after warm-up), side by side in one run. Targets (issue
3): the operator at most 5% of the step; the input pipeline not the bottleneck.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from randsaliencymix import SALIENCY_ON
from randsaliencymix.data import load_dataset
from randsaliencymix.loss import soft_target_cross_entropy
from randsaliencymix.methods import METHOD_NAMES, build_mixer
from randsaliencymix.models import build_model
from randsaliencymix.pipeline import DeviceLoader


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="benchmarks/train_step.md")
    ap.add_argument("--model", default="fast_cnn")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args(argv)
    dev = torch.device(args.device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)

    ds = load_dataset("procedural:4096:16", "train")
    mean, std = ds.channel_stats()
    rows = []
    for method in METHOD_NAMES:
        torch.manual_seed(0)
        model = build_model(args.model, ds.num_classes).to(dev)
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True)
        # RandSaliencyMix with its saliency ideas on: its defaults skip the detector (CutMix's cost).
        options = dict(SALIENCY_ON) if method == "randsaliencymix" else {}
        mixer = build_mixer(method, ds.num_classes, options, mean=mean, std=std)
        gen = torch.Generator(device=dev).manual_seed(0)
        # The training loop's one data path: crop, flip and normalise from the uint8 set on the device.
        loader = DeviceLoader.from_dataset(ds, args.batch_size, gen, mean=mean, std=std, device=dev, drop_last=True)
        batches = iter(loader)
        t_data, t_mix, t_step = [], [], []
        for step in range(args.steps + 2):
            sync()
            t0 = time.perf_counter()
            try:
                x, labels = next(batches)
            except StopIteration:
                batches = iter(loader)
                x, labels = next(batches)
            sync()
            t1 = time.perf_counter()
            x, y = mixer(x, labels, generator=gen)
            sync()
            t2 = time.perf_counter()
            loss = soft_target_cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sync()
            t3 = time.perf_counter()
            if step >= 2:  # warm-up steps are not timed
                t_data.append(t1 - t0)
                t_mix.append(t2 - t1)
                t_step.append(t3 - t2)
        d, m, s = (statistics.median(v) * 1e3 for v in (t_data, t_mix, t_step))
        total = d + m + s
        rows.append((method, args.batch_size / total * 1e3, d, m, s, 100 * m / total, 100 * d / total))
        print(
            f"{method:24s} {rows[-1][1]:8.0f} img/s  data {d:6.1f} ms  mix {m:6.1f} ms  "
            f"model {s:7.1f} ms  mix share {rows[-1][5]:4.1f}%",
            flush=True,
        )

    cmd = "python benchmarks/train_step.py " + " ".join(argv if argv is not None else sys.argv[1:])
    lines = [
        "# Training-step benchmark",
        "",
        f"Command: `{cmd}`  ",
        f"Date: {_dt.datetime.now().isoformat(timespec='seconds')}  ",
        f"Hardware: {_cpu_name()}, {torch.get_num_threads()} torch threads, device {dev}  ",
        f"Versions: python {platform.python_version()}, torch {torch.__version__}  ",
        f"Model `{args.model}`, batch {args.batch_size}, 3x32x32 procedural images, median of "
        f"{args.steps} steps after 2 warm-up steps.",
        "",
        "| method | images/s | input pipeline ms | mixing ms | fwd+bwd+step ms | mixing share | pipeline share |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for method, ips, d, m, s, share, dshare in rows:
        lines.append(f"| {method} | {ips:.0f} | {d:.1f} | {m:.1f} | {s:.1f} | {share:.1f}% | {dshare:.1f}% |")
    lines += ["", "## Targets", ""]
    for method, _, _, _, _, share, _ in rows:
        if method != "none":
            lines.append(
                f"- {method}: mixing {share:.1f}% of the step (target <= 5%): **{'MET' if share <= 5 else 'NOT MET'}**"
            )
    worst = max(r[6] for r in rows)
    lines.append(
        f"- input pipeline at most {worst:.1f}% of a step (not the bottleneck when well under "
        f"50%): **{'MET' if worst < 50 else 'NOT MET'}**"
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
