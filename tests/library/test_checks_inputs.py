"""The checks of what every operator and detector is given (``_checks.py``): images, labels and
saliency maps of the wrong type, shape, dtype or values raise the right type with the right message,
the tolerance of soft-label rows follows their dtype, and maps that are not checked are read safely.

All messages follow "Expected ..., but got ... instead." (``_checks.py``, ``mixing.py``)."""

from __future__ import annotations

import math
import re
from typing import Any, Callable, Dict

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import CHECKS_OP_NAMES, CHECKS_OPS, K5, OPS5, B, C, H, K, W, exact, gen, images, labels, valid_x, valid_y
from randsaliencymix import (
    SALIENCY_ON,
    MixParams,
    MixUp,
    NoMix,
    RandSaliencyMix,
    fine_grained,
    saliency_map,
    spectral_residual,
)
from randsaliencymix._checks import soft_label_tolerance

SALIENCY_OPS = ["SaliencyMix-per_sample", "RandSaliencyMix"]
# RandSaliencyMix's defaults use no saliency (the detector is skipped); these switch it on.
SALIENCY_ON_OPTIONS: Dict[str, Dict[str, Any]] = {"RandSaliencyMix": {"tau_src": 1.0}}

DETECTOR_CALLS: Dict[str, Callable[..., torch.Tensor]] = {
    "fine_grained": fine_grained,
    "spectral_residual": spectral_residual,
    "saliency_map-fine_grained": lambda x, **kw: saliency_map(x, "fine_grained", **kw),
    "saliency_map-spectral": lambda x, **kw: saliency_map(x, "spectral", **kw),
}
DETECTOR_NAMES = list(DETECTOR_CALLS)


def _valid_params(b: int = B) -> MixParams:
    return NoMix().sample_params(valid_x(b))


# Every way an operator takes images: forward, sample_params, apply.
def _call_forward(op: Any, x: Any, y: Any) -> Any:
    return op(x, y)


def _call_sample(op: Any, x: Any, y: Any) -> Any:
    return op.sample_params(x)


def _call_apply(op: Any, x: Any, y: Any) -> Any:
    return op.apply_params(x, y, _valid_params())


IMAGE_ENTRY_POINTS = {"forward": _call_forward, "sample_params": _call_sample, "apply_params": _call_apply}
LABEL_ENTRY_POINTS = {"forward": _call_forward, "apply_params": _call_apply}


# --------------------------------------------------------------------------------------------
# Images (operators and detectors)
# --------------------------------------------------------------------------------------------

BAD_IMAGES = {
    "ndarray": (
        lambda: np.zeros((B, C, H, W), dtype=np.float32),
        TypeError,
        exact("Expected images as a torch.Tensor, but got ndarray instead."),
    ),
    "list": (lambda: [[0.0]], TypeError, exact("Expected images as a torch.Tensor, but got list instead.")),
    "rank2": (
        lambda: torch.zeros(3, 32),
        ValueError,
        exact("Expected a batch of shape (B, C, H, W), but got (3, 32) instead."),
    ),
    "rank3": (
        lambda: torch.zeros(3, 8, 8),
        ValueError,
        exact("Expected a batch of shape (B, C, H, W), but got (3, 8, 8) instead."),
    ),
    "rank5": (
        lambda: torch.zeros(1, B, C, H, W),
        ValueError,
        exact(f"Expected a batch of shape (B, C, H, W), but got (1, {B}, {C}, {H}, {W}) instead."),
    ),
    "int32": (
        lambda: torch.zeros(B, C, H, W, dtype=torch.int32),
        TypeError,
        exact("Expected images of dtype uint8, float16, bfloat16, float32 or float64, but got torch.int32 instead."),
    ),
    "int64": (lambda: torch.zeros(B, C, H, W, dtype=torch.int64), TypeError, exact("but got torch.int64 instead.")),
    "bool": (lambda: torch.zeros(B, C, H, W, dtype=torch.bool), TypeError, exact("but got torch.bool instead.")),
    "height1": (
        lambda: torch.zeros(B, C, 1, W),
        ValueError,
        exact(f"Expected images of at least 2x2 pixels, but got 1x{W} instead."),
    ),
    "width1": (
        lambda: torch.zeros(B, C, H, 1, dtype=torch.uint8),
        ValueError,
        exact(f"Expected images of at least 2x2 pixels, but got {H}x1 instead."),
    ),
    "1x1": (
        lambda: torch.zeros(B, C, 1, 1),
        ValueError,
        exact("Expected images of at least 2x2 pixels, but got 1x1 instead."),
    ),
    "empty-batch": (
        lambda: torch.zeros(0, C, H, W),
        ValueError,
        exact(f"Expected a batch of at least one image, but got (0, {C}, {H}, {W}) instead."),
    ),
}


