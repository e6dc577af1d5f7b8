"""A run's configuration: :class:`TrainConfig` (every key of ``config.json``, ``rsmix train``'s
flags and a YAML ``--config``), its checks (a :class:`UsageError` naming the first bad value),
which keys may change on ``--resume``, the device check and the learning-rate schedule."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any, Dict, List, Optional, Tuple

import torch

from .augment import AUGMENTS, RRC_RATIO, RRC_SCALE, check_rrc_range
from .errors import UsageError
from .methods import METHOD_NAMES, build_mixer, get_method
from .models import MODEL_NAMES
from .precision import PRECISION_CHOICES, check_precision

__all__ = ["SALIENCY_SOURCES", "SCHEDULES", "TrainConfig", "available_device", "lr_at"]

METHODS = METHOD_NAMES
SCHEDULES = ("cosine", "multistep")
# Where the saliency operators of a run read their maps: "operator" = each operator's own
# ``detector`` on the batch (as the library does on its own); a detector name = that detector on
# the clean batch, for every operator; "<detector>_cached" = that detector's maps of the training
# split, computed once, cached by content and cropped and flipped with the images by the loader;
# "cam" = class activation maps of the model being trained.
SALIENCY_SOURCES = ("operator", "fine_grained", "spectral", "fine_grained_cached", "spectral_cached", "cam")
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
    "saliency": "operator",
    "precision": "fp32",
    "self_cam": 0.0,
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
    saliency: str = "operator"  # the maps every saliency operator reads: one of SALIENCY_SOURCES
    self_cam: float = 0.0  # kappa of self-CAM labels (randsaliencymix.SelfCAMLabels); 0: the operator's labels
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
    # the model's forward: fp32, bf16 (autocast, CPU or CUDA), fp16 (CUDA, scaled), or auto (bf16 where
    # native, else fp32; resolved when the run starts and recorded as what it chose)
    precision: str = "auto"
    channels_last: bool = False
    test: bool = False  # evaluate the test split once, after the last epoch
    test_split: str = "test"  # its name (an ImageFolder's folder: Imagenette calls it "val")
    eval_every: int = 1  # validate every N epochs (and always after the last one)
    robustness: bool = False  # with test: also score the test split under fixed corruptions
    robustness_images: int = 0  # score the corruptions on the first N test images (0: all)
    threads: int = 0  # torch threads on CPU; 0 = torch's default

    @classmethod
    def from_saved(cls, values: Dict[str, Any]) -> TrainConfig:
        """The config a run recorded (``config.json``, a checkpoint's): keys added since it ran take
        the value that reproduces what it did (``precision`` fp32, not today's ``auto``)."""
        return cls.from_dict({**_ADDED_KEYS, **_upgrade_legacy(values)})

    @classmethod
    def from_dict(cls, values: Dict[str, Any]) -> TrainConfig:
        values = _upgrade_legacy(values)
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
        _one_of("saliency", self.saliency, SALIENCY_SOURCES)
        _one_of("precision", self.precision, PRECISION_CHOICES)
        if self.saliency != "operator" and self.method == "saliencymix":
            raise UsageError(
                "method 'saliencymix' is the authors' code, which reads its own OpenCV map: "
                "use saliencymix_per_sample with --saliency"
            )
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
        if not 0.0 <= self.self_cam <= 1.0:
            raise UsageError(f"self_cam (kappa) must be in [0, 1], got {self.self_cam}")
        if self.method == "none" and self.mix:
            raise UsageError(f"method 'none' takes no mixing options, got {sorted(self.mix)}")
        try:
            torch.device(self.device)
        except (RuntimeError, ValueError, TypeError):
            raise UsageError(f"unknown device {self.device!r}; accepted: cpu, cuda, cuda:N") from None
        reason = check_precision(self.precision, self.device)
        if reason:
            raise UsageError(reason)
        build_mixer(self.method, 10, self.mix)  # a bad option value is a UsageError now, not mid-run


def _upgrade_legacy(values: Dict[str, Any]) -> Dict[str, Any]:
    """A config of an older version in today's keys: ``amp: true`` is ``precision: fp16`` (what it
    did), ``amp: false`` is ``precision: fp32`` (what it did, whatever today's default). Both keys at
    once must agree."""
    if "amp" not in values:
        return values
    values = dict(values)
    amp = values.pop("amp")
    if not isinstance(amp, bool):
        raise UsageError(f"config key 'amp' must be true or false, got {amp!r} (it is now 'precision')")
    if amp:
        if values.get("precision", "fp16") != "fp16":
            raise UsageError(f"config keys amp: true and precision: {values['precision']} disagree; keep precision")
        values["precision"] = "fp16"
    else:
        values.setdefault("precision", "fp32")
    return values


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
