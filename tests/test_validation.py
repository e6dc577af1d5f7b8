"""Every documented error path of the public API raises the right type with the right message.

All messages follow "Expected ..., but got ... instead." (``_checks.py``, ``mixing.py``).
"""

from __future__ import annotations

import math
import re
from typing import Any, Callable, Dict

import numpy as np
import pytest
import torch

from randsaliencymix import (
    CutMix,
    MixParams,
    MixUp,
    NoMix,
    RandomChoiceMix,
    RandSaliencyMix,
    SaliencyMix,
    fine_grained,
    saliency_map,
    soft_target_cross_entropy,
    spectral_residual,
)

B, C, H, W, K = 4, 3, 8, 8, 10


def _x(b: int = B, c: int = C, h: int = H, w: int = W, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(b, c, h, w, generator=g)
    return (x * 255).to(torch.uint8) if dtype == torch.uint8 else x.to(dtype)


def _y(b: int = B) -> torch.Tensor:
    return torch.arange(b) % K


def _exact(msg: str) -> str:
    return re.escape(msg)


# Operators, each built with num_classes=K unless overridden.
OPS: Dict[str, Callable[..., Any]] = {
    "MixUp": lambda **kw: MixUp(**{"num_classes": K, **kw}),
    "CutMix": lambda **kw: CutMix(**{"num_classes": K, **kw}),
    "SaliencyMix-official": lambda **kw: SaliencyMix(**{"num_classes": K, "variant": "official", **kw}),
    "SaliencyMix-per_sample": lambda **kw: SaliencyMix(**{"num_classes": K, "variant": "per_sample", **kw}),
    "RandSaliencyMix": lambda **kw: RandSaliencyMix(**{"num_classes": K, **kw}),
    "RandomChoiceMix": lambda **kw: RandomChoiceMix([MixUp(), CutMix()], **{"num_classes": K, **kw}),
    "NoMix": lambda **kw: NoMix(**{"num_classes": K, **kw}),
}
OP_NAMES = list(OPS)
WITH_ALPHA = ["MixUp", "CutMix", "SaliencyMix-official", "SaliencyMix-per_sample", "RandSaliencyMix"]
WITH_P = WITH_ALPHA + ["RandomChoiceMix"]
SALIENCY_OPS = ["SaliencyMix-per_sample", "RandSaliencyMix"]
# RandSaliencyMix's defaults use no saliency (the detector is skipped); these switch it on.
SALIENCY_ON: Dict[str, Dict[str, Any]] = {"RandSaliencyMix": {"tau_src": 1.0}}

DETECTOR_CALLS: Dict[str, Callable[..., torch.Tensor]] = {
    "fine_grained": fine_grained,
    "spectral_residual": spectral_residual,
    "saliency_map-fine_grained": lambda x, **kw: saliency_map(x, "fine_grained", **kw),
    "saliency_map-spectral": lambda x, **kw: saliency_map(x, "spectral", **kw),
}
DETECTOR_NAMES = list(DETECTOR_CALLS)


def _valid_params(b: int = B) -> MixParams:
    return NoMix().sample_params(_x(b))


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
        _exact("Expected images as a torch.Tensor, but got ndarray instead."),
    ),
    "list": (lambda: [[0.0]], TypeError, _exact("Expected images as a torch.Tensor, but got list instead.")),
    "rank2": (
        lambda: torch.zeros(3, 32),
        ValueError,
        _exact("Expected a batch of shape (B, C, H, W), but got (3, 32) instead."),
    ),
    "rank3": (
        lambda: torch.zeros(3, 8, 8),
        ValueError,
        _exact("Expected a batch of shape (B, C, H, W), but got (3, 8, 8) instead."),
    ),
    "rank5": (
        lambda: torch.zeros(1, B, C, H, W),
        ValueError,
        _exact(f"Expected a batch of shape (B, C, H, W), but got (1, {B}, {C}, {H}, {W}) instead."),
    ),
    "int32": (
        lambda: torch.zeros(B, C, H, W, dtype=torch.int32),
        TypeError,
        _exact("Expected images of dtype uint8, float16, bfloat16, float32 or float64, but got torch.int32 instead."),
    ),
    "int64": (lambda: torch.zeros(B, C, H, W, dtype=torch.int64), TypeError, _exact("but got torch.int64 instead.")),
    "bool": (lambda: torch.zeros(B, C, H, W, dtype=torch.bool), TypeError, _exact("but got torch.bool instead.")),
    "height1": (
        lambda: torch.zeros(B, C, 1, W),
        ValueError,
        _exact(f"Expected images of at least 2x2 pixels, but got 1x{W} instead."),
    ),
    "width1": (
        lambda: torch.zeros(B, C, H, 1, dtype=torch.uint8),
        ValueError,
        _exact(f"Expected images of at least 2x2 pixels, but got {H}x1 instead."),
    ),
    "1x1": (
        lambda: torch.zeros(B, C, 1, 1),
        ValueError,
        _exact("Expected images of at least 2x2 pixels, but got 1x1 instead."),
    ),
    "empty-batch": (
        lambda: torch.zeros(0, C, H, W),
        ValueError,
        _exact(f"Expected a batch of at least one image, but got (0, {C}, {H}, {W}) instead."),
    ),
}


