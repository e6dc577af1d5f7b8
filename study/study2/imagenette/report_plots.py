"""The figures of study 2's report (report.py): each method's final test error, the paired
differences to each reference, and the validation curves. Each function writes one PNG and returns
False where matplotlib is not installed or there is nothing to draw."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Dict, List, Optional

from rsmix.compare import mean_std_ci


def pyplot() -> Optional[Any]:
    """matplotlib's pyplot on the file-only backend, or None where matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def seeds_and_mean(ax: Any, at: int, values: List[float], across: bool) -> None:
    """One method's per-seed values (grey) and their mean with its 95% t-interval, at position ``at``
    on the category axis (x, or y when the values run ``across``)."""
    m, _, half = mean_std_ci(values)
    err = None if math.isnan(half) else [half]
    if across:
        ax.scatter(values, [at] * len(values), s=10, color="0.6", zorder=2)
        ax.errorbar([m], [at], xerr=err, fmt="o", color="C0", capsize=3, zorder=3)
    else:
        ax.scatter([at] * len(values), values, s=12, color="0.6", zorder=2)
        ax.errorbar([at], [m], yerr=err, fmt="o", color="C0", capsize=4, zorder=3)


def plot(by: Dict[str, Dict[int, float]], out: Path) -> bool:
    """Each method's per-seed test errors (``by``: method -> seed -> error, in table order)."""
    plt = pyplot()
    if plt is None:
        return False
    names = [n for n in by if by[n]]
    if not names:
        return False
    fig, ax = plt.subplots(figsize=(7, 3.2))
    for i, name in enumerate(names):
        seeds_and_mean(ax, i, list(by[name].values()), across=False)
    ax.set_xticks(range(len(names)), names, rotation=20, fontsize=8)
    ax.set_ylabel("test top-1 error (%)")
    ax.set_title("Imagenette 128 px, fast_resnet: seeds (grey), mean ± 95% t-interval", fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return True


def plot_paired(names: List[str], diffs: Dict[str, Dict[str, List[float]]], out: Path) -> bool:
    """One panel per reference (``diffs``: reference -> method -> its per-seed differences to it), one
    row per method of ``names``, the first on top."""
    plt = pyplot()
    if plt is None or not diffs:
        return False
    names = names[::-1]
    fig, axes = plt.subplots(1, len(diffs), figsize=(3.2 * len(diffs), 3.4), sharey=True, squeeze=False)
    axes[0][0].set_yticks(range(len(names)), names, fontsize=8)
    for ax, (ref, by_method) in zip(axes[0], diffs.items()):
        for i, name in enumerate(names):
            if by_method.get(name):
                seeds_and_mean(ax, i, by_method[name], across=True)
        ax.axvline(0, color="k", lw=0.8)
        ax.set_title(f"method − {ref}", fontsize=9)
        ax.set_xlabel("test top-1 error difference (points)", fontsize=8)
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle("Paired differences per seed (grey), mean ± 95% t-interval; left of 0: better", fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return True


def plot_curves(curves: Dict[str, Dict[int, float]], labels: Dict[str, str], out: Path) -> bool:
    """Validation top-1 error against epoch (``curves``: method -> epoch -> mean over its finished
    seeds): whether a method is still improving when the schedule ends."""
    plt = pyplot()
    if plt is None or not curves:
        return False
    fig, ax = plt.subplots(figsize=(7, 3.4))
    for i, name in enumerate(curves):
        epochs = sorted(curves[name])
        ax.plot(epochs, [curves[name][e] for e in epochs], marker="o", ms=3, lw=1.2, color=f"C{i}", label=labels[name])
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation top-1 error (%)")
    ax.set_ylim(top=min(ax.get_ylim()[1], 45))
    ax.set_title("Validation error during training, mean over each method's finished seeds", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return True
