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

__all__ = ["check_resumable_state", "read_checkpoint", "restore_checkpoint", "save_checkpoint"]


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
    image_shape: Optional[Tuple[int, int]] = None,
) -> None:
    """Write everything :func:`restore_checkpoint` needs; ``mix_states`` is one generator state,
    or one per rank; ``image_shape`` the (H, W) of the images the run trained on (evaluation
    refuses images of another size)."""
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
    if image_shape is not None:
        state["image_shape"] = [int(image_shape[0]), int(image_shape[1])]
    if scaler is not None:
        state["scaler"] = scaler.state_dict()
    if mixer is not None:  # an operator's learned state (e.g. the confusion matrix of its pairing)
        state["mixer"] = mixer.state_dict()
    atomic_save(state, path)


def read_checkpoint(path: Path, device: torch.device | str = "cpu") -> Dict[str, Any]:
    """The state dict of an rsmix checkpoint (a run folder or the file), or a UsageError."""
    path = Path(path)
    if path.is_dir() and not (path / "checkpoint.pt").exists() and (path / "runs").is_dir():
        runs = sorted(p.name for p in (path / "runs").iterdir() if p.is_dir())
        example = f"{path}/runs/{runs[0]}" if runs else f"{path}/runs/<name>_s<seed>"
        raise UsageError(f"{path} is an rsmix compare folder, not a run; pass one of its runs, e.g. {example}")
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


def check_resumable_state(state: Dict[str, Any], where: Path) -> None:
    """A UsageError naming ``where`` and the first thing missing or malformed in a checkpoint that
    is to be resumed (every key :func:`restore_checkpoint` reads, with its type)."""

    def bad(what: str) -> UsageError:
        return UsageError(f"cannot resume from the checkpoint {where}: {what}")

    for key, kind, words in (
        ("model", dict, "a state dict"),
        ("optimizer", dict, "an optimiser state dict"),
        ("config", dict, "a mapping of config keys"),
    ):
        if key not in state:
            raise bad(f"it has no {key!r}")
        if not isinstance(state[key], kind):
            raise bad(f"its {key!r} is {type(state[key]).__name__}, not {words}")
    epoch = state.get("epoch")
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
        raise bad(f"its 'epoch' must be a whole number >= 0, got {epoch!r}")
    elapsed = state.get("elapsed")
    if isinstance(elapsed, bool) or not isinstance(elapsed, (int, float)):
        raise bad(f"its 'elapsed' must be a number of seconds, got {elapsed!r}")
    states = state.get("mix_gen")
    for key, value in (("data_gen", state.get("data_gen")), ("torch_rng", state.get("torch_rng"))) + tuple(
        ("mix_gen", v) for v in (states if isinstance(states, list) else [states])
    ):
        if not isinstance(value, torch.Tensor) or value.dtype != torch.uint8 or value.ndim != 1:
            raise bad(f"its {key!r} is not a generator state (a 1-d uint8 tensor)")


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
    where: Path = Path("checkpoint.pt"),
) -> Tuple[int, float]:
    """Load a checkpoint's state into the run's objects; returns (epochs done, seconds so far).
    A checkpoint that does not fit them is a UsageError naming ``where`` (nothing is written)."""
    check_resumable_state(state, where)

    def restore(what: str, load: Any, value: Any) -> None:
        try:
            load(value)
        except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UsageError(
                f"cannot resume from the checkpoint {where}: its {what} does not fit this run: {reason}"
            ) from None

    restore("model", model.load_state_dict, state["model"])
    restore("optimizer", optimizer.load_state_dict, state["optimizer"])
    # Generator states are CPU byte tensors whatever the generator's device (map_location may
    # have moved them).
    restore("data_gen", data_gen.set_state, state["data_gen"].cpu())
    mix_states = state["mix_gen"]
    if isinstance(mix_states, list) and rank >= len(mix_states):
        raise UsageError(
            f"cannot resume from the checkpoint {where}: it holds {len(mix_states)} ranks' mix_gen, not rank {rank}'s"
        )
    mix_state = mix_states[rank] if isinstance(mix_states, list) else mix_states
    restore("mix_gen", mix_gen.set_state, mix_state.cpu())
    restore("torch_rng", torch.set_rng_state, state["torch_rng"].cpu())
    if scaler is not None and "scaler" in state:
        restore("scaler", scaler.load_state_dict, state["scaler"])
    if mixer is not None and "mixer" in state:
        restore("mixer", mixer.load_state_dict, state["mixer"])
    return int(state["epoch"]), float(state["elapsed"])
