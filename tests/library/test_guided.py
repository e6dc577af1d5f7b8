"""GuidedMixup (SPEC.md) against the official formulas of kdst-team/GuidedMixup (``mixup.py``:
``TF.gaussian_blur(sc, (7, 7), (3, 3))``, sum normalisation, the greedy ``onecycle_cover`` on L2
distances, ``m = S~_a / (S~_a + S~_b)``, ``out = m x_a + (1 - m) x_b``, ``ratio = mean(m)``),
re-implemented here pixel by pixel in float64 from the paper and that code; then the operator's
invariants and error paths."""

from __future__ import annotations

import math
import re
from typing import List

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import gen
from randsaliencymix import CutMix, GuidedMixup, RandomChoiceMix, spectral_residual
from rsmix.methods import METHODS, build_mixer

SETTINGS = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
K = 6
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


# --------------------------------------------------------------------------------------------
# The official formulas, one pixel at a time
# --------------------------------------------------------------------------------------------


def ref_kernel() -> List[float]:
    """torchvision's 1-D Gaussian for gaussian_blur(kernel_size=7, sigma=3)."""
    xs = [-3.0 + i for i in range(7)]
    pdf = [math.exp(-0.5 * (v / 3.0) ** 2) for v in xs]
    total = sum(pdf)
    return [v / total for v in pdf]


def reflect(i: int, n: int) -> int:
    """Reflect padding without repeating the edge (torch's "reflect"), one bounce."""
    if i < 0:
        return -i
    if i >= n:
        return 2 * (n - 1) - i
    return i


def ref_blur(s: np.ndarray) -> np.ndarray:
    k = ref_kernel()
    h, w = s.shape
    out = np.zeros((h, w))
    for r in range(h):
        for c in range(w):
            acc = 0.0
            for u in range(7):
                for v in range(7):
                    acc += k[u] * k[v] * s[reflect(r + u - 3, h), reflect(c + v - 3, w)]
            out[r, c] = acc
    return out


def ref_onecycle_cover(d: np.ndarray) -> List[int]:
    """The official greedy pairing (pairing.pyx), in plain Python."""
    n = d.shape[0]
    d = d.copy()
    flat = int(np.argmax(d))
    np.fill_diagonal(d, -np.inf)
    row, col = flat // n, flat % n
    first = row
    out = [0] * n
    out[row] = col
    d[:, row] = -np.inf
    for _ in range(n - 2):
        row = col
        col = int(np.argmax(d[row]))
        out[row] = col
        d[:, row] = -np.inf
    out[col] = first
    return out


def ref_guided(x: torch.Tensor, y_onehot: torch.Tensor, maps: torch.Tensor, greedy: bool, perm=None):
    """(mixed images, soft targets, perm) by the official formulas, in float64."""
    b = x.shape[0]
    sc = [ref_blur(maps[i].double().numpy()) for i in range(b)]
    sc = [s / s.sum() for s in sc]
    if greedy:
        dist = np.zeros((b, b))
        for i in range(b):
            for j in range(b):
                dist[i, j] = math.sqrt(((sc[i] - sc[j]) ** 2).sum())
        perm = ref_onecycle_cover(dist)
    xd = x.double()
    out = torch.empty_like(xd)
    targets = torch.empty(b, y_onehot.shape[1], dtype=torch.float64)
    for i in range(b):
        j = perm[i]
        m = torch.from_numpy(sc[i] / (sc[i] + sc[j]))
        out[i] = m * xd[i] + (1 - m) * xd[j]
        ratio = float(m.mean())
        targets[i] = y_onehot[i].double() * ratio + y_onehot[j].double() * (1 - ratio)
    return out, targets, perm


@SETTINGS
@given(
    b=st.integers(2, 7),
    h=st.integers(4, 11),
    w=st.integers(4, 11),
    seed=st.integers(0, 2**31 - 1),
    pairing=st.sampled_from(["complementary", "random"]),
)
def test_guided_mixup_equals_the_official_formulas(b, h, w, seed, pairing):
    g = gen(seed)
    x = torch.randn(b, 3, h, w, generator=g)
    y = torch.randint(0, K, (b,), generator=g)
    # Strictly positive, varied maps: the official code has no fallback for S~_a + S~_b = 0, and
    # distinct distances (no near-ties between float32 and float64).
    maps = torch.rand(b, h, w, generator=g) ** 4 + 0.01
    op = GuidedMixup(num_classes=K, p=1.0, pairing=pairing)
    params = op.sample_params(x, generator=gen(seed + 1), saliency=maps)
    xm, ym = op.apply_params(x, y, params)
    ref_x, ref_y, ref_perm = ref_guided(
        x, F.one_hot(y, K), maps, greedy=pairing == "complementary", perm=params.perm.tolist()
    )
    assert params.perm.tolist() == list(ref_perm)
    torch.testing.assert_close(xm.double(), ref_x, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ym.double(), ref_y, atol=1e-6, rtol=0)