def _non_finite(value: float, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    x = _x(dtype=dtype)
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
NON_FINITE_MSG = _exact("Expected finite image values, but got NaN or infinity instead.")


@pytest.mark.parametrize("entry", list(IMAGE_ENTRY_POINTS))
@pytest.mark.parametrize("op_name", OP_NAMES)
@pytest.mark.parametrize("case", list(BAD_IMAGES))
def test_operator_rejects_bad_images(case, op_name, entry):
    make, exc, msg = BAD_IMAGES[case]
    op = OPS[op_name]()
    with pytest.raises(exc, match=msg):
        IMAGE_ENTRY_POINTS[entry](op, make(), _y())


@pytest.mark.parametrize("entry", list(IMAGE_ENTRY_POINTS))
@pytest.mark.parametrize("op_name", OP_NAMES)
@pytest.mark.parametrize("case", list(NON_FINITE))
def test_operator_rejects_non_finite_images(case, op_name, entry):
    op = OPS[op_name]()
    with pytest.raises(ValueError, match=NON_FINITE_MSG):
        IMAGE_ENTRY_POINTS[entry](op, NON_FINITE[case](), _y())


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
    with pytest.raises(ValueError, match=_exact(f"Expected 1 (grey) or 3 (RGB) channels, but got {channels} instead.")):
        DETECTOR_CALLS[det](_x(c=channels, dtype=dtype))


@pytest.mark.parametrize("channels", [2, 4])
@pytest.mark.parametrize("op_name", SALIENCY_OPS)
def test_saliency_operator_rejects_channel_count(op_name, channels):
    with pytest.raises(ValueError, match=_exact(f"Expected 1 (grey) or 3 (RGB) channels, but got {channels} instead.")):
        OPS[op_name](**SALIENCY_ON.get(op_name, {}))(_x(c=channels), _y())


@pytest.mark.parametrize("channels", [2, 4])
def test_randsaliencymix_without_saliency_takes_any_channel_count(channels):
    x, y = OPS["RandSaliencyMix"]()(_x(c=channels), _y())
    assert x.shape[1] == channels and torch.allclose(y.sum(dim=1), torch.ones(y.shape[0]))


@pytest.mark.parametrize("value_range", [(1.0, 0.0), (0.5, 0.5), (255, 0)])
@pytest.mark.parametrize("det", DETECTOR_NAMES)
def test_detector_rejects_value_range_hi_not_above_lo(det, value_range):
    with pytest.raises(
        ValueError, match=_exact(f"Expected value_range (lo, hi) with hi > lo, but got {value_range} instead.")
    ):
        DETECTOR_CALLS[det](_x(), value_range=value_range)


@pytest.mark.parametrize("op_name", SALIENCY_OPS)
def test_saliency_operator_rejects_value_range_hi_not_above_lo(op_name):
    # Checked at construction or, at the latest, on the first call with float images.
    with pytest.raises(
        ValueError, match=_exact("Expected value_range (lo, hi) with hi > lo, but got (1.0, 0.0) instead.")
    ):
        OPS[op_name](value_range=(1.0, 0.0))(_x(), _y())


@pytest.mark.parametrize("kw", [{"mean": (0.5, 0.5, 0.5)}, {"std": (0.2, 0.2, 0.2)}], ids=["mean", "std"])
@pytest.mark.parametrize("det", DETECTOR_NAMES)
def test_detector_rejects_mean_without_std(det, kw):
    with pytest.raises(
        ValueError, match=_exact("Expected both mean and std for a normalised input, but got only one instead.")
    ):
        DETECTOR_CALLS[det](_x(), **kw)


@pytest.mark.parametrize("method", ["sobel", "FINE_GRAINED", "", None])
def test_saliency_map_rejects_unknown_method(method):
    with pytest.raises(
        ValueError,
        match=_exact(f"Expected method to be one of 'fine_grained', 'spectral', but got {method!r} instead."),
    ):
        saliency_map(_x(), method)


# --------------------------------------------------------------------------------------------
# Labels (forward and apply of every operator)
# --------------------------------------------------------------------------------------------

BAD_LABELS = {
    "list": (lambda: [0, 1, 2, 3], TypeError, _exact("Expected labels as a torch.Tensor, but got list instead.")),
    "indices-batch-short": (
        lambda: torch.tensor([0, 1, 2]),
        ValueError,
        _exact(f"Expected {B} labels to match the batch of images, but got 3 instead."),
    ),
    "indices-batch-long": (
        lambda: torch.arange(B + 2) % K,
        ValueError,
        _exact(f"Expected {B} labels to match the batch of images, but got {B + 2} instead."),
    ),
    "probs-batch-mismatch": (
        lambda: torch.full((B + 1, K), 1.0 / K),
        ValueError,
        _exact(f"Expected {B} label rows to match the batch of images, but got {B + 1} instead."),
    ),
    "index-negative": (
        lambda: torch.tensor([0, -1, 2, 3]),
        ValueError,
        _exact(f"Expected class indices in [0, {K - 1}], but got -1 instead."),
    ),
    "index-too-large": (
        lambda: torch.tensor([0, 1, K, 3]),
        ValueError,
        _exact(f"Expected class indices in [0, {K - 1}], but got {K} instead."),
    ),
    "index-int32-too-large": (
        lambda: torch.tensor([0, 1, 2, K + 5], dtype=torch.int32),
        ValueError,
        _exact(f"Expected class indices in [0, {K - 1}], but got {K + 5} instead."),
    ),
    "float-indices": (
        lambda: torch.tensor([0.0, 1.0, 2.0, 3.0]),
        TypeError,
        _exact("Expected integer class indices of shape (B,), but got torch.float32 instead."),
    ),
    "bool-indices": (
        lambda: torch.tensor([True, False, True, False]),
        TypeError,
        _exact("Expected integer class indices of shape (B,), but got torch.bool instead."),
    ),
    "rows-not-summing-to-1": (
        lambda: torch.full((B, K), 0.05),
        ValueError,
        _exact("Expected label probabilities whose rows sum to 1, but got a row summing to 0.5000 instead."),
    ),
    "one-row-off": (
        lambda: torch.cat([torch.full((B - 1, K), 1.0 / K), torch.full((1, K), 0.2)]),
        ValueError,
        _exact("Expected label probabilities whose rows sum to 1, but got a row summing to 2.0000 instead."),
    ),
    "negative-probs": (
        lambda: torch.tensor([[1.5, -0.5] + [0.0] * (K - 2)] * B),
        ValueError,
        _exact("Expected label probabilities >= 0 and finite, but got others instead."),
    ),
    "nan-probs": (
        lambda: torch.tensor([[math.nan] + [1.0 / K] * (K - 1)] * B),
        ValueError,
        _exact("Expected label probabilities >= 0 and finite, but got others instead."),
    ),
    "integer-probs": (
        lambda: torch.nn.functional.one_hot(torch.arange(B), K),
        TypeError,
        _exact("Expected floating-point probabilities of shape (B, K), but got torch.int64 instead."),
    ),
    "wrong-K": (
        lambda: torch.full((B, K - 3), 1.0 / (K - 3)),
        ValueError,
        _exact(f"Expected probabilities over num_classes={K} classes, but got {K - 3} columns instead."),
    ),
    "rank3": (
        lambda: torch.full((B, 2, 5), 0.1),
        ValueError,
        _exact(f"Expected labels of shape (B,) or (B, K), but got ({B}, 2, 5) instead."),
    ),
    "rank0": (
        lambda: torch.tensor(3),
        ValueError,
        _exact("Expected labels of shape (B,) or (B, K), but got () instead."),
    ),
}


@pytest.mark.parametrize("entry", list(LABEL_ENTRY_POINTS))
@pytest.mark.parametrize("op_name", OP_NAMES)
@pytest.mark.parametrize("case", list(BAD_LABELS))
def test_operator_rejects_bad_labels(case, op_name, entry):
    make, exc, msg = BAD_LABELS[case]
    op = OPS[op_name]()
    with pytest.raises(exc, match=msg):
        LABEL_ENTRY_POINTS[entry](op, _x(), make())


@pytest.mark.parametrize("entry", list(LABEL_ENTRY_POINTS))
@pytest.mark.parametrize("op_name", OP_NAMES)
def test_operator_rejects_indices_without_num_classes(op_name, entry):
    op = OPS[op_name](num_classes=None)
    with pytest.raises(
        ValueError,
        match=_exact(
            "Expected num_classes to be given when labels are class indices of shape (B,), but got None instead."
        ),
    ):
        LABEL_ENTRY_POINTS[entry](op, _x(), _y())


# --------------------------------------------------------------------------------------------
# Constructor arguments
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("alpha", [0, 0.0, -1.0, math.nan, math.inf])
@pytest.mark.parametrize("op_name", WITH_ALPHA)
def test_alpha_must_be_positive_and_finite(op_name, alpha):
    with pytest.raises(ValueError, match=_exact(f"Expected alpha > 0 and finite, but got {alpha} instead.")):
        OPS[op_name](alpha=alpha)


@pytest.mark.parametrize("alpha", ["1.0", True, None])
@pytest.mark.parametrize("op_name", WITH_ALPHA)
def test_alpha_must_be_a_number(op_name, alpha):
    with pytest.raises(
        TypeError, match=_exact(f"Expected alpha to be a number, but got {type(alpha).__name__} instead.")
    ):
        OPS[op_name](alpha=alpha)


def _probability_cases(op_names, arg):
    return [(o, arg) for o in op_names]


PROBABILITY_ARGS = (
    _probability_cases(WITH_P, "p")
    + _probability_cases(OP_NAMES, "label_smoothing")
    + [("RandSaliencyMix", "mixup_prob"), ("RandSaliencyMix", "gamma"), ("RandSaliencyMix", "eta")]
)


@pytest.mark.parametrize("value", [-0.1, 1.5, -1e-9, 1.0 + 1e-9, math.nan, math.inf])
@pytest.mark.parametrize("op_name,arg", PROBABILITY_ARGS, ids=[f"{o}-{a}" for o, a in PROBABILITY_ARGS])
def test_probabilities_must_be_in_unit_interval(op_name, arg, value):
    with pytest.raises(ValueError, match=_exact(f"Expected {arg} in [0, 1], but got {value} instead.")):
        OPS[op_name](**{arg: value})


NUMBER_ARGS = [(o, a) for o, a in PROBABILITY_ARGS if a != "eta"]  # a string eta is a mode name


@pytest.mark.parametrize("value", ["0.5", True, None])
@pytest.mark.parametrize("op_name,arg", NUMBER_ARGS, ids=[f"{o}-{a}" for o, a in NUMBER_ARGS])
def test_probabilities_must_be_numbers(op_name, arg, value):
    with pytest.raises(
        TypeError, match=_exact(f"Expected {arg} to be a number, but got {type(value).__name__} instead.")
    ):
        OPS[op_name](**{arg: value})


@pytest.mark.parametrize("value", [-1.0, -1e-9, math.nan, math.inf])
@pytest.mark.parametrize("arg", ["tau_src", "tau_dst"])
def test_temperatures_must_be_nonnegative(arg, value):
    with pytest.raises(ValueError, match=_exact(f"Expected {arg} >= 0 and finite, but got {value} instead.")):
        RandSaliencyMix(**{arg: value})


@pytest.mark.parametrize("value", [0, 0.0, -0.5, math.nan])
@pytest.mark.parametrize("arg", ["beta_blend", "eps"])
def test_beta_blend_and_eps_must_be_positive(arg, value):
    with pytest.raises(ValueError, match=_exact(f"Expected {arg} > 0 and finite, but got {value} instead.")):
        RandSaliencyMix(eta="beta", **{arg: value})


CHOICES = [
    ("MixUp", "mode", "sample_wise", ("batch", "sample")),
    ("CutMix", "mode", "official", ("batch", "sample")),
    ("SaliencyMix-official", "variant", "batch", ("official", "per_sample")),
    ("RandomChoiceMix", "mode", "elementwise", ("batch", "sample")),
    ("RandSaliencyMix", "source", "random", ("saliency", "peak", "uniform")),
    ("RandSaliencyMix", "paste", "anywhere", ("anti_saliency", "same", "uniform", "saliency")),
    ("RandSaliencyMix", "eta", "hard", ("beta",)),
    ("RandSaliencyMix", "detector", "sobel", ("fine_grained", "spectral")),
    ("SaliencyMix-official", "detector", "spectral_residual", ("fine_grained", "spectral")),
    ("SaliencyMix-per_sample", "detector", "", ("fine_grained", "spectral")),
]


@pytest.mark.parametrize("op_name,arg,value,choices", CHOICES, ids=[f"{c[0]}-{c[1]}" for c in CHOICES])
def test_unknown_strings_are_rejected(op_name, arg, value, choices):
    listed = ", ".join(map(repr, choices))
    with pytest.raises(ValueError, match=_exact(f"Expected {arg} to be one of {listed}, but got {value!r} instead.")):
        OPS[op_name](**{arg: value})


@pytest.mark.parametrize("value", [10.0, True, "10"])
@pytest.mark.parametrize("op_name", OP_NAMES)
def test_num_classes_must_be_int(op_name, value):
    with pytest.raises(
        TypeError, match=_exact(f"Expected num_classes to be an int, but got {type(value).__name__} instead.")
    ):
        OPS[op_name](num_classes=value)


@pytest.mark.parametrize("value", [0, -3])
@pytest.mark.parametrize("op_name", OP_NAMES)
def test_num_classes_must_be_positive(op_name, value):
    with pytest.raises(ValueError, match=_exact(f"Expected num_classes >= 1, but got {value} instead.")):
        OPS[op_name](num_classes=value)


# --------------------------------------------------------------------------------------------
# RandomChoiceMix
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "ops",
    [[], (), [MixUp(), "cutmix"], [torch.nn.Identity()]],
    ids=["empty-list", "empty-tuple", "non-operator", "plain-module"],
)
def test_random_choice_rejects_bad_ops(ops):
    with pytest.raises(
        TypeError, match=_exact("Expected a non-empty sequence of mixing operators, but got something else instead.")
    ):
        RandomChoiceMix(ops)


