"""Study 2's comparison statistics (study/study2/paired_stats.py): the t-interval, the exact
sign-flip test, Holm's adjustment, the detectable difference and the seed-and-image resampling
interval, against hand computations and their invariants."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import load_script

ps = load_script("study/study2/paired_stats.py", "paired_stats")


def test_t_interval_by_hand() -> None:
    mean, half = ps.t_interval([1.0, 2.0, 3.0])
    assert mean == 2.0 and half == pytest.approx(4.3027 / math.sqrt(3), abs=1e-4)


@pytest.mark.slow
def test_sign_flip_exact_values() -> None:
    assert ps.sign_flip_p([1.0, 2.0, 3.0, 4.0, 5.0]) == pytest.approx(2 / 32)  # only all-+ and all-−
    assert ps.sign_flip_p([1.0, -1.0]) == 1.0
    # 20 seeds all one way: 2 / 2^20
    assert ps.sign_flip_p([0.3] * 20) == pytest.approx(2 / 2**20)


@settings(max_examples=30, deadline=None)
@given(d=st.lists(st.floats(-5, 5, allow_nan=False), min_size=2, max_size=10))
def test_sign_flip_is_symmetric_and_a_probability(d) -> None:
    p = ps.sign_flip_p(d)
    assert 0 < p <= 1 and p == pytest.approx(ps.sign_flip_p([-v for v in d]))


def test_holm_by_hand() -> None:
    assert ps.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert ps.holm([0.5]) == [0.5]


def test_detectable_shrinks_with_seeds() -> None:
    assert ps.detectable(1.0, 20) < ps.detectable(1.0, 5)
    assert ps.detectable(0.0, 5) == 0.0


def test_seed_image_interval_invariants() -> None:
    rng = np.random.default_rng(0)
    a = (rng.random((5, 300)) < 0.15).astype(float)
    same = ps.seed_image_interval(a, a, reps=200)
    assert same == (0.0, 0.0, 0.0)
    b = (rng.random((5, 300)) < 0.2).astype(float)
    mean, lo, hi = ps.seed_image_interval(a, b, reps=400, seed=1)
    assert lo < mean < hi
    assert ps.seed_image_interval(a, b, reps=400, seed=1) == (mean, lo, hi)  # seeded: replayable
    # a constant per-image difference has no spread to resample
    c = np.zeros((4, 10))
    d = np.ones((4, 10))
    assert ps.seed_image_interval(d, c, reps=100) == (100.0, 100.0, 100.0)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: ps.t_interval([1.0]), "Expected at least 2 per-seed differences, but got 1 instead."),
        (lambda: ps.t_interval([1.0, float("nan")]), "Expected finite per-seed differences"),
        (lambda: ps.sign_flip_p([0.1] * 25), "Expected at most 24 seeds for the exact test, but got 25 instead."),
        (lambda: ps.holm([0.2, 1.5]), r"Expected p-values in \[0, 1\]"),
        (lambda: ps.detectable(1.0, 1), "Expected at least 2 seeds, but got 1 instead."),
        (lambda: ps.detectable(float("nan"), 3), "Expected a finite paired std >= 0"),
        (lambda: ps.seed_image_interval(np.zeros((1, 3)), np.zeros((1, 3))), "Expected two"),
        (lambda: ps.seed_image_interval(np.zeros((2, 3)), np.zeros((2, 3)), reps=10), "at least 100 replicates"),
    ],
)
def test_errors(call, message) -> None:
    with pytest.raises(ValueError, match=message):
        call()
