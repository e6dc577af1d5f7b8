"""Pairings of RandSaliencyMix and GuidedMixup (SPEC.md, "Patch noise and pairing").

* the complementary pairing equals a plain Python greedy one-cycle cover, and the official
  ``onecycle_cover`` (kdst-team/GuidedMixup, ``pairing.pyx``, re-implemented here from its code)
  wherever the official one is defined, on random distance matrices with ties;
* the confusion matrix's update equals SPEC's formula (batch mean) and the seed repository's
  sample-by-sample loop; sources follow the matrix (chi-square test); the matrix round-trips
  through ``state_dict()``;
* every error path of the new options."""

from __future__ import annotations

import io
import re
from typing import List

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import stats

from conftest import gen
from randsaliencymix import MixParams, RandomChoiceMix, RandSaliencyMix, apply_mix
from randsaliencymix.pairing import complementary_pairing, confusion_update, guided_maps, saliency_distances

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
K = 4


# --------------------------------------------------------------------------------------------
# Complementary (greedy) pairing
# --------------------------------------------------------------------------------------------


def ref_greedy(d: List[List[float]]) -> List[int]:
    """SPEC's greedy one-cycle cover, in plain Python: the largest off-diagonal pair first (the
    first in row-major order on ties), then from each new row the farthest unvisited image
    (lowest index on ties), closing the cycle to the first row."""
    n = len(d)
    if n == 1:
        return [0]
    first, col = 0, 1
    for r in range(n):
        for c in range(n):
            if r != c and d[r][c] > d[first][col]:
                first, col = r, c
    perm = [-1] * n
    perm[first] = col
    visited = {first}
    row = col
    for _ in range(n - 2):
        visited.add(row)
        best = None
        for c in range(n):
            if c not in visited and (best is None or d[row][c] > d[row][best]):
                best = c
        assert best is not None
        perm[row] = best
        row = best
    perm[row] = first
    return perm


def official_onecycle_cover(distance: np.ndarray) -> np.ndarray:
    """The official ``onecycle_cover`` (GuidedMixup's ``pairing.pyx``), step for step in NumPy."""
    d = distance.astype(np.float32).copy()
    n = d.shape[0]
    max_idx = int(np.argmax(d))  # global maximum, before the diagonal is excluded
    out = np.zeros(n, dtype=np.int32)
    np.fill_diagonal(d, -np.inf)
    row, col = max_idx // n, max_idx % n
    first_row = row
    out[row] = col
    d[:, row] = -np.inf
    idx = 0
    while idx < n - 2:
        idx += 1
        row = col
        col = int(np.argmax(d[row]))
        out[row] = col
        d[:, row] = -np.inf
    out[col] = first_row
    return out


@st.composite
def distance_matrices(draw):
    n = draw(st.integers(1, 10))
    values = draw(st.lists(st.integers(0, 3), min_size=n * n, max_size=n * n))
    d = np.array(values, dtype=np.float64).reshape(n, n)
    if draw(st.booleans()):
        d = np.triu(d, 1) + np.triu(d, 1).T  # symmetric, zero diagonal, as a real distance matrix
    return d


@SETTINGS
@given(d=distance_matrices())
def test_complementary_pairing_is_the_greedy_cycle(d):
    perm = complementary_pairing(torch.from_numpy(d))
    assert perm.dtype == torch.long
    assert perm.tolist() == ref_greedy(d.tolist())
    n = d.shape[0]
    assert sorted(perm.tolist()) == list(range(n)), "not a permutation"
    if n >= 2:
        # One cycle through the whole batch: following perm from 0 visits every image.
        seen, i = set(), 0
        for _ in range(n):
            seen.add(i)
            i = int(perm[i])
        assert len(seen) == n and i == 0


@SETTINGS
@given(d=distance_matrices())
def test_complementary_pairing_equals_the_official_code_where_it_is_defined(d):
    n = d.shape[0]
    off_diagonal = d[~np.eye(n, dtype=bool)]
    # The official code starts from the global maximum; it is off the diagonal (as SPEC's pair
    # must be) when some off-diagonal distance exceeds every diagonal one.
    if n < 2 or off_diagonal.max() <= np.diag(d).max():
        return
    assert complementary_pairing(torch.from_numpy(d)).tolist() == official_onecycle_cover(d).tolist()


