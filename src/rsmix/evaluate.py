"""Scoring a model: logits of a uint8 image set through the one input pipeline, the metrics of a
split, the fixed corruptions of :mod:`robustness`, and ``rsmix eval`` on a saved checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

import torch
from torch import nn

from .checkpoint import read_checkpoint
from .config import TrainConfig, available_device
from .data import load_dataset
from .errors import UsageError
from .metrics import classification_metrics
from .models import build_model
from .pipeline import CIFAR10_MEAN, CIFAR10_STD, DeviceLoader
from .precision import autocast, check_precision, resolve_precision

__all__ = ["corruption_metrics", "evaluate_checkpoint", "predict", "split_metrics"]


@torch.no_grad()
def predict(
    model: nn.Module,
    images_u8: torch.Tensor,
    mean: Sequence[float],
    std: Sequence[float],
    *,
    device: torch.device,
    channels_last: bool = False,
    batch_size: int = 500,
    precision: str = "fp32",
) -> torch.Tensor:
    """Logits of a uint8 image set, in order, as float32 on the CPU (the model in eval mode, its
    forward in ``precision``: see :mod:`rsmix.precision`)."""
    model.eval()
    labels = torch.zeros(images_u8.shape[0], dtype=torch.long)
    loader = DeviceLoader(
        images_u8, labels, batch_size, train=False, mean=mean, std=std, device=device, channels_last=channels_last
    )
    with autocast(torch.device(device), precision):
        return torch.cat([model(x).float().cpu() for x, _ in loader])


def split_metrics(
    model: nn.Module,
    images_u8: torch.Tensor,
    labels: torch.Tensor,
    mean: Sequence[float],
    std: Sequence[float],
    *,
    device: torch.device,
    channels_last: bool = False,
    precision: str = "fp32",
) -> Dict[str, float]:
    """:func:`metrics.classification_metrics` of the model on a labelled uint8 image set."""
    logits = predict(model, images_u8, mean, std, device=device, channels_last=channels_last, precision=precision)
    return classification_metrics(logits, labels)


def corruption_metrics(
    model: nn.Module,
    images_u8: torch.Tensor,
    labels: torch.Tensor,
    mean: Sequence[float],
    std: Sequence[float],
    *,
    device: torch.device,
    channels_last: bool = False,
    seed: int = 0,
    limit: int = 0,
    precision: str = "fp32",
) -> Dict[str, Dict[str, float]]:
    """Metrics under every corruption of ``robustness.CORRUPTIONS`` (the same images for every
    model: the corruptions' randomness is seeded by ``seed``), plus their mean top-1 error; on the
    first ``limit`` images only when ``limit > 0``."""
    from .robustness import corrupted_sets

    if limit > 0:
        images_u8, labels = images_u8[:limit], labels[:limit]
    out: Dict[str, Dict[str, float]] = {}
    for name, images in corrupted_sets(images_u8, seed=seed).items():
        out[name] = split_metrics(
            model, images, labels, mean, std, device=device, channels_last=channels_last, precision=precision
        )
    out["corruption_mean"] = {"top1_err": sum(m["top1_err"] for m in out.values()) / len(out)}
    return out


def flat_corruption_scores(scores: Dict[str, Dict[str, float]], prefix: str = "") -> Dict[str, float]:
    """``{prefix}<corruption>_top1_err`` and ``_ece`` of :func:`corruption_metrics`' result."""
    return {f"{prefix}{name}_{k}": v for name, m in scores.items() for k, v in m.items() if k in ("top1_err", "ece")}


def _legacy_normalisation(channels: int) -> tuple:
    # Checkpoints written before the normalisation was stored used CIFAR-10's statistics for
    # colour images and (0.5, 0.25) for grey ones.
    if channels == 3:
        return CIFAR10_MEAN, CIFAR10_STD
    return (0.5,) * channels, (0.25,) * channels


class TrainedModel(NamedTuple):
    """A run's trained model (evaluation mode, in the run's memory format) with what scoring it needs."""

    model: nn.Module
    classes: Optional[List[str]]  # the training split's class list (None in checkpoints from before it was saved)
    mean: Tuple[float, ...]
    std: Tuple[float, ...]
    image_size: int  # the run's --image-size (0: as stored)
    channels_last: bool
    precision: str  # the run's --precision: its scores were computed in it


def load_trained_model(
    run: Path,
    device: str = "cpu",
    classes: Optional[Sequence[str]] = None,
    channels: Optional[int] = None,
    data: str = "the dataset",
) -> TrainedModel:
    """The model of a run folder (or ``checkpoint.pt``) on ``device``, in evaluation mode.

    Given the ``classes`` and ``channels`` of the data it will see (named ``data`` in errors), a
    UsageError unless they are the run's: scores against another class list would be wrong.
    Without ``classes``, the run's own list gives the number of classes."""

    dev = available_device(device)
    return trained_model(read_checkpoint(Path(run), dev), run, dev, classes, channels, data)


def trained_model(
    state: Dict[str, Any],
    run: Path,
    dev: torch.device,
    classes: Optional[Sequence[str]],
    channels: Optional[int],
    data: str,
) -> TrainedModel:
    """:func:`load_trained_model` from a checkpoint already read (``state``, from ``run``)."""
    cfg = TrainConfig.from_saved(state["config"])
    saved: Optional[List[str]] = list(state["classes"]) if state.get("classes") is not None else None
    if classes is not None and saved is not None and saved != list(classes):
        raise UsageError(
            f"the checkpoint's {len(saved)} classes ({', '.join(saved[:4])}, ...) are not the "
            f"{len(classes)} classes of {data} ({', '.join(list(classes)[:4])}, ...): its scores would be "
            "against the wrong classes"
        )
    if classes is None and saved is None:
        raise UsageError(f"checkpoint {run} holds no class list: give the dataset it was trained on")
    num_classes = len(classes) if classes is not None else len(saved or ())
    model = build_model(cfg.model, num_classes).to(dev)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as exc:
        raise UsageError(
            f"checkpoint {run} does not fit {num_classes} classes of {data}: {str(exc).splitlines()[0]}"
        ) from exc
    if cfg.mean is not None and cfg.std is not None:
        mean, std = tuple(cfg.mean), tuple(cfg.std)
        if channels is not None and len(mean) != channels:
            raise UsageError(f"the checkpoint was trained on {len(mean)}-channel images, {data} has {channels}")
    else:
        mean, std = _legacy_normalisation(channels if channels is not None else 3)
    # The run's memory format, so that the scores match the ones the run itself reported.
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    return TrainedModel(model.eval(), saved, mean, std, cfg.image_size, cfg.channels_last, cfg.precision)


def evaluate_checkpoint(
    run: Path,
    data: str,
    split: str = "test",
    data_root: Optional[str] = None,
    device: str = "cpu",
    robustness: bool = False,
    seed: int = 0,
    robustness_images: int = 0,
    precision: Optional[str] = None,
) -> Dict[str, float]:
    """Top-1/top-5 error, NLL and ECE of a run's checkpoint on a split of any supported dataset;
    with ``robustness``, also ``<corruption>_top1_err`` and ``<corruption>_ece`` for every fixed
    corruption (seeded by ``seed``) and their mean top-1 error.

    The model is scored with the normalisation its run trained with, and only on a dataset whose
    class list is the run's (else a UsageError: the scores would be against the wrong classes).
    The model's forward runs in ``precision``, by default the run's own (so the scores are the ones
    the run reported); ``"fp32"`` scores a bf16-trained model in full precision."""
    if isinstance(robustness_images, bool) or not isinstance(robustness_images, int) or robustness_images < 0:
        raise UsageError(f"--robustness-images must be >= 0 (0: all test images), got {robustness_images!r}")
    dev = available_device(device)
    if precision is not None:
        reason = check_precision(precision, dev.type)
        if reason:
            raise UsageError(reason)
        precision = resolve_precision(precision, dev.type)
    state = read_checkpoint(Path(run), dev)
    size = TrainConfig.from_saved(state["config"]).image_size
    ds = load_dataset(data, split, root=data_root, size=size or None)  # the run's image size
    trained_on = state.get("image_shape")  # (H, W) it trained on (checkpoints from before: unknown)
    if trained_on is not None and list(ds.images.shape[-2:]) != list(trained_on):
        h, w = (int(v) for v in trained_on)
        raise UsageError(
            f"{run} trained on {h}x{w} images, but {split} of {data} holds {ds.images.shape[-2]}x{ds.images.shape[-1]}: "
            "scores at another size would not be the run's; evaluate on data of the run's size"
        )
    trained = trained_model(state, run, dev, ds.classes, ds.images.shape[1], data)
    model, mean, std = trained.model, trained.mean, trained.std
    chosen = precision if precision is not None else trained.precision
    if check_precision(chosen, dev.type):  # an fp16 (CUDA) run scored on the CPU: say which precision to use
        raise UsageError(f"{run} trained in {chosen}, which cannot run on {dev}: give --precision fp32 or bf16")
    metrics = split_metrics(
        model, ds.images, ds.labels, mean, std, device=dev, channels_last=trained.channels_last, precision=chosen
    )
    if robustness:
        scores = corruption_metrics(
            model,
            ds.images,
            ds.labels,
            mean,
            std,
            device=dev,
            channels_last=trained.channels_last,
            seed=seed,
            limit=robustness_images,
            precision=chosen,
        )
        metrics.update(flat_corruption_scores(scores))
    return metrics