@pytest.mark.parametrize("probs", [[1.0], [0.2, 0.3, 0.5], []])
def test_random_choice_rejects_probs_of_wrong_length(probs):
    with pytest.raises(
        ValueError, match=_exact(f"Expected 2 probabilities, one per operator, but got {len(probs)} instead.")
    ):
        RandomChoiceMix([MixUp(), CutMix()], probs=probs)


@pytest.mark.parametrize("probs", [[0.5, 0.4], [0.7, 0.7], [0.0, 0.0]])
def test_random_choice_rejects_probs_not_summing_to_one(probs):
    with pytest.raises(
        ValueError, match=_exact(f"Expected probs that sum to 1, but got a sum of {sum(probs):.6f} instead.")
    ):
        RandomChoiceMix([MixUp(), CutMix()], probs=probs)


@pytest.mark.parametrize("probs", [[1.5, -0.5], [math.nan, 1.0]])
def test_random_choice_rejects_negative_or_nan_probs(probs):
    bad = next(q for q in probs if not q >= 0)
    with pytest.raises(ValueError, match=_exact(f"Expected probs >= 0 and finite, but got {bad} instead.")):
        RandomChoiceMix([MixUp(), CutMix()], probs=probs)


# --------------------------------------------------------------------------------------------
# Call-time arguments: saliency maps, perm, params, generator
# --------------------------------------------------------------------------------------------