def test_complementary_pairing_of_identical_maps_is_still_a_permutation():
    # All distances 0: the official code would start on the diagonal; this starts at (0, 1).
    perm = complementary_pairing(torch.zeros(5, 5))
    assert perm.tolist() == [1, 2, 3, 4, 0]
    assert complementary_pairing(torch.zeros(1, 1)).tolist() == [0]
    assert complementary_pairing(torch.zeros(2, 2)).tolist() == [1, 0]


def test_rsm_complementary_pairing_uses_the_blurred_maps_of_the_batch():
    x = torch.randn(7, 3, 12, 12, generator=gen(0))
    y = torch.arange(7) % K
    maps = torch.rand(7, 12, 12, generator=gen(1)) ** 3
    op = RandSaliencyMix(num_classes=K, pairing="complementary", p=1.0)
    params = op.sample_params(x, generator=gen(2), saliency=maps)
    expected = complementary_pairing(saliency_distances(guided_maps(maps)))
    assert torch.equal(params.perm, expected) and params.perm_is_permutation
    # Deterministic given the maps; a given perm still wins.
    assert torch.equal(op.sample_params(x, generator=gen(3), saliency=maps).perm, expected)
    fixed = torch.roll(torch.arange(7), 2)
    assert torch.equal(op.sample_params(x, generator=gen(3), saliency=maps, perm=fixed).perm, fixed)
    # Without maps it runs the detector (the pairing reads saliency) and is still a permutation.
    detected = op.sample_params(x, y, generator=gen(4))
    assert sorted(detected.perm.tolist()) == list(range(7))


def test_guided_maps_are_blurred_normalised_and_safe():
    maps = torch.zeros(3, 9, 9)
    maps[0, 4, 4] = 1.0
    maps[2] = float("nan")
    s = guided_maps(maps)
    torch.testing.assert_close(s.sum((1, 2)), torch.ones(3))
    assert bool((s[0] > 0).sum() == 49)  # one pixel spreads over the 7x7 kernel
    torch.testing.assert_close(s[1], torch.full((9, 9), 1 / 81))  # no saliency: uniform
    torch.testing.assert_close(s[2], torch.full((9, 9), 1 / 81))  # NaN counts as 0
    tiny = guided_maps(torch.rand(2, 2, 3))  # smaller than the kernel: reflection bounces
    torch.testing.assert_close(tiny.sum((1, 2)), torch.ones(2))


# --------------------------------------------------------------------------------------------
# Confusion pairing: the update
# --------------------------------------------------------------------------------------------


def ref_update_mean(e: torch.Tensor, logits: torch.Tensor, classes: torch.Tensor, w: float) -> torch.Tensor:
    """SPEC: for every class a of the batch, E[a] <- w * mean |softmax - onehot| + (1 - w) E[a]."""
    out = e.double().clone()
    p = torch.softmax(logits.double(), 1)
    t = F.one_hot(classes, e.shape[0]).double()
    for a in range(e.shape[0]):
        rows = [i for i in range(len(classes)) if int(classes[i]) == a]
        if rows:
            d = torch.stack([(p[i] - t[i]).abs() for i in rows]).mean(0)
            out[a] = w * d + (1 - w) * out[a]
    return out


def ref_update_seed(e: torch.Tensor, logits: torch.Tensor, targets: torch.Tensor, w: float) -> torch.Tensor:
    """The seed repository's update_error_matrix: logits shifted to a minimum of 0 and divided
    by their sum, then E[label] blended with each sample's |p - t| in turn."""
    out = e.double().numpy().copy()
    o = logits.double().numpy().copy()
    o -= o.min(1, keepdims=True)
    o /= o.sum(1, keepdims=True)
    t = targets.double().numpy()
    diff = np.abs(o - t)
    for i in range(o.shape[0]):
        a = t[i].argmax()
        out[a, :] = w * diff[i, :] + (1 - w) * out[a, :]
    return torch.from_numpy(out)


