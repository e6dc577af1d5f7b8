"""Validation at the public boundary.

Shape and dtype checks are free and always run. Checks that read tensor *values* (finite pixels,
label range, probability sums) need a host synchronisation on an accelerator, so they run on CPU
tensors by default and on other devices only when the caller asks (``validate=True``).

Internal: import from randsaliencymix instead; may change without notice.
"""

from __future__ import annotations

import math
import numbers
from typing import Optional, Sequence, Tuple

import torch

__all__ = [
    "check_choice",
    "check_images",
    "check_nonnegative",
    "check_normalisation",
    "check_num_classes",
    "check_perm",
    "check_positive",
    "check_probability",
    "check_saliency_maps",
    "check_validate",
    "should_check_values",
    "soft_label_tolerance",
    "to_soft_targets",
]

_IMAGE_DTYPES = (torch.uint8, torch.float16, torch.bfloat16, torch.float32, torch.float64)


def should_check_values(t: torch.Tensor, validate: Optional[bool]) -> bool:
    if validate is None:
        return t.device.type == "cpu"
    return bool(validate)


def check_images(x: object, validate: Optional[bool] = None, min_size: int = 2) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"Expected images as a torch.Tensor, but got {type(x).__name__} instead.")
    if x.ndim != 4:
        raise ValueError(f"Expected a batch of shape (B, C, H, W), but got {tuple(x.shape)} instead.")
    if x.dtype not in _IMAGE_DTYPES:
        raise TypeError(
            f"Expected images of dtype uint8, float16, bfloat16, float32 or float64, but got {x.dtype} instead."
        )
    if x.shape[0] < 1:
        raise ValueError(f"Expected a batch of at least one image, but got {tuple(x.shape)} instead.")
    if x.shape[-2] < min_size or x.shape[-1] < min_size:
        raise ValueError(
            f"Expected images of at least {min_size}x{min_size} pixels, but got {x.shape[-2]}x{x.shape[-1]} instead."
        )
    if x.is_floating_point() and should_check_values(x, validate):
        # One reduction instead of isfinite's four passes: a finite sum proves every value finite
        # (inf and NaN propagate); only a non-finite sum, which may be overflow, is checked fully.
        if not bool(torch.isfinite(x.sum(dtype=torch.float32))) and not bool(torch.isfinite(x).all()):
            raise ValueError("Expected finite image values, but got NaN or infinity instead.")
    return x


def check_positive(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"Expected {name} to be a number, but got {type(value).__name__} instead.")
    if not value > 0 or value != value or value == float("inf"):
        raise ValueError(f"Expected {name} > 0 and finite, but got {value} instead.")
    return float(value)


def check_nonnegative(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"Expected {name} to be a number, but got {type(value).__name__} instead.")
    if not value >= 0 or value == float("inf"):
        raise ValueError(f"Expected {name} >= 0 and finite, but got {value} instead.")
    return float(value)


def check_probability(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"Expected {name} to be a number, but got {type(value).__name__} instead.")
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"Expected {name} in [0, 1], but got {value} instead.")
    return float(value)


def check_validate(validate: object) -> Optional[bool]:
    """``validate`` is ``None`` (check values on CPU only), ``True`` (everywhere) or ``False`` (never)."""
    if validate is not None and not isinstance(validate, bool):
        raise TypeError(f"Expected validate as None, True or False, but got {validate!r} instead.")
    return validate


def check_choice(name: str, value: object, choices: tuple) -> str:
    if value not in choices:
        raise ValueError(f"Expected {name} to be one of {', '.join(map(repr, choices))}, but got {value!r} instead.")
    return str(value)


def check_perm(perm: object, x: torch.Tensor, validate: Optional[bool] = None) -> torch.Tensor:
    if not isinstance(perm, torch.Tensor) or perm.dtype not in (torch.int32, torch.int64):
        raise TypeError(
            "Expected perm as an integer torch.Tensor of shape (B,), "
            f"but got {type(perm).__name__ if not isinstance(perm, torch.Tensor) else perm.dtype} instead."
        )
    if tuple(perm.shape) != (x.shape[0],):
        raise ValueError(f"Expected perm of shape ({x.shape[0]},), but got {tuple(perm.shape)} instead.")
    perm = perm.long().to(x.device)
    if should_check_values(perm, validate):
        if not torch.equal(perm.sort().values, torch.arange(perm.shape[0], device=perm.device)):
            raise ValueError(
                f"Expected perm to be a permutation of 0..{perm.shape[0] - 1}, but got {perm.tolist()} instead."
            )
    return perm


def check_saliency_maps(maps: object, x: torch.Tensor, validate: Optional[bool] = None) -> torch.Tensor:
    """Maps ``(B, H, W)`` of the batch ``x``, floating point; where values are checked (CPU, or
    ``validate=True``) also finite and non-negative. Unchecked maps are made safe where they are
    read (NaN and negatives count as 0, +inf as the most salient value)."""
    if not isinstance(maps, torch.Tensor):
        raise TypeError(f"Expected saliency maps as a torch.Tensor, but got {type(maps).__name__} instead.")
    expected = (x.shape[0], x.shape[-2], x.shape[-1])
    if tuple(maps.shape) != expected:
        raise ValueError(
            f"Expected saliency maps of shape (B, H, W) = {expected}, but got {tuple(maps.shape)} instead."
        )
    if not maps.is_floating_point():
        raise TypeError(f"Expected floating-point saliency maps, but got {maps.dtype} instead.")
    if should_check_values(maps, validate) and maps.numel() > 0:
        lo_t, hi_t = torch.aminmax(maps.detach())  # one pass; NaN propagates to both
        lo, hi = float(lo_t), float(hi_t)
        bad = None
        if math.isnan(lo) or math.isnan(hi):
            bad = "NaN"
        elif math.isinf(hi) or math.isinf(lo):
            bad = "inf" if math.isinf(hi) else "-inf"
        elif lo < 0:
            bad = f"a value of {lo:g}"
        if bad is not None:
            raise ValueError(f"Expected saliency maps with finite values >= 0, but got {bad} instead.")
    return maps


