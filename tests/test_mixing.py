"""Property tests of the mixing operators against SPEC.md.

Every check is an invariant computed independently of ``src`` (reference shares, shifted sources,
box sums, the authors' SaliencyMix box), never a seed-pinned golden number.
"""

from __future__ import annotations

import math
from dataclasses import fields
from typing import Callable, Dict

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from randsaliencymix import (
    CutMix,
    GuidedMixup,
    MixParams,
    MixUp,
    NoMix,
    RandomChoiceMix,
    RandSaliencyMix,
    SaliencyMix,
    SoftTargetCrossEntropy,
    apply_mix,
    soft_target_cross_entropy,
    source_share,
)

MIX_SETTINGS = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

DTYPES = [torch.uint8, torch.float16, torch.bfloat16, torch.float32]
# Relative tolerance of a blended pixel, times |x_t| + |x_src| (float32 lerp, then rounding).
BLEND_RTOL = {torch.float32: 2e-6, torch.float64: 1e-12, torch.float16: 1e-3, torch.bfloat16: 8e-3}
K = 7
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# ------------------------------------------------------------------------------------------------
# Data helpers
# ------------------------------------------------------------------------------------------------


def mix_gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed))


def mix_images(
    seed: int, b: int, c: int, h: int, w: int, dtype: torch.dtype = torch.float32, channels_last: bool = False
) -> torch.Tensor:
    g = mix_gen(seed)
    if dtype == torch.uint8:
        x = torch.randint(0, 256, (b, c, h, w), generator=g, dtype=torch.uint8)
    else:
        x = torch.randn(b, c, h, w, generator=g).to(dtype)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def mix_labels(seed: int, b: int, kind: str) -> torch.Tensor:
    g = mix_gen(seed + 7)
    if kind == "index":
        return torch.randint(0, K, (b,), generator=g)
    logits = torch.randn(b, K, generator=g, dtype=torch.float64) * 2
    probs = torch.softmax(logits, dim=1)
    return probs.float() if kind == "prob32" else probs


def mix_maps(seed: int, b: int, h: int, w: int) -> torch.Tensor:
    """Peaky random saliency maps in [0, 1], float32."""
    g = mix_gen(seed + 13)
    return torch.rand(b, h, w, generator=g) ** 3


def ref_soft(y: torch.Tensor, label_smoothing: float) -> torch.Tensor:
    soft = F.one_hot(y.long(), K).double() if y.ndim == 1 else y.double()
    if label_smoothing > 0:
        soft = soft * (1 - label_smoothing) + label_smoothing / K
    return soft


def ref_share(params: MixParams, h: int, w: int) -> torch.Tensor:
    """Source share (B, 1, H, W) built from the params fields by hand, float64 (a per-pixel
    operator's drawn share map, where it has one)."""
    b = params.batch_size
    s = torch.zeros(b, 1, h, w, dtype=torch.float64)
    for i in range(b):
        if not bool(params.applied[i]):
            continue
        if params.share_map is not None:
            s[i] = params.share_map[i].double()
            continue
        if bool(params.mixup[i]):
            s[i] = 1.0 - float(params.lam[i])
            continue
        r1, c1, r2, c2 = [int(v) for v in params.dst_boxes[i]]
        s[i, :, r1:r2, c1:c2] = float(params.eta[i])
    return s


def ref_sources(x: torch.Tensor, params: MixParams) -> torch.Tensor:
    """The source pixel of every target pixel that receives one (float64, NaN elsewhere)."""
    b, c, h, w = x.shape
    xd = x.double()
    out = torch.full((b, c, h, w), float("nan"), dtype=torch.float64)
    for i in range(b):
        j = int(params.perm[i])
        if not bool(params.applied[i]):
            continue
        if bool(params.mixup[i]) or (params.share_map is not None and not bool(params.dst_boxes[i].any())):
            out[i] = xd[j]  # MixUp, or a per-pixel blend (no box): the whole source, unshifted
            continue
        sr1, sc1, sr2, sc2 = [int(v) for v in params.src_boxes[i]]
        dr1, dc1, dr2, dc2 = [int(v) for v in params.dst_boxes[i]]
        assert (sr2 - sr1, sc2 - sc1) == (dr2 - dr1, dc2 - dc1), "source and target boxes differ in size"
        out[i, :, dr1:dr2, dc1:dc2] = xd[j, :, sr1:sr2, sc1:sc2]
    return out


def check_boxes_inside(params: MixParams, h: int, w: int) -> None:
    for boxes in (params.src_boxes, params.dst_boxes):
        assert boxes.dtype == torch.long and tuple(boxes.shape) == (params.batch_size, 4)
        r1, c1, r2, c2 = boxes.unbind(1)
        assert bool(((0 <= r1) & (r1 <= r2) & (r2 <= h)).all()), boxes
        assert bool(((0 <= c1) & (c1 <= c2) & (c2 <= w)).all()), boxes
    src, dst = params.src_boxes, params.dst_boxes
    assert torch.equal(src[:, 2] - src[:, 0], dst[:, 2] - dst[:, 0])
    assert torch.equal(src[:, 3] - src[:, 1], dst[:, 3] - dst[:, 1])