def test_where_both_maps_are_zero_the_blend_is_half_and_half():
    x = torch.randn(2, 3, 20, 20, generator=gen(0))
    y = torch.tensor([0, 1])
    maps = torch.zeros(2, 20, 20)
    maps[0, :3, :3] = 1.0  # the 7x7 blur spreads each spot by 3 pixels only
    maps[1, -3:, -3:] = 1.0
    op = GuidedMixup(num_classes=K, p=1.0)
    params = op.sample_params(x, generator=gen(1), saliency=maps)
    xm, _ = op.apply_params(x, y, params)
    assert params.perm.tolist() == [1, 0]
    centre = (slice(None), slice(None), slice(8, 12), slice(8, 12))
    torch.testing.assert_close(xm[centre], 0.5 * x[centre] + 0.5 * x[[1, 0]][centre])
    assert torch.equal(xm[0, :, 0, 0], x[0, :, 0, 0])  # only a's saliency there: a is kept


def test_sr_variant_runs_the_spectral_detector_on_the_true_picture():
    x8 = torch.randint(0, 256, (5, 3, 16, 16), generator=gen(2), dtype=torch.uint8)
    mean = torch.tensor(MEAN).reshape(1, 3, 1, 1)
    std = torch.tensor(STD).reshape(1, 3, 1, 1)
    x = (x8.float() / 255 - mean) / std
    y = torch.arange(5)
    op = build_mixer("guidedmixup", K, {"p": 1.0}, mean=MEAN, std=STD)
    assert isinstance(op, GuidedMixup) and op.detector == "spectral" and op.pairing == "complementary"
    maps = spectral_residual(x8)
    a = op(x, y, generator=gen(3))
    b = op(x, y, generator=gen(3), saliency=maps)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert METHODS["guidedmixup"].defaults()["p"] == 0.5


# --------------------------------------------------------------------------------------------
# Invariants
# --------------------------------------------------------------------------------------------


@SETTINGS
@given(
    b=st.integers(1, 6),
    seed=st.integers(0, 2**31 - 1),
    dtype=st.sampled_from([torch.uint8, torch.float16, torch.bfloat16, torch.float32]),
    channels_last=st.booleans(),
    p=st.sampled_from([0.0, 0.5, 1.0]),
    pairing=st.sampled_from(["complementary", "random"]),
    smoothing=st.sampled_from([0.0, 0.1]),
)
def test_guided_mixup_invariants(b, seed, dtype, channels_last, p, pairing, smoothing):
    g = gen(seed)
    h, w = 10, 13
    if dtype == torch.uint8:
        x = torch.randint(0, 256, (b, 3, h, w), generator=g, dtype=torch.uint8)
    else:
        x = torch.randn(b, 3, h, w, generator=g).to(dtype)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, K, (b,), generator=g)
    maps = torch.rand(b, h, w, generator=g) ** 3
    x0, maps0 = x.clone(), maps.clone()
    op = GuidedMixup(num_classes=K, p=p, pairing=pairing, label_smoothing=smoothing)
    params = op.sample_params(x, generator=gen(seed + 1), saliency=maps)
    xm, ym = op.apply_params(x, y, params)
    assert torch.equal(x, x0) and torch.equal(maps, maps0), "inputs mutated"
    # A permutation; a complementary one has no fixed point (a single cycle) when b >= 2.
    assert sorted(params.perm.tolist()) == list(range(b)) and params.perm_is_permutation
    if pairing == "complementary" and b >= 2:
        assert bool((params.perm != torch.arange(b)).all())
    # The share map: in [0, 1], 0 for unapplied samples; the label weight is its mean.
    share = params.share_map
    assert share is not None and share.shape == (b, 1, h, w)
    assert bool(((share >= 0) & (share <= 1)).all())
    assert bool((share[~params.applied] == 0).all())
    torch.testing.assert_close(params.source_weight, share.double().mean((1, 2, 3)), atol=0, rtol=0)
    torch.testing.assert_close(params.lam, 1 - params.source_weight)
    # Pixels: (1 - s) x_a + s x_b per channel; targets rows sum to 1 and mix by the weight.
    s = share.double().expand(b, 3, h, w)
    expected = (1 - s) * x.double() + s * x.double()[params.perm]
    if dtype == torch.uint8:
        assert bool(((xm.double() - expected).abs() <= 0.5 + 1e-3).all())
    else:
        tol = {torch.float32: 2e-6, torch.float16: 1e-3, torch.bfloat16: 8e-3}[dtype]
        assert bool(((xm.double() - expected).abs() <= tol * (2 * x.double().abs().amax()) + 1e-6).all())
    assert xm.dtype == x.dtype
    if channels_last:
        assert xm.is_contiguous(memory_format=torch.channels_last)
    soft = F.one_hot(y, K).double() * (1 - smoothing) + smoothing / K
    wt = params.source_weight[:, None]
    torch.testing.assert_close(ym.double(), (1 - wt) * soft + wt * soft[params.perm], atol=1e-6, rtol=0)
    torch.testing.assert_close(ym.double().sum(1), torch.ones(b, dtype=torch.float64), atol=1e-6, rtol=0)
    # Replay and forward with the same seed.
    assert all(torch.equal(u, v) for u, v in zip(op(x, y, params=params), (xm, ym)))
    assert all(torch.equal(u, v) for u, v in zip(op(x, y, generator=gen(seed + 1), saliency=maps), (xm, ym)))