BAD_MAPS = {
    "wrong-width": (
        lambda: torch.rand(B, H, W + 1),
        ValueError,
        _exact(f"Expected saliency maps of shape (B, H, W) = ({B}, {H}, {W}), but got ({B}, {H}, {W + 1}) instead."),
    ),
    "wrong-batch": (lambda: torch.rand(B - 1, H, W), ValueError, _exact(f"but got ({B - 1}, {H}, {W}) instead.")),
    "with-channel": (lambda: torch.rand(B, 1, H, W), ValueError, _exact(f"but got ({B}, 1, {H}, {W}) instead.")),
    "int64": (
        lambda: torch.ones(B, H, W, dtype=torch.int64),
        TypeError,
        _exact("Expected floating-point saliency maps, but got torch.int64 instead."),
    ),
    "uint8": (
        lambda: torch.ones(B, H, W, dtype=torch.uint8),
        TypeError,
        _exact("Expected floating-point saliency maps, but got torch.uint8 instead."),
    ),
    "ndarray": (
        lambda: np.ones((B, H, W), dtype=np.float32),
        TypeError,
        _exact("Expected saliency maps as a torch.Tensor, but got ndarray instead."),
    ),
}


@pytest.mark.parametrize("via", ["forward", "sample_params"])
@pytest.mark.parametrize("op_name", OP_NAMES)
@pytest.mark.parametrize("case", list(BAD_MAPS))
def test_rejects_bad_saliency_maps(case, op_name, via):
    make, exc, msg = BAD_MAPS[case]
    op = OPS[op_name]()
    with pytest.raises(exc, match=msg):
        if via == "forward":
            op(_x(), _y(), saliency=make())
        else:
            op.sample_params(_x(), saliency=make())


