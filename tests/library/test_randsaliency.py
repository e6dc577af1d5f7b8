"""RandSaliencyMix (``randsaliency.py``) against SPEC.md: its invariants over every option, its
saliency label weights, box geometry and corner law, the detector skipped where no saliency is used;
and its patch noise (SPEC.md, "Patch noise and pairing"): Gaussian noise on the pasted source
pixels, inside the box only, in the images' units (uint8: units of 255, rounded and clipped), labels
unchanged, replayable from the params, and exactly nothing at sigma 0.

Each patch-noise check compares an operator with noise to the same operator without it, from the
same seed: the noise is drawn last, so every other draw (pairing, boxes, blend, switches) is the
same. The shared invariant checks (``check_mix``, ``run_and_check``) are in tests/conftest.py."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import (
    MIX_K,
    MIX_SETTINGS,
    alphas,
    check_mix,
    design_rsm,
    gen,
    mix_batches,
    mix_images,
    mix_labels,
    mix_maps,
    rsm_box_sides,
    run_and_check,
)
from randsaliencymix import MixParams, RandomChoiceMix, RandSaliencyMix, apply_mix, source_share
from randsaliencymix.params import patch_mask

rsm_configs = st.fixed_dictionaries(
    dict(
        alpha=alphas,
        p=st.sampled_from([0.0, 0.7, 1.0]),
        source=st.sampled_from(["saliency", "peak", "uniform"]),
        tau_src=st.sampled_from([0.0, 1.0, 4.0]),
        paste=st.sampled_from(["anti_saliency", "same", "uniform", "saliency"]),
        tau_dst=st.sampled_from([0.0, 1.0, 4.0]),
        eta=st.sampled_from([1.0, 0.5, 0.0, "beta"]),
        beta_blend=st.sampled_from([0.5, 2.0]),
        mixup_prob=st.sampled_from([0.0, 0.3, 1.0]),
        gamma=st.sampled_from([0.0, 0.5, 1.0]),
        detector=st.sampled_from(["fine_grained", "spectral"]),
        eps=st.sampled_from([1e-4, 1e-2]),
    )
)


def check_rsm_geometry(params: MixParams, h: int, w: int, paste: str) -> None:
    for i in range(params.batch_size):
        if not bool(params.applied[i]) or bool(params.mixup[i]):
            continue
        bh, bw = rsm_box_sides(float(params.lam[i]), h, w)
        for box in (params.src_boxes[i], params.dst_boxes[i]):
            r1, c1, r2, c2 = [int(v) for v in box]
            assert (r2 - r1, c2 - c1) == (bh, bw), "RandSaliencyMix box clipped or of the wrong size"
            assert 0 <= r1 <= h - bh and 0 <= c1 <= w - bw
        if paste == "same":
            assert torch.equal(params.src_boxes[i], params.dst_boxes[i])


@MIX_SETTINGS
@given(batch=mix_batches(), cfg=rsm_configs, give_maps=st.booleans())
def test_randsaliencymix_invariants(batch, cfg, give_maps):
    op = RandSaliencyMix(num_classes=MIX_K, label_smoothing=batch["smoothing"], **cfg)
    x = batch["x"]
    maps = batch["maps"] if give_maps else None
    _, _, params = run_and_check(
        op,
        x,
        batch["y"],
        maps=maps,
        seed=batch["seed"],
        label_smoothing=batch["smoothing"],
        area_labels=cfg["gamma"] == 0,
    )
    h, w = x.shape[-2:]
    check_rsm_geometry(params, h, w, cfg["paste"])
    if cfg["eta"] != "beta":
        assert bool((params.eta == cfg["eta"]).all())
    if cfg["mixup_prob"] == 1.0:
        assert torch.equal(params.mixup, params.applied)
    if cfg["mixup_prob"] == 0.0:
        assert not bool(params.mixup.any())
    if cfg["gamma"] == 0.0:
        check_area_weights(params, h, w)


def check_area_weights(params: MixParams, h: int, w: int) -> None:
    """gamma = 0: source weight eta h w / (H W) for patches, 1 - lam for MixUp samples, 0 unapplied."""
    for i in range(params.batch_size):
        wt = float(params.source_weight[i])
        if not bool(params.applied[i]):
            assert wt == 0.0
        elif bool(params.mixup[i]):
            assert wt == pytest.approx(1 - float(params.lam[i]), rel=1e-12, abs=1e-15)
        else:
            bh, bw = rsm_box_sides(float(params.lam[i]), h, w)
            assert wt == pytest.approx(float(params.eta[i]) * bh * bw / (h * w), rel=1e-12, abs=1e-15)


def box_sum(m: torch.Tensor, box) -> float:
    r1, c1, r2, c2 = [int(v) for v in box]
    return float(m[r1:r2, c1:c2].sum())


@MIX_SETTINGS
@given(
    b=st.integers(1, 8),
    h=st.integers(8, 20),
    w=st.integers(8, 20),
    seed=st.integers(0, 2**31 - 1),
    source=st.sampled_from(["saliency", "peak", "uniform"]),
    paste=st.sampled_from(["anti_saliency", "same", "uniform", "saliency"]),
    eta=st.sampled_from([1.0, 0.5, "beta"]),
    gamma=st.sampled_from([1.0, 0.3]),
    mixup_prob=st.sampled_from([0.0, 0.3]),
    alpha=alphas,
)
def test_randsaliencymix_saliency_label_weights(b, h, w, seed, source, paste, eta, gamma, mixup_prob, alpha):
    x = mix_images(seed, b, 3, h, w)
    maps = mix_maps(seed, b, h, w)
    op = design_rsm(
        alpha=alpha, source=source, paste=paste, eta=eta, gamma=gamma, mixup_prob=mixup_prob, tau_src=2.0, tau_dst=2.0
    )
    params = op.sample_params(x, generator=gen(seed), saliency=maps)
    check_rsm_geometry(params, h, w, paste)
    norm = maps.double() / maps.double().sum((1, 2), keepdim=True)
    for i in range(b):
        wt = float(params.source_weight[i])
        if bool(params.mixup[i]):
            assert wt == pytest.approx(1 - float(params.lam[i]), abs=1e-12)
            continue
        e = float(params.eta[i])
        bh, bw = rsm_box_sides(float(params.lam[i]), h, w)
        area = e * bh * bw / (h * w)
        m_s = e * box_sum(norm[int(params.perm[i])], params.src_boxes[i])
        m_t = 1 - e * box_sum(norm[i], params.dst_boxes[i])
        w_s = m_s / (m_s + m_t) if m_s + m_t > 1e-9 else area
        assert wt == pytest.approx(gamma * w_s + (1 - gamma) * area, abs=2e-5)


@pytest.mark.parametrize("paste", ["anti_saliency", "same", "uniform", "saliency"])
@pytest.mark.parametrize("source", ["saliency", "peak", "uniform"])
def test_randsaliencymix_gamma1_eta1_weight(source, paste):
    b, h, w = 12, 16, 12
    x = mix_images(31, b, 3, h, w)
    for seed in range(4):
        maps = mix_maps(seed, b, h, w)
        op = design_rsm(source=source, paste=paste, eta=1.0, gamma=1.0)
        params = op.sample_params(x, generator=gen(seed), saliency=maps)
        norm = maps.double() / maps.double().sum((1, 2), keepdim=True)
        for i in range(b):
            m_s = box_sum(norm[int(params.perm[i])], params.src_boxes[i])
            m_t = 1 - box_sum(norm[i], params.dst_boxes[i])
            assert float(params.source_weight[i]) == pytest.approx(m_s / (m_s + m_t), abs=2e-5)
        check_mix(
            x,
            mix_labels(seed, b, "index"),
            *op.apply_params(x, mix_labels(seed, b, "index"), params),
            params,
            area_labels=False,
        )


def test_randsaliencymix_falls_back_to_area_when_no_saliency_is_involved():
    """m_s + m_t == 0 (no source saliency moved, all target saliency covered): area labels."""
    b, h, w = 16, 8, 8
    x = mix_images(40, b, 3, h, w)
    maps = torch.zeros(b, h, w)
    maps[:, 4, 4] = 1.0  # every map: all its mass on one pixel
    op = design_rsm(source="uniform", paste="saliency", tau_dst=50.0, gamma=1.0, alpha=0.5)
    hits = 0
    for seed in range(10):
        params = op.sample_params(x, generator=gen(seed), saliency=maps)
        for i in range(b):
            if not bool(params.applied[i]):
                continue
            m_s = box_sum(maps[int(params.perm[i])], params.src_boxes[i])
            m_t = 1 - box_sum(maps[i], params.dst_boxes[i])
            bh, bw = rsm_box_sides(float(params.lam[i]), h, w)
            if m_s + m_t == 0:
                hits += 1
                assert float(params.source_weight[i]) == pytest.approx(bh * bw / (h * w), abs=1e-12)
            else:
                assert float(params.source_weight[i]) == pytest.approx(m_s / (m_s + m_t), abs=2e-5)
    assert hits > 0


def test_randsaliencymix_peak_source_takes_the_heaviest_window():
    b, h, w = 10, 14, 18
    x = mix_images(50, b, 3, h, w)
    for seed in range(3):
        maps = mix_maps(seed, b, h, w)
        op = design_rsm(source="peak", paste="uniform")
        params = op.sample_params(x, generator=gen(seed), saliency=maps)
        norm = maps.double() / maps.double().sum((1, 2), keepdim=True)
        for i in range(b):
            bh, bw = rsm_box_sides(float(params.lam[i]), h, w)
            src = norm[int(params.perm[i])]
            best = max(float(src[r : r + bh, c : c + bw].sum()) for r in range(h - bh + 1) for c in range(w - bw + 1))
            assert box_sum(src, params.src_boxes[i]) >= best - 1e-5


def test_randsaliencymix_gamma0_area_mixup_and_eta_options():
    b, h, w = 24, 16, 16
    x = mix_images(60, b, 3, h, w)
    maps = mix_maps(60, b, h, w)
    # gamma = 0 with blends and MixUp samples: exact area weights.
    op = design_rsm(gamma=0.0, eta="beta", mixup_prob=0.4, p=0.8)
    params = op.sample_params(x, generator=gen(0), saliency=maps)
    check_area_weights(params, h, w)
    assert bool(((params.eta >= 0) & (params.eta <= 1)).all())
    assert len(set(params.eta.tolist())) > 1
    assert bool(params.mixup.any()) and bool((params.applied & ~params.mixup).any())
    # mixup_prob = 1: every applied sample is a MixUp with weight 1 - lam.
    op = design_rsm(mixup_prob=1.0, gamma=1.0)
    params = op.sample_params(x, generator=gen(1), saliency=maps)
    assert torch.equal(params.mixup, params.applied) and bool(params.applied.all())
    torch.testing.assert_close(params.source_weight, 1 - params.lam, atol=1e-12, rtol=0)
    share = source_share(params, h, w, torch.float64)
    torch.testing.assert_close(share, (1 - params.lam).reshape(b, 1, 1, 1).expand(b, 1, h, w), atol=1e-12, rtol=0)
    # eta = 0.5 fixed: half blends inside the box.
    op = design_rsm(eta=0.5, gamma=0.0)
    params = op.sample_params(x, generator=gen(2), saliency=maps)
    assert bool((params.eta == 0.5).all())
    y = mix_labels(2, b, "index")
    xm, ym = op.apply_params(x, y, params)
    check_mix(x, y, xm, ym, params)
    s = source_share(params, h, w)
    assert set(s.unique().tolist()) <= {0.0, 0.5}


def brute_window_masses(m: np.ndarray, bh: int, bw: int) -> np.ndarray:
    """All h x w window masses of one map, indexed by top-left corner: (H - h + 1, W - w + 1)."""
    hh, ww = m.shape
    return np.array([[m[r : r + bh, c : c + bw].sum() for c in range(ww - bw + 1)] for r in range(hh - bh + 1)])


@pytest.mark.parametrize(
    "side,tau,anti",
    [
        ("src", 1.0, False),
        ("src", 4.0, False),
        ("src", 0.0, False),
        ("dst", 1.0, True),
        ("dst", 4.0, True),
        ("dst", 2.0, False),
        ("dst", 0.0, True),
    ],
)
def test_randsaliencymix_corner_law_end_to_end(side, tau, anti):
    """Chosen windows follow P(corner) ~ (M + eps)^tau (source) or (1 - M + eps)^tau (anti_saliency
    paste), given each sample's box size: z-test of the summed chosen mass against its law."""
    b, h, w, eps = 1024, 10, 12, 1e-4
    x = mix_images(80, b, 1, h, w)
    g = gen(81)
    maps = torch.rand(b, h, w, generator=g) ** 6
    if side == "src":
        op = design_rsm(source="saliency", tau_src=tau, paste="uniform", eps=eps, alpha=2.0)
    else:
        op = design_rsm(
            source="uniform", paste="anti_saliency" if anti else "saliency", tau_dst=tau, eps=eps, alpha=2.0
        )
    params = op.sample_params(x, generator=gen(82), saliency=maps)
    norm = (maps.double() / maps.double().sum((1, 2), keepdim=True)).numpy()
    total, mean, var = 0.0, 0.0, 0.0
    for i in range(b):
        bh, bw = rsm_box_sides(float(params.lam[i]), h, w)
        owner = int(params.perm[i]) if side == "src" else i
        masses = brute_window_masses(norm[owner], bh, bw)
        score = (1.0 - masses).clip(min=0.0) if anti else masses
        prob = (score + eps) ** tau
        prob = prob / prob.sum()
        box = params.src_boxes[i] if side == "src" else params.dst_boxes[i]
        r1, c1 = int(box[0]), int(box[1])
        total += masses[r1, c1]
        e = float((prob * masses).sum())
        mean += e
        var += float((prob * (masses - e) ** 2).sum())
    z = (total - mean) / math.sqrt(var)
    assert abs(z) < 4.5, (z, total, mean)


