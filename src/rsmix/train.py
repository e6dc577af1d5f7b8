"""One training run (``rsmix train``): the loop, as a short sequence of named steps.

A run is a folder: ``config.json`` (the resolved configuration, normalisation included),
``log.jsonl`` (one line per epoch), ``checkpoint.pt`` (written atomically after every epoch;
``resume`` continues from it to the same result as an uninterrupted run on CPU) and
``metrics.json`` (the final numbers). See :mod:`runs` for what happens to an existing folder and
:mod:`config` for the keys.

Hyper-parameters and epochs are never chosen on the test split: the validation split is carved
from the training set, and the test split is evaluated once, after the last epoch, when asked.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable, ContextManager, Dict, List, Optional, Tuple

import torch
from torch import nn

from randsaliencymix import Mixer, SelfCAMLabels, dataset_maps, soft_target_cross_entropy

from .checkpoint import check_resumable_state, read_checkpoint, restore_checkpoint, save_checkpoint
from .config import _ADDED_KEYS, _MOVABLE, TrainConfig, available_device, lr_at
from .data import ArrayDataset, class_balanced_subset, load_dataset, train_val_split
from .data.args import check_batch_fits
from .errors import UsageError
from .evaluate import corruption_metrics, flat_corruption_scores, predict, split_metrics
from .files import atomic_write_json
from .methods import METHOD_NAMES, build_mixer
from .metrics import classification_metrics
from .models import build_model, check_model_takes
from .pipeline import DeviceLoader
from .precision import autocast, emulation_warning, hardware, resolve_precision, scaler_needed
from .provenance import code_version, write_predictions
from .runs import RunLock, append_log, check_output_folder, read_log, start_run_folder

__all__ = ["TrainConfig", "UsageError", "available_device", "load_splits", "lr_at", "train"]

METHODS = METHOD_NAMES  # kept for callers of the old name

# (maps or None, clean logits or None) of a batch, for the saliency operators of a run.
SaliencySource = Callable[[torch.Tensor, torch.Tensor], Tuple[Optional[torch.Tensor], Optional[torch.Tensor]]]


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


@dataclass
class _Run:
    """Everything a run trains with, built once by :func:`_build_run`."""

    cfg: TrainConfig  # resolved: normalisation filled in
    rank: int
    world: int
    device: torch.device
    train_ds: ArrayDataset
    val_ds: ArrayDataset
    loader: DeviceLoader
    model: nn.Module  # the module itself (its state dict, evaluation)
    forward: nn.Module  # what the loop calls: the model, or its DDP wrapper
    optimizer: torch.optim.Optimizer
    scaler: Optional[Any]
    mixer: Mixer
    saliency: Optional[SaliencySource]
    data_gen: torch.Generator
    mix_gen: torch.Generator
    self_cam: Optional[SelfCAMLabels] = None  # with cfg.self_cam > 0: rewrites the mixed batch's labels

    @property
    def main(self) -> bool:
        return self.rank == 0


def _build_run(cfg: TrainConfig) -> _Run:
    """Processes, device, data (splits, normalisation, one loader), model, optimiser, operator."""
    rank, world = _distributed()
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    device = _run_device(cfg, world)
    _check_precision_on(cfg.precision, device, rank)
    if cfg.image_size:  # before decoding: a size the model cannot take fails now, in one line
        check_model_takes(cfg.model, cfg.image_size)
        if device.type == "cpu":  # (a GPU's memory is the allocator's to report)
            check_batch_fits(cfg.batch_size, 3, cfg.image_size)
    train_ds, val_ds = load_splits(cfg)
    if cfg.test:  # a missing or unreadable test split fails now, not after training
        _load_test_split(cfg)
    side = min(int(train_ds.images.shape[-2]), int(train_ds.images.shape[-1]))
    if cfg.augment == "pad_crop" and cfg.crop_padding >= side:
        raise UsageError(
            f"--crop-padding {cfg.crop_padding} is not smaller than the {side}-px images: a crop could be all "
            f"padding; use at most {side - 1} (CIFAR's is 4)"
        )
    cfg = _resolve_normalisation(cfg, train_ds)
    assert cfg.mean is not None and cfg.std is not None  # filled in by _resolve_normalisation
    if train_ds.images.shape[0] < cfg.batch_size * world:
        raise UsageError(
            f"batch_size {cfg.batch_size} x {world} processes exceeds the {train_ds.images.shape[0]} training images"
        )
    # Shuffling draws the same on every rank (each takes its share); mixing differs per rank.
    data_gen = torch.Generator(device=device).manual_seed(cfg.seed * 1_000_003 + 1)
    mix_gen = torch.Generator(device=device).manual_seed(cfg.seed * 1_000_003 + 2 + rank)
    mixer = build_mixer(
        cfg.method, train_ds.num_classes, cfg.mix, label_smoothing=cfg.label_smoothing, mean=cfg.mean, std=cfg.std
    ).to(device)
    loader = DeviceLoader.from_dataset(
        train_ds, cfg.batch_size, data_gen, augment=cfg.augment, crop_padding=cfg.crop_padding, flip=cfg.flip,
        rrc_scale=(cfg.rrc_scale[0], cfg.rrc_scale[1]), rrc_ratio=(cfg.rrc_ratio[0], cfg.rrc_ratio[1]),
        mean=cfg.mean, std=cfg.std, device=device, drop_last=True, channels_last=cfg.channels_last, rank=rank,
        world_size=world, maps=_cached_maps(cfg, mixer, train_ds, device),
    )  # fmt: skip
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, train_ds.num_classes).to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    forward: nn.Module = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        forward = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    return _Run(
        cfg=cfg, rank=rank, world=world, device=device, train_ds=train_ds, val_ds=val_ds, loader=loader,
        model=model, forward=forward, optimizer=_optimizer(cfg, model),
        scaler=torch.amp.GradScaler("cuda") if scaler_needed(cfg.precision) else None, mixer=mixer,
        saliency=_saliency_source(cfg, model, mixer, loader), data_gen=data_gen, mix_gen=mix_gen,
        self_cam=SelfCAMLabels(forward, kappa=cfg.self_cam) if cfg.self_cam > 0 else None,
    )  # fmt: skip


def _chosen_precision(cfg: TrainConfig, out_dir: Path, resume: bool) -> Tuple[TrainConfig, str]:
    """``--precision auto`` made concrete: a resumed run's recorded precision (the run is one run, in
    one precision, whichever machine resumes it), else what ``auto`` chooses here (and the line
    that says so)."""
    if cfg.precision != "auto":
        return cfg, ""
    saved = out_dir / "config.json"
    if resume and saved.is_file():
        try:
            recorded = json.loads(saved.read_text()).get("precision", _ADDED_KEYS["precision"])
        except (OSError, ValueError, AttributeError):
            recorded = None  # the resume check reports the unreadable config
        if recorded in ("fp32", "bf16", "fp16"):
            return replace(cfg, precision=recorded), ""
    chosen = resolve_precision("auto", cfg.device)
    why = "native bfloat16 here" if chosen == "bf16" else "no native bfloat16 here"
    return replace(cfg, precision=chosen), f"--precision auto: {chosen} ({why}; recorded in config.json)"


def _check_precision_on(precision: str, device: torch.device, rank: int) -> None:
    """bf16 on a CUDA GPU without bfloat16 is refused; on a CPU without native bfloat16 it runs,
    emulated, after one line of warning."""
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise UsageError(f"precision bf16 needs a GPU with bfloat16 (Ampere or newer); {device} has none: use fp16")
    warning = emulation_warning(precision, device)
    if warning and rank == 0:
        print(f"rsmix: {warning}", file=sys.stderr)


def _cached_maps(
    cfg: TrainConfig, mixer: Mixer, train_ds: ArrayDataset, device: torch.device
) -> Optional[torch.Tensor]:
    """The training split's maps for ``--saliency <detector>_cached`` (computed once and cached by
    content; the loader crops and flips them with the images), or None."""
    if not cfg.saliency.endswith("_cached") or not mixer.uses_saliency:
        return None
    return dataset_maps(train_ds.images, cfg.saliency[: -len("_cached")], device=device)


def _saliency_source(
    cfg: TrainConfig, model: nn.Module, mixer: Mixer, loader: DeviceLoader
) -> Optional[SaliencySource]:
    """The run's source of maps for its saliency operators (``cfg.saliency``), or None when the
    operators compute their own (``"operator"``), the loader yields them (cached maps) or the
    operator reads none."""
    if cfg.saliency == "operator" or cfg.saliency.endswith("_cached") or not mixer.uses_saliency:
        return None
    if cfg.saliency == "cam":
        from randsaliencymix import cam_and_logits

        probe = loader.images[:2].float()
        try:  # a model without a pooling + linear head is the user's choice of model: say so now
            cam_and_logits(model, probe, loader.labels[:2])
        except ValueError as exc:
            raise UsageError(f"--saliency cam needs model {cfg.model!r} to end in pooling + linear: {exc}") from None

        def cam_source(x: torch.Tensor, labels: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
            with autocast(x.device, cfg.precision):  # the model's forward, as in training
                maps, logits = cam_and_logits(model, x, labels)
            return maps, logits.float()

        return cam_source
    from randsaliencymix import saliency_map

    method, mean, std = cfg.saliency, tuple(cfg.mean or ()), tuple(cfg.std or ())
    return lambda x, labels: (saliency_map(x, method, None, mean, std, validate=False), None)


def _begin(run: _Run, out_dir: Path, *, resume: bool, overwrite: bool, extend: bool) -> Tuple[int, float]:
    """Restore the checkpoint (``resume``) or start afresh; prepare the folder. (epochs done, seconds)."""
    start_epoch, elapsed = 0, 0.0
    if resume and (out_dir / "checkpoint.pt").exists():
        state = read_checkpoint(out_dir, run.device)
        check_resumable_state(state, out_dir / "checkpoint.pt")
        _check_resumable(state["config"], run.cfg, out_dir, extend, int(state["epoch"]))
        start_epoch, elapsed = restore_checkpoint(
            state, model=run.model, optimizer=run.optimizer, scaler=run.scaler, data_gen=run.data_gen,
            mix_gen=run.mix_gen, rank=run.rank, mixer=run.mixer, where=out_dir / "checkpoint.pt",
        )  # fmt: skip
    elif run.main:
        check_output_folder(out_dir, resume=resume, overwrite=overwrite)  # again, now that we hold the lock
    if run.main:
        start_run_folder(out_dir, asdict(run.cfg), start_epoch, overwrite=overwrite)
    return start_epoch, elapsed


def _train_epoch(run: _Run, epoch: int, bar: Any) -> Dict[str, Any]:
    """One epoch of SGD on mixed batches: its log record (loss, lr, seconds, saliency seconds)."""
    cfg, device, steps = run.cfg, run.device, len(run.loader)
    run.forward.train()
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    t0, saliency_seconds = time.perf_counter(), 0.0
    for i, batch in enumerate(run.loader):
        for group in run.optimizer.param_groups:
            group["lr"] = lr_at(cfg, epoch * steps + i, steps)
        x, labels = batch[0], batch[1]
        maps = batch[2] if len(batch) > 2 else None  # the loader's cropped cached maps, if any
        clean_logits = None
        if run.saliency is not None:
            ts = time.perf_counter()
            maps, clean_logits = run.saliency(x, labels)
            saliency_seconds += time.perf_counter() - ts
        if run.self_cam is None:
            xm, y = run.mixer(x, labels, generator=run.mix_gen, saliency=maps)
            with autocast(device, cfg.precision):  # the model only: the mixed batch is the same in every precision
                logits = run.forward(xm)
        else:  # the same draws and images; the labels read from this forward's features
            with run.self_cam.step(run.mixer, x, labels, generator=run.mix_gen, saliency=maps) as mixed:
                with autocast(device, cfg.precision):
                    logits = run.forward(mixed.images)
            y = mixed.targets
        loss = soft_target_cross_entropy(logits.float(), y)
        run.optimizer.zero_grad(set_to_none=True)
        if run.scaler is not None:
            run.scaler.scale(loss).backward()
            run.scaler.step(run.optimizer)
            run.scaler.update()
        else:
            loss.backward()
            run.optimizer.step()
        _observe(run, logits, y, clean_logits, labels)
        loss_sum += loss.detach()
        bar.update(1)
    train_loss = float(loss_sum) / steps
    if not math.isfinite(train_loss):
        raise UsageError(f"training diverged in epoch {epoch} (train loss {train_loss}); lower --lr")
    record: Dict[str, Any] = {
        "epoch": epoch,
        "train_loss": train_loss,
        "lr": lr_at(cfg, (epoch + 1) * steps - 1, steps),
        "seconds": time.perf_counter() - t0,
    }
    if run.saliency is not None:
        record["saliency_seconds"] = saliency_seconds
    return record


def _observe(
    run: _Run, logits: torch.Tensor, y: torch.Tensor, clean_logits: Optional[torch.Tensor], labels: torch.Tensor
) -> None:
    """Let the operator learn from the step (confusion pairing): from the clean batch's outputs and
    labels when the saliency source computed them, else from the mixed batch's and its soft targets.
    Under DDP the operator's state (e.g. the confusion matrix) is averaged over the ranks."""
    if clean_logits is not None:
        run.mixer.observe(clean_logits, labels)
    else:
        run.mixer.observe(logits.detach().float(), y)
    if run.world > 1:
        import torch.distributed as dist

        for buffer in run.mixer.buffers():
            if buffer.is_floating_point():
                dist.all_reduce(buffer)
                buffer.div_(run.world)


