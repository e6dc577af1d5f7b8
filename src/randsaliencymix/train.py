"""Training and evaluation of one run: ``rsmix train`` and ``rsmix eval``.

A run is a folder: ``config.json`` (the resolved configuration), ``log.jsonl`` (one line per epoch),
``checkpoint.pt`` (written atomically after every epoch; ``--resume`` continues from it to the
same result as an uninterrupted run on CPU) and ``metrics.json`` (the final numbers).

Hyper-parameters and epochs are never chosen on the test split: the validation split is carved
from the training set, and the test split is evaluated once, after the last epoch, when asked.
"""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from .data import ArrayDataset, class_balanced_subset, load_dataset, train_val_split
from .loss import soft_target_cross_entropy
from .mixing import CutMix, MixUp, NoMix, RandSaliencyMix, SaliencyMix, _Mixer
from .models import MODEL_NAMES, build_model
from .pipeline import CIFAR10_MEAN, CIFAR10_STD, normalize, random_crop_flip

METHODS = ("none", "mixup", "cutmix", "saliencymix", "saliencymix_per_sample", "randsaliencymix")
SCHEDULES = ("cosine", "multistep")
CIFAR_MEAN, CIFAR_STD = CIFAR10_MEAN, CIFAR10_STD


class UsageError(ValueError):
    """A bad command line or configuration: reported in one line, exit code 2."""


@dataclass
class TrainConfig:
    data: str = "procedural:5000:1000"
    data_root: Optional[str] = None
    download: bool = False
    train_fraction: float = 1.0  # class-balanced subset of the training set (low-data regime)
    val_fraction: float = 0.1
    split_seed: int = 0  # the same validation split for every method and seed
    model: str = "fast_cnn"
    method: str = "none"
    mix: Dict[str, Any] = field(default_factory=dict)  # operator options, e.g. {"alpha": 1.0}
    epochs: int = 10
    batch_size: int = 256
    lr: float = 0.2
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    milestones: List[float] = field(default_factory=lambda: [0.5, 0.75])  # fractions of training
    lr_decay: float = 0.2
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.0
    crop_padding: int = 4
    flip: bool = True
    seed: int = 0
    device: str = "cpu"
    amp: bool = False
    channels_last: bool = False
    test: bool = False  # evaluate the test split once, after the last epoch
    eval_every: int = 1  # validate every N epochs (and always after the last one)
    robustness: bool = False  # with test: also score the test split under fixed corruptions
    robustness_images: int = 0  # score the corruptions on the first N test images (0: all)
    threads: int = 0  # torch threads on CPU; 0 = torch's default

    @classmethod
    def from_dict(cls, values: Dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise UsageError(f"unknown config keys {unknown}; accepted: {sorted(known)}")
        for f in fields(cls):
            if f.name in values and not _has_type(values[f.name], str(f.type)):
                raise UsageError(
                    f"config key {f.name!r} must be {_TYPE_WORDS.get(str(f.type), f.type)}, got {values[f.name]!r}"
                )
        cfg = cls(**values)
        cfg.check()
        return cfg

    def check(self) -> None:
        if self.method not in METHODS:
            raise UsageError(f"unknown method {self.method!r}; accepted: {', '.join(METHODS)}")
        if self.model not in MODEL_NAMES:
            raise UsageError(f"unknown model {self.model!r}; accepted: {', '.join(MODEL_NAMES)}")
        if self.schedule not in SCHEDULES:
            raise UsageError(f"unknown schedule {self.schedule!r}; accepted: {', '.join(SCHEDULES)}")
        if self.epochs < 1 or self.batch_size < 1:
            raise UsageError(f"epochs and batch_size must be >= 1, got {self.epochs} and {self.batch_size}")
        if self.robustness and not self.test:
            raise UsageError("robustness needs test: the corruptions are scored on the test split")
        if self.robustness_images < 0:
            raise UsageError(f"robustness_images must be >= 0, got {self.robustness_images}")
        if self.eval_every < 1:
            raise UsageError(f"eval_every must be >= 1, got {self.eval_every}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise UsageError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if not 0.0 < self.train_fraction <= 1.0:
            raise UsageError(f"train_fraction must be in (0, 1], got {self.train_fraction}")
        if not isinstance(self.mix, dict):
            raise UsageError(f"mix must be a mapping of operator options, got {self.mix!r}")
        if self.method == "none" and self.mix:
            raise UsageError(f"method 'none' takes no mixing options, got {sorted(self.mix)}")
        try:
            torch.device(self.device)
        except (RuntimeError, ValueError, TypeError):
            raise UsageError(f"unknown device {self.device!r}; accepted: cpu, cuda, cuda:N") from None
        if self.amp and not self.device.startswith("cuda"):
            raise UsageError("amp needs a CUDA device (--device cuda)")
        accepted = mix_option_names(self.method)
        unknown = sorted(set(self.mix) - set(accepted))
        if unknown:
            raise UsageError(
                f"unknown options {unknown} for method {self.method!r}; accepted: {', '.join(accepted) or 'none'}"
            )
        try:
            build_mixer(self.method, 10, self.mix)
        except (TypeError, ValueError) as exc:
            raise UsageError(f"bad options for method {self.method!r}: {exc}") from exc


_TYPE_WORDS = {
    "str": "a string",
    "Optional[str]": "a string or null",
    "bool": "true or false",
    "int": "an integer",
    "float": "a number",
    "Dict[str, Any]": "a mapping",
    "List[float]": "a list of numbers",
}


def _has_type(value: Any, annotation: str) -> bool:
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    checks = {
        "str": isinstance(value, str),
        "Optional[str]": value is None or isinstance(value, str),
        "bool": isinstance(value, bool),
        "int": isinstance(value, int) and not isinstance(value, bool),
        "float": number,
        "Dict[str, Any]": isinstance(value, dict),
        "List[float]": isinstance(value, list)
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value),
    }
    return checks.get(annotation, True)


_MIXER_CLASSES = {
    "none": NoMix,
    "mixup": MixUp,
    "cutmix": CutMix,
    "saliencymix": SaliencyMix,
    "saliencymix_per_sample": SaliencyMix,
    "randsaliencymix": RandSaliencyMix,
}


def mix_option_names(method: str) -> List[str]:
    """The ``--mix-opt`` keys a method accepts (its operator's options that the run does not set)."""
    import inspect

    cls = _MIXER_CLASSES.get(method)
    if cls is None:
        return []
    fixed = {"self", "num_classes", "label_smoothing", "validate"}
    if method in ("saliencymix_per_sample", "randsaliencymix"):
        fixed |= {"mean", "std"}
    if method == "saliencymix_per_sample":
        fixed.add("mode")
    return [
        name
        for name, param in inspect.signature(cls.__init__).parameters.items()
        if name not in fixed and param.kind not in (param.VAR_POSITIONAL, param.VAR_KEYWORD)
    ]


def available_device(name: str) -> torch.device:
    """``torch.device(name)``, or a UsageError when the name is bad or this machine lacks it."""
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError, TypeError):
        raise UsageError(f"unknown device {name!r}; accepted: cpu, cuda, cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(
            f"device {name!r} is not available on this machine (torch.cuda.is_available() is False); accepted: cpu"
        )
    return device