def _non_finite(value: float, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    x = valid_x(dtype=dtype)
    x[1, 2, 3, 4] = value
    return x


NON_FINITE = {
    "nan": lambda: _non_finite(math.nan),
    "inf": lambda: _non_finite(math.inf),
    "-inf": lambda: _non_finite(-math.inf),
    "nan-float16": lambda: _non_finite(math.nan, torch.float16),
    "inf-bfloat16": lambda: _non_finite(math.inf, torch.bfloat16),
    "nan-float64": lambda: _non_finite(math.nan, torch.float64),
}
NON_FINITE_MSG = exact("Expected finite image values, but got NaN or infinity instead.")


@pytest.mark.parametrize("entry", list(IMAGE_ENTRY_POINTS))
@pytest.mark.parametrize("op_name", CHECKS_OP_NAMES)
@pytest.mark.parametrize("case", list(BAD_IMAGES))
def test_operator_rejects_bad_images(case, op_name, entry):
    make, exc, msg = BAD_IMAGES[case]
    op = CHECKS_OPS[op_name]()
    with pytest.raises(exc, match=msg):
        IMAGE_ENTRY_POINTS[entry](op, make(), valid_y())


@pytest.mark.parametrize("entry", list(IMAGE_ENTRY_POINTS))
@pytest.mark.parametrize("op_name", CHECKS_OP_NAMES)
@pytest.mark.parametrize("case", list(NON_FINITE))
def test_operator_rejects_non_finite_images(case, op_name, entry):
    op = CHECKS_OPS[op_name]()
    with pytest.raises(ValueError, match=NON_FINITE_MSG):
        IMAGE_ENTRY_POINTS[entry](op, NON_FINITE[case](), valid_y())


@pytest.mark.parametrize("det", DETECTOR_NAMES)
@pytest.mark.parametrize("case", list(BAD_IMAGES))
def test_detector_rejects_bad_images(case, det):
    make, exc, msg = BAD_IMAGES[case]
    with pytest.raises(exc, match=msg):
        DETECTOR_CALLS[det](make())


@pytest.mark.parametrize("det", DETECTOR_NAMES)
@pytest.mark.parametrize("case", list(NON_FINITE))
def test_detector_rejects_non_finite_images(case, det):
    with pytest.raises(ValueError, match=NON_FINITE_MSG):
        DETECTOR_CALLS[det](NON_FINITE[case]())


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
@pytest.mark.parametrize("channels", [2, 4])
@pytest.mark.parametrize("det", DETECTOR_NAMES)
def test_detector_rejects_channel_count(det, channels, dtype):
    with pytest.raises(ValueError, match=exact(f"Expected 1 (grey) or 3 (RGB) channels, but got {channels} instead.")):
        DETECTOR_CALLS[det](valid_x(c=channels, dtype=dtype))


@pytest.mark.parametrize("channels", [2, 4])
@pytest.mark.parametrize("op_name", SALIENCY_OPS)
def test_saliency_operator_rejects_channel_count(op_name, channels):
    with pytest.raises(ValueError, match=exact(f"Expected 1 (grey) or 3 (RGB) channels, but got {channels} instead.")):
        CHECKS_OPS[op_name](**SALIENCY_ON_OPTIONS.get(op_name, {}))(valid_x(c=channels), valid_y())


@pytest.mark.parametrize("channels", [2, 4])
def test_randsaliencymix_without_saliency_takes_any_channel_count(channels):
    x, y = CHECKS_OPS["RandSaliencyMix"]()(valid_x(c=channels), valid_y())
    assert x.shape[1] == channels and torch.allclose(y.sum(dim=1), torch.ones(y.shape[0]))


@pytest.mark.parametrize("value_range", [(1.0, 0.0), (0.5, 0.5), (255, 0)])
@pytest.mark.parametrize("det", DETECTOR_NAMES)
def test_detector_rejects_value_range_hi_not_above_lo(det, value_range):
    with pytest.raises(
        ValueError, match=exact(f"Expected value_range (lo, hi) with hi > lo, but got {value_range} instead.")
    ):
        DETECTOR_CALLS[det](valid_x(), value_range=value_range)


@pytest.mark.parametrize("op_name", SALIENCY_OPS)
def test_saliency_operator_rejects_value_range_hi_not_above_lo(op_name):
    # Checked at construction or, at the latest, on the first call with float images.
    with pytest.raises(
        ValueError, match=exact("Expected value_range (lo, hi) with hi > lo, but got (1.0, 0.0) instead.")
    ):
        CHECKS_OPS[op_name](value_range=(1.0, 0.0))(valid_x(), valid_y())


@pytest.mark.parametrize("kw", [{"mean": (0.5, 0.5, 0.5)}, {"std": (0.2, 0.2, 0.2)}], ids=["mean", "std"])
@pytest.mark.parametrize("det", DETECTOR_NAMES)
def test_detector_rejects_mean_without_std(det, kw):
    with pytest.raises(
        ValueError, match=exact("Expected both mean and std for a normalised input, but got only one instead.")
    ):
        DETECTOR_CALLS[det](valid_x(), **kw)


@pytest.mark.parametrize("method", ["sobel", "FINE_GRAINED", "", None])
def test_saliency_map_rejects_unknown_method(method):
    with pytest.raises(
        ValueError,
        match=exact(f"Expected method to be one of 'fine_grained', 'spectral', but got {method!r} instead."),
    ):
        saliency_map(valid_x(), method)


# --------------------------------------------------------------------------------------------
# Labels (forward and apply of every operator)
# --------------------------------------------------------------------------------------------

BAD_LABELS = {
    "list": (lambda: [0, 1, 2, 3], TypeError, exact("Expected labels as a torch.Tensor, but got list instead.")),
    "indices-batch-short": (
        lambda: torch.tensor([0, 1, 2]),
        ValueError,
        exact(f"Expected {B} labels to match the batch of images, but got 3 instead."),
    ),
    "indices-batch-long": (
        lambda: torch.arange(B + 2) % K,
        ValueError,
        exact(f"Expected {B} labels to match the batch of images, but got {B + 2} instead."),
    ),
    "probs-batch-mismatch": (
        lambda: torch.full((B + 1, K), 1.0 / K),
        ValueError,
        exact(f"Expected {B} label rows to match the batch of images, but got {B + 1} instead."),
    ),
    "index-negative": (
        lambda: torch.tensor([0, -1, 2, 3]),
        ValueError,
        exact(f"Expected class indices in [0, {K - 1}], but got -1 instead."),
    ),
    "index-too-large": (
        lambda: torch.tensor([0, 1, K, 3]),
        ValueError,
        exact(f"Expected class indices in [0, {K - 1}], but got {K} instead."),
    ),
    "index-int32-too-large": (
        lambda: torch.tensor([0, 1, 2, K + 5], dtype=torch.int32),
        ValueError,
        exact(f"Expected class indices in [0, {K - 1}], but got {K + 5} instead."),
    ),
    "float-indices": (
        lambda: torch.tensor([0.0, 1.0, 2.0, 3.0]),
        TypeError,
        exact("Expected integer class indices of shape (B,), but got torch.float32 instead."),
    ),
    "bool-indices": (
        lambda: torch.tensor([True, False, True, False]),
        TypeError,
        exact("Expected integer class indices of shape (B,), but got torch.bool instead."),
    ),
    "rows-not-summing-to-1": (
        lambda: torch.full((B, K), 0.05),
        ValueError,
        exact("Expected label probabilities whose rows sum to 1, but got a row summing to 0.5000 instead."),
    ),
    "one-row-off": (
        lambda: torch.cat([torch.full((B - 1, K), 1.0 / K), torch.full((1, K), 0.2)]),
        ValueError,
        exact("Expected label probabilities whose rows sum to 1, but got a row summing to 2.0000 instead."),
    ),
    "negative-probs": (
        lambda: torch.tensor([[1.5, -0.5] + [0.0] * (K - 2)] * B),
        ValueError,
        exact("Expected label probabilities >= 0 and finite, but got others instead."),
    ),
    "nan-probs": (
        lambda: torch.tensor([[math.nan] + [1.0 / K] * (K - 1)] * B),
        ValueError,
        exact("Expected label probabilities >= 0 and finite, but got others instead."),
    ),
    "integer-probs": (
        lambda: torch.nn.functional.one_hot(torch.arange(B), K),
        TypeError,
        exact("Expected floating-point probabilities of shape (B, K), but got torch.int64 instead."),
    ),
    "wrong-K": (
        lambda: torch.full((B, K - 3), 1.0 / (K - 3)),
        ValueError,
        exact(f"Expected probabilities over num_classes={K} classes, but got {K - 3} columns instead."),
    ),
    "rank3": (
        lambda: torch.full((B, 2, 5), 0.1),
        ValueError,
        exact(f"Expected labels of shape (B,) or (B, K), but got ({B}, 2, 5) instead."),
    ),
    "rank0": (
        lambda: torch.tensor(3),
        ValueError,
        exact("Expected labels of shape (B,) or (B, K), but got () instead."),
    ),
}


@pytest.mark.parametrize("entry", list(LABEL_ENTRY_POINTS))
@pytest.mark.parametrize("op_name", CHECKS_OP_NAMES)
@pytest.mark.parametrize("case", list(BAD_LABELS))
def test_operator_rejects_bad_labels(case, op_name, entry):
    make, exc, msg = BAD_LABELS[case]
    op = CHECKS_OPS[op_name]()
    with pytest.raises(exc, match=msg):
        LABEL_ENTRY_POINTS[entry](op, valid_x(), make())


@pytest.mark.parametrize("entry", list(LABEL_ENTRY_POINTS))
@pytest.mark.parametrize("op_name", CHECKS_OP_NAMES)
def test_operator_rejects_indices_without_num_classes(op_name, entry):
    op = CHECKS_OPS[op_name](num_classes=None)
    with pytest.raises(
        ValueError,
        match=exact(
            "Expected num_classes to be given when labels are class indices of shape (B,), but got None instead."
        ),
    ):
        LABEL_ENTRY_POINTS[entry](op, valid_x(), valid_y())


# --------------------------------------------------------------------------------------------
# Saliency maps given to forward and sample_params
# --------------------------------------------------------------------------------------------

BAD_MAPS = {
    "wrong-width": (
        lambda: torch.rand(B, H, W + 1),
        ValueError,
        exact(f"Expected saliency maps of shape (B, H, W) = ({B}, {H}, {W}), but got ({B}, {H}, {W + 1}) instead."),
    ),
    "wrong-batch": (lambda: torch.rand(B - 1, H, W), ValueError, exact(f"but got ({B - 1}, {H}, {W}) instead.")),
    "with-channel": (lambda: torch.rand(B, 1, H, W), ValueError, exact(f"but got ({B}, 1, {H}, {W}) instead.")),
    "int64": (
        lambda: torch.ones(B, H, W, dtype=torch.int64),
        TypeError,
        exact("Expected floating-point saliency maps, but got torch.int64 instead."),
    ),
    "uint8": (
        lambda: torch.ones(B, H, W, dtype=torch.uint8),
        TypeError,
        exact("Expected floating-point saliency maps, but got torch.uint8 instead."),
    ),
    "ndarray": (
        lambda: np.ones((B, H, W), dtype=np.float32),
        TypeError,
        exact("Expected saliency maps as a torch.Tensor, but got ndarray instead."),
    ),
}


@pytest.mark.parametrize("via", ["forward", "sample_params"])
@pytest.mark.parametrize("op_name", CHECKS_OP_NAMES)
@pytest.mark.parametrize("case", list(BAD_MAPS))
def test_rejects_bad_saliency_maps(case, op_name, via):
    make, exc, msg = BAD_MAPS[case]
    op = CHECKS_OPS[op_name]()
    with pytest.raises(exc, match=msg):
        if via == "forward":
            op(valid_x(), valid_y(), saliency=make())
        else:
            op.sample_params(valid_x(), saliency=make())


# --------------------------------------------------------------------------------------------
# Sanity: the valid counterparts of the inputs above are accepted
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("op_name", CHECKS_OP_NAMES)
def test_valid_inputs_are_accepted(op_name):
    op = CHECKS_OPS[op_name]()
    x = valid_x()
    gen = torch.Generator().manual_seed(0)
    # Maps for every operator that reads them (the official SaliencyMix computes its own and refuses given ones).
    maps = None if getattr(op, "variant", None) == "official" else torch.rand(B, H, W)
    xm, ym = op(x, valid_y(), generator=gen, perm=torch.arange(B).flip(0), saliency=maps)
    assert xm.shape == x.shape and ym.shape == (B, K)
    probs = torch.full((B, K), 1.0 / K)
    xm, ym = op.apply_params(x, probs, op.sample_params(x, generator=gen))
    assert torch.allclose(ym.sum(1), torch.ones(B, dtype=ym.dtype))


# --- paths added with the validation fixes --------------------------------------------------


def test_value_range_checked_even_for_uint8():
    from randsaliencymix.saliency import fine_grained

    with pytest.raises(ValueError, match=r"Expected value_range \(lo, hi\) with hi > lo"):
        fine_grained(torch.zeros(2, 3, 8, 8, dtype=torch.uint8), value_range=(1, 0))


def test_value_range_checked_in_constructor():
    from randsaliencymix import RandSaliencyMix

    with pytest.raises(ValueError, match=r"Expected value_range \(lo, hi\) with hi > lo"):
        RandSaliencyMix(num_classes=10, value_range=(1, 0))


def test_mean_std_length_must_match_channels():
    from randsaliencymix.saliency import fine_grained

    with pytest.raises(ValueError, match=r"Expected mean and std with 1 or 1 values \(one per channel\)"):
        fine_grained(torch.rand(2, 1, 16, 16), mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))