def soft_label_tolerance(dtype: torch.dtype) -> float:
    """How far from 1 a row of ``(B, K)`` label probabilities of ``dtype`` may sum:
    ``max(1e-4, 4 * eps(dtype))`` (1e-4 for float32 and float64, 2**-8 for float16, 2**-5 for
    bfloat16, whose rounding alone moves a softmax row's sum by up to about eps / 2)."""
    return max(1e-4, 4.0 * torch.finfo(dtype).eps)


def to_soft_targets(
    y: object,
    batch_size: int,
    num_classes: Optional[int],
    label_smoothing: float = 0.0,
    validate: Optional[bool] = None,
) -> torch.Tensor:
    """Turn ``(B,)`` class indices or ``(B, K)`` probabilities into ``(B, K)`` float targets.

    Probabilities must be finite, non-negative, and sum to 1 per row within
    :func:`soft_label_tolerance` of their dtype (checked on CPU, or with ``validate=True``); they
    are returned renormalised, as float32 (float64 stays float64), so every row sums to 1.
    """
    if not isinstance(y, torch.Tensor):
        raise TypeError(f"Expected labels as a torch.Tensor, but got {type(y).__name__} instead.")
    if y.ndim == 1:
        if y.is_floating_point() or y.dtype == torch.bool or y.is_complex():
            raise TypeError(f"Expected integer class indices of shape (B,), but got {y.dtype} instead.")
        if num_classes is None:
            raise ValueError(
                "Expected num_classes to be given when labels are class indices of shape (B,), but got None instead."
            )
        if y.shape[0] != batch_size:
            raise ValueError(
                f"Expected {batch_size} labels to match the batch of images, but got {y.shape[0]} instead."
            )
        if should_check_values(y, validate) and y.numel() > 0:
            lo, hi = int(y.min()), int(y.max())
            if lo < 0 or hi >= num_classes:
                bad = lo if lo < 0 else hi
                raise ValueError(f"Expected class indices in [0, {num_classes - 1}], but got {bad} instead.")
        soft = torch.nn.functional.one_hot(y.long(), num_classes).to(torch.float32)
    elif y.ndim == 2:
        if not y.is_floating_point():
            raise TypeError(f"Expected floating-point probabilities of shape (B, K), but got {y.dtype} instead.")
        if y.shape[0] != batch_size:
            raise ValueError(
                f"Expected {batch_size} label rows to match the batch of images, but got {y.shape[0]} instead."
            )
        if num_classes is not None and y.shape[1] != num_classes:
            raise ValueError(
                f"Expected probabilities over num_classes={num_classes} classes, but got {y.shape[1]} columns instead."
            )
        if should_check_values(y, validate):
            if not bool(torch.isfinite(y).all()) or bool((y < 0).any()):
                raise ValueError("Expected label probabilities >= 0 and finite, but got others instead.")
            sums = y.sum(dim=1, dtype=torch.float64)
            off = (sums - 1).abs()
            if float(off.max()) > soft_label_tolerance(y.dtype):
                raise ValueError(
                    "Expected label probabilities whose rows sum to 1, "
                    f"but got a row summing to {float(sums[off.argmax()]):.4f} instead."
                )
        soft = y if y.dtype in (torch.float32, torch.float64) else y.to(torch.float32)
        # Rows within the tolerance are renormalised so that every output row sums to 1 to the
        # precision of its dtype (float32 for half-precision labels). Unchecked rows (off the
        # CPU without validate=True) are divided by their sum as well; an all-zero row stays 0.
        soft = soft / soft.sum(dim=1, keepdim=True).clamp(min=torch.finfo(soft.dtype).tiny)
    else:
        raise ValueError(f"Expected labels of shape (B,) or (B, K), but got {tuple(y.shape)} instead.")
    if label_smoothing > 0:
        soft = soft * (1.0 - label_smoothing) + label_smoothing / soft.shape[1]
    return soft


def check_num_classes(num_classes: object) -> Optional[int]:
    if num_classes is None:
        return None
    if isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral):
        raise TypeError(f"Expected num_classes to be an int, but got {type(num_classes).__name__} instead.")
    if num_classes < 1:
        raise ValueError(f"Expected num_classes >= 1, but got {num_classes} instead.")
    return int(num_classes)


def check_normalisation(
    value_range: Optional[Tuple[float, float]],
    mean: Optional[Sequence[float]],
    std: Optional[Sequence[float]],
    channels: Optional[int] = None,
) -> None:
    """Validate how float images map to 0-255: a (lo, hi) range or per-channel mean and std."""
    if value_range is not None:
        if len(value_range) != 2 or not float(value_range[1]) > float(value_range[0]):
            raise ValueError(f"Expected value_range (lo, hi) with hi > lo, but got {value_range} instead.")
    if (mean is None) != (std is None):
        raise ValueError("Expected both mean and std for a normalised input, but got only one instead.")
    if mean is not None and std is not None:
        n_mean, n_std = len(mean), len(std)
        if n_mean != n_std:
            raise ValueError(f"Expected mean and std of the same length, but got {n_mean} and {n_std} instead.")
        if channels is not None and n_mean not in (1, channels):
            raise ValueError(
                f"Expected mean and std with 1 or {channels} values (one per channel), but got {n_mean} instead."
            )
        if any(not float(v) > 0 for v in std):
            raise ValueError(f"Expected std > 0, but got {tuple(std)} instead.")
