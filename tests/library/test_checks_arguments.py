"""The checks of every operator's arguments (``_checks.py``): constructor arguments (alpha, the
probabilities, temperatures, choices among names, num_classes) and call-time arguments (perm,
params, generator) of the wrong type or value raise the right type with the right message.

All messages follow "Expected ..., but got ... instead." (``_checks.py``, ``mixing.py``)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from conftest import CHECKS_OP_NAMES, CHECKS_OPS, B, exact, valid_x, valid_y
from randsaliencymix import MixUp, RandSaliencyMix

WITH_ALPHA = ["MixUp", "CutMix", "SaliencyMix-official", "SaliencyMix-per_sample", "RandSaliencyMix"]
WITH_P = WITH_ALPHA + ["RandomChoiceMix"]


# --------------------------------------------------------------------------------------------
# Constructor arguments
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("alpha", [0, 0.0, -1.0, math.nan, math.inf])
@pytest.mark.parametrize("op_name", WITH_ALPHA)
def test_alpha_must_be_positive_and_finite(op_name, alpha):
    with pytest.raises(ValueError, match=exact(f"Expected alpha > 0 and finite, but got {alpha} instead.")):
        CHECKS_OPS[op_name](alpha=alpha)


@pytest.mark.parametrize("alpha", ["1.0", True, None])
@pytest.mark.parametrize("op_name", WITH_ALPHA)
def test_alpha_must_be_a_number(op_name, alpha):
    with pytest.raises(
        TypeError, match=exact(f"Expected alpha to be a number, but got {type(alpha).__name__} instead.")
    ):
        CHECKS_OPS[op_name](alpha=alpha)


def _probability_cases(op_names, arg):
    return [(o, arg) for o in op_names]


PROBABILITY_ARGS = (
    _probability_cases(WITH_P, "p")
    + _probability_cases(CHECKS_OP_NAMES, "label_smoothing")
    + [("RandSaliencyMix", "mixup_prob"), ("RandSaliencyMix", "gamma"), ("RandSaliencyMix", "eta")]
)


@pytest.mark.parametrize("value", [-0.1, 1.5, -1e-9, 1.0 + 1e-9, math.nan, math.inf])
@pytest.mark.parametrize("op_name,arg", PROBABILITY_ARGS, ids=[f"{o}-{a}" for o, a in PROBABILITY_ARGS])
def test_probabilities_must_be_in_unit_interval(op_name, arg, value):
    with pytest.raises(ValueError, match=exact(f"Expected {arg} in [0, 1], but got {value} instead.")):
        CHECKS_OPS[op_name](**{arg: value})


NUMBER_ARGS = [(o, a) for o, a in PROBABILITY_ARGS if a != "eta"]  # a string eta is a mode name


@pytest.mark.parametrize("value", ["0.5", True, None])
@pytest.mark.parametrize("op_name,arg", NUMBER_ARGS, ids=[f"{o}-{a}" for o, a in NUMBER_ARGS])
def test_probabilities_must_be_numbers(op_name, arg, value):
    with pytest.raises(
        TypeError, match=exact(f"Expected {arg} to be a number, but got {type(value).__name__} instead.")
    ):
        CHECKS_OPS[op_name](**{arg: value})


@pytest.mark.parametrize("value", [-1.0, -1e-9, math.nan, math.inf])
@pytest.mark.parametrize("arg", ["tau_src", "tau_dst"])
def test_temperatures_must_be_nonnegative(arg, value):
    with pytest.raises(ValueError, match=exact(f"Expected {arg} >= 0 and finite, but got {value} instead.")):
        RandSaliencyMix(**{arg: value})


@pytest.mark.parametrize("value", [0, 0.0, -0.5, math.nan])
@pytest.mark.parametrize("arg", ["beta_blend", "eps"])
def test_beta_blend_and_eps_must_be_positive(arg, value):
    with pytest.raises(ValueError, match=exact(f"Expected {arg} > 0 and finite, but got {value} instead.")):
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
    with pytest.raises(ValueError, match=exact(f"Expected {arg} to be one of {listed}, but got {value!r} instead.")):
        CHECKS_OPS[op_name](**{arg: value})


@pytest.mark.parametrize("value", [10.0, True, "10"])
@pytest.mark.parametrize("op_name", CHECKS_OP_NAMES)
def test_num_classes_must_be_int(op_name, value):
    with pytest.raises(
        TypeError, match=exact(f"Expected num_classes to be an int, but got {type(value).__name__} instead.")
    ):
        CHECKS_OPS[op_name](num_classes=value)


@pytest.mark.parametrize("value", [0, -3])
@pytest.mark.parametrize("op_name", CHECKS_OP_NAMES)
def test_num_classes_must_be_positive(op_name, value):
    with pytest.raises(ValueError, match=exact(f"Expected num_classes >= 1, but got {value} instead.")):
        CHECKS_OPS[op_name](num_classes=value)


# --------------------------------------------------------------------------------------------
# Call-time arguments: perm, params, generator
# --------------------------------------------------------------------------------------------

BAD_PERMS = {
    "short": (
        lambda: torch.arange(B - 1),
        ValueError,
        exact(f"Expected perm of shape ({B},), but got ({B - 1},) instead."),
    ),
    "long": (
        lambda: torch.arange(B + 1),
        ValueError,
        exact(f"Expected perm of shape ({B},), but got ({B + 1},) instead."),
    ),
    "2d": (
        lambda: torch.arange(B)[:, None],
        ValueError,
        exact(f"Expected perm of shape ({B},), but got ({B}, 1) instead."),
    ),
    "float": (
        lambda: torch.arange(B, dtype=torch.float32),
        TypeError,
        exact("Expected perm as an integer torch.Tensor of shape (B,), but got torch.float32 instead."),
    ),
    "list": (
        lambda: list(range(B)),
        TypeError,
        exact("Expected perm as an integer torch.Tensor of shape (B,), but got list instead."),
    ),
    "out_of_range": (
        lambda: torch.tensor([0, 1, 2, B + 5][:B] + [0] * max(0, B - 4)),
        ValueError,
        "Expected perm to be a permutation of",
    ),
    "repeated": (lambda: torch.zeros(B, dtype=torch.long), ValueError, "Expected perm to be a permutation of"),
}


@pytest.mark.parametrize("via", ["forward", "sample_params"])
@pytest.mark.parametrize("op_name", CHECKS_OP_NAMES)
@pytest.mark.parametrize("case", list(BAD_PERMS))
def test_rejects_bad_perm(case, op_name, via):
    make, exc, msg = BAD_PERMS[case]
    op = CHECKS_OPS[op_name]()
    with pytest.raises(exc, match=msg):
        if via == "forward":
            op(valid_x(), valid_y(), perm=make())
        else:
            op.sample_params(valid_x(), perm=make())


@pytest.mark.parametrize("other", [2, B + 3])
@pytest.mark.parametrize("via", ["apply_params", "forward"])
@pytest.mark.parametrize("op_name", CHECKS_OP_NAMES)
def test_rejects_params_for_another_batch_size(op_name, via, other):
    op = CHECKS_OPS[op_name]()
    params = MixUp().sample_params(valid_x(other), generator=torch.Generator().manual_seed(1))
    with pytest.raises(
        ValueError, match=exact(f"Expected params for a batch of {B}, but got params for {other} instead.")
    ):
        if via == "apply_params":
            op.apply_params(valid_x(), valid_y(), params)
        else:
            op(valid_x(), valid_y(), params=params)


@pytest.mark.parametrize("params", [{}, None, (1, 2), "params"], ids=["dict", "None", "tuple", "str"])
@pytest.mark.parametrize("op_name", CHECKS_OP_NAMES)
def test_apply_rejects_params_of_wrong_type(op_name, params):
    with pytest.raises(
        TypeError, match=exact(f"Expected params of type MixParams, but got {type(params).__name__} instead.")
    ):
        CHECKS_OPS[op_name]().apply_params(valid_x(), valid_y(), params)


@pytest.mark.parametrize("params", [{}, (1, 2)], ids=["dict", "tuple"])
@pytest.mark.parametrize("op_name", CHECKS_OP_NAMES)
def test_forward_rejects_params_of_wrong_type(op_name, params):
    with pytest.raises(
        TypeError, match=exact(f"Expected params of type MixParams, but got {type(params).__name__} instead.")
    ):
        CHECKS_OPS[op_name]()(valid_x(), valid_y(), params=params)


@pytest.mark.parametrize("generator", [42, np.random.default_rng(0), "cpu"], ids=["int", "numpy", "str"])
@pytest.mark.parametrize("via", ["forward", "sample_params"])
@pytest.mark.parametrize("op_name", CHECKS_OP_NAMES)
def test_rejects_generator_of_wrong_type(op_name, via, generator):
    op = CHECKS_OPS[op_name]()
    with pytest.raises(
        TypeError,
        match=exact(f"Expected generator to be a torch.Generator, but got {type(generator).__name__} instead."),
    ):
        if via == "forward":
            op(valid_x(), valid_y(), generator=generator)
        else:
            op.sample_params(valid_x(), generator=generator)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("op_name", CHECKS_OP_NAMES)
def test_rejects_generator_on_another_device(op_name):
    with pytest.raises(
        ValueError, match=exact("Expected a generator on the images' device (cpu), but got one on cuda instead.")
    ):
        CHECKS_OPS[op_name]()(valid_x(), valid_y(), generator=torch.Generator(device="cuda"))


def test_numpy_scalars_are_numbers():
    import numpy as np

    from randsaliencymix import MixUp

    op = MixUp(alpha=np.float32(1.0), num_classes=np.int64(10), p=np.float64(1.0))
    _, y2 = op(torch.rand(4, 3, 8, 8), torch.arange(4), generator=torch.Generator().manual_seed(0))
    assert y2.shape == (4, 10)