def test_std_must_be_positive():
    from randsaliencymix.saliency import to_uint8

    with pytest.raises(ValueError, match=r"Expected std > 0"):
        to_uint8(torch.rand(2, 3, 4, 4), mean=(0.5, 0.5, 0.5), std=(0.2, 0.0, 0.2))


def test_callable_detector_output_is_checked():
    from randsaliencymix import RandSaliencyMix

    op = RandSaliencyMix(num_classes=10, tau_src=1.0, detector=lambda t: torch.rand(4, 8))
    with pytest.raises(ValueError, match=r"Expected saliency maps of shape \(B, H, W\)"):
        op(torch.rand(4, 3, 8, 8), torch.arange(4))


# --------------------------------------------------------------------------------------------
# NaN, inf and negative saliency maps: refused where values are checked, read safely where not
# --------------------------------------------------------------------------------------------

# Operators whose draws read saliency maps (the detector runs, or given maps are used).
SALIENCY_READERS = ["SaliencyMix-per_sample", "RandSaliencyMix-on", "RandSaliencyMix-blend", "RandomChoiceMix"]


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
@pytest.mark.parametrize("op_name", list(OPS5))
@pytest.mark.parametrize("case", list(BAD_MAP_MESSAGES))
def test_bad_saliency_maps_are_rejected_where_checked(case, op_name, via):
    for validate in (None, True):  # CPU: checked by default and on request
        op = OPS5[op_name](validate=validate)
        with pytest.raises(ValueError, match=_map_message(case)):
            if via == "forward":
                op(images(), labels(), saliency=_bad_maps(case))
            else:
                op.sample_params(images(), saliency=_bad_maps(case))


