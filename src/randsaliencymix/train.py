"""One training run (``rsmix train``): its configuration and the loop.

A run is a folder: ``config.json`` (the resolved configuration, normalisation included),
``log.jsonl`` (one line per epoch), ``checkpoint.pt`` (written atomically after every epoch;
``resume`` continues from it to the same result as an uninterrupted run on CPU) and
``metrics.json`` (the final numbers). See :mod:`runs` for what happens to an existing folder.

Hyper-parameters and epochs are never chosen on the test split: the validation split is carved
from the training set, and the test split is evaluated once, after the last epoch, when asked.
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import torch
from torch import nn

from .checkpoint import read_checkpoint, restore_checkpoint, save_checkpoint
from .data import ArrayDataset, class_balanced_subset, load_dataset, train_val_split
from .errors import UsageError
from .evaluate import corruption_metrics, flat_corruption_scores, split_metrics
from .files import atomic_write_json
from .loss import soft_target_cross_entropy
from .methods import METHOD_NAMES, build_mixer, get_method
from .models import MODEL_NAMES, build_model
from .pipeline import AUGMENTS, RRC_RATIO, RRC_SCALE, DeviceLoader, check_rrc_range
from .runs import RunLock, append_log, check_output_folder, read_log, start_run_folder

__all__ = ["TrainConfig", "UsageError", "available_device", "load_splits", "lr_at", "train"]

METHODS = METHOD_NAMES
SCHEDULES = ("cosine", "multistep")
# Config keys that may change on --resume: where the run executes and what is evaluated at the
# end; anything else would silently make a different run. ``epochs`` may grow with ``extend``.
_MOVABLE = frozenset({"device", "threads", "test", "test_split", "robustness", "robustness_images", "eval_every"})
# Keys added after runs were saved, with the value that reproduces what a run without them did:
# --resume of such a run compares against these, not against a missing key.
_ADDED_KEYS: Dict[str, Any] = {
    "image_size": 0,
    "augment": "pad_crop",
    "rrc_scale": list(RRC_SCALE),
    "rrc_ratio": list(RRC_RATIO),
}


@dataclass
class TrainConfig:
    data: str = "procedural:5000:1000"
    data_root: Optional[str] = None
    download: bool = False
    image_size: int = 0  # decode every split at N x N once (cached by content and size); 0: as stored
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
    augment: str = "pad_crop"  # "pad_crop" (crop_padding, flip) or "resized_crop" (rrc_scale, rrc_ratio, flip)
    crop_padding: int = 4
    flip: bool = True
    rrc_scale: List[float] = field(default_factory=lambda: list(RRC_SCALE))  # area fraction (min, max)
    rrc_ratio: List[float] = field(default_factory=lambda: list(RRC_RATIO))  # aspect ratio w / h (min, max)
    mean: Optional[List[float]] = None  # per-channel input normalisation; None: the training split's
    std: Optional[List[float]] = None
    seed: int = 0
    device: str = "cpu"
    amp: bool = False
    channels_last: bool = False
    test: bool = False  # evaluate the test split once, after the last epoch
    test_split: str = "test"  # its name (an ImageFolder's folder: Imagenette calls it "val")
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
                words = _TYPE_WORDS.get(str(f.type), f.type)
                raise UsageError(f"config key {f.name!r} must be {words}, got {values[f.name]!r}")
        cfg = cls(**values)
        cfg.check()
        return cfg

    def check(self) -> None:
        """A UsageError naming the first bad value (every number finite and in its range)."""
        get_method(self.method)
        _one_of("model", self.model, MODEL_NAMES)
        _one_of("schedule", self.schedule, SCHEDULES)
        _one_of("augment", self.augment, AUGMENTS)
        for f in fields(self):
            value = getattr(self, f.name)
            numbers = value if isinstance(value, list) else [value]
            for v in numbers:
                if isinstance(v, float) and not math.isfinite(v):
                    raise UsageError(f"{f.name} must be a finite number, got {v}")
        _at_least("epochs", self.epochs, 1)
        _at_least("batch_size", self.batch_size, 1)
        _at_least("eval_every", self.eval_every, 1)
        _at_least("robustness_images", self.robustness_images, 0)
        _at_least("crop_padding", self.crop_padding, 0)
        _at_least("image_size", self.image_size, 0)
        for name, upper in (("rrc_scale", 1.0), ("rrc_ratio", None)):
            try:
                check_rrc_range(name, getattr(self, name), upper)
            except ValueError as exc:
                raise UsageError(str(exc)) from None
        _at_least("threads", self.threads, 0)
        if not self.lr > 0:
            raise UsageError(f"lr must be > 0, got {self.lr}")
        for name, lo, hi in (("momentum", 0.0, 1.0), ("label_smoothing", 0.0, 1.0), ("val_fraction", 0.0, 1.0)):
            if not lo <= getattr(self, name) < hi:
                raise UsageError(f"{name} must be in [{lo:g}, {hi:g}), got {getattr(self, name)}")
        if not 0.0 < self.train_fraction <= 1.0:
            raise UsageError(f"train_fraction must be in (0, 1], got {self.train_fraction}")
        if self.weight_decay < 0 or self.warmup_epochs < 0 or not self.lr_decay > 0:
            raise UsageError("weight_decay and warmup_epochs must be >= 0 and lr_decay > 0")
        if any(not 0.0 < m < 1.0 for m in self.milestones):
            raise UsageError(f"milestones must be fractions of training in (0, 1), got {self.milestones}")
        if (self.mean is None) != (self.std is None):
            raise UsageError("mean and std go together: give both or neither")
        if self.std is not None and (not self.std or any(not s > 0 for s in self.std)):
            raise UsageError(f"std must be > 0 per channel, got {self.std}")
        if self.mean is not None and self.std is not None and len(self.mean) != len(self.std):
            raise UsageError(f"mean and std need one value per channel each, got {self.mean} and {self.std}")
        if self.robustness and not self.test:
            raise UsageError("robustness needs test: the corruptions are scored on the test split")
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
        build_mixer(self.method, 10, self.mix)  # a bad option value is a UsageError now, not mid-run


def _one_of(name: str, value: str, accepted: Tuple[str, ...]) -> None:
    if value not in accepted:
        raise UsageError(f"unknown {name} {value!r}; accepted: {', '.join(accepted)}")


def _at_least(name: str, value: int, minimum: int) -> None:
    if value < minimum:
        raise UsageError(f"{name} must be >= {minimum}, got {value}")


_TYPE_WORDS = {
    "str": "a string",
    "Optional[str]": "a string or null",
    "bool": "true or false",
    "int": "an integer",
    "float": "a number",
    "Dict[str, Any]": "a mapping",
    "List[float]": "a list of numbers",
    "Optional[List[float]]": "a list of numbers or null",
}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _has_type(value: Any, annotation: str) -> bool:
    numbers = isinstance(value, list) and all(_is_number(v) for v in value)
    checks = {
        "str": isinstance(value, str),
        "Optional[str]": value is None or isinstance(value, str),
        "bool": isinstance(value, bool),
        "int": isinstance(value, int) and not isinstance(value, bool),
        "float": _is_number(value),
        "Dict[str, Any]": isinstance(value, dict),
        "List[float]": numbers,
        "Optional[List[float]]": value is None or numbers,
    }
    return checks.get(annotation, True)


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
# The steps of a run
# ------------------------------------------------------------------------------------------


def load_splits(cfg: TrainConfig) -> Tuple[ArrayDataset, ArrayDataset]:
    """(train, val): the validation split is carved from the training set with split_seed."""
    full = load_dataset(cfg.data, "train", root=cfg.data_root, download=cfg.download, size=cfg.image_size or None)
    if cfg.val_fraction > 0:
        train_ds, val_ds = train_val_split(full, cfg.val_fraction, seed=cfg.split_seed)
    else:
        train_ds, val_ds = full, full.subset(torch.arange(0))
    if cfg.train_fraction < 1.0:
        train_ds = class_balanced_subset(train_ds, cfg.train_fraction, seed=cfg.split_seed)
    return train_ds, val_ds


def _resolve_normalisation(cfg: TrainConfig, train_ds: ArrayDataset) -> TrainConfig:
    """The config with the mean/std the run uses: given, or the training split's own."""
    channels = train_ds.images.shape[1]
    if cfg.mean is None or cfg.std is None:
        mean, std = train_ds.channel_stats()
        return replace(cfg, mean=[round(v, 6) for v in mean], std=[round(v, 6) for v in std])
    if len(cfg.mean) != channels:
        raise UsageError(f"mean and std have {len(cfg.mean)} values but the images have {channels} channels")
    return cfg