BAD_PERMS = {
    "short": (
        lambda: torch.arange(B - 1),
        ValueError,
        _exact(f"Expected perm of shape ({B},), but got ({B - 1},) instead."),
    ),
    "long": (
        lambda: torch.arange(B + 1),
        ValueError,
        _exact(f"Expected perm of shape ({B},), but got ({B + 1},) instead."),
    ),
    "2d": (
        lambda: torch.arange(B)[:, None],
        ValueError,
        _exact(f"Expected perm of shape ({B},), but got ({B}, 1) instead."),
    ),
    "float": (
        lambda: torch.arange(B, dtype=torch.float32),
        TypeError,
        _exact("Expected perm as an integer torch.Tensor of shape (B,), but got torch.float32 instead."),
    ),
    "list": (
        lambda: list(range(B)),
        TypeError,
        _exact("Expected perm as an integer torch.Tensor of shape (B,), but got list instead."),
    ),
    "out_of_range": (
        lambda: torch.tensor([0, 1, 2, B + 5][:B] + [0] * max(0, B - 4)),
        ValueError,
        "Expected perm to be a permutation of",
    ),
    "repeated": (lambda: torch.zeros(B, dtype=torch.long), ValueError, "Expected perm to be a permutation of"),
}


@pytest.mark.parametrize("via", ["forward", "sample_params"])
@pytest.mark.parametrize("op_name", OP_NAMES)
@pytest.mark.parametrize("case", list(BAD_PERMS))
def test_rejects_bad_perm(case, op_name, via):
    make, exc, msg = BAD_PERMS[case]
    op = OPS[op_name]()
    with pytest.raises(exc, match=msg):
        if via == "forward":
            op(_x(), _y(), perm=make())
        else:
            op.sample_params(_x(), perm=make())