@SETTINGS
@given(
    b=st.integers(1, 12),
    seed=st.integers(0, 2**31 - 1),
    w=st.sampled_from([0.5, 0.2, 1.0]),
    steps=st.integers(1, 3),
)
def test_confusion_update_equals_spec_and_seed(b, seed, w, steps):
    g = gen(seed)
    e_mean = e_seq = torch.full((K, K), 1.0 / K)
    ref_mean = ref_seq = e_mean.double()
    for _ in range(steps):
        logits = torch.randn(b, K, generator=g) * 3
        classes = torch.randint(0, K, (b,), generator=g)
        e_mean = confusion_update(e_mean, logits, classes, w, "mean")
        e_seq = confusion_update(e_seq, logits, F.one_hot(classes, K).float(), w, "sequential")
        ref_mean = ref_update_mean(ref_mean, logits, classes, w)
        ref_seq = ref_update_seed(ref_seq, logits, F.one_hot(classes, K), w)
    torch.testing.assert_close(e_mean.double(), ref_mean, atol=1e-6, rtol=0)
    torch.testing.assert_close(e_seq.double(), ref_seq, atol=1e-6, rtol=0)


def test_observe_updates_only_with_confusion_pairing_and_round_trips_through_state_dict():
    logits = torch.randn(8, K, generator=gen(0))
    y = torch.tensor([0, 1, 1, 2, 0, 3, 3, 1])
    op = RandSaliencyMix(num_classes=K, pairing="confusion")
    assert torch.equal(op.state_dict()["confusion"], torch.full((K, K), 1.0 / K))
    op.observe(logits, y)
    expected = ref_update_mean(torch.full((K, K), 1.0 / K), logits, y, 0.5).float()
    torch.testing.assert_close(op.confusion, expected)
    # Through a checkpoint: a fresh operator that loads the state draws the same sources.
    buffer = io.BytesIO()
    torch.save({"mixer": op.state_dict()}, buffer)
    buffer.seek(0)
    fresh = RandSaliencyMix(num_classes=K, pairing="confusion")
    fresh.load_state_dict(torch.load(buffer)["mixer"])
    assert torch.equal(fresh.confusion, op.confusion)
    x = torch.randn(8, 3, 8, 8, generator=gen(1))
    a = op.sample_params(x, y, generator=gen(2))
    b = fresh.sample_params(x, y, generator=gen(2))
    assert torch.equal(a.perm, b.perm) and not a.perm_is_permutation
    # Other pairings have no state and ignore observe; RandomChoiceMix passes it on.
    plain = RandSaliencyMix(num_classes=K)
    plain.observe(logits, y)
    assert plain.state_dict() == {}
    choice = RandomChoiceMix([RandSaliencyMix(num_classes=K, pairing="confusion")], num_classes=K)
    choice.observe(logits, y)
    torch.testing.assert_close(choice.ops[0].confusion, expected)
    # Soft targets: the class is the argmax and t the row itself.
    soft = RandSaliencyMix(num_classes=K, pairing="confusion", confusion_update="sequential", confusion_weight=1.0)
    soft.observe(logits, F.one_hot(y, K).float())
    torch.testing.assert_close(
        soft.confusion.double(), ref_update_seed(torch.full((K, K), 0.25), logits, F.one_hot(y, K), 1.0)
    )


# --------------------------------------------------------------------------------------------
# Confusion pairing: the draw
# --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_confusion_sources_follow_the_matrix():
    """Chi-square test of the sources of every target against ∝ E[a, class(j)] + 1e-4 (j != i).

    Under the null hypothesis the statistic is chi-square with sum_i (B - 2) degrees of freedom;
    the test fails when its p-value is below 1e-4, i.e. a correct sampler fails 1 run in 10,000
    (the seeds are fixed, so the outcome is reproducible)."""
    classes = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    b = classes.shape[0]
    e = torch.tensor([[0.1, 0.6, 0.2, 0.1], [0.05, 0.05, 0.1, 0.8], [0.3, 0.3, 0.3, 0.1], [0.0, 0.5, 0.0, 0.5]])
    op = RandSaliencyMix(num_classes=K, pairing="confusion", p=1.0)
    op.load_state_dict({"confusion": e})
    x = torch.zeros(b, 1, 4, 4)
    counts = np.zeros((b, b))
    g = gen(123)
    draws = 1500
    for _ in range(draws):
        perm = op.sample_params(x, classes, generator=g).perm
        counts[np.arange(b), perm.numpy()] += 1
    expected = np.zeros((b, b))
    for i in range(b):
        w = np.array([float(e[classes[i], classes[j]]) + 1e-4 if j != i else 0.0 for j in range(b)])
        expected[i] = draws * w / w.sum()
    assert counts[np.arange(b), np.arange(b)].sum() == 0, "a target drew itself"
    off = ~np.eye(b, dtype=bool)
    chi2 = ((counts[off] - expected[off]) ** 2 / expected[off]).sum()
    p_value = stats.chi2.sf(chi2, df=b * (b - 2))
    assert p_value > 1e-4, (chi2, p_value)


