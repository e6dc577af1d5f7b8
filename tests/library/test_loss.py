"""The soft-target cross-entropy (``loss.py``): its value against the formula, and its argument checks."""

from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from conftest import MIX_SETTINGS, exact, gen
from randsaliencymix import SoftTargetCrossEntropy, soft_target_cross_entropy


@MIX_SETTINGS
@given(b=st.integers(1, 8), k=st.integers(2, 10), seed=st.integers(0, 2**31 - 1))
def test_soft_target_cross_entropy(b, k, seed):
    g = gen(seed)
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
# Bad arguments
# ------------------------------------------------------------------------------------------------

B, K = 4, 10  # B logits over K classes


@pytest.mark.parametrize(
    "logits_shape,targets_shape",
    [((B, K), (B, K - 1)), ((B, K), (B + 1, K)), ((B, K), (B,)), ((K,), (K,)), ((B, K, 2), (B, K, 2))],
    ids=["K", "B", "indices", "1d", "3d"],
)
def test_loss_rejects_mismatched_shapes(logits_shape, targets_shape):
    with pytest.raises(
        ValueError,
        match=exact(
            f"Expected logits and targets of the same shape (B, K), but got {logits_shape} and {targets_shape} instead."
        ),
    ):
        soft_target_cross_entropy(torch.zeros(logits_shape), torch.zeros(targets_shape))


@pytest.mark.parametrize("reduction", ["avg", "", "MEAN"])
def test_loss_rejects_unknown_reduction(reduction):
    with pytest.raises(
        ValueError, match=exact(f"Expected reduction 'mean', 'sum' or 'none', but got {reduction!r} instead.")
    ):
        soft_target_cross_entropy(torch.zeros(B, K), torch.full((B, K), 1.0 / K), reduction=reduction)


def test_loss_rejects_non_tensors():
    from randsaliencymix import soft_target_cross_entropy

    with pytest.raises(TypeError, match=re.escape("Expected logits and targets as torch.Tensors")):
        soft_target_cross_entropy([[0.0]], [[1.0]])  # type: ignore[arg-type]