def check_mix(
    x: torch.Tensor,
    y: torch.Tensor,
    xm: torch.Tensor,
    ym: torch.Tensor,
    params: MixParams,
    label_smoothing: float = 0.0,
    area_labels: bool = True,
) -> None:
    """Every invariant of one mixing step (see the module docstring of ``mixing``)."""
    b, c, h, w = x.shape
    # Params well-formed.
    assert params.batch_size == b
    assert params.image_size == (h, w)
    assert tuple(params.perm.shape) == (b,) and bool(((params.perm >= 0) & (params.perm < b)).all())
    for name in ("lam", "eta", "source_weight"):
        t = getattr(params, name)
        assert tuple(t.shape) == (b,) and t.is_floating_point()
        assert bool(((t >= 0) & (t <= 1)).all()), (name, t)
    check_boxes_inside(params, h, w)
    assert bool((params.source_weight[~params.applied] == 0).all())

    # Output images: shape, dtype, layout.
    assert xm.shape == x.shape and xm.dtype == x.dtype
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        assert xm.is_contiguous(memory_format=torch.channels_last)

    # Per-pixel share: source_share agrees with the fields.
    share_ref = ref_share(params, h, w)
    share = source_share(params, h, w)
    assert share.shape == (b, 1, h, w)
    torch.testing.assert_close(share.double(), share_ref, atol=1e-6, rtol=0)

    # Pixels: target where s == 0, shifted source where s == 1, the stated blend in between.
    s = share_ref.expand(b, c, h, w)
    xt = x.double()
    xs = ref_sources(x, params)
    out = xm.double()
    assert not bool(torch.isnan(out).any())
    keep = s == 0
    assert torch.equal(out[keep], xt[keep]), "unmixed pixels changed"
    full = s == 1
    assert not bool(torch.isnan(xs[full]).any())
    assert torch.equal(out[full], xs[full]), "hard-pasted pixels are not the source's"
    part = ~keep & ~full
    if bool(part.any()):
        expected = (1 - s[part]) * xt[part] + s[part] * xs[part]
        if x.dtype == torch.uint8:
            assert bool(((out[part] - expected).abs() <= 0.5 + 1e-3).all()), "uint8 blend not rounded"
            assert bool((out[part] == out[part].round()).all())
        else:
            tol = BLEND_RTOL[x.dtype] * (xt[part].abs() + xs[part].abs()) + 1e-30
            assert bool(((out[part] - expected).abs() <= tol).all()), "blend differs from (1-s) x_t + s x_src"

    # Targets.
    soft = ref_soft(y, label_smoothing)
    assert ym.shape == (b, K) and ym.is_floating_point()
    torch.testing.assert_close(ym.double().sum(1), torch.ones(b, dtype=torch.float64), atol=1e-5, rtol=0)
    wt = params.source_weight.double()[:, None]
    torch.testing.assert_close(ym.double(), (1 - wt) * soft + wt * soft[params.perm], atol=1e-6, rtol=0)

    # Label weight = the applied mask's mean (area labels).
    if area_labels:
        torch.testing.assert_close(params.source_weight.double(), share_ref.mean((1, 2, 3)), atol=1e-6, rtol=0)


def run_and_check(op, x, y, maps=None, seed=0, label_smoothing=0.0, area_labels=True):
    """Sample, apply, check invariants, non-mutation and replay. Returns (xm, ym, params)."""
    x0, y0 = x.clone(), y.clone()
    maps0 = None if maps is None else maps.clone()
    params = op.sample_params(x, generator=mix_gen(seed), saliency=maps)
    xm, ym = op.apply_params(x, y, params)
    assert torch.equal(x, x0) and torch.equal(y, y0), "inputs mutated"
    if maps is not None:
        assert torch.equal(maps, maps0), "saliency maps mutated"
    check_mix(x, y, xm, ym, params, label_smoothing, area_labels)
    # Replay: the same params give the same output; forward(params=) is apply.
    xm2, ym2 = op(x, y, params=params)
    assert torch.equal(xm, xm2) and torch.equal(ym, ym2)
    # forward(generator=) with the same seed is sample_params + apply.
    xm3, ym3 = op(x, y, generator=mix_gen(seed), saliency=maps)
    assert torch.equal(xm, xm3) and torch.equal(ym, ym3)
    assert torch.equal(x, x0) and torch.equal(y, y0), "inputs mutated"
    return xm, ym, params