def test_confusion_pairing_invariants_hold_for_a_non_permutation():
    x = torch.randn(6, 3, 10, 10, generator=gen(5))
    y = torch.tensor([0, 0, 0, 0, 0, 1])
    op = RandSaliencyMix(num_classes=K, pairing="confusion", p=1.0, eta=1.0, mixup_prob=0.0)
    op.load_state_dict({"confusion": torch.eye(K)})  # class 0 draws class 0, class 1 draws class 1 (only itself)
    params = op.sample_params(x, y, generator=gen(6))
    assert not params.perm_is_permutation
    assert bool((params.perm != torch.arange(6)).all())
    xm, ym = op.apply_params(x, y, params)
    torch.testing.assert_close(ym.sum(1), torch.ones(6))
    # Row i's label mixes its own and its source's labels by the applied weight.
    soft = F.one_hot(y, K).float()
    wt = params.source_weight.float()[:, None]
    torch.testing.assert_close(ym, (1 - wt) * soft + wt * soft[params.perm])
    # Replay; forward with y draws the same; the public apply_mix accepts such params.
    assert torch.equal(op(x, y, params=params)[0], xm)
    assert torch.equal(op(x, y, generator=gen(6))[0], xm)
    assert torch.equal(apply_mix(x, soft, params)[0], xm)
    # Probability labels: the class is each row's argmax.
    probs = soft * 0.9 + 0.1 / K
    assert torch.equal(op.sample_params(x, probs, generator=gen(6)).perm, params.perm)
    # A batch of one: its own source.
    assert op.sample_params(x[:1], y[:1], generator=gen(7)).perm.tolist() == [0]


def test_confusion_buffer_follows_the_logits_device():
    op = RandSaliencyMix(num_classes=K, pairing="confusion")
    op.observe(torch.randn(3, K, dtype=torch.float64), torch.tensor([0, 1, 2]))
    assert op.confusion.dtype == torch.float32 and op.confusion.device.type == "cpu"


# --------------------------------------------------------------------------------------------
# Error paths
# --------------------------------------------------------------------------------------------


def test_confusion_pairing_needs_num_classes():
    with pytest.raises(
        ValueError, match=re.escape("Expected num_classes for pairing='confusion', but got None instead.")
    ):
        RandSaliencyMix(pairing="confusion")


def test_confusion_pairing_needs_labels_to_sample():
    op = RandSaliencyMix(num_classes=K, pairing="confusion")
    with pytest.raises(ValueError, match=re.escape("Expected the batch's labels to draw pairing='confusion'")):
        op.sample_params(torch.rand(4, 3, 8, 8))


@pytest.mark.parametrize(
    "kw, exc, msg",
    [
        (
            {"pairing": "bogus"},
            ValueError,
            "Expected pairing to be one of 'random', 'complementary', 'confusion', but got 'bogus' instead.",
        ),
        (
            {"confusion_update": "ema"},
            ValueError,
            "Expected confusion_update to be one of 'mean', 'sequential', but got 'ema' instead.",
        ),
        ({"confusion_weight": 1.5}, ValueError, "Expected confusion_weight in [0, 1], but got 1.5 instead."),
        ({"patch_noise": -0.1}, ValueError, "Expected patch_noise >= 0 and finite, but got -0.1 instead."),
        ({"patch_noise": "0.4"}, TypeError, "Expected patch_noise to be a number, but got str instead."),
    ],
)
def test_rsm_rejects_bad_new_options(kw, exc, msg):
    with pytest.raises(exc, match=re.escape(msg)):
        RandSaliencyMix(num_classes=K, **kw)


