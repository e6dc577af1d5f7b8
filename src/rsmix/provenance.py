"""What a run's numbers came from, beyond its config: the code version it ran (the repository's
commit, and whether the package's sources differed from it) and its per-image predictions (a small
text file per split, so that a later analysis can resample images as well as seeds)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any, Dict, Optional

import torch

from .files import atomic_write_bytes

__all__ = ["code_version", "read_predictions", "write_predictions"]

_PACKAGE = Path(__file__).resolve().parents[1]  # src/randsaliencymix


def _git(*args: str) -> Optional[str]:
    try:
        done = subprocess.run(["git", *args], cwd=_PACKAGE, capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def code_version() -> Dict[str, Any]:
    """``{"commit": hash or None, "dirty": bool or None}`` of the repository holding this package:
    ``dirty`` is True when the package's sources differ from the commit (an installed wheel outside a
    repository gives None for both). Read when a run starts: the code in memory is that version."""
    commit = _git("rev-parse", "HEAD")
    if commit is None:
        return {"commit": None, "dirty": None}
    status = _git("status", "--porcelain", "--untracked-files=no", "--", str(_PACKAGE))
    return {"commit": commit, "dirty": None if status is None else bool(status)}


def write_predictions(path: Path, labels: torch.Tensor, logits: torch.Tensor) -> None:
    """One line per image, in the split's order: ``label prediction`` (class indices); a header
    line starting with ``#`` names the columns."""
    pred = logits.topk(1, dim=1).indices[:, 0].tolist()  # the top-1 of classification_metrics
    lines = ["# label prediction"] + [f"{a} {b}" for a, b in zip(labels.tolist(), pred)]
    atomic_write_bytes(path, ("\n".join(lines) + "\n").encode())


def read_predictions(path: Path) -> torch.Tensor:
    """``(N, 2)`` long tensor of (label, prediction) rows from :func:`write_predictions`'s file."""
    rows = [line.split() for line in Path(path).read_text().splitlines() if line and not line.startswith("#")]
    if any(len(row) != 2 for row in rows):
        raise ValueError(f"Expected two columns per line in {path}, but got another layout instead.")
    return torch.tensor([[int(a), int(b)] for a, b in rows], dtype=torch.long).reshape(-1, 2)