def check_device(cfg: TrainConfig) -> torch.device:
    """The run's device, or a UsageError when this machine does not have it."""
    return available_device(cfg.device)


def build_mixer(
    method: str,
    num_classes: int,
    options: Dict[str, Any],
    label_smoothing: float = 0.0,
    mean: Tuple[float, ...] = CIFAR_MEAN,
    std: Tuple[float, ...] = CIFAR_STD,
) -> _Mixer:
    """The operator of a method name with its options; saliency operators get the normalisation."""
    opts = dict(options)
    common = dict(num_classes=num_classes, label_smoothing=label_smoothing)
    if method == "none":
        return NoMix(**common)
    if method == "mixup":
        return MixUp(**common, **opts)
    if method == "cutmix":
        return CutMix(**common, **opts)
    if method == "saliencymix":
        opts.setdefault("mode", "official")
        return SaliencyMix(**common, **opts)
    if method == "saliencymix_per_sample":
        return SaliencyMix(**common, mode="per_sample", mean=mean, std=std, **opts)
    if method == "randsaliencymix":
        return RandSaliencyMix(**common, mean=mean, std=std, **opts)
    raise UsageError(f"unknown method {method!r}; accepted: {', '.join(METHODS)}")


# ------------------------------------------------------------------------------------------
# Data on the device
# ------------------------------------------------------------------------------------------