@pytest.mark.parametrize(
    "options",
    [
        dict(tau_src=0.0, tau_dst=0.0, gamma=0.0),
        dict(source="uniform", paste="uniform", gamma=0.0, eta="beta", mixup_prob=0.3),
        dict(source="uniform", paste="same", gamma=0.0),
    ],
)
def test_rsm_without_saliency_skips_the_detector_and_draws_the_same(options) -> None:
    def refuse(x: torch.Tensor) -> torch.Tensor:
        raise AssertionError("the detector must not run when no draw or label uses saliency")

    x = torch.rand(6, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    y = torch.arange(6) % 4
    skipping = RandSaliencyMix(num_classes=4, detector=refuse, **options)
    assert not skipping.uses_saliency
    xs, ys = skipping(x, y, generator=torch.Generator().manual_seed(1))
    # The same draws as with real maps given explicitly: the maps change nothing here.
    maps = torch.rand(6, 16, 16, generator=torch.Generator().manual_seed(2))
    xm, ym = RandSaliencyMix(num_classes=4, **options)(x, y, generator=torch.Generator().manual_seed(1), saliency=maps)
    assert torch.equal(xs, xm) and torch.equal(ys, ym)


def test_rsm_with_any_saliency_setting_runs_the_detector() -> None:
    for options in (
        dict(tau_src=1.0, tau_dst=0.0, gamma=0.0),
        dict(tau_src=0.0, tau_dst=1.0, gamma=0.0),
        dict(tau_src=0.0, tau_dst=0.0, gamma=0.5),
        dict(source="peak", tau_dst=0.0, gamma=0.0),
    ):
        assert RandSaliencyMix(num_classes=4, **options).uses_saliency


# ------------------------------------------------------------------------------------------------
# Patch noise
# ------------------------------------------------------------------------------------------------

SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
K = 5


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