def _validate(run: _Run, epoch: int, record: Dict[str, Any]) -> None:
    """Validation metrics into the record, every ``eval_every`` epochs and after the last."""
    cfg = run.cfg
    if not run.main or run.val_ds.images.shape[0] == 0:
        return
    if (epoch + 1) % cfg.eval_every and epoch + 1 != cfg.epochs:
        return
    assert cfg.mean is not None and cfg.std is not None
    scores = split_metrics(
        run.model, run.val_ds.images, run.val_ds.labels, cfg.mean, cfg.std, device=run.device,
        channels_last=cfg.channels_last, precision=cfg.precision,
    )  # fmt: skip
    record.update({f"val_{k}": v for k, v in scores.items()})


def _save_epoch(run: _Run, out_dir: Path, record: Dict[str, Any], elapsed: float) -> None:
    """The epoch's log line and checkpoint (every rank takes part in gathering the generators)."""
    mix_states = _gather_mix_states(run.mix_gen, run.world)
    if not run.main:
        return
    append_log(out_dir, record)
    save_checkpoint(
        out_dir / "checkpoint.pt", model=run.model, optimizer=run.optimizer, scaler=run.scaler, data_gen=run.data_gen,
        mix_states=mix_states, epoch=record["epoch"] + 1, elapsed=elapsed, config=asdict(run.cfg),
        classes=run.train_ds.classes, mixer=run.mixer, image_shape=(int(run.train_ds.images.shape[-2]), int(run.train_ds.images.shape[-1])),
    )  # fmt: skip


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
    if cfg.method == "none" and cfg.self_cam > 0:
        raise UsageError("--self-cam rewrites the labels of mixed samples, and method 'none' mixes none")
    out_dir = Path(out_dir)
    if extend and not resume:
        raise UsageError("--extend continues a run: use it with --resume")
    check_output_folder(out_dir, resume=resume, overwrite=overwrite)
    cfg, chose = _chosen_precision(cfg, out_dir, resume)
    version = code_version()  # the code this process runs, read before any epoch
    run = _build_run(cfg)
    if chose and run.main:
        print(f"rsmix: {chose}", file=sys.stderr)
    lock: ContextManager[Any] = RunLock(out_dir) if run.main else nullcontext()
    with lock:
        start_epoch, elapsed = _begin(run, out_dir, resume=resume, overwrite=overwrite, extend=extend)
        steps = (run.cfg.epochs - start_epoch) * len(run.loader)
        bar = _progress(steps, progress and run.main and sys.stderr.isatty(), f"{cfg.method} s{cfg.seed}")
        for epoch in range(start_epoch, run.cfg.epochs):
            record = _train_epoch(run, epoch, bar)
            _validate(run, epoch, record)
            elapsed += record["seconds"]
            _save_epoch(run, out_dir, record, elapsed)
        bar.close()
        result = _finish(run, out_dir, version) if run.main else {}
    if run.world > 1:
        import torch.distributed as dist

        dist.barrier()
    return result