def epoch_batches(
    n: int,
    batch_size: int,
    generator: torch.Generator,
    rank: int = 0,
    world: int = 1,
    device: torch.device = torch.device("cpu"),
) -> Iterator[torch.Tensor]:
    """Index batches of one shuffled epoch. With several processes every rank draws the same
    permutation and takes its share of each global batch (incomplete last batch dropped)."""
    order = torch.randperm(n, generator=generator, device=device)
    global_batch = batch_size * world
    for start in range(0, n - global_batch + 1, global_batch):
        yield order[start + rank * batch_size : start + (rank + 1) * batch_size]


# ------------------------------------------------------------------------------------------
# Metrics
# ------------------------------------------------------------------------------------------


def expected_calibration_error(probs: torch.Tensor, labels: torch.Tensor, bins: int = 15) -> float:
    """ECE with equal-width confidence bins (Guo et al., 2017)."""
    conf, pred = probs.max(dim=1)
    correct = (pred == labels).double()
    edges = torch.linspace(0, 1, bins + 1, dtype=probs.dtype)
    index = torch.bucketize(conf, edges[1:-1], right=False)
    acc = torch.zeros(bins, dtype=torch.float64).index_add_(0, index, correct)
    confs = torch.zeros(bins, dtype=torch.float64).index_add_(0, index, conf.double())
    # Sum over bins of |accuracy - confidence| weighted by the bin's share = per-bin sums / N.
    return float((acc - confs).abs().sum() / max(len(labels), 1))


@torch.no_grad()
def predict(
    model: nn.Module,
    images_u8: torch.Tensor,
    mean: torch.Tensor,
    std: torch.Tensor,
    batch_size: int = 500,
    device: torch.device = torch.device("cpu"),
    channels_last: bool = False,
) -> torch.Tensor:
    """Logits of a uint8 image set, in order, in float32 on the CPU."""
    model.eval()
    out = []
    for start in range(0, images_u8.shape[0], batch_size):
        x = normalize(images_u8[start : start + batch_size].to(device), mean, std)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        out.append(model(x).float().cpu())
    return torch.cat(out)


def corruption_metrics(
    model: nn.Module,
    images_u8: torch.Tensor,
    labels: torch.Tensor,
    mean: torch.Tensor,
    std: torch.Tensor,
    device: torch.device = torch.device("cpu"),
    channels_last: bool = False,
    seed: int = 0,
    limit: int = 0,
) -> Dict[str, Dict[str, float]]:
    """Metrics under every corruption of ``robustness.CORRUPTIONS`` (the same images for every
    model: the corruptions' randomness is seeded by ``seed``), plus their mean top-1 error; on the
    first ``limit`` images only when ``limit > 0``."""
    from .robustness import corrupted_sets

    if limit > 0:
        images_u8, labels = images_u8[:limit], labels[:limit]
    out: Dict[str, Dict[str, float]] = {}
    for name, images in corrupted_sets(images_u8, seed=seed).items():
        logits = predict(model, images, mean, std, device=device, channels_last=channels_last)
        out[name] = classification_metrics(logits, labels)
    out["corruption_mean"] = {"top1_err": sum(m["top1_err"] for m in out.values()) / len(out)}
    return out


def classification_metrics(logits: torch.Tensor, labels: torch.Tensor) -> Dict[str, float]:
    labels = labels.cpu()
    k = min(5, logits.shape[1])
    top = logits.topk(k, dim=1).indices
    top1 = (top[:, 0] == labels).double().mean()
    topk = (top == labels[:, None]).any(dim=1).double().mean()
    return {
        "top1_err": float(1 - top1) * 100,
        "top5_err": float(1 - topk) * 100,
        "nll": float(F.cross_entropy(logits, labels)),
        "ece": expected_calibration_error(torch.softmax(logits.double(), dim=1), labels) * 100,
    }


# ------------------------------------------------------------------------------------------
# Run folder helpers
# ------------------------------------------------------------------------------------------


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_save(obj: Any, path: Path) -> None:
    """torch.save through a temporary file and a rename: a kill never leaves a broken file."""
    import io

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def atomic_write_json(obj: Any, path: Path) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


class Progress:
    """A one-line progress bar with ETA on stderr (silent when not a terminal or disabled)."""

    def __init__(self, total: int, enabled: bool, prefix: str = "") -> None:
        self.total, self.enabled, self.prefix = total, enabled, prefix
        self.start = time.perf_counter()
        self.done = 0

    def update(self, done: int, note: str = "") -> None:
        self.done = done
        if not self.enabled:
            return
        elapsed = time.perf_counter() - self.start
        eta = elapsed / max(done, 1) * (self.total - done)
        width = 24
        fill = int(width * done / max(self.total, 1))
        sys.stderr.write(
            f"\r{self.prefix} [{'#' * fill}{'.' * (width - fill)}] {done}/{self.total} "
            f"{elapsed:5.0f}s eta {eta:5.0f}s {note}   "
        )
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")


