"""RandSaliencyMix's patch noise (SPEC.md, "Patch noise and pairing"): Gaussian noise on the pasted
source pixels, inside the box only, in the images' units (uint8: units of 255, rounded and
clipped), labels unchanged, replayable from the params, and exactly nothing at sigma 0.

Each check compares an operator with noise to the same operator without it, from the same seed:
the noise is drawn last, so every other draw (pairing, boxes, blend, switches) is the same."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from randsaliencymix import RandomChoiceMix, RandSaliencyMix, apply_mix
from randsaliencymix.params import patch_mask

SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
K = 5


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def images(seed: int, b: int, h: int, w: int, dtype: torch.dtype, channels_last: bool) -> torch.Tensor:
    g = gen(seed)
    x = torch.randint(0, 256, (b, 3, h, w), generator=g, dtype=torch.uint8)
    if dtype != torch.uint8:
        x = torch.randn(b, 3, h, w, generator=g).to(dtype)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


@SETTINGS
@given(
    seed=st.integers(0, 2**31 - 1),
    b=st.integers(1, 6),
    h=st.integers(6, 14),
    w=st.integers(6, 14),
    dtype=st.sampled_from([torch.uint8, torch.float32, torch.float16]),
    channels_last=st.booleans(),
    sigma=st.sampled_from([0.05, 0.4, 3.0]),
    eta=st.sampled_from([1.0, 0.5, "beta"]),
    mixup_prob=st.sampled_from([0.0, 0.5]),
    paste=st.sampled_from(["anti_saliency", "same"]),
    tau=st.sampled_from([0.0, 1.0]),
)
def test_noise_only_inside_the_box_and_labels_unchanged(
    seed, b, h, w, dtype, channels_last, sigma, eta, mixup_prob, paste, tau
):
    x = images(seed, b, h, w, dtype, channels_last)
    y = torch.arange(b) % K
    maps = torch.rand(b, h, w, generator=gen(seed + 1))
    cfg = dict(num_classes=K, p=0.8, eta=eta, mixup_prob=mixup_prob, paste=paste, tau_src=tau, tau_dst=tau)
    noisy_op = RandSaliencyMix(patch_noise=sigma, **cfg)
    clean_op = RandSaliencyMix(**cfg)
    x0 = x.clone()
    params = noisy_op.sample_params(x, generator=gen(seed + 2), saliency=maps)
    clean = clean_op.sample_params(x, generator=gen(seed + 2), saliency=maps)
    # Same draws but the noise.
    assert clean.noise is None and params.noise is not None and params.noise.shape == x.shape
    for f in dataclasses.fields(params):
        if f.name != "noise":
            a, c = getattr(params, f.name), getattr(clean, f.name)
            assert torch.equal(a, c) if isinstance(a, torch.Tensor) else a == c, f.name
    xm, ym = noisy_op.apply_params(x, y, params)
    xc, yc = clean_op.apply_params(x, y, clean)
    assert torch.equal(x, x0), "input mutated"
    assert torch.equal(ym, yc), "labels changed by the noise"
    assert xm.dtype == x.dtype and xm.shape == x.shape
    if channels_last:
        assert xm.is_contiguous(memory_format=torch.channels_last)
    inside = patch_mask(params, h, w).expand_as(x)
    assert torch.equal(xm[~inside], xc[~inside]), "noise outside the pasted box"
    # Inside: (1 - eta) target + eta (source + noise), the noisy source rounded and clipped for uint8.
    xd, out, n = x.double(), xm.double(), params.noise.double()
    for i in range(b):
        if not bool(params.applied[i]) or bool(params.mixup[i]):
            continue
        sr1, sc1, sr2, sc2 = [int(v) for v in params.src_boxes[i]]
        dr1, dc1, dr2, dc2 = [int(v) for v in params.dst_boxes[i]]
        src = xd[int(params.perm[i]), :, sr1:sr2, sc1:sc2] + n[i, :, dr1:dr2, dc1:dc2]
        if dtype == torch.uint8:
            src = src.round().clamp(0, 255)
        e = float(params.eta[i])
        t = xd[i, :, dr1:dr2, dc1:dc2]
        expected = (1 - e) * t + e * src
        got = out[i, :, dr1:dr2, dc1:dc2]
        if dtype == torch.uint8:
            assert bool(((got - expected).abs() <= 0.5 + 1e-3).all())
        else:
            rtol = 2e-3 if dtype == torch.float16 else 2e-6
            assert bool(((got - expected).abs() <= rtol * (t.abs() + src.abs()) + 1e-6).all())
    # Replay from the params, forward with the same seed, and the functional apply.
    assert torch.equal(noisy_op(x, y, params=params)[0], xm)
    assert torch.equal(noisy_op(x, y, generator=gen(seed + 2), saliency=maps)[0], xm)
    soft = torch.nn.functional.one_hot(y, K).float()
    assert torch.equal(apply_mix(x, soft, params)[0], xm)


def test_sigma_zero_has_exactly_no_effect():
    x = images(0, 6, 12, 12, torch.float32, False)
    y = torch.arange(6) % K
    for cfg in ({}, {"eta": 1.0, "mixup_prob": 0.0, "p": 1.0}):
        zero = RandSaliencyMix(num_classes=K, patch_noise=0.0, **cfg)
        plain = RandSaliencyMix(num_classes=K, **cfg)
        params = zero.sample_params(x, generator=gen(1))
        assert params.noise is None
        assert all(torch.equal(a, b) for a, b in zip(zero(x, y, generator=gen(1)), plain(x, y, generator=gen(1))))


def test_uint8_noise_is_in_units_of_255_and_clipped():
    x = torch.full((4, 3, 10, 10), 128, dtype=torch.uint8)
    x[1] = 0
    x[2] = 255
    y = torch.arange(4)
    op = RandSaliencyMix(num_classes=K, patch_noise=0.2, eta=1.0, mixup_prob=0.0, p=1.0, paste="same")
    params = op.sample_params(x, generator=gen(3), perm=torch.tensor([1, 2, 3, 0]))
    xm, _ = op.apply_params(x, y, params)
    inside = patch_mask(params, 10, 10).expand_as(x)
    expected = (x[params.perm].double() + params.noise.double()).round().clamp(0, 255)
    assert torch.equal(xm.double()[inside], expected[inside])
    # The noise's spread is 255 * sigma: about 51 levels for sigma 0.2.
    assert 40 < float(params.noise.std()) < 62


def test_mixup_samples_get_no_noise_and_random_choice_keeps_it():
    x = images(4, 8, 12, 12, torch.float32, False)
    y = torch.arange(8) % K
    op = RandSaliencyMix(num_classes=K, patch_noise=0.5, mixup_prob=1.0, p=1.0)
    xm, _ = op(x, y, generator=gen(5))
    clean = RandSaliencyMix(num_classes=K, mixup_prob=1.0, p=1.0)(x, y, generator=gen(5))[0]
    assert torch.equal(xm, clean)
    # In RandomChoiceMix the noise of the noisy operator's samples survives the merge.
    choice = RandomChoiceMix(
        [
            RandSaliencyMix(patch_noise=0.5, eta=1.0, mixup_prob=0.0, p=1.0),
            RandSaliencyMix(eta=1.0, mixup_prob=0.0, p=1.0),
        ],
        mode="sample",
        num_classes=K,
    )
    params = choice.sample_params(x, generator=gen(6))
    assert params.noise is not None and params.noise.shape == x.shape
    xm, ym = choice.apply_params(x, y, params)
    torch.testing.assert_close(ym.sum(1), torch.ones(8))
    assert torch.equal(choice(x, y, params=params)[0], xm)


@pytest.mark.parametrize("sigma", [-0.1, float("inf"), float("nan"), 10.5, 1e38])
def test_patch_noise_out_of_range_is_refused(sigma):
    with pytest.raises(ValueError, match="Expected patch_noise"):
        RandSaliencyMix(patch_noise=sigma)


def test_patch_noise_must_be_a_number():
    with pytest.raises(TypeError, match="Expected patch_noise to be a number"):
        RandSaliencyMix(patch_noise="0.1")  # type: ignore[arg-type]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.uint8])
@pytest.mark.parametrize("eta", [1.0, 0.5])
def test_overflowing_noise_never_reaches_pixels_outside_the_box(dtype, eta):
    """Noise that overflows (inf, from params given by hand) stays inside the pasted box: every
    pixel outside it is the target's own, finite, as without noise."""
    x = images(7, 6, 12, 12, dtype, False)
    y = torch.arange(6) % K
    op = RandSaliencyMix(num_classes=K, patch_noise=0.5, eta=eta, mixup_prob=0.0, p=1.0, paste="same")
    params = op.sample_params(x, generator=gen(8))
    params = dataclasses.replace(params, noise=torch.full(tuple(x.shape), float("inf")))
    xm, _ = op.apply_params(x, y, params)
    outside = ~patch_mask(params, 12, 12).expand_as(x)
    assert torch.equal(xm[outside], x[outside])
    assert outside.any()