def _distributed() -> Tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    import torch.distributed as dist

    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() and os.environ.get("RSMIX_BACKEND") != "gloo" else "gloo"
        dist.init_process_group(backend)
    return dist.get_rank(), dist.get_world_size()


def _run_device(cfg: TrainConfig, world: int) -> torch.device:
    device = available_device(cfg.device)
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    return device


def _optimizer(cfg: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    """SGD with weight decay on weights only (not on biases and normalisation parameters)."""
    decay: List[nn.Parameter] = []
    no_decay: List[nn.Parameter] = []
    for p in model.parameters():
        (no_decay if p.ndim <= 1 else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov)


def _check_resumable(saved: Dict[str, Any], cfg: TrainConfig, folder: Path, extend: bool, done: int) -> None:
    now = asdict(cfg)
    saved = {**_ADDED_KEYS, **saved}
    changed = sorted(k for k in now if k not in _MOVABLE and saved.get(k) != now[k])
    if extend and "epochs" in changed:
        changed.remove("epochs")
        if cfg.epochs < done:
            raise UsageError(f"--extend to {cfg.epochs} epochs, but {folder} has already trained {done}")
    if changed:
        hint = " (to train a finished run for longer, add --extend)" if changed == ["epochs"] else ""
        raise UsageError(
            f"--resume with a changed config ({', '.join(changed)}) in {folder}{hint}; "
            "use the original settings or a new --out folder"
        )


def _train_epoch(
    cfg: TrainConfig,
    epoch: int,
    loader: DeviceLoader,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: Optional[Any],
    mixer: nn.Module,
    mix_gen: torch.Generator,
    bar: Any,
) -> float:
    """One epoch of SGD on mixed batches; returns the mean training loss."""
    model.train()
    steps = len(loader)
    device: torch.device = loader.device
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    for i, (x, labels) in enumerate(loader):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(cfg, epoch * steps + i, steps)
        x, y = mixer(x, labels, generator=mix_gen)
        with torch.autocast(device.type, enabled=cfg.amp):
            logits = model(x)
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
        bar.update(1)
    return float(loss_sum) / steps


def _gather_mix_states(mix_gen: torch.Generator, world: int) -> Any:
    if world == 1:
        return mix_gen.get_state()
    import torch.distributed as dist

    gathered: List[Any] = [None] * world
    dist.all_gather_object(gathered, mix_gen.get_state().cpu())
    return gathered


def _progress(total: int, enabled: bool, desc: str) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, disable=not enabled, desc=desc, unit="step", leave=False, file=sys.stderr)