def lr_at(cfg: TrainConfig, step: int, steps_per_epoch: int) -> float:
    """Learning rate at an optimiser step: linear warm-up, then cosine or step decay."""
    total = cfg.epochs * steps_per_epoch
    warm = int(cfg.warmup_epochs * steps_per_epoch)
    if step < warm:
        return cfg.lr * (step + 1) / warm
    if cfg.schedule == "cosine":
        progress = (step - warm) / max(total - warm, 1)
        return cfg.lr * 0.5 * (1 + math.cos(math.pi * progress))
    passed = sum(step >= m * total for m in cfg.milestones)
    return cfg.lr * cfg.lr_decay**passed


# ------------------------------------------------------------------------------------------
# Training
# ------------------------------------------------------------------------------------------


def _distributed() -> Tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    import torch.distributed as dist

    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() and os.environ.get("RSMIX_BACKEND") != "gloo" else "gloo"
        dist.init_process_group(backend)
    return dist.get_rank(), dist.get_world_size()


def _normalisation(channels: int, device: Union[str, torch.device]) -> Tuple[torch.Tensor, torch.Tensor]:
    """(1, C, 1, 1) mean and std of the inputs: CIFAR-10's for colour, a generic pair for grey."""
    mean = CIFAR_MEAN if channels == 3 else (0.5,)
    std = CIFAR_STD if channels == 3 else (0.25,)
    return (
        torch.tensor(mean, device=device).reshape(1, -1, 1, 1),
        torch.tensor(std, device=device).reshape(1, -1, 1, 1),
    )


def load_splits(cfg: TrainConfig) -> Tuple[ArrayDataset, ArrayDataset]:
    """(train, val): the validation split is carved from the training set with split_seed."""
    full = load_dataset(cfg.data, "train", root=cfg.data_root, download=cfg.download)
    if cfg.val_fraction > 0:
        train_ds, val_ds = train_val_split(full, cfg.val_fraction, seed=cfg.split_seed)
    else:
        train_ds, val_ds = full, full.subset(torch.arange(0))
    if cfg.train_fraction < 1.0:
        train_ds = class_balanced_subset(train_ds, cfg.train_fraction, seed=cfg.split_seed)
    return train_ds, val_ds