# ------------------------------------------------------------------------------------------------
# Hypothesis strategies
# ------------------------------------------------------------------------------------------------


@st.composite
def mix_batches(draw, min_side: int = 8, max_side: int = 20):
    b = draw(st.sampled_from([1, 2, 3, 5, 8]))
    c = draw(st.sampled_from([1, 3]))
    h = draw(st.integers(min_side, max_side))
    w = draw(st.integers(min_side, max_side))
    dtype = draw(st.sampled_from(DTYPES))
    channels_last = draw(st.booleans())
    kind = draw(st.sampled_from(["index", "prob32", "prob64"]))
    smoothing = draw(st.sampled_from([0.0, 0.1]))
    seed = draw(st.integers(0, 2**31 - 1))
    x = mix_images(seed, b, c, h, w, dtype, channels_last)
    y = mix_labels(seed, b, kind)
    return dict(x=x, y=y, seed=seed, smoothing=smoothing, maps=mix_maps(seed, b, h, w))


alphas = st.sampled_from([0.2, 1.0, 3.0])
probs_p = st.sampled_from([0.0, 0.5, 1.0])


@MIX_SETTINGS
@given(batch=mix_batches(), alpha=alphas, p=probs_p, mode=st.sampled_from(["batch", "sample"]))
def test_mixup_invariants(batch, alpha, p, mode):
    op = MixUp(alpha=alpha, num_classes=K, p=p, mode=mode, label_smoothing=batch["smoothing"])
    _, _, params = run_and_check(op, batch["x"], batch["y"], seed=batch["seed"], label_smoothing=batch["smoothing"])
    assert bool(params.mixup[params.applied].all())
    torch.testing.assert_close(params.source_weight[params.applied], 1 - params.lam[params.applied])


@MIX_SETTINGS
@given(batch=mix_batches(), alpha=alphas, p=probs_p, mode=st.sampled_from(["batch", "sample"]))
def test_cutmix_invariants(batch, alpha, p, mode):
    op = CutMix(alpha=alpha, num_classes=K, p=p, mode=mode, label_smoothing=batch["smoothing"])
    x = batch["x"]
    _, _, params = run_and_check(op, x, batch["y"], seed=batch["seed"], label_smoothing=batch["smoothing"])
    check_centred_box_rule(params, x.shape[-2], x.shape[-1])
    assert not bool(params.mixup.any())
    assert bool((params.eta == 1).all())