@pytest.mark.parametrize("other", [2, B + 3])
@pytest.mark.parametrize("via", ["apply_params", "forward"])
@pytest.mark.parametrize("op_name", OP_NAMES)
def test_rejects_params_for_another_batch_size(op_name, via, other):
    op = OPS[op_name]()
    params = MixUp().sample_params(_x(other), generator=torch.Generator().manual_seed(1))
    with pytest.raises(
        ValueError, match=_exact(f"Expected params for a batch of {B}, but got params for {other} instead.")
    ):
        if via == "apply_params":
            op.apply_params(_x(), _y(), params)
        else:
            op(_x(), _y(), params=params)


@pytest.mark.parametrize("params", [{}, None, (1, 2), "params"], ids=["dict", "None", "tuple", "str"])
@pytest.mark.parametrize("op_name", OP_NAMES)
def test_apply_rejects_params_of_wrong_type(op_name, params):
    with pytest.raises(
        TypeError, match=_exact(f"Expected params of type MixParams, but got {type(params).__name__} instead.")
    ):
        OPS[op_name]().apply_params(_x(), _y(), params)


@pytest.mark.parametrize("params", [{}, (1, 2)], ids=["dict", "tuple"])
@pytest.mark.parametrize("op_name", OP_NAMES)
def test_forward_rejects_params_of_wrong_type(op_name, params):
    with pytest.raises(
        TypeError, match=_exact(f"Expected params of type MixParams, but got {type(params).__name__} instead.")
    ):
        OPS[op_name]()(_x(), _y(), params=params)


