"""The statistics of study 2's comparisons, in one place: paired over seeds (seed s of two methods
shares the initial weights, data order and crops), and, where runs saved per-image predictions,
paired over the test images too.

* :func:`t_interval` — mean of the per-seed differences and the half-width of its 95% t-interval;
* :func:`sign_flip_p` — the exact two-sided sign-flip (permutation) test of a zero mean difference;
* :func:`holm` — Holm's step-down adjustment of several p-values;
* :func:`detectable` — the true difference a paired two-sided 5% t-test finds with power 0.8;
* :func:`seed_image_interval` — a 95% percentile interval that resamples seeds and, within each
  resampled seed, test images (both with replacement, the same images for both methods): it carries
  the test set's sampling error as well as the seeds', which the t-interval over seeds cannot
  separate from training noise.

NumPy and SciPy only; every resampling draws from a seeded ``numpy.random.Generator``.
"""

from __future__ import annotations

import itertools
import math
from typing import List, Sequence, Tuple

import numpy as np
from scipy import stats as _stats

__all__ = ["detectable", "holm", "seed_image_interval", "sign_flip_p", "t_interval"]


def _diffs(values: Sequence[float]) -> np.ndarray:
    d = np.asarray(values, dtype=np.float64)
    if d.ndim != 1 or d.size < 2:
        raise ValueError(f"Expected at least 2 per-seed differences, but got {d.size} instead.")
    if not np.isfinite(d).all():
        raise ValueError("Expected finite per-seed differences, but got NaN or infinity instead.")
    return d


def t_interval(diffs: Sequence[float], level: float = 0.95) -> Tuple[float, float]:
    """(mean, half-width) of the two-sided ``level`` Student t-interval of the mean difference."""
    d = _diffs(diffs)
    n = d.size
    half = float(_stats.t.ppf(0.5 + level / 2, n - 1) * d.std(ddof=1) / math.sqrt(n))
    return float(d.mean()), half


def sign_flip_p(diffs: Sequence[float]) -> float:
    """Exact two-sided p-value of the sign-flip test: the share of the 2^n sign assignments whose
    mean is at least as far from 0 as the observed one (the observed one included). Up to 24 seeds."""
    d = _diffs(diffs)
    n = d.size
    if n > 24:
        raise ValueError(f"Expected at most 24 seeds for the exact test, but got {n} instead.")
    signs = np.array(list(itertools.product((1.0, -1.0), repeat=n)))  # (2^n, n)
    means = np.abs(signs @ d) / n
    observed = abs(d.mean())
    return float(np.mean(means >= observed - 1e-12 * max(1.0, observed)))


def holm(pvalues: Sequence[float]) -> List[float]:
    """Holm-adjusted p-values, in the input's order (reject where adjusted p <= alpha)."""
    p = np.asarray(pvalues, dtype=np.float64)
    if p.ndim != 1 or p.size == 0 or ((p < 0) | (p > 1) | ~np.isfinite(p)).any():
        raise ValueError(f"Expected p-values in [0, 1], but got {list(pvalues)} instead.")
    order = np.argsort(p, kind="stable")
    m = p.size
    adjusted = np.empty(m)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[index]))
        adjusted[index] = running
    return adjusted.tolist()


def detectable(sd: float, n: int, power: float = 0.8, level: float = 0.95) -> float:
    """The true mean difference a paired two-sided t-test at ``1 - level`` over ``n`` seeds finds
    with probability ``power`` when the per-seed differences scatter with std ``sd``: about
    ``(t_{level} + t_{power}) · sd / √n`` (the usual normal-shift approximation)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise ValueError(f"Expected at least 2 seeds, but got {n!r} instead.")
    if not (math.isfinite(sd) and sd >= 0):
        raise ValueError(f"Expected a finite paired std >= 0, but got {sd!r} instead.")
    t_a = _stats.t.ppf(0.5 + level / 2, n - 1)
    t_b = _stats.t.ppf(power, n - 1)
    return float((t_a + t_b) * sd / math.sqrt(n))


def seed_image_interval(
    wrong_a: np.ndarray, wrong_b: np.ndarray, reps: int = 4000, seed: int = 0, level: float = 0.95
) -> Tuple[float, float, float]:
    """(mean difference, low, high) in percentage points of ``error(a) − error(b)``.

    ``wrong_a`` and ``wrong_b`` are ``(seeds, images)`` 0/1 arrays (1 = misclassified), row s of both
    from seed s, column j the same test image. Each replicate draws the seeds with replacement and,
    for each drawn seed, the images with replacement (one draw for both methods: the comparison stays
    paired by image), and takes the mean difference; the interval is the replicates' percentiles."""
    a = np.asarray(wrong_a, dtype=np.float64)
    b = np.asarray(wrong_b, dtype=np.float64)
    if a.ndim != 2 or a.shape != b.shape or a.shape[0] < 2 or a.shape[1] < 1:
        raise ValueError(
            f"Expected two (seeds >= 2, images) arrays of one shape, but got {a.shape} and {b.shape} instead."
        )
    if reps < 100:
        raise ValueError(f"Expected at least 100 replicates, but got {reps} instead.")
    diff = (a - b) * 100.0  # (S, N) per-image differences in points
    s, n = diff.shape
    rng = np.random.default_rng(seed)
    out = np.empty(reps)
    for r in range(reps):
        rows = rng.integers(0, s, size=(s,))
        cols = rng.integers(0, n, size=(s, n))
        out[r] = diff[rows[:, None], cols].mean()
    lo, hi = np.percentile(out, [50 * (1 - level), 50 * (1 + level)])
    return float(diff.mean()), float(lo), float(hi)