def check_centred_box_rule(params: MixParams, h: int, w: int) -> None:
    """CutMix/SaliencyMix: src == dst; a box of half-sides h//2, w//2 around a centre, clipped."""
    assert torch.equal(params.src_boxes, params.dst_boxes)
    cut = torch.sqrt(1 - params.lam)
    for i in range(params.batch_size):
        if not bool(params.applied[i]):
            continue
        bh, bw = int(h * float(cut[i])), int(w * float(cut[i]))
        r1, c1, r2, c2 = [int(v) for v in params.dst_boxes[i]]
        assert r2 - r1 <= 2 * (bh // 2) and c2 - c1 <= 2 * (bw // 2)
        if 0 < r1 and r2 < h:
            assert r2 - r1 == 2 * (bh // 2)
        if 0 < c1 and c2 < w:
            assert c2 - c1 == 2 * (bw // 2)


@MIX_SETTINGS
@given(
    batch=mix_batches(),
    alpha=alphas,
    p=probs_p,
    mode=st.sampled_from(["official", "per_sample"]),
    detector=st.sampled_from(["fine_grained", "spectral"]),
    give_maps=st.booleans(),
)
def test_saliencymix_invariants(batch, alpha, p, mode, detector, give_maps):
    op = SaliencyMix(alpha=alpha, num_classes=K, p=p, variant=mode, detector=detector, label_smoothing=batch["smoothing"])
    x = batch["x"]
    maps = batch["maps"] if give_maps and mode != "official" else None  # official computes its own map
    _, _, params = run_and_check(op, x, batch["y"], maps=maps, seed=batch["seed"], label_smoothing=batch["smoothing"])
    check_centred_box_rule(params, x.shape[-2], x.shape[-1])
    if mode == "official":
        assert bool((params.lam == params.lam[0]).all())
        assert bool((params.applied == params.applied[0]).all())
        assert bool((params.dst_boxes == params.dst_boxes[0]).all())


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


def rsm_box_sides(lam: float, h: int, w: int):
    cut = math.sqrt(1.0 - lam)
    return int(h * cut), int(w * cut)


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
    op = RandSaliencyMix(num_classes=K, label_smoothing=batch["smoothing"], **cfg)
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


@MIX_SETTINGS
@given(
    batch=mix_batches(),
    mode=st.sampled_from(["batch", "sample"]),
    p=probs_p,
    probs=st.sampled_from([None, [0.2, 0.3, 0.5], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]),
)
def test_randomchoice_invariants(batch, mode, p, probs):
    ops = [
        MixUp(mode="sample", p=0.8),
        CutMix(mode="sample"),
        RandSaliencyMix(gamma=0.0, eta="beta", mixup_prob=0.2, paste="uniform"),
    ]
    op = RandomChoiceMix(ops, probs=probs, mode=mode, num_classes=K, p=p, label_smoothing=batch["smoothing"])
    _, _, params = run_and_check(
        op, batch["x"], batch["y"], maps=batch["maps"], seed=batch["seed"], label_smoothing=batch["smoothing"]
    )
    if p == 0.0:
        assert not bool(params.applied.any())


@MIX_SETTINGS
@given(batch=mix_batches())
def test_nomix_invariants(batch):
    op = NoMix(num_classes=K, label_smoothing=batch["smoothing"])
    x, y = batch["x"], batch["y"]
    xm, ym, _ = run_and_check(op, x, y, seed=batch["seed"], label_smoothing=batch["smoothing"])
    assert torch.equal(xm, x)
    torch.testing.assert_close(ym.double(), ref_soft(y, batch["smoothing"]), atol=1e-6, rtol=0)


# ------------------------------------------------------------------------------------------------
# Named operator configurations, for deterministic coverage of dtypes, layouts and shapes
# ------------------------------------------------------------------------------------------------

MIX_OPS: Dict[str, Callable[[], object]] = {
    "mixup_batch": lambda: MixUp(num_classes=K),
    "mixup_sample": lambda: MixUp(num_classes=K, mode="sample", p=0.7),
    "cutmix_batch": lambda: CutMix(num_classes=K),
    "cutmix_sample": lambda: CutMix(num_classes=K, mode="sample", p=0.7),
    "saliencymix_official": lambda: SaliencyMix(num_classes=K, variant="official"),
    "saliencymix_per_sample": lambda: SaliencyMix(num_classes=K, variant="per_sample"),
    "saliencymix_spectral": lambda: SaliencyMix(num_classes=K, variant="per_sample", detector="spectral"),
    "rsm_default": lambda: RandSaliencyMix(num_classes=K),
    "rsm_design": lambda: design_rsm(),
    "rsm_area_blend": lambda: RandSaliencyMix(
        num_classes=K, eta="beta", mixup_prob=0.3, gamma=0.0, paste="uniform", detector="spectral"
    ),
    "rsm_peak_same": lambda: RandSaliencyMix(num_classes=K, source="peak", paste="same", eta=0.5, gamma=1.0),
    "rsm_saliency_paste": lambda: RandSaliencyMix(
        num_classes=K, source="uniform", paste="saliency", tau_dst=4.0, label_smoothing=0.1
    ),
    "choice_batch": lambda: RandomChoiceMix([MixUp(), CutMix()], mode="batch", num_classes=K),
    "choice_sample": lambda: RandomChoiceMix(
        [MixUp(mode="sample"), CutMix(mode="sample"), RandSaliencyMix(gamma=0.0, eta=0.5)],
        probs=[0.3, 0.3, 0.4],
        mode="sample",
        num_classes=K,
    ),
    "nomix": lambda: NoMix(num_classes=K),
    "guided_random": lambda: GuidedMixup(num_classes=K, pairing="random", p=0.7),
    "choice_guided_cutmix": lambda: RandomChoiceMix(
        [GuidedMixup(p=1.0), CutMix(mode="sample")], mode="sample", num_classes=K
    ),
    "rsm_complementary": lambda: RandSaliencyMix(num_classes=K, pairing="complementary"),
}
# Operators whose label weights are not the area of the applied mask by design (saliency labels).
SALIENCY_LABELS = {"rsm_design", "rsm_peak_same", "rsm_saliency_paste"}


# SALIENCY_ON (the defaults before the study chose the library's): every saliency idea switched
# on, a hard paste applied to every sample, so that tests of the saliency geometry and labels see
# every sample patched.
def design_rsm(**options) -> RandSaliencyMix:
    from randsaliencymix import SALIENCY_ON

    return RandSaliencyMix(**{"num_classes": K, **SALIENCY_ON, **options})


def op_smoothing(op) -> float:
    return float(getattr(op, "label_smoothing", 0.0))


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).replace("torch.", ""))
@pytest.mark.parametrize("name", list(MIX_OPS))
def test_dtypes_and_layouts(name, dtype, channels_last):
    op = MIX_OPS[name]()
    x = mix_images(3, 5, 3, 12, 20, dtype, channels_last)  # odd batch, non-square
    y = mix_labels(3, 5, "index")
    run_and_check(op, x, y, seed=11, label_smoothing=op_smoothing(op), area_labels=name not in SALIENCY_LABELS)


@pytest.mark.parametrize("shape", [(1, 3, 8, 8), (5, 1, 12, 20), (4, 3, 20, 12), (2, 3, 32, 32)])
@pytest.mark.parametrize("name", list(MIX_OPS))
def test_batch_sizes_and_shapes(name, shape):
    op = MIX_OPS[name]()
    b, c, h, w = shape
    x = mix_images(5, b, c, h, w)
    y = mix_labels(5, b, "prob64")
    for seed in range(3):
        run_and_check(
            op,
            x,
            y,
            maps=None if name == "saliencymix_official" else mix_maps(seed, b, h, w),  # it refuses maps
            seed=seed,
            label_smoothing=op_smoothing(op),
            area_labels=name not in SALIENCY_LABELS,
        )


@pytest.mark.parametrize("name", list(MIX_OPS))
def test_replay_and_seeds(name):
    x = mix_images(1, 16, 3, 16, 16)
    y = mix_labels(1, 16, "index")
    op = MIX_OPS[name]()
    p1 = op.sample_params(x, generator=mix_gen(123))
    p2 = op.sample_params(x, generator=mix_gen(123))
    for f in fields(MixParams):
        a, b = getattr(p1, f.name), getattr(p2, f.name)
        assert torch.equal(a, b) if isinstance(a, torch.Tensor) else a == b, f.name
    assert all(torch.equal(a, b) for a, b in zip(op.apply_params(x, y, p1), op.apply_params(x, y, p1)))
    assert all(torch.equal(a, b) for a, b in zip(op.apply_params(x, y, p1), op.apply_params(x, y, p2)))
    out1 = op(x, y, generator=mix_gen(7))
    out2 = op(x, y, generator=mix_gen(7))
    assert all(torch.equal(a, b) for a, b in zip(out1, out2))


@pytest.mark.parametrize("name", [n for n in MIX_OPS if n != "nomix"])
def test_different_seeds_differ(name):
    x = mix_images(2, 16, 3, 16, 16)
    y = mix_labels(2, 16, "index")
    op = MIX_OPS[name]()
    op.p = 1.0  # so that neither draw can be a no-op batch
    outs = [op(x, y, generator=mix_gen(s))[0] for s in (0, 1, 2)]
    assert not (torch.equal(outs[0], outs[1]) and torch.equal(outs[1], outs[2]))


@pytest.mark.parametrize("name", [n for n in MIX_OPS if n != "nomix"])
def test_p_zero_is_identity_and_p_one_mixes(name):
    x = mix_images(4, 8, 3, 16, 16, torch.uint8)
    y = mix_labels(4, 8, "index")
    op = MIX_OPS[name]()
    op.p = 0.0
    if isinstance(op, RandomChoiceMix):
        for sub in op.ops:
            sub.p = 1.0
    smoothing = op_smoothing(op)
    for seed in range(3):
        xm, ym = op(x, y, generator=mix_gen(seed))
        assert torch.equal(xm, x)
        torch.testing.assert_close(ym.double(), ref_soft(y, smoothing), atol=1e-7, rtol=0)
        if smoothing == 0:
            assert torch.equal(ym, F.one_hot(y, K).to(ym.dtype))
    op.p = 1.0
    params = op.sample_params(x, generator=mix_gen(0), perm=torch.roll(torch.arange(8), 1))
    assert bool(params.applied.all())
    xm, _ = op.apply_params(x, y, params)
    assert not torch.equal(xm, x)
    assert bool((params.source_weight > 0).any())


@pytest.mark.parametrize("name", list(MIX_OPS))
def test_given_perm_is_used(name):
    x = mix_images(6, 6, 3, 12, 12)
    y = mix_labels(6, 6, "index")
    perm = torch.tensor([3, 0, 5, 1, 2, 4])
    op = MIX_OPS[name]()
    params = op.sample_params(x, generator=mix_gen(0), perm=perm)
    if name != "nomix":
        assert torch.equal(params.perm, perm)
    check_mix(x, y, *op.apply_params(x, y, params), params, op_smoothing(op), name not in SALIENCY_LABELS)


def test_apply_mix_functional_matches_operator():
    x = mix_images(8, 6, 3, 16, 16)
    y = mix_labels(8, 6, "prob32")
    op = design_rsm(eta="beta", mixup_prob=0.3)
    params = op.sample_params(x, generator=mix_gen(0), saliency=mix_maps(0, 6, 16, 16))
    a = op.apply_params(x, y, params)
    # The operator renormalises accepted probability rows (to_soft_targets); apply_mix takes them as given.
    b = apply_mix(x, y / y.sum(1, keepdim=True), params)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_hard_paste_copies_extreme_finite_values_exactly():
    """A hard paste is a copy: finite but large-magnitude pixels must not turn into NaN."""
    big = 3.0e38  # finite float32; x_src - x_t overflows
    x = torch.zeros(2, 1, 8, 8)
    x[0], x[1] = big, -big
    y = torch.tensor([0, 1])
    op = CutMix(num_classes=K)
    params = op.sample_params(x, generator=mix_gen(3), perm=torch.tensor([1, 0]))
    xm, _ = op.apply_params(x, y, params)
    assert not bool(torch.isnan(xm).any()), "unmixed / pasted pixels became NaN"
    check_mix(x, y, xm, op.apply_params(x, y, params)[1], params)


# ------------------------------------------------------------------------------------------------
# Batch vs sample modes
# ------------------------------------------------------------------------------------------------


def test_batch_mode_one_draw_sample_mode_varies():
    x = mix_images(9, 32, 3, 16, 16)
    for cls in (MixUp, CutMix):
        pb = cls(num_classes=K, mode="batch", p=0.5).sample_params(x, generator=mix_gen(1))
        assert bool((pb.lam == pb.lam[0]).all())
        assert bool((pb.applied == pb.applied[0]).all())
        assert bool((pb.dst_boxes == pb.dst_boxes[0]).all())
        ps = cls(num_classes=K, mode="sample", p=0.5).sample_params(x, generator=mix_gen(1))
        assert len(set(ps.lam.tolist())) > 1
        assert 0 < int(ps.applied.sum()) < 32
        if cls is CutMix:
            assert len({tuple(b) for b in ps.dst_boxes.tolist()}) > 1
    po = SaliencyMix(num_classes=K, variant="official").sample_params(x, generator=mix_gen(1))
    assert bool((po.lam == po.lam[0]).all()) and bool((po.dst_boxes == po.dst_boxes[0]).all())
    pp = SaliencyMix(num_classes=K, variant="per_sample").sample_params(x, generator=mix_gen(1))
    assert len(set(pp.lam.tolist())) > 1
    pr = design_rsm().sample_params(x, generator=mix_gen(1))
    assert len(set(pr.lam.tolist())) > 1


# ------------------------------------------------------------------------------------------------
# SaliencyMix: the authors' algorithm
# ------------------------------------------------------------------------------------------------


def authors_saliency_bbox(img: torch.Tensor, lam: float):
    """SaliencyMix's ``saliency_bbox`` as in the authors' training scripts (CHW tensor)."""
    cv2 = pytest.importorskip("cv2")
    size = img.size()
    W = size[1]
    H = size[2]
    cut_rat = np.sqrt(1.0 - lam)
    cut_w = int(W * cut_rat)
    cut_h = int(H * cut_rat)
    temp_img = img.cpu().numpy().transpose(1, 2, 0)
    saliency = cv2.saliency.StaticSaliencyFineGrained_create()
    (_success, saliencyMap) = saliency.computeSaliency(temp_img)
    saliencyMap = (saliencyMap * 255).astype("uint8")
    maximum_indices = np.unravel_index(np.argmax(saliencyMap, axis=None), saliencyMap.shape)
    x = maximum_indices[0]
    y = maximum_indices[1]
    bbx1 = np.clip(x - cut_w // 2, 0, W)
    bby1 = np.clip(y - cut_h // 2, 0, H)
    bbx2 = np.clip(x + cut_w // 2, 0, W)
    bby2 = np.clip(y + cut_h // 2, 0, H)
    return bbx1, bby1, bbx2, bby2


def mix_photos(h: int, w: int) -> torch.Tensor:
    """Four scikit-image photographs, resized, ImageNet-normalised float CHW (as a loader gives)."""
    data = pytest.importorskip("skimage.data")
    imgs = []
    for name in ("astronaut", "chelsea", "coffee", "rocket"):
        t = torch.from_numpy(np.ascontiguousarray(getattr(data, name)()[..., :3])).permute(2, 0, 1).float()[None]
        t = F.interpolate(t, size=(h, w), mode="bilinear", antialias=True, align_corners=False)[0]
        imgs.append(t.round().clamp(0, 255) / 255.0)
    x = torch.stack(imgs)
    mean = torch.tensor(IMAGENET_MEAN).reshape(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).reshape(1, 3, 1, 1)
    return (x - mean) / std


@pytest.mark.parametrize("source", ["photos", "photos_nonsquare", "random"])
def test_saliencymix_official_matches_authors(source):
    pytest.importorskip("cv2")
    if source == "photos":
        x = mix_photos(32, 32)
    elif source == "photos_nonsquare":
        x = mix_photos(24, 40)
    else:
        x = mix_images(12, 6, 3, 28, 20)
    b = x.shape[0]
    y = torch.arange(b) % K
    op = SaliencyMix(num_classes=K, variant="official", p=1.0)
    for seed in range(8):
        params = op.sample_params(x, generator=mix_gen(seed))
        perm = params.perm
        lam = float(params.lam[0])
        bbx1, bby1, bbx2, bby2 = authors_saliency_bbox(x[perm[0]], lam)
        expected_box = torch.tensor([bbx1, bby1, bbx2, bby2], dtype=torch.long)
        assert torch.equal(params.dst_boxes, expected_box.expand(b, 4)), (params.dst_boxes[0], expected_box)
        assert torch.equal(params.src_boxes, params.dst_boxes)
        authors_lam = 1 - ((bbx2 - bbx1) * (bby2 - bby1) / (x.size()[-1] * x.size()[-2]))
        torch.testing.assert_close(
            1 - params.source_weight, torch.full((b,), float(authors_lam), dtype=torch.float64), atol=1e-12, rtol=0
        )
        images = x.clone()
        images[:, :, bbx1:bbx2, bby1:bby2] = images[perm, :, bbx1:bbx2, bby1:bby2]
        xm, ym = op.apply_params(x, y, params)
        assert torch.equal(xm, images)
        onehot = F.one_hot(y, K).double()
        torch.testing.assert_close(
            ym.double(), authors_lam * onehot + (1 - authors_lam) * onehot[perm], atol=1e-6, rtol=0
        )


def peak_box(q_map: np.ndarray, lam: float, height: int, width: int):
    pr, pc = np.unravel_index(np.argmax(q_map, axis=None), q_map.shape)
    bh, bw = rsm_box_sides(lam, height, width)
    return [
        int(np.clip(pr - bh // 2, 0, height)),
        int(np.clip(pc - bw // 2, 0, width)),
        int(np.clip(pr + bh // 2, 0, height)),
        int(np.clip(pc + bw // 2, 0, width)),
    ]


@MIX_SETTINGS
@given(b=st.integers(1, 8), h=st.integers(8, 24), w=st.integers(8, 24), seed=st.integers(0, 2**31 - 1), alpha=alphas)
def test_saliencymix_per_sample_boxes_on_source_peaks(b, h, w, seed, alpha):
    x = mix_images(seed, b, 3, h, w)
    maps = mix_maps(seed, b, h, w)
    op = SaliencyMix(num_classes=K, variant="per_sample", alpha=alpha)
    params = op.sample_params(x, generator=mix_gen(seed), saliency=maps)
    q = (maps * 255).to(torch.uint8).numpy()
    for i in range(b):
        expected = peak_box(q[int(params.perm[i])], float(params.lam[i]), h, w)
        assert params.dst_boxes[i].tolist() == expected
        assert params.src_boxes[i].tolist() == expected


def test_saliencymix_per_sample_detector_is_opencv_on_uint8():
    """Without given maps, per_sample uses each source's correct map (OpenCV's, for uint8 RGB)."""
    cv2 = pytest.importorskip("cv2")
    x = mix_images(21, 6, 3, 24, 24, torch.uint8)
    op = SaliencyMix(num_classes=K, variant="per_sample")
    params = op.sample_params(x, generator=mix_gen(0))
    for i in range(6):
        src = x[int(params.perm[i])].permute(1, 2, 0).numpy()[..., ::-1]  # RGB -> BGR for OpenCV
        sal = cv2.saliency.StaticSaliencyFineGrained_create().computeSaliency(np.ascontiguousarray(src))[1]
        expected = peak_box((sal * 255).astype("uint8"), float(params.lam[i]), 24, 24)
        assert params.dst_boxes[i].tolist() == expected


# ------------------------------------------------------------------------------------------------
# RandSaliencyMix: labels and geometry
# ------------------------------------------------------------------------------------------------


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
    params = op.sample_params(x, generator=mix_gen(seed), saliency=maps)
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
        params = op.sample_params(x, generator=mix_gen(seed), saliency=maps)
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
        params = op.sample_params(x, generator=mix_gen(seed), saliency=maps)
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
        params = op.sample_params(x, generator=mix_gen(seed), saliency=maps)
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
    params = op.sample_params(x, generator=mix_gen(0), saliency=maps)
    check_area_weights(params, h, w)
    assert bool(((params.eta >= 0) & (params.eta <= 1)).all())
    assert len(set(params.eta.tolist())) > 1
    assert bool(params.mixup.any()) and bool((params.applied & ~params.mixup).any())
    # mixup_prob = 1: every applied sample is a MixUp with weight 1 - lam.
    op = design_rsm(mixup_prob=1.0, gamma=1.0)
    params = op.sample_params(x, generator=mix_gen(1), saliency=maps)
    assert torch.equal(params.mixup, params.applied) and bool(params.applied.all())
    torch.testing.assert_close(params.source_weight, 1 - params.lam, atol=1e-12, rtol=0)
    share = source_share(params, h, w, torch.float64)
    torch.testing.assert_close(share, (1 - params.lam).reshape(b, 1, 1, 1).expand(b, 1, h, w), atol=1e-12, rtol=0)
    # eta = 0.5 fixed: half blends inside the box.
    op = design_rsm(eta=0.5, gamma=0.0)
    params = op.sample_params(x, generator=mix_gen(2), saliency=maps)
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
    g = mix_gen(81)
    maps = torch.rand(b, h, w, generator=g) ** 6
    if side == "src":
        op = design_rsm(source="saliency", tau_src=tau, paste="uniform", eps=eps, alpha=2.0)
    else:
        op = design_rsm(
            source="uniform", paste="anti_saliency" if anti else "saliency", tau_dst=tau, eps=eps, alpha=2.0
        )
    params = op.sample_params(x, generator=mix_gen(82), saliency=maps)
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


# ------------------------------------------------------------------------------------------------
# RandomChoiceMix
# ------------------------------------------------------------------------------------------------


def test_randomchoice_per_sample_picks_several_ops():
    b, h, w = 48, 16, 16
    x = mix_images(70, b, 3, h, w)
    y = mix_labels(70, b, "index")
    maps = mix_maps(70, b, h, w)
    ops = [MixUp(mode="sample"), CutMix(mode="sample"), design_rsm(num_classes=None, gamma=0.0, paste="uniform")]
    op = RandomChoiceMix(ops, mode="sample", num_classes=K)
    _, _, params = run_and_check(op, x, y, maps=maps, seed=0)
    assert bool(params.mixup.any()) and bool((~params.mixup).any())
    assert bool((params.src_boxes != params.dst_boxes).any(1).any()), "no RandSaliencyMix sample picked"
    # batch mode: one operator for the whole batch.
    op = RandomChoiceMix(ops, mode="batch", num_classes=K)
    for seed in range(6):
        params = op.sample_params(x, generator=mix_gen(seed), saliency=maps)
        assert bool((params.mixup == params.mixup[0]).all())


def test_randomchoice_degenerate_probs():
    x = mix_images(71, 16, 3, 12, 12)
    y = mix_labels(71, 16, "index")
    for seed in range(5):
        first = RandomChoiceMix(
            [MixUp(mode="sample"), CutMix(mode="sample")], probs=[1.0, 0.0], mode="sample", num_classes=K
        )
        _, _, params = run_and_check(first, x, y, seed=seed)
        assert bool(params.mixup.all())
        second = RandomChoiceMix(
            [MixUp(mode="sample"), CutMix(mode="sample")], probs=[0.0, 1.0], mode="sample", num_classes=K
        )
        _, _, params = run_and_check(second, x, y, seed=seed)
        assert not bool(params.mixup.any())
        assert torch.equal(params.src_boxes, params.dst_boxes)


# ------------------------------------------------------------------------------------------------
# Loss
# ------------------------------------------------------------------------------------------------


@MIX_SETTINGS
@given(b=st.integers(1, 8), k=st.integers(2, 10), seed=st.integers(0, 2**31 - 1))
def test_soft_target_cross_entropy(b, k, seed):
    g = mix_gen(seed)
    logits = torch.randn(b, k, generator=g, dtype=torch.float64) * 3
    idx = torch.randint(0, k, (b,), generator=g)
    onehot = F.one_hot(idx, k).double()
    for reduction in ("mean", "sum", "none"):
        torch.testing.assert_close(
            soft_target_cross_entropy(logits, onehot, reduction), F.cross_entropy(logits, idx, reduction=reduction)
        )
    torch.testing.assert_close(SoftTargetCrossEntropy()(logits, onehot), F.cross_entropy(logits, idx))
    soft = torch.softmax(torch.randn(b, k, generator=g, dtype=torch.float64), dim=1)
    loss = soft_target_cross_entropy(logits, soft, "none")
    entropy = -(soft * soft.log()).sum(1)
    assert bool((loss >= entropy - 1e-9).all())
    torch.testing.assert_close(loss, F.cross_entropy(logits, soft, reduction="none"))
    # The minimum, at logits = log(soft), is the entropy.
    torch.testing.assert_close(soft_target_cross_entropy(soft.log(), soft, "none"), entropy)


# ------------------------------------------------------------------------------------------------
# CLI
# ------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_cli_show_writes_png(tmp_path):
    pytest.importorskip("matplotlib")
    pytest.importorskip("skimage")
    pytest.importorskip("cv2")
    from rsmix.cli import main

    out = tmp_path / "g.png"
    assert main(["show", "--out", str(out), "--size", "48"]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_missing_images_folder(tmp_path, capsys):
    from rsmix.cli import main

    assert main(["show", "--out", str(tmp_path / "g.png"), "--images", str(tmp_path / "missing")]) == 2
    assert "error" in capsys.readouterr().err
    assert not (tmp_path / "g.png").exists()


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