def test_guided_mixup_applies_per_sample_with_probability_p():
    x = torch.randn(400, 1, 4, 4, generator=gen(7))
    params = GuidedMixup(num_classes=K, p=0.3, pairing="random").sample_params(
        x, generator=gen(8), saliency=torch.rand(400, 4, 4, generator=gen(9))
    )
    rate = float(params.applied.double().mean())
    assert abs(rate - 0.3) < 4 * math.sqrt(0.3 * 0.7 / 400)  # 4 standard deviations


def test_guided_mixup_differentiable_and_inside_random_choice():
    x = torch.randn(6, 3, 12, 12, generator=gen(10), requires_grad=True)
    y = torch.arange(6) % K
    xm, _ = GuidedMixup(num_classes=K, p=1.0)(x, y, generator=gen(11), saliency=torch.rand(6, 12, 12))
    xm.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    choice = RandomChoiceMix(
        [CutMix(mode="sample"), GuidedMixup(p=1.0, pairing="random")], mode="sample", num_classes=K
    )
    params = choice.sample_params(x.detach(), generator=gen(12), saliency=torch.rand(6, 12, 12))
    assert params.share_map is not None and params.blended
    xm, ym = choice.apply_params(x.detach(), y, params)
    # Every sample's label weight is the mean of its share map (CutMix's box area, GuidedMixup's blend).
    torch.testing.assert_close(params.source_weight, params.share_map.double().mean((1, 2, 3)), atol=1e-7, rtol=0)
    torch.testing.assert_close(ym.sum(1), torch.ones(6))


# --------------------------------------------------------------------------------------------
# Error paths
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kw, msg",
    [
        ({"pairing": "greedy"}, "Expected pairing to be one of 'complementary', 'random', but got 'greedy' instead."),
        ({"detector": "cam"}, "Expected detector to be one of 'fine_grained', 'spectral', but got 'cam' instead."),
        ({"p": 1.5}, "Expected p in [0, 1], but got 1.5 instead."),
        ({"mean": (0.5,)}, "Expected both mean and std for a normalised input, but got only one instead."),
    ],
)
def test_guided_mixup_rejects_bad_options(kw, msg):
    with pytest.raises(ValueError, match=re.escape(msg)):
        GuidedMixup(num_classes=K, **kw)


def test_guided_mixup_rejects_bad_maps():
    op = GuidedMixup(num_classes=K)
    with pytest.raises(ValueError, match=re.escape("Expected saliency maps of shape (B, H, W) = (2, 8, 8)")):
        op(torch.rand(2, 3, 8, 8), torch.arange(2), saliency=torch.rand(2, 8, 9))