@pytest.mark.parametrize(
    "logits, targets, exc, msg",
    [
        (
            torch.randn(4, K + 1),
            torch.arange(4) % K,
            ValueError,
            f"Expected logits of shape (B, {K}), but got (4, {K + 1}) instead.",
        ),
        (
            torch.ones(4, K, dtype=torch.long),
            torch.arange(4) % K,
            TypeError,
            "Expected floating-point logits, but got torch.int64 instead.",
        ),
        (
            torch.full((4, K), float("nan")),
            torch.arange(4) % K,
            ValueError,
            "Expected finite logits, but got NaN or infinity instead.",
        ),
        (
            torch.randn(4, K),
            torch.tensor([0, 1, 2, K]),
            ValueError,
            f"Expected class indices in [0, {K - 1}], but got {K} instead.",
        ),
        (
            torch.randn(4, K),
            torch.arange(3),
            ValueError,
            "Expected 4 labels to match the batch of images, but got 3 instead.",
        ),
    ],
    ids=["shape", "dtype", "nan", "class-range", "batch"],
)
def test_observe_rejects_bad_inputs(logits, targets, exc, msg):
    op = RandSaliencyMix(num_classes=K, pairing="confusion")
    with pytest.raises(exc, match=re.escape(msg)):
        op.observe(logits, targets)


def test_sample_params_checks_labels_when_it_uses_them():
    op = RandSaliencyMix(num_classes=K, pairing="confusion")
    with pytest.raises(ValueError, match=re.escape(f"Expected class indices in [0, {K - 1}], but got 9 instead.")):
        op.sample_params(torch.rand(2, 3, 8, 8), torch.tensor([0, 9]))


def _params(b: int = 4, **kw) -> MixParams:
    base = MixParams.identity(b, (8, 8), "cpu")
    fields = {"applied": torch.ones(b, dtype=torch.bool), "perm_is_permutation": True, **kw}
    return MixParams(**{**base.__dict__, **fields})


@pytest.mark.parametrize(
    "kw, exc, msg",
    [
        (
            {"perm": torch.tensor([0.0, 1.0, 2.0, 3.0])},
            TypeError,
            "Expected params.perm as an integer tensor, but got torch.float32 instead.",
        ),
        (
            {"perm": torch.tensor([0, 1, 2, 4])},
            ValueError,
            "Expected params.perm with source rows in [0, 3], but got 4 instead.",
        ),
        (
            {"perm": torch.tensor([-1, 1, 2, 3])},
            ValueError,
            "Expected params.perm with source rows in [0, 3], but got -1 instead.",
        ),
        (
            {"perm": torch.tensor([1, 1, 2, 3])},
            ValueError,
            "Expected params.perm to be a permutation of 0..3 (perm_is_permutation=True), but got [1, 1, 2, 3] instead.",
        ),
        (
            {"share_map": torch.zeros(4, 3, 8, 8)},
            ValueError,
            "Expected params.share_map of shape (B, 1, H, W) = (4, 1, 8, 8), floating point, but got (4, 3, 8, 8) torch.float32 instead.",
        ),
        (
            {"noise": torch.zeros(4, 1, 8, 8)},
            ValueError,
            "Expected params.noise of shape (B, C, H, W) = (4, 3, 8, 8), floating point, but got (4, 1, 8, 8) torch.float32 instead.",
        ),
    ],
    ids=["perm-dtype", "perm-high", "perm-low", "not-permutation", "share-map-shape", "noise-shape"],
)
@pytest.mark.parametrize("via", ["apply_mix", "apply_params", "forward"])
def test_params_are_checked(kw, exc, msg, via):
    x, y = torch.rand(4, 3, 8, 8), torch.arange(4) % K
    params = _params(**kw)
    op = RandSaliencyMix(num_classes=K)
    with pytest.raises(exc, match=re.escape(msg)):
        if via == "apply_mix":
            apply_mix(x, F.one_hot(y, K).float(), params)
        elif via == "apply_params":
            op.apply_params(x, y, params)
        else:
            op(x, y, params=params)


def test_a_repeated_source_is_accepted_only_when_the_params_say_so():
    x, y = torch.rand(4, 3, 8, 8), torch.arange(4) % K
    params = _params(perm=torch.tensor([1, 1, 2, 3]), perm_is_permutation=False)
    xm, _ = RandSaliencyMix(num_classes=K).apply_params(x, y, params)
    assert torch.equal(xm, x)  # identity params otherwise: no box, so nothing is pasted
    # validate=False skips the value checks (as for every other value check).
    unchecked = RandSaliencyMix(num_classes=K, validate=False)
    unchecked.apply_params(x, y, _params(perm=torch.tensor([1, 1, 2, 3])))