def train(
    cfg: TrainConfig,
    out_dir: Path,
    resume: bool = False,
    progress: bool = True,
    *,
    overwrite: bool = False,
    extend: bool = False,
) -> Dict[str, Any]:
    """Train one run into ``out_dir``; returns the final metrics (also in ``metrics.json``).

    ``resume`` continues the folder's run from its checkpoint (a folder without one starts
    afresh); with ``extend`` it may also raise ``epochs`` of a finished or partial run (the
    learning-rate schedule is then recomputed for the new length from the next step on).
    ``overwrite`` deletes the folder's run first. Without either, a folder holding a run is refused.
    """
    cfg.check()
    out_dir = Path(out_dir)
    if extend and not resume:
        raise UsageError("--extend continues a run: use it with --resume")
    check_output_folder(out_dir, resume=resume, overwrite=overwrite)
    rank, world = _distributed()
    main_process = rank == 0
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    device = _run_device(cfg, world)

    # Data: the splits, the normalisation of the training split, one loader.
    train_ds, val_ds = load_splits(cfg)
    cfg = _resolve_normalisation(cfg, train_ds)
    assert cfg.mean is not None and cfg.std is not None  # set by _resolve_normalisation
    if train_ds.images.shape[0] < cfg.batch_size * world:
        raise UsageError(
            f"batch_size {cfg.batch_size} x {world} processes exceeds the {train_ds.images.shape[0]} training images"
        )
    # Shuffling draws the same on every rank (each takes its share); mixing differs per rank.
    data_gen = torch.Generator(device=device).manual_seed(cfg.seed * 1_000_003 + 1)
    mix_gen = torch.Generator(device=device).manual_seed(cfg.seed * 1_000_003 + 2 + rank)
    loader = DeviceLoader.from_dataset(
        train_ds,
        cfg.batch_size,
        data_gen,
        augment=cfg.augment,
        crop_padding=cfg.crop_padding,
        flip=cfg.flip,
        rrc_scale=(cfg.rrc_scale[0], cfg.rrc_scale[1]),
        rrc_ratio=(cfg.rrc_ratio[0], cfg.rrc_ratio[1]),
        mean=cfg.mean,
        std=cfg.std,
        device=device,
        drop_last=True,
        channels_last=cfg.channels_last,
        rank=rank,
        world_size=world,
    )

    # Model, optimiser and operator.
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, train_ds.num_classes).to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    ddp_model: nn.Module = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        ddp_model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    optimizer = _optimizer(cfg, model)
    scaler = torch.amp.GradScaler("cuda") if cfg.amp else None
    mixer = build_mixer(
        cfg.method, train_ds.num_classes, cfg.mix, label_smoothing=cfg.label_smoothing, mean=cfg.mean, std=cfg.std
    )

    with RunLock(out_dir) if main_process else _NoLock():
        start_epoch, elapsed_before = 0, 0.0
        if resume and (out_dir / "checkpoint.pt").exists():
            state = read_checkpoint(out_dir, device)
            _check_resumable(state.get("config", {}), cfg, out_dir, extend, int(state["epoch"]))
            start_epoch, elapsed_before = restore_checkpoint(
                state, model=model, optimizer=optimizer, scaler=scaler, data_gen=data_gen, mix_gen=mix_gen, rank=rank
            )
        elif main_process:
            check_output_folder(out_dir, resume=resume, overwrite=overwrite)  # again, now that we hold the lock
        if main_process:
            start_run_folder(out_dir, asdict(cfg), start_epoch, overwrite=overwrite)

        bar = _progress(
            (cfg.epochs - start_epoch) * len(loader),
            progress and main_process and sys.stderr.isatty(),
            f"{cfg.method} s{cfg.seed}",
        )
        elapsed = elapsed_before
        for epoch in range(start_epoch, cfg.epochs):
            t0 = time.perf_counter()
            loss = _train_epoch(cfg, epoch, loader, ddp_model, optimizer, scaler, mixer, mix_gen, bar)
            if not math.isfinite(loss):
                raise UsageError(
                    f"training diverged in epoch {epoch} (train loss {loss}); lower --lr. "
                    f"The checkpoint in {out_dir} holds the last finite epoch"
                )
            seconds = time.perf_counter() - t0
            elapsed += seconds
            steps = len(loader)
            record: Dict[str, Any] = {
                "epoch": epoch,
                "train_loss": loss,
                "lr": lr_at(cfg, (epoch + 1) * steps - 1, steps),
                "seconds": seconds,
            }
            validate = (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs
            if main_process and validate and val_ds.images.shape[0] > 0:
                scores = split_metrics(
                    model, val_ds.images, val_ds.labels, cfg.mean, cfg.std, device=device,
                    channels_last=cfg.channels_last,
                )  # fmt: skip
                record.update({f"val_{k}": v for k, v in scores.items()})
            mix_states = _gather_mix_states(mix_gen, world)
            if main_process:
                append_log(out_dir, record)
                save_checkpoint(
                    out_dir / "checkpoint.pt", model=model, optimizer=optimizer, scaler=scaler, data_gen=data_gen,
                    mix_states=mix_states, epoch=epoch + 1, elapsed=elapsed, config=asdict(cfg),
                    classes=train_ds.classes,
                )  # fmt: skip
        bar.close()
        result = _finish(cfg, out_dir, model, device, train_ds, val_ds) if main_process else {}
    if world > 1:
        import torch.distributed as dist

        dist.barrier()
    return result


class _NoLock:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _finish(
    cfg: TrainConfig, out_dir: Path, model: nn.Module, device: torch.device, train_ds: ArrayDataset,
    val_ds: ArrayDataset,
) -> Dict[str, Any]:  # fmt: skip
    """The final numbers (last validation, the test split once when asked) into metrics.json."""
    assert cfg.mean is not None and cfg.std is not None
    lines = read_log(out_dir)
    last = lines[-1] if lines else {}
    result: Dict[str, Any] = {k: v for k, v in last.items() if k.startswith("val_")}
    result["train_loss"] = last.get("train_loss")
    result["epochs"] = cfg.epochs
    result["train_seconds"] = sum(line["seconds"] for line in lines)
    result["train_images"] = int(train_ds.images.shape[0])
    result["val_images"] = int(val_ds.images.shape[0])
    if cfg.test:
        test_ds = load_dataset(
            cfg.data, cfg.test_split, root=cfg.data_root, download=cfg.download, size=cfg.image_size or None
        )
        if list(test_ds.classes) != list(train_ds.classes):
            raise UsageError(f"the test split of {cfg.data} has other classes than its training split")
        images, labels, cl = test_ds.images, test_ds.labels, cfg.channels_last
        scores = split_metrics(model, images, labels, cfg.mean, cfg.std, device=device, channels_last=cl)
        result.update({f"test_{k}": v for k, v in scores.items()})
        if cfg.robustness:
            corrupted = corruption_metrics(
                model, images, labels, cfg.mean, cfg.std, device=device, channels_last=cl, limit=cfg.robustness_images
            )
            result.update(flat_corruption_scores(corrupted, "test_"))
        result["test_images"] = int(test_ds.images.shape[0])
    result["method"], result["seed"], result["model"] = cfg.method, cfg.seed, cfg.model
    result["versions"] = {"torch": torch.__version__, "python": sys.version.split()[0]}
    atomic_write_json(result, out_dir / "metrics.json")
    return result