def _load_test_split(cfg: TrainConfig) -> ArrayDataset:
    return load_dataset(
        cfg.data, cfg.test_split, root=cfg.data_root, download=cfg.download, size=cfg.image_size or None
    )


def _finish(run: _Run, out_dir: Path, version: Dict[str, Any]) -> Dict[str, Any]:
    """The final numbers (last validation, the test split once when asked) into metrics.json, the
    per-image predictions of each split scored into ``predictions_<split>.txt``."""
    cfg, model, device, train_ds, val_ds = run.cfg, run.model, run.device, run.train_ds, run.val_ds
    assert cfg.mean is not None and cfg.std is not None
    lines = read_log(out_dir)
    last = lines[-1] if lines else {}
    result: Dict[str, Any] = {k: v for k, v in last.items() if k.startswith("val_")}
    result["train_loss"] = last.get("train_loss")
    result["epochs"] = cfg.epochs
    result["train_seconds"] = sum(line["seconds"] for line in lines)
    if any("saliency_seconds" in line for line in lines):
        result["saliency_seconds"] = sum(line.get("saliency_seconds", 0.0) for line in lines)
        result["saliency_share"] = result["saliency_seconds"] / max(result["train_seconds"], 1e-9)
    result["train_images"] = int(train_ds.images.shape[0])
    result["val_images"] = int(val_ds.images.shape[0])
    cl, pr = cfg.channels_last, cfg.precision
    if val_ds.images.shape[0]:
        logits = predict(model, val_ds.images, cfg.mean, cfg.std, device=device, channels_last=cl, precision=pr)
        write_predictions(out_dir / "predictions_val.txt", val_ds.labels, logits)
    if cfg.test:
        test_ds = _load_test_split(cfg)
        if list(test_ds.classes) != list(train_ds.classes):
            raise UsageError(f"the test split of {cfg.data} has other classes than its training split")
        images, labels = test_ds.images, test_ds.labels
        logits = predict(model, images, cfg.mean, cfg.std, device=device, channels_last=cl, precision=pr)
        write_predictions(out_dir / "predictions_test.txt", labels, logits)
        scores = classification_metrics(logits, labels)
        result.update({f"test_{k}": v for k, v in scores.items()})
        if cfg.robustness:
            corrupted = corruption_metrics(
                model, images, labels, cfg.mean, cfg.std, device=device, channels_last=cl,
                limit=cfg.robustness_images, precision=pr,
            )  # fmt: skip
            result.update(flat_corruption_scores(corrupted, "test_"))
        result["test_images"] = int(test_ds.images.shape[0])
    result["method"], result["seed"], result["model"] = cfg.method, cfg.seed, cfg.model
    result["self_cam"] = cfg.self_cam
    result["versions"] = {"torch": torch.__version__, "python": sys.version.split()[0]}
    result["hardware"] = hardware(device)
    result["code_version"] = version
    atomic_write_json(result, out_dir / "metrics.json")
    return result
