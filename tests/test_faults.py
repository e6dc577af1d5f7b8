"""Faults closed by the harness redesign, each with its own test: params applied at another image
size, images that require grad, float64 images in the official SaliencyMix, bad saliency maps,
huge-but-finite pixels, and the tolerance on soft-label rows."""

from __future__ import annotations

import math
import re
from typing import Any, Callable, Dict

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from randsaliencymix import (
    SALIENCY_ON,
    CutMix,
    MixParams,
    MixUp,
    NoMix,
    RandomChoiceMix,
    RandSaliencyMix,
    SaliencyMix,
    apply_mix,
    fine_grained,
    saliency_map,
    source_share,
    spectral_residual,
    to_uint8,
)
from randsaliencymix._checks import soft_label_tolerance

K = 5
FAULT_SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def images(b: int = 6, h: int = 16, w: int = 16, seed: int = 0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.randn(b, 3, h, w, generator=gen(seed)).to(dtype)


def labels(b: int = 6) -> torch.Tensor:
    return torch.arange(b) % K


OPS: Dict[str, Callable[..., Any]] = {
    "MixUp": lambda **kw: MixUp(num_classes=K, **kw),
    "CutMix": lambda **kw: CutMix(num_classes=K, mode="sample", **kw),
    "SaliencyMix-official": lambda **kw: SaliencyMix(num_classes=K, variant="official", **kw),
    "SaliencyMix-per_sample": lambda **kw: SaliencyMix(num_classes=K, variant="per_sample", **kw),
    "RandSaliencyMix-on": lambda **kw: RandSaliencyMix(num_classes=K, **{**SALIENCY_ON, **kw}),
    "RandSaliencyMix-blend": lambda **kw: RandSaliencyMix(
        num_classes=K, **{**SALIENCY_ON, "eta": "beta", "mixup_prob": 0.3, **kw}
    ),
    "RandSaliencyMix-default": lambda **kw: RandSaliencyMix(num_classes=K, **kw),
    "RandomChoiceMix": lambda **kw: RandomChoiceMix(
        [MixUp(mode="sample"), RandSaliencyMix(**SALIENCY_ON)], mode="sample", num_classes=K, **kw
    ),
    "NoMix": lambda **kw: NoMix(num_classes=K, **kw),
}
# Operators whose draws read saliency maps (the detector runs, or given maps are used).
SALIENCY_READERS = ["SaliencyMix-per_sample", "RandSaliencyMix-on", "RandSaliencyMix-blend", "RandomChoiceMix"]


# --------------------------------------------------------------------------------------------
# Params sampled for one image size, applied at another
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("via", ["apply_params", "forward", "apply_mix"])
@pytest.mark.parametrize("op_name", list(OPS))
def test_params_for_another_image_size_are_rejected(op_name, via):
    op = OPS[op_name]()
    params = op.sample_params(images(4, 8, 8), generator=gen(0))
    assert params.image_size == (8, 8)
    x = images(4, 8, 12)
    msg = re.escape("Expected params for 8x12 images, but got params sampled for 8x8 instead.")
    with pytest.raises(ValueError, match=msg):
        if via == "apply_params":
            op.apply_params(x, labels(4), params)
        elif via == "forward":
            op(x, labels(4), params=params)
        else:
            apply_mix(x, F.one_hot(labels(4), K).float(), params)


def test_image_size_survives_to_and_random_choice_merging():
    x = images(6, 12, 20)
    op = OPS["RandomChoiceMix"]()
    params = op.sample_params(x, generator=gen(1))
    assert params.image_size == (12, 20)
    moved = params.to("cpu")
    assert moved.image_size == (12, 20) and moved.shifted == params.shifted
    assert MixParams.identity(3, (5, 7), "cpu").image_size == (5, 7)


# --------------------------------------------------------------------------------------------
# Images that require grad
# --------------------------------------------------------------------------------------------


def _recording_detector(seen: list) -> Callable[[torch.Tensor], torch.Tensor]:
    def detector(t: torch.Tensor) -> torch.Tensor:
        seen.append(t.requires_grad)
        return fine_grained(t)

    return detector


GRAD_CASES = {
    "SaliencyMix-official": lambda seen: SaliencyMix(num_classes=K, variant="official"),
    "SaliencyMix-per_sample": lambda seen: SaliencyMix(num_classes=K, variant="per_sample"),
    "SaliencyMix-per_sample-callable": lambda seen: SaliencyMix(
        num_classes=K, variant="per_sample", detector=_recording_detector(seen)
    ),
    "RandSaliencyMix-on": lambda seen: RandSaliencyMix(num_classes=K, **SALIENCY_ON),
    "RandSaliencyMix-blend-spectral": lambda seen: RandSaliencyMix(
        num_classes=K, **{**SALIENCY_ON, "eta": "beta", "mixup_prob": 0.3}, detector="spectral"
    ),
    "RandSaliencyMix-callable": lambda seen: RandSaliencyMix(
        num_classes=K, **SALIENCY_ON, detector=_recording_detector(seen)
    ),
}


@pytest.mark.parametrize("given_maps", [False, True], ids=["detected", "given-maps-with-grad"])
@pytest.mark.parametrize("case", list(GRAD_CASES))
def test_images_that_require_grad(case, given_maps):
    """The detector reads x.detach(); the mix stays differentiable: each output pixel is
    (1 - s) x_t + s x_s, so the gradient of its sum hands out exactly one unit per pixel."""
    if case == "SaliencyMix-official":
        pytest.importorskip("cv2")
        if given_maps:
            pytest.skip("the official SaliencyMix refuses given maps (test_hardening pins it)")
    seen: list = []
    op = GRAD_CASES[case](seen)
    x = images().requires_grad_()
    y = labels()
    maps = torch.rand(6, 16, 16, generator=gen(3)).requires_grad_() if given_maps else None
    params = op.sample_params(x, generator=gen(1), saliency=maps)
    xm, ym = op.apply_params(x, y, params)
    assert xm.requires_grad
    xm.sum().backward()
    assert x.grad is not None and bool(torch.isfinite(x.grad).all()) and bool((x.grad >= 0).all())
    torch.testing.assert_close(x.grad.sum(), torch.tensor(float(x.numel())))
    # Adjoint test: the mix is linear in x for fixed params, so <grad of <w, mix(x)>, v> = <w, mix(v)>.
    x64 = x.detach().double().requires_grad_()
    w = torch.randn(x.shape, generator=gen(5), dtype=torch.float64)
    v = torch.randn(x.shape, generator=gen(6), dtype=torch.float64)
    (grad,) = torch.autograd.grad((op.apply_params(x64, y, params)[0] * w).sum(), x64)
    torch.testing.assert_close((grad * v).sum(), (w * op.apply_params(v, y, params)[0]).sum())
    assert all(flag is False for flag in seen), "the detector saw a tensor that requires grad"
    # Same result as without grad, and forward works too.
    plain = op.apply_params(x.detach(), y, op.sample_params(x.detach(), generator=gen(1), saliency=maps))
    assert torch.equal(plain[0], xm.detach()) and torch.equal(plain[1], ym)
    xf, _ = op(x, y, generator=gen(1), saliency=maps)
    assert xf.requires_grad and torch.equal(xf.detach(), xm.detach())


# --------------------------------------------------------------------------------------------
# float64 (and half-precision) images in the official SaliencyMix
# --------------------------------------------------------------------------------------------


def _opencv_peak_box(img_chw: torch.Tensor, lam: float):
    """The authors' saliency_bbox on a float32 CHW tensor (what their training loop holds)."""
    cv2 = pytest.importorskip("cv2")
    h, w = img_chw.shape[-2:]
    sal = cv2.saliency.StaticSaliencyFineGrained_create().computeSaliency(img_chw.numpy().transpose(1, 2, 0))[1]
    r, c = np.unravel_index(np.argmax((sal * 255).astype("uint8"), axis=None), sal.shape)
    cut = np.sqrt(1.0 - lam)
    bh, bw = int(h * cut), int(w * cut)
    return [
        int(np.clip(r - bh // 2, 0, h)),
        int(np.clip(c - bw // 2, 0, w)),
        int(np.clip(r + bh // 2, 0, h)),
        int(np.clip(c + bw // 2, 0, w)),
    ]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_official_saliencymix_takes_float64_and_half_images(dtype):
    """OpenCV cannot read float64 (or 16-bit float) colour images; it gets the float32 image a
    float32 training loop would hold, so the box is the authors' box of ``x.float()``."""
    pytest.importorskip("cv2")
    x = images(5, 20, 24, seed=4, dtype=dtype)
    y = labels(5)
    op = SaliencyMix(num_classes=K, variant="official")
    for seed in range(4):
        params = op.sample_params(x, generator=gen(seed))
        expected = _opencv_peak_box(x[int(params.perm[0])].float(), float(params.lam[0]))
        assert params.dst_boxes.tolist() == [expected] * 5
        same = op.sample_params(x.float(), generator=gen(seed))
        assert torch.equal(same.dst_boxes, params.dst_boxes)
        xm, _ = op.apply_params(x, y, params)
        assert xm.dtype == dtype
        r1, c1, r2, c2 = expected
        ref = x.clone()
        ref[:, :, r1:r2, c1:c2] = x[params.perm][:, :, r1:r2, c1:c2]
        assert torch.equal(xm, ref)


# --------------------------------------------------------------------------------------------
# NaN, inf and negative saliency maps
# --------------------------------------------------------------------------------------------


def _bad_maps(case: str, b: int = 6, h: int = 16, w: int = 16) -> torch.Tensor:
    m = torch.rand(b, h, w, generator=gen(7))
    if case == "nan":
        m[1, 3, 4] = math.nan
    elif case == "all-nan":
        m[2] = math.nan
    elif case == "inf":
        m[0, 5, 6] = math.inf
    elif case == "-inf":
        m[3, 0, 0] = -math.inf
    elif case == "negative":
        m[4, 2, 2] = -0.5
    return m


BAD_MAP_MESSAGES = {
    "nan": "NaN",
    "all-nan": "NaN",
    "inf": "inf",
    "-inf": "-inf",
    "negative": "a value of -0.5",
}


def _map_message(case: str) -> str:
    return re.escape(f"Expected saliency maps with finite values >= 0, but got {BAD_MAP_MESSAGES[case]} instead.")


def _safe(maps: torch.Tensor) -> torch.Tensor:
    """The documented safe reading of an unchecked map: NaN and negatives are 0, +inf is the
    largest float (the most salient value; SaliencyMix reads maps clipped to [0, 1])."""
    return torch.nan_to_num(maps, nan=0.0, posinf=torch.finfo(torch.float32).max, neginf=0.0).clamp(min=0.0)


@pytest.mark.parametrize("via", ["forward", "sample_params"])
@pytest.mark.parametrize("op_name", list(OPS))
@pytest.mark.parametrize("case", list(BAD_MAP_MESSAGES))
def test_bad_saliency_maps_are_rejected_where_checked(case, op_name, via):
    for validate in (None, True):  # CPU: checked by default and on request
        op = OPS[op_name](validate=validate)
        with pytest.raises(ValueError, match=_map_message(case)):
            if via == "forward":
                op(images(), labels(), saliency=_bad_maps(case))
            else:
                op.sample_params(images(), saliency=_bad_maps(case))


@pytest.mark.parametrize("op_name", ["SaliencyMix-per_sample", "RandSaliencyMix-on"])
@pytest.mark.parametrize("case", list(BAD_MAP_MESSAGES))
def test_bad_maps_from_a_callable_detector_are_rejected_where_checked(case, op_name):
    op = OPS[op_name](detector=lambda t: _bad_maps(case))
    with pytest.raises(ValueError, match=_map_message(case)):
        op(images(), labels())
    with pytest.raises(ValueError, match=_map_message(case)):
        saliency_map(images(), lambda t: _bad_maps(case))


@pytest.mark.parametrize("op_name", SALIENCY_READERS)
@pytest.mark.parametrize("case", list(BAD_MAP_MESSAGES))
def test_bad_saliency_maps_are_read_safely_where_unchecked(case, op_name):
    """validate=False: no error, no NaN, and exactly the draws of the safely read maps."""
    op = OPS[op_name](validate=False)
    x, y = images(), labels()
    maps = _bad_maps(case)
    maps0 = maps.clone()
    for seed in range(3):
        params = op.sample_params(x, generator=gen(seed), saliency=maps)
        safe = op.sample_params(x, generator=gen(seed), saliency=_safe(maps))
        for name in ("perm", "lam", "src_boxes", "dst_boxes", "eta", "source_weight"):
            assert torch.equal(getattr(params, name), getattr(safe, name)), name
        xm, ym = op.apply_params(x, y, params)
        assert bool(torch.isfinite(xm).all()) and bool(torch.isfinite(ym).all())
        torch.testing.assert_close(ym.sum(1), torch.ones(6))
    assert torch.equal(maps.nan_to_num(), maps0.nan_to_num()) and torch.equal(maps.isnan(), maps0.isnan())
    if op_name == "RandomChoiceMix":
        return
    # The same from a callable detector.
    detected = OPS[op_name](validate=False, detector=lambda t: _bad_maps(case))
    xm, ym = detected(x, y, generator=gen(0))
    assert bool(torch.isfinite(xm).all()) and bool(torch.isfinite(ym).all())


# --------------------------------------------------------------------------------------------
# Huge but finite pixels
# --------------------------------------------------------------------------------------------

HUGE = {
    "float32-1e38": (torch.float32, 1e38),
    "float32-max": (torch.float32, torch.finfo(torch.float32).max),
    "float16-6e4": (torch.float16, 6e4),
    "float16-max": (torch.float16, 65504.0),
    "bfloat16-1e38": (torch.bfloat16, 1e38),
}


def _huge_images(dtype: torch.dtype, big: float) -> torch.Tensor:
    x = images(6, 16, 16, seed=9)
    x[0] = big
    x[1] = -big
    x[2, :, :, :8] = big
    x[2, :, :, 8:] = -big
    x[3, :, ::2] = big
    return x.to(dtype)


@pytest.mark.parametrize("validate", [None, True])
@pytest.mark.parametrize("op_name", list(OPS))
@pytest.mark.parametrize("case", list(HUGE))
def test_huge_finite_pixels_are_mixed_exactly(case, op_name, validate):
    """Finite pixels are valid input, checked or not: no error, no overflow to inf or NaN, hard
    pastes copy them bit for bit and blends stay between target and source."""
    if op_name == "SaliencyMix-official":
        pytest.importorskip("cv2")
    dtype, big = HUGE[case]
    x = _huge_images(dtype, big)
    y = labels()
    op = OPS[op_name](validate=validate)
    params = op.sample_params(x, generator=gen(2))
    xm, ym = op.apply_params(x, y, params)
    assert bool(torch.isfinite(xm).all()), "finite pixels became inf or NaN"
    assert bool((xm.double().abs() <= x.double().abs().max()).all())
    torch.testing.assert_close(ym.sum(1), torch.ones(6))
    share = source_share(params, 16, 16, torch.float64).expand(6, 3, 16, 16)
    keep = share == 0
    assert torch.equal(xm[keep], x[keep])
    if not params.shifted:
        src = x[params.perm]
        full = share == 1
        assert torch.equal(xm[full], src[full])
        lo, hi = torch.minimum(x, src).double(), torch.maximum(x, src).double()
        slack = 4 * torch.finfo(dtype).eps * torch.maximum(lo.abs(), hi.abs())  # rounding of the blend
        assert bool(((xm.double() >= lo - slack) & (xm.double() <= hi + slack)).all())


@pytest.mark.parametrize("detector", [fine_grained, spectral_residual], ids=["fine_grained", "spectral"])
@pytest.mark.parametrize("case", list(HUGE))
def test_detectors_on_huge_finite_pixels(case, detector):
    """The per-image min-max scaling cannot overflow: maps are finite and in [0, 1]."""
    dtype, big = HUGE[case]
    maps = detector(_huge_images(dtype, big))
    assert bool(torch.isfinite(maps).all()) and bool(((maps >= 0) & (maps <= 1)).all())


def test_min_max_scaling_of_huge_values_is_exact():
    x = torch.tensor([-3e38, -1e38, 1e38, 3e38], dtype=torch.float32).reshape(1, 1, 2, 2).expand(1, 3, 2, 2)
    assert to_uint8(x)[0, 0].flatten().tolist() == [0, 85, 170, 255]
    # Ordinary values: bit for bit (x - lo) * 255 / (hi - lo), rounded.
    x = torch.rand(4, 3, 9, 9, generator=gen(5)) * 7 - 3
    flat = x.flatten(1)
    lo = flat.amin(1).reshape(-1, 1, 1, 1)
    span = flat.amax(1).reshape(-1, 1, 1, 1) - lo
    assert torch.equal(to_uint8(x), torch.sub(x, lo).mul_(255.0 / span).round_().clamp_(0, 255).to(torch.uint8))


# --------------------------------------------------------------------------------------------
# Soft-label tolerance per dtype
# --------------------------------------------------------------------------------------------

LABEL_DTYPES = [torch.bfloat16, torch.float16, torch.float32, torch.float64]


def test_soft_label_tolerance_rule():
    assert soft_label_tolerance(torch.bfloat16) == 2**-5
    assert soft_label_tolerance(torch.float16) == 2**-8
    assert soft_label_tolerance(torch.float32) == 1e-4
    assert soft_label_tolerance(torch.float64) == 1e-4


@FAULT_SETTINGS
@given(
    dtype=st.sampled_from(LABEL_DTYPES),
    k=st.sampled_from([2, 3, 10, 100, 1000]),
    scale=st.sampled_from([0.1, 1.0, 5.0, 30.0]),
    seed=st.integers(0, 2**31 - 1),
)
def test_real_softmax_rows_are_accepted_and_outputs_sum_to_one(dtype, k, scale, seed):
    y = torch.softmax(torch.randn(4, k, generator=gen(seed)).mul(scale).to(dtype), dim=1)
    op = RandSaliencyMix(num_classes=k, **{**SALIENCY_ON, "eta": "beta", "mixup_prob": 0.3})
    _, ym = op(images(4, 8, 8), y, generator=gen(seed))
    assert ym.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    assert float((ym.double().sum(1) - 1).abs().max()) <= (1e-12 if dtype == torch.float64 else 1e-6)


ROW_CASES = [
    (torch.float32, 1e-3, False),
    (torch.float32, -1e-3, False),
    (torch.float32, 5e-5, True),
    (torch.float64, 1e-3, False),
    (torch.float64, 5e-5, True),
    (torch.float16, 2e-3, True),
    (torch.float16, 1e-2, False),
    (torch.bfloat16, 2e-2, True),
    (torch.bfloat16, -2e-2, True),
    (torch.bfloat16, 6e-2, False),
]


@pytest.mark.parametrize(
    "dtype,off,accepted", ROW_CASES, ids=[f"{d}-{o:g}".replace("torch.", "") for d, o, _ in ROW_CASES]
)
def test_soft_label_rows_off_by_more_than_their_dtype_allows_are_rejected(dtype, off, accepted):
    y = torch.zeros(4, K, dtype=torch.float64)
    y[:, 0] = 0.75 * (1 + off)
    y[:, 1] = 0.25 * (1 + off)
    y = y.to(dtype)
    actual = float(y.double().sum(1)[0])
    assert (abs(actual - 1) <= soft_label_tolerance(dtype)) == accepted  # the case tests the rule
    op = MixUp(num_classes=K)
    if accepted:
        _, ym = op(images(4, 8, 8), y, generator=gen(0))
        assert float((ym.double().sum(1) - 1).abs().max()) <= 1e-6
        assert ym.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    else:
        msg = re.escape(
            f"Expected label probabilities whose rows sum to 1, but got a row summing to {actual:.4f} instead."
        )
        with pytest.raises(ValueError, match=msg):
            op(images(4, 8, 8), y)