def train(cfg: TrainConfig, out_dir: Path, resume: bool = False, progress: bool = True) -> Dict[str, Any]:
    """Train one run into ``out_dir``; returns the final metrics (also in ``metrics.json``)."""
    cfg.check()
    out_dir = Path(out_dir)
    rank, world = _distributed()
    main_process = rank == 0
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    device = check_device(cfg)
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)

    train_ds, val_ds = load_splits(cfg)
    num_classes = train_ds.num_classes
    channels = train_ds.images.shape[1]
    mean, std = _normalisation(channels, device)
    images = train_ds.images.to(device)
    labels = train_ds.labels.to(device)

    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, num_classes).to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    ddp_model: nn.Module = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        ddp_model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim <= 1 else decay).append(p)
    optimizer = torch.optim.SGD(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr,
        momentum=cfg.momentum,
        nesterov=cfg.nesterov,
    )
    scaler = torch.amp.GradScaler("cuda") if cfg.amp else None
    mixer = build_mixer(
        cfg.method,
        num_classes,
        cfg.mix,
        cfg.label_smoothing,
        tuple(mean.flatten().tolist()),
        tuple(std.flatten().tolist()),
    )

    # Shuffling draws the same on every rank (each takes its share); mixing differs per rank.
    data_gen = torch.Generator(device=device).manual_seed(cfg.seed * 1_000_003 + 1)
    mix_gen = torch.Generator(device=device).manual_seed(cfg.seed * 1_000_003 + 2 + rank)
    steps_per_epoch = images.shape[0] // (cfg.batch_size * world)
    if steps_per_epoch < 1:
        raise UsageError(
            f"batch_size {cfg.batch_size} x {world} processes exceeds the {images.shape[0]} training images"
        )

    checkpoint_path = out_dir / "checkpoint.pt"
    log_path = out_dir / "log.jsonl"
    start_epoch, elapsed_before = 0, 0.0
    if resume and checkpoint_path.exists():
        state = torch.load(checkpoint_path, map_location=device, weights_only=False)
        # Only where the run executes may change on resume; anything else would silently make a
        # different run (a changed epoch count changes the learning-rate schedule, say).
        movable = {"device", "threads"}
        saved = {k: v for k, v in state.get("config", {}).items() if k not in movable}
        now = {k: v for k, v in asdict(cfg).items() if k not in movable}
        changed = sorted(k for k in now if saved.get(k) != now[k])
        if changed:
            raise UsageError(
                f"--resume with a changed config ({', '.join(changed)}) in {out_dir}; "
                "use the original settings or a new --out folder"
            )
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        data_gen.set_state(state["data_gen"].to(data_gen.device) if device.type != "cpu" else state["data_gen"])
        mix_gen.set_state(state["mix_gen"][rank] if isinstance(state["mix_gen"], list) else state["mix_gen"])
        torch.set_rng_state(state["torch_rng"])
        start_epoch, elapsed_before = int(state["epoch"]), float(state["elapsed"])
        if scaler is not None and "scaler" in state:
            scaler.load_state_dict(state["scaler"])
    if main_process:
        out_dir.mkdir(parents=True, exist_ok=True)
        # Temporary files of an atomic write that a kill interrupted.
        for name in ("checkpoint.pt", "config.json", "log.jsonl", "metrics.json"):
            for stale in out_dir.glob(f".{name}.*"):
                stale.unlink(missing_ok=True)
        atomic_write_json(asdict(cfg), out_dir / "config.json")
        # Keep only the epochs the checkpoint covers: a crash after logging loses nothing else
        # (a line cut short by a kill is always past the checkpoint).
        kept = []
        if start_epoch > 0 and log_path.exists():
            for line in log_path.read_text().splitlines():
                try:
                    if json.loads(line)["epoch"] < start_epoch:
                        kept.append(line)
                except (ValueError, KeyError, TypeError):
                    continue
        atomic_write_bytes(log_path, "".join(line + "\n" for line in kept).encode())

    bar = Progress(
        cfg.epochs * steps_per_epoch,
        progress and main_process and sys.stderr.isatty(),
        prefix=f"{cfg.method} s{cfg.seed}",
    )
    history: List[Dict[str, Any]] = []
    for epoch in range(start_epoch, cfg.epochs):
        t0 = time.perf_counter()
        ddp_model.train()
        loss_sum = torch.zeros((), device=device, dtype=torch.float64)
        for i, index in enumerate(epoch_batches(images.shape[0], cfg.batch_size, data_gen, rank, world, device)):
            step = epoch * steps_per_epoch + i
            for group in optimizer.param_groups:
                group["lr"] = lr_at(cfg, step, steps_per_epoch)
            x8 = random_crop_flip(images[index], data_gen, cfg.crop_padding, cfg.flip)
            x = normalize(x8, mean, std)
            if cfg.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            x, y = mixer(x, labels[index], generator=mix_gen)
            with torch.autocast(device.type, enabled=cfg.amp):
                logits = ddp_model(x)
            loss = soft_target_cross_entropy(logits.float(), y)
            optimizer.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
            else:
                loss.backward()
                optimizer.step()
            loss_sum += loss.detach()
            bar.update(step + 1, f"loss {float(loss):.3f}" if bar.enabled and i % 20 == 0 else "")
        seconds = time.perf_counter() - t0
        record: Dict[str, Any] = {
            "epoch": epoch,
            "train_loss": float(loss_sum) / steps_per_epoch,
            "lr": lr_at(cfg, (epoch + 1) * steps_per_epoch - 1, steps_per_epoch),
            "seconds": seconds,
        }
        validate = (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs
        if main_process and validate and val_ds.images.shape[0] > 0:
            logits = predict(model, val_ds.images, mean, std, device=device, channels_last=cfg.channels_last)
            record.update({f"val_{k}": v for k, v in classification_metrics(logits, val_ds.labels).items()})
        history.append(record)
        if main_process:
            with open(log_path, "a") as fh:
                fh.write(json.dumps(record) + "\n")
            mix_states: Any = mix_gen.get_state()
            if world > 1:
                import torch.distributed as dist

                gathered: List[Any] = [None] * world
                dist.all_gather_object(gathered, mix_gen.get_state().cpu())
                mix_states = gathered
            state = {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "data_gen": data_gen.get_state(),
                "mix_gen": mix_states,
                "torch_rng": torch.get_rng_state(),
                "epoch": epoch + 1,
                "elapsed": elapsed_before + sum(r["seconds"] for r in history),
                "config": asdict(cfg),
            }
            if scaler is not None:
                state["scaler"] = scaler.state_dict()
            atomic_save(state, checkpoint_path)
        elif world > 1:
            import torch.distributed as dist

            dist.all_gather_object([None] * world, mix_gen.get_state().cpu())
    bar.close()

    result: Dict[str, Any] = {}
    if main_process:
        lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
        last = lines[-1] if lines else {}
        result = {k: v for k, v in last.items() if k.startswith("val_")}
        result["train_loss"] = last.get("train_loss")
        result["epochs"] = cfg.epochs
        result["train_seconds"] = sum(line["seconds"] for line in lines)
        result["train_images"] = int(images.shape[0])
        result["val_images"] = int(val_ds.images.shape[0])
        if cfg.test:
            test_ds = load_dataset(cfg.data, "test", root=cfg.data_root, download=cfg.download)
            logits = predict(model, test_ds.images, mean, std, device=device, channels_last=cfg.channels_last)
            result.update({f"test_{k}": v for k, v in classification_metrics(logits, test_ds.labels).items()})
            if cfg.robustness:
                scores = corruption_metrics(
                    model,
                    test_ds.images,
                    test_ds.labels,
                    mean,
                    std,
                    device,
                    cfg.channels_last,
                    limit=cfg.robustness_images,
                )
                result.update(
                    {
                        f"test_{name}_{k}": v
                        for name, m in scores.items()
                        for k, v in m.items()
                        if k in ("top1_err", "ece")
                    }
                )
            result["test_images"] = int(test_ds.images.shape[0])
        result["method"], result["seed"], result["model"] = cfg.method, cfg.seed, cfg.model
        result["versions"] = {"torch": torch.__version__, "python": sys.version.split()[0]}
        atomic_write_json(result, out_dir / "metrics.json")
    if world > 1:
        import torch.distributed as dist

        dist.barrier()
    return result


def evaluate_checkpoint(
    run: Path,
    data: str,
    split: str = "test",
    data_root: Optional[str] = None,
    device: str = "cpu",
    robustness: bool = False,
    seed: int = 0,
    robustness_images: int = 0,
) -> Dict[str, float]:
    """Top-1/top-5 error, NLL and ECE of a run's checkpoint on a split of any supported dataset;
    with ``robustness``, also ``<corruption>_top1_err`` and ``<corruption>_ece`` for every fixed
    corruption of ``robustness.CORRUPTIONS`` (seeded by ``seed``) and their mean top-1 error."""
    run = Path(run)
    path = run / "checkpoint.pt" if run.is_dir() else run
    if not path.exists():
        raise UsageError(f"no checkpoint at {path}")
    available_device(device)
    try:
        state = torch.load(path, map_location=device, weights_only=False)
    except Exception as exc:  # a truncated or foreign file
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UsageError(f"cannot read the checkpoint {path}: {reason}") from None
    if not isinstance(state, dict) or not {"config", "model"} <= set(state):
        raise UsageError(f"{path} is not an rsmix checkpoint (no 'config' and 'model')")
    cfg = TrainConfig.from_dict(state["config"])
    ds = load_dataset(data, split, root=data_root)
    model = build_model(cfg.model, ds.num_classes).to(device)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as exc:
        raise UsageError(
            f"checkpoint {path} does not fit {ds.num_classes} classes of {data}: {str(exc).splitlines()[0]}"
        ) from exc
    channels = ds.images.shape[1]
    mean, std = _normalisation(channels, device)
    # The run's memory format, so that the scores match the ones the run itself reported.
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    logits = predict(model, ds.images, mean, std, device=torch.device(device), channels_last=cfg.channels_last)
    metrics = classification_metrics(logits, ds.labels)
    if robustness:
        scores = corruption_metrics(
            model,
            ds.images,
            ds.labels,
            mean,
            std,
            torch.device(device),
            cfg.channels_last,
            seed=seed,
            limit=robustness_images,
        )
        metrics.update(
            {f"{name}_{k}": v for name, m in scores.items() for k, v in m.items() if k in ("top1_err", "ece")}
        )
    return metrics
