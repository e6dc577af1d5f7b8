"""The building blocks the networks share: argument checks, convolutions, residual stages of any
block, the weight initialisation and the basic residual block."""

from __future__ import annotations

import numbers
from typing import Callable, Sequence, Tuple

import torch
from torch import nn


def _check_num_classes(num_classes: object) -> int:
    # A model needs a class count (the mixing operators' None, "labels are probabilities", is an error).
    if isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral):
        raise TypeError(f"Expected num_classes to be an int, but got {type(num_classes).__name__} instead.")
    if num_classes < 1:
        raise ValueError(f"Expected num_classes >= 1, but got {num_classes} instead.")
    return int(num_classes)


def _check_real(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"Expected {name} to be a number, but got {type(value).__name__} instead.")
    return float(value)


def _check_positive(name: str, value: object) -> float:
    number = _check_real(name, value)
    if not number > 0 or number == float("inf"):
        raise ValueError(f"Expected {name} > 0 and finite, but got {value} instead.")
    return number


def _check_probability(name: str, value: object) -> float:
    number = _check_real(name, value)
    if not 0.0 <= number <= 1.0:
        raise ValueError(f"Expected {name} in [0, 1], but got {value} instead.")
    return number


def _check_widths(widths: object) -> Tuple[int, ...]:
    if isinstance(widths, (str, bytes)) or not isinstance(widths, Sequence):
        raise TypeError(f"Expected widths as a sequence of ints, but got {type(widths).__name__} instead.")
    if len(widths) == 0:
        raise ValueError("Expected at least one width, but got an empty sequence instead.")
    for w in widths:
        if isinstance(w, bool) or not isinstance(w, numbers.Integral) or w < 1:
            raise ValueError(f"Expected every width to be an int >= 1, but got {widths!r} instead.")
    return tuple(int(w) for w in widths)


def _check_stem_width(stem_width: object) -> int:
    # A helper taking object: narrowing an int-annotated argument to numbers.Integral inline
    # leaves mypy unable to type the rest of the class.
    if isinstance(stem_width, bool) or not isinstance(stem_width, numbers.Integral) or stem_width < 1:
        raise ValueError(f"Expected stem_width to be an int >= 1, but got {stem_width!r} instead.")
    return int(stem_width)


def _check_stages(blocks_per_stage: Sequence[int], widths: object) -> Tuple[int, ...]:
    widths = _check_widths(widths)
    if len(blocks_per_stage) != len(widths):
        raise ValueError(
            f"Expected one block count per stage ({len(widths)}), but got {len(blocks_per_stage)} instead."
        )
    return widths


def _conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    # No bias: every conv here feeds a BatchNorm (or is summed into a path that does), whose shift
    # makes a conv bias redundant.
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False)


def _conv1x1(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False)


def _stages(
    block: Callable[[int, int, int], nn.Module],
    in_channels: int,
    widths: Sequence[int],
    blocks_per_stage: Sequence[int],
) -> Tuple[nn.Sequential, int]:
    """Stages of ``block(in, out, stride)``; the first block of every stage after the first halves
    the resolution. Returns the stages and their output channels."""
    stages = []
    for i, (width, n_blocks) in enumerate(zip(widths, blocks_per_stage)):
        blocks = []
        for j in range(n_blocks):
            blocks.append(block(in_channels, width, 2 if i > 0 and j == 0 else 1))
            in_channels = width
        stages.append(nn.Sequential(*blocks))
    return nn.Sequential(*stages), in_channels


def _init_weights(model: nn.Module) -> None:
    """He (Kaiming) normal convs, unit-scale zero-shift BatchNorm, zero linear bias.

    ``fan_out`` keeps the gradient variance constant through the ReLU stacks on the backward pass
    (He et al., 2015); the linear weights keep PyTorch's default uniform(+-1/sqrt(fan_in)) draw,
    which starts the logits small.
    """
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            if m.bias is not None:
                nn.init.zeros_(m.bias)


# --------------------------------------------------------------------------------------------
# CIFAR ResNet-18 (post-activation)
# --------------------------------------------------------------------------------------------


class BasicBlock(nn.Module):
    """Two 3x3 convs with BN, added to the input (a strided 1x1 conv + BN when the shape changes)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = _conv3x3(in_channels, out_channels, stride)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = _conv3x3(out_channels, out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        if stride != 1 or in_channels != out_channels:
            self.shortcut: nn.Module = nn.Sequential(
                _conv1x1(in_channels, out_channels, stride), nn.BatchNorm2d(out_channels)
            )
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


def _check_blocks(blocks_per_stage: object) -> Tuple[int, ...]:
    if isinstance(blocks_per_stage, (str, bytes)) or not isinstance(blocks_per_stage, Sequence):
        raise TypeError(
            f"Expected blocks_per_stage as a sequence of ints, but got {type(blocks_per_stage).__name__} instead."
        )
    for n in blocks_per_stage:
        if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
            raise ValueError(f"Expected every block count to be an int >= 1, but got {blocks_per_stage!r} instead.")
    return tuple(int(n) for n in blocks_per_stage)
