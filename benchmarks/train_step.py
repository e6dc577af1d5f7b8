"""Images/s of one training step of a preset with each mixing operator, and the operator's share.

Usage::

    .venv/bin/python benchmarks/train_step.py --out benchmarks/train_step.md [--model fast_cnn]
    # several models and image sizes side by side in one run (issue 10: the Imagenette preset at
    # 128 px against the CIFAR preset at 32 px), one torch thread:
    .venv/bin/python benchmarks/train_step.py --threads 1 --channels-last --methods none,cutmix \\
        --setups fast_cnn@32:pad_crop,fast_resnet@128:resized_crop --out benchmarks/train_step_128.md

Saliency sources side by side (issue 9): ``--sources operator,fine_grained_cached,cam`` times every
saliency method once per source (the others once): ``operator`` = the operator's own detector on each
batch; ``<detector>_cached`` = the training set's maps computed once (reported apart, not in the step)
and cropped with the images by the loader; ``cam`` = class activation maps from one no-grad forward of
the clean batch (its time is in the mixing column). Target: RandSaliencyMix with cached maps or CAM
at most 1.3x a CutMix step::

    .venv/bin/python benchmarks/train_step.py --threads 1 --methods none,cutmix,randsaliencymix \
        --sources operator,fine_grained_cached,cam --setups fast_cnn@32:pad_crop,fast_resnet@128:resized_crop \
        --out benchmarks/train_step_sources.md

A setup is ``MODEL@SIZE[:AUGMENT]``; ``--model``, ``--image-size`` and ``--augment`` give a single one.
Every setup reads ``--data`` (default: the procedural dataset, drawn at each setup's size; an image
folder or archive such as Imagenette is decoded at that size; images/s do not depend on content).

For each setup and method the same batches go through: the input pipeline (``DeviceLoader``:
batched crop + flip + normalise from the uint8 dataset on the device), the mixing operator, and
forward + backward + SGD step. Each part is timed separately (median over steps after warm-up),
side by side in one run. Targets (issue 3): the operator at most 5% of the step; the input
pipeline not the bottleneck.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import List, Tuple

import torch

from randsaliencymix import SALIENCY_ON, SelfCAMLabels, dataset_maps
from randsaliencymix.cam import cam_and_logits
from randsaliencymix.loss import soft_target_cross_entropy
from rsmix.data import load_dataset
from rsmix.methods import METHOD_NAMES, build_mixer
from rsmix.models import MODEL_NAMES, build_model
from rsmix.pipeline import AUGMENTS, DeviceLoader
from rsmix.precision import PRECISIONS, autocast, cpu_bf16_flags, cpu_name

# Training-set sizes for the time per epoch: CIFAR-10 and Imagenette less a 10% validation split.
EPOCH_IMAGES = {32: 45_000, 128: 8_522}


def _parse_setups(text: str) -> List[Tuple[str, int, str]]:
    setups = []
    for item in (s.strip() for s in text.split(",") if s.strip()):
        model, _, rest = item.partition("@")
        size_text, _, augment = rest.partition(":")
        augment = augment or "pad_crop"
        if model not in MODEL_NAMES or not size_text.isdigit() or augment not in AUGMENTS:
            raise SystemExit(
                f"train_step.py: error: expected MODEL@SIZE[:AUGMENT] with MODEL in {', '.join(MODEL_NAMES)} "
                f"and AUGMENT in {', '.join(AUGMENTS)}, but got {item!r} instead"
            )
        setups.append((model, int(size_text), augment))
    return setups


def _bf16_words() -> str:
    flags = cpu_bf16_flags()
    return ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in flags.items())


def _precision_table(by_precision: list, precisions: List[str]) -> List[str]:
    """Each (setup, method) in every precision side by side: images/s, the speed-up over the first
    precision, and the input pipeline's and the mixing's share of each step."""
    first, others = precisions[0], precisions[1:]
    table: dict = {}
    for setup, method, precision, r in by_precision:
        table.setdefault((setup, method), {})[precision] = r
    head = f"| setup | method | {first} images/s |"
    rule = "|---|---|---:|"
    for p in others:
        head += f" {p} images/s | {p} / {first} |"
        rule += "---:|---:|"
    head += " pipeline share | mixing share |"
    rule += "---:|---:|"
    lines = ["", f"## Precisions side by side ({', '.join(precisions)})", "", head, rule]
    for (setup, method), cells in table.items():
        line = f"| {setup} | {method} | {cells[first][2]:.0f} |"
        for p in others:
            line += f" {cells[p][2]:.0f} | {cells[p][2] / cells[first][2]:.2f}x |"
        shares = " → ".join(f"{cells[p][7]:.1f}%" for p in precisions)
        mixing = " → ".join(f"{cells[p][6]:.1f}%" for p in precisions)
        lines.append(f"{line} {shares} | {mixing} |")
    lines.append("")
    lines.append(
        f"Shares are of the whole step ({' → '.join(precisions)}): when the model gets faster, the input "
        "pipeline's and the operator's shares grow."
    )
    return lines


def _load(source: str, size: int):
    if source.startswith("procedural"):
        return load_dataset(source, "train", size=size)
    if source in ("cifar10", "cifar100") or "cifar" in os.path.basename(source):
        return load_dataset(source, "train", limit_per_class=500)  # CIFAR is 32x32 as stored
    return load_dataset(source, "train", size=size, limit_per_class=500)


class _Row:
    """One (setup, method, saliency source): its model, optimiser, operator and loader, stepped one
    training step at a time so that every row's steps interleave with the others'."""

    def __init__(
        self, args, dev, fmt, ds, model_name, setup, augment, method, options, source, maps, mean, std, precision
    ):
        with_self_cam = source.endswith("+self-cam")
        source = source.removesuffix("+self-cam")
        torch.manual_seed(0)
        self.model = build_model(model_name, ds.num_classes).to(dev).to(memory_format=fmt)  # type: ignore[call-overload]
        self.opt = torch.optim.SGD(self.model.parameters(), lr=0.05, momentum=0.9, nesterov=True)
        self.mixer = build_mixer(method, ds.num_classes, options, mean=mean, std=std)
        self.gen = torch.Generator(device=dev).manual_seed(0)
        # The training loop's one data path: augment and normalise from the uint8 set on the device.
        self.loader = DeviceLoader.from_dataset(
            ds, args.batch_size, self.gen, augment=augment, mean=mean, std=std, device=dev, drop_last=True,
            channels_last=args.channels_last, maps=maps.get(source),
        )  # fmt: skip
        self.batches = iter(self.loader)
        self.source, self.setup, self.batch_size = source, setup, args.batch_size
        self.label = method if source == "operator" or not self.mixer.uses_saliency else f"{method} ({source})"
        self.method, self.precision, self.dev = self.label, precision, dev
        if len(args.precision_list) > 1:
            self.label = f"{self.label} [{precision}]"
        # a self-CAM row: the same maps and draws, the labels read from the training forward
        self.self_cam = SelfCAMLabels(self.model, kappa=args.self_cam) if with_self_cam else None
        if self.self_cam is not None:
            self.method = f"{self.method} + self-CAM"
            self.label = self.method if len(args.precision_list) == 1 else f"{self.method} [{precision}]"
        self.sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
        self.times: List[Tuple[float, float, float]] = []
        self.label_times: List[float] = []  # self-CAM rows: reading the targets after the forward

    def step(self, timed: bool) -> None:
        self.sync()
        t0 = time.perf_counter()
        try:
            batch = next(self.batches)
        except StopIteration:
            self.batches = iter(self.loader)
            batch = next(self.batches)
        x, labels = batch[0], batch[1]
        self.sync()
        t1 = time.perf_counter()
        saliency = batch[2] if len(batch) > 2 else None
        if self.source == "cam" and self.mixer.uses_saliency:
            with autocast(self.dev, self.precision):
                saliency, _ = cam_and_logits(self.model, x, labels)
        if self.self_cam is None:
            x, y = self.mixer(x, labels, generator=self.gen, saliency=saliency)
        else:
            mixed = self.self_cam.step(self.mixer, x, labels, generator=self.gen, saliency=saliency)
            x = mixed.images
        self.sync()
        t2 = time.perf_counter()
        with autocast(self.dev, self.precision):  # the model only, as in training
            logits = self.model(x)
        if self.self_cam is not None:
            self.sync()
            tl = time.perf_counter()
            y = mixed.targets
            self.sync()
            if timed:
                self.label_times.append(time.perf_counter() - tl)
        loss = soft_target_cross_entropy(logits.float(), y)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.sync()
        t3 = time.perf_counter()
        if timed:
            self.times.append((t1 - t0, t2 - t1, t3 - t2))

    def result(self) -> tuple:
        """(setup, label, images/s, data ms, mixing ms, model ms, mixing share %, pipeline share %)."""
        d, m, s = (statistics.median(t[k] for t in self.times) * 1e3 for k in range(3))
        total = d + m + s
        return (self.setup, self.label, self.batch_size / total * 1e3, d, m, s, 100 * m / total, 100 * d / total)


def _self_cam_targets(rows: List[_Row], step_ms: dict) -> List[str]:
    """Each self-CAM row's step against the same method's plain step (target: at most 3% more),
    with the time of reading the targets after the forward."""
    lines = []
    for row in rows:
        if row.self_cam is None:
            continue
        setup, label = row.result()[:2]
        plain = label.replace(" + self-CAM", "")
        if (setup, plain) not in step_ms:
            continue
        ratio = step_ms[(setup, label)] / step_ms[(setup, plain)]
        labels_ms = statistics.median(row.label_times) * 1e3
        lines.append(
            f"- {setup}, {label}: step {ratio:.3f}x {plain}'s, the labels {labels_ms:.1f} ms "
            f"(target <= 1.03x): **{'MET' if ratio <= 1.03 else 'NOT MET'}**"
        )
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="benchmarks/train_step.md")
    ap.add_argument("--setups", default=None, help="MODEL@SIZE[:AUGMENT], comma-separated")
    ap.add_argument("--model", default="fast_cnn", help="one setup's model (without --setups)")
    ap.add_argument("--image-size", type=int, default=32, help="one setup's image size (without --setups)")
    ap.add_argument("--augment", default="pad_crop", choices=AUGMENTS, help="one setup's augmentation")
    ap.add_argument("--data", default="procedural:2048:16", help="dataset source (default: procedural)")
    ap.add_argument("--methods", default=",".join(METHOD_NAMES), help="comma-separated methods")
    ap.add_argument(
        "--sources", default="operator", help="saliency sources: operator, fine_grained_cached, spectral_cached, cam"
    )
    ap.add_argument(
        "--self-cam",
        type=float,
        default=0.0,
        help="kappa > 0: each mixing method also runs with self-CAM labels (its own row), against its plain step",
    )
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--channels-last", action="store_true", help="channels_last model and batches")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument(
        "--precisions", default="fp32", help=f"comma-separated, each row once per precision ({', '.join(PRECISIONS)})"
    )
    args = ap.parse_args(argv)
    args.precision_list = [p.strip() for p in args.precisions.split(",") if p.strip()]
    if not args.precision_list or any(p not in PRECISIONS for p in args.precision_list):
        raise SystemExit(
            f"train_step.py: error: expected --precisions from {', '.join(PRECISIONS)}, "
            f"but got {args.precisions!r} instead"
        )
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    setups = _parse_setups(args.setups or f"{args.model}@{args.image_size}:{args.augment}")
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHOD_NAMES]
    if unknown:
        raise SystemExit(f"train_step.py: error: unknown methods {unknown}; accepted: {', '.join(METHOD_NAMES)}")
    dev = torch.device(args.device)
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format

    sources = [x.strip() for x in args.sources.split(",") if x.strip()]
    bad = [x for x in sources if x not in ("operator", "fine_grained_cached", "spectral_cached", "cam")]
    if bad:
        raise SystemExit(f"train_step.py: error: unknown sources {bad}")

    rows = []
    setup_rows_all: List[_Row] = []
    by_precision = []  # (setup, method, precision, result row)
    one_off = []  # (setup, what, seconds): the cached maps' one-time cost
    for model_name, size, augment in setups:
        ds = _load(args.data, size)
        mean, std = ds.channel_stats()
        setup = f"{model_name}@{ds.image_size[0]} {augment}"
        maps = {}
        for source in sources:
            if source.endswith("_cached"):
                t0 = time.perf_counter()
                maps[source] = dataset_maps(ds.images, source[: -len("_cached")], device=dev, cache=False)
                one_off.append((setup, source, time.perf_counter() - t0, ds.images.shape[0]))
        setup_rows = []
        for method in methods:
            # RandSaliencyMix with its saliency ideas on: its defaults skip the detector (CutMix's cost).
            options = dict(SALIENCY_ON) if method == "randsaliencymix" else {}
            uses_saliency = build_mixer(method, ds.num_classes, options, mean=mean, std=std).uses_saliency
            method_sources = sources if uses_saliency and method != "saliencymix" else sources[:1]
            if args.self_cam > 0 and method != "none":
                method_sources = [*method_sources, f"{method_sources[0]}+self-cam"]
            for source in method_sources:
                for precision in args.precision_list:
                    setup_rows.append(
                        _Row(
                            args, dev, fmt, ds, model_name, setup, augment, method, options, source, maps, mean, std,
                            precision,
                        )
                    )  # fmt: skip
        # Interleaved: step k of every row, then step k + 1, so a slow spell of a shared machine
        # hits every row alike; the first two steps of each row are warm-up.
        for step in range(args.steps + 2):
            for row in setup_rows:
                row.step(timed=step >= 2)
        setup_rows_all.extend(setup_rows)
        for row in setup_rows:
            rows.append(row.result())
            by_precision.append((row.setup, row.method, row.precision, rows[-1]))
            r = rows[-1]
            print(
                f"{setup:28s} {r[1]:40s} {r[2]:8.0f} img/s  data {r[3]:6.1f} ms  mix {r[4]:6.1f} ms  "
                f"model {r[5]:7.1f} ms  mix share {r[6]:4.1f}%",
                flush=True,
            )

    cmd = "python benchmarks/train_step.py " + " ".join(argv if argv is not None else sys.argv[1:])
    lines = [
        "# Training-step benchmark",
        "",
        f"Command: `{cmd}`  ",
        f"Date: {_dt.datetime.now().isoformat(timespec='seconds')}  ",
        f"Hardware: {cpu_name()} ({_bf16_words()}), {torch.get_num_threads()} torch threads, device {dev}, "
        f"load average {os.getloadavg()[0]:.1f} at the end  ",
        f"Versions: python {platform.python_version()}, torch {torch.__version__}  ",
        f"Data `{args.data}` at each setup's size, batch {args.batch_size}, "
        f"{'channels_last' if args.channels_last else 'contiguous'}, median of {args.steps} steps after "
        "2 warm-up steps; the rows of a setup step in turn (step k of every row, then step k + 1).",
        "",
        "| setup | method | images/s | input pipeline ms | mixing ms | fwd+bwd+step ms | mixing share "
        "| pipeline share |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for setup, method, ips, d, m, s, share, dshare in rows:
        lines.append(f"| {setup} | {method} | {ips:.0f} | {d:.1f} | {m:.1f} | {s:.1f} | {share:.1f}% | {dshare:.1f}% |")
    lines += ["", "## Targets", ""]
    for setup, method, _, _, _, _, share, _ in rows:
        if method != "none" and not method.endswith("(cam)"):
            lines.append(
                f"- {setup}, {method}: mixing {share:.1f}% of the step (target <= 5%): "
                f"**{'MET' if share <= 5 else 'NOT MET'}**"
            )
    if any(r[1].endswith("(cam)") for r in rows):
        lines.append(
            "- The `(cam)` rows' mixing column includes the CAM forward (one no-grad forward of the clean batch, "
            "about a third of a training step by construction); the 5% target is for an operator alone, so they "
            "are judged by the CutMix-step target below."
        )
    worst = max(r[7] for r in rows)
    lines.append(
        f"- input pipeline at most {worst:.1f}% of a step (not the bottleneck when well under "
        f"50%): **{'MET' if worst < 50 else 'NOT MET'}**"
    )
    # Saliency from a source that is not the detector on every batch, against CutMix's step.
    step_ms = {(r[0], r[1]): r[3] + r[4] + r[5] for r in rows}
    for (setup, label), ms in step_ms.items():
        cutmix = step_ms.get((setup, "cutmix"))
        if label.startswith("randsaliencymix (") and cutmix:
            ratio = ms / cutmix
            lines.append(
                f"- {setup}, {label}: step {ratio:.2f}x CutMix's (target <= 1.3x): "
                f"**{'MET' if ratio <= 1.3 else 'NOT MET'}**"
            )
    lines += _self_cam_targets(setup_rows_all, step_ms)
    if len(args.precision_list) > 1:
        lines += _precision_table(by_precision, args.precision_list)
    if one_off:
        lines += ["", "## Cached maps: the one-time cost", ""]
        lines += ["| setup | maps | images | seconds | ms per image |", "|---|---|---:|---:|---:|"]
        for setup, source, seconds, n in one_off:
            lines.append(f"| {setup} | {source} | {n} | {seconds:.1f} | {1e3 * seconds / n:.2f} |")
    # Setups side by side: cost per image relative to the first, and the time per epoch.
    plain = {r[0]: r[2] for r in rows if r[1] == methods[0] or r[1] == f"{methods[0]} [{args.precision_list[0]}]"}
    if len(plain) > 1:
        base = next(iter(plain.values()))
        lines += ["", f"## Setups side by side ({methods[0]})", ""]
        lines += ["| setup | images/s | cost per image vs the first | seconds per epoch |", "|---|---:|---:|---:|"]
        for setup, ips in plain.items():
            size = int(setup.split("@")[1].split()[0])
            n = EPOCH_IMAGES.get(size)
            epoch = f"{n / ips:.0f} ({n:,} images)" if n else "n/a"
            lines.append(f"| {setup} | {ips:.0f} | {base / ips:.2f}x | {epoch} |")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