@pytest.mark.parametrize("op_name", ["SaliencyMix-per_sample", "RandSaliencyMix-on"])
@pytest.mark.parametrize("case", list(BAD_MAP_MESSAGES))
def test_bad_maps_from_a_callable_detector_are_rejected_where_checked(case, op_name):
    op = OPS5[op_name](detector=lambda t: _bad_maps(case))
    with pytest.raises(ValueError, match=_map_message(case)):
        op(images(), labels())
    with pytest.raises(ValueError, match=_map_message(case)):
        saliency_map(images(), lambda t: _bad_maps(case))


@pytest.mark.parametrize("op_name", SALIENCY_READERS)
@pytest.mark.parametrize("case", list(BAD_MAP_MESSAGES))
def test_bad_saliency_maps_are_read_safely_where_unchecked(case, op_name):
    """validate=False: no error, no NaN, and exactly the draws of the safely read maps."""
    op = OPS5[op_name](validate=False)
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
    detected = OPS5[op_name](validate=False, detector=lambda t: _bad_maps(case))
    xm, ym = detected(x, y, generator=gen(0))
    assert bool(torch.isfinite(xm).all()) and bool(torch.isfinite(ym).all())


# --------------------------------------------------------------------------------------------
# Soft-label rows: the tolerance of their sum follows their dtype
# --------------------------------------------------------------------------------------------

FAULT_SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


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
    y = torch.zeros(4, K5, dtype=torch.float64)
    y[:, 0] = 0.75 * (1 + off)
    y[:, 1] = 0.25 * (1 + off)
    y = y.to(dtype)
    actual = float(y.double().sum(1)[0])
    assert (abs(actual - 1) <= soft_label_tolerance(dtype)) == accepted  # the case tests the rule
    op = MixUp(num_classes=K5)
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
