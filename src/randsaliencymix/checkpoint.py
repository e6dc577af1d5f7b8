"""A run's checkpoint, saved and restored side by side: model, optimiser, loss scaler, the data
and mixing generators, torch's global RNG, the epoch, the elapsed time, the resolved config
(normalisation included) and the class list. Saving is atomic; restoring reproduces an
uninterrupted run exactly on CPU."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import torch
from torch import nn

from .errors import UsageError
from .files import atomic_save

__all__ = ["read_checkpoint", "restore_checkpoint", "save_checkpoint"]


def save_checkpoint(
    path: Path,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: Optional[Any],
    data_gen: torch.Generator,
    mix_states: Any,
    epoch: int,
    elapsed: float,
    config: Dict[str, Any],
    classes: List[str],
    mixer: Optional[nn.Module] = None,
) -> None:
    """Write everything :func:`restore_checkpoint` needs; ``mix_states`` is one generator state,
    or one per rank."""
    state: Dict[str, Any] = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "data_gen": data_gen.get_state(),
        "mix_gen": mix_states,
        "torch_rng": torch.get_rng_state(),
        "epoch": epoch,
        "elapsed": elapsed,
        "config": config,
        "classes": list(classes),
    }
    if scaler is not None:
        state["scaler"] = scaler.state_dict()
    if mixer is not None:  # an operator's learned state (e.g. the confusion matrix of its pairing)
        state["mixer"] = mixer.state_dict()
    atomic_save(state, path)


def read_checkpoint(path: Path, device: torch.device | str = "cpu") -> Dict[str, Any]:
    """The state dict of an rsmix checkpoint (a run folder or the file), or a UsageError."""
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoint.pt"
    if not path.is_file():
        raise UsageError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location=device, weights_only=False)
    except Exception as exc:  # a truncated or foreign file: torch raises many kinds
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UsageError(f"cannot read the checkpoint {path}: {reason}") from None
    if not isinstance(state, dict) or not {"config", "model"} <= set(state):
        raise UsageError(f"{path} is not an rsmix checkpoint (no 'config' and 'model')")
    return state


def restore_checkpoint(
    state: Dict[str, Any],
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: Optional[Any],
    data_gen: torch.Generator,
    mix_gen: torch.Generator,
    rank: int,
    mixer: Optional[nn.Module] = None,
) -> Tuple[int, float]:
    """Load a checkpoint's state into the run's objects; returns (epochs done, seconds so far)."""
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    # Generator states are CPU byte tensors whatever the generator's device (map_location may
    # have moved them).
    data_gen.set_state(state["data_gen"].cpu())
    mix_state = state["mix_gen"][rank] if isinstance(state["mix_gen"], list) else state["mix_gen"]
    mix_gen.set_state(mix_state.cpu())
    torch.set_rng_state(state["torch_rng"].cpu())
    if scaler is not None and "scaler" in state:
        scaler.load_state_dict(state["scaler"])
    if mixer is not None and "mixer" in state:
        mixer.load_state_dict(state["mixer"])
    return int(state["epoch"]), float(state["elapsed"])