@pytest.mark.parametrize("generator", [42, np.random.default_rng(0), "cpu"], ids=["int", "numpy", "str"])
@pytest.mark.parametrize("via", ["forward", "sample_params"])
@pytest.mark.parametrize("op_name", OP_NAMES)
def test_rejects_generator_of_wrong_type(op_name, via, generator):
    op = OPS[op_name]()
    with pytest.raises(
        TypeError,
        match=_exact(f"Expected generator to be a torch.Generator, but got {type(generator).__name__} instead."),
    ):
        if via == "forward":
            op(_x(), _y(), generator=generator)
        else:
            op.sample_params(_x(), generator=generator)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("op_name", OP_NAMES)
def test_rejects_generator_on_another_device(op_name):
    with pytest.raises(
        ValueError, match=_exact("Expected a generator on the images' device (cpu), but got one on cuda instead.")
    ):
        OPS[op_name]()(_x(), _y(), generator=torch.Generator(device="cuda"))


# --------------------------------------------------------------------------------------------
# Loss
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "logits_shape,targets_shape",
    [((B, K), (B, K - 1)), ((B, K), (B + 1, K)), ((B, K), (B,)), ((K,), (K,)), ((B, K, 2), (B, K, 2))],
    ids=["K", "B", "indices", "1d", "3d"],
)
def test_loss_rejects_mismatched_shapes(logits_shape, targets_shape):
    with pytest.raises(
        ValueError,
        match=_exact(
            f"Expected logits and targets of the same shape (B, K), but got {logits_shape} and {targets_shape} instead."
        ),
    ):
        soft_target_cross_entropy(torch.zeros(logits_shape), torch.zeros(targets_shape))


@pytest.mark.parametrize("reduction", ["avg", "", "MEAN"])
def test_loss_rejects_unknown_reduction(reduction):
    with pytest.raises(
        ValueError, match=_exact(f"Expected reduction 'mean', 'sum' or 'none', but got {reduction!r} instead.")
    ):
        soft_target_cross_entropy(torch.zeros(B, K), torch.full((B, K), 1.0 / K), reduction=reduction)


# --------------------------------------------------------------------------------------------
# Sanity: the valid counterparts of the inputs above are accepted
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("op_name", OP_NAMES)
def test_valid_inputs_are_accepted(op_name):
    op = OPS[op_name]()
    x = _x()
    gen = torch.Generator().manual_seed(0)
    # Maps for every operator that reads them (the official SaliencyMix computes its own and refuses given ones).
    maps = None if getattr(op, "variant", None) == "official" else torch.rand(B, H, W)
    xm, ym = op(x, _y(), generator=gen, perm=torch.arange(B).flip(0), saliency=maps)
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


def test_random_choice_rejects_none():
    from randsaliencymix import RandomChoiceMix

    with pytest.raises(TypeError, match="Expected a non-empty sequence of mixing operators"):
        RandomChoiceMix(None)  # type: ignore[arg-type]


def test_loss_rejects_non_tensors():
    from randsaliencymix import soft_target_cross_entropy

    with pytest.raises(TypeError, match=re.escape("Expected logits and targets as torch.Tensors")):
        soft_target_cross_entropy([[0.0]], [[1.0]])  # type: ignore[arg-type]


def test_numpy_scalars_are_numbers():
    import numpy as np

    from randsaliencymix import MixUp

    op = MixUp(alpha=np.float32(1.0), num_classes=np.int64(10), p=np.float64(1.0))
    _, y2 = op(torch.rand(4, 3, 8, 8), torch.arange(4), generator=torch.Generator().manual_seed(0))
    assert y2.shape == (4, 10)
