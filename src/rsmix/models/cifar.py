"""Networks for 32-px images: the SaliencyMix paper's CIFAR ResNet-18, PreAct ResNet-18, Wide ResNet
and the ``fast_cnn`` CPU preset."""

from __future__ import annotations

import numbers
from typing import Sequence

import torch
from torch import nn

from .layers import (
    BasicBlock,
    _check_num_classes,
    _check_positive,
    _check_probability,
    _check_stages,
    _check_stem_width,
    _check_widths,
    _conv1x1,
    _conv3x3,
    _init_weights,
    _stages,
)


class CifarResNet(nn.Module):
    """ResNet for small images: a stride-1 3x3 stem (no max-pool) keeps 32x32 inputs at full
    resolution into the first stage, unlike the ImageNet ResNet's 7x7/2 stem and pool."""

    def __init__(
        self,
        blocks_per_stage: Sequence[int] = (2, 2, 2, 2),
        num_classes: int = 10,
        widths: Sequence[int] = (64, 128, 256, 512),
    ) -> None:
        super().__init__()
        num_classes = _check_num_classes(num_classes)
        widths = _check_stages(blocks_per_stage, widths)
        self.stem = nn.Sequential(_conv3x3(3, widths[0]), nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True))
        self.stages, in_channels = _stages(BasicBlock, widths[0], widths, blocks_per_stage)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_channels, num_classes)
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(x))
        return self.fc(torch.flatten(self.pool(x), 1))


def cifar_resnet18(num_classes: int = 10) -> CifarResNet:
    """CIFAR ResNet-18: 64-channel stride-1 stem, 2+2+2+2 basic blocks at 64/128/256/512 channels
    with strides 1/2/2/2, global average pool, linear. 11,173,962 parameters for 10 classes."""
    return CifarResNet((2, 2, 2, 2), num_classes)


# --------------------------------------------------------------------------------------------
# Pre-activation ResNet-18
# --------------------------------------------------------------------------------------------


class PreActBlock(nn.Module):
    """BN-ReLU-conv twice; the identity path carries the raw input, so nothing but additions
    separates a block's output from any later block (He et al., 2016, "full pre-activation")."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, dropout: float = 0.0) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = _conv3x3(in_channels, out_channels, stride)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.dropout = nn.Dropout(p=dropout) if dropout > 0 else nn.Identity()
        self.conv2 = _conv3x3(out_channels, out_channels)
        self.relu = nn.ReLU(inplace=False)
        # A projection shortcut reads the pre-activated input, as in the paper's projection blocks:
        # the BN-ReLU is computed once and shared by both paths.
        self.shortcut = (
            _conv1x1(in_channels, out_channels, stride) if stride != 1 or in_channels != out_channels else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.relu(self.bn1(x))
        identity = x if self.shortcut is None else self.shortcut(pre)
        out = self.conv1(pre)
        out = self.conv2(self.dropout(self.relu(self.bn2(out))))
        return out + identity


class PreActResNet(nn.Module):
    """Pre-activation ResNet in the CIFAR layout. Because blocks end in an addition, a final
    BN-ReLU normalises and rectifies the last block's sum before pooling, as in the paper."""

    def __init__(
        self,
        blocks_per_stage: Sequence[int] = (2, 2, 2, 2),
        num_classes: int = 10,
        widths: Sequence[int] = (64, 128, 256, 512),
    ) -> None:
        super().__init__()
        num_classes = _check_num_classes(num_classes)
        widths = _check_stages(blocks_per_stage, widths)
        # The stem is a bare conv: the first block's BN-ReLU activates it.
        self.stem = _conv3x3(3, widths[0])
        self.stages, in_channels = _stages(PreActBlock, widths[0], widths, blocks_per_stage)
        self.final_bn = nn.BatchNorm2d(in_channels)
        self.relu = nn.ReLU(inplace=True)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_channels, num_classes)
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.final_bn(self.stages(self.stem(x))))
        return self.fc(torch.flatten(self.pool(x), 1))


def preact_resnet18(num_classes: int = 10) -> PreActResNet:
    """Pre-activation ResNet-18 in the CIFAR layout of :func:`cifar_resnet18`."""
    return PreActResNet((2, 2, 2, 2), num_classes)


# --------------------------------------------------------------------------------------------
# Wide ResNet
# --------------------------------------------------------------------------------------------


class WideBasicBlock(PreActBlock):
    """Pre-activation B(3,3) block with dropout between the two convs (Zagoruyko & Komodakis,
    2016): dropout there regularises the wide block without touching the identity path."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, dropout: float) -> None:
        super().__init__(in_channels, out_channels, stride, dropout)


class WideResNet(nn.Module):
    """WRN-depth-k: a 16-channel stem conv, three groups of ``(depth - 4) / 6`` wide blocks at
    16k/32k/64k channels with strides 1/2/2, a final BN-ReLU, global average pool, linear."""

    def __init__(self, depth: int = 28, widen_factor: int = 10, num_classes: int = 10, dropout: float = 0.3) -> None:
        super().__init__()
        num_classes = _check_num_classes(num_classes)
        for name, value in (("depth", depth), ("widen_factor", widen_factor)):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise TypeError(f"Expected {name} to be an int, but got {type(value).__name__} instead.")
        # The paper counts depth as the 6n convs of the three groups' blocks plus 4 more layers.
        if depth < 10 or (depth - 4) % 6 != 0:
            raise ValueError(f"Expected depth = 6n + 4 with n >= 1 (10, 16, 22, 28, ...), but got {depth} instead.")
        if widen_factor < 1:
            raise ValueError(f"Expected widen_factor >= 1, but got {widen_factor} instead.")
        dropout = _check_probability("dropout", dropout)
        blocks_per_group = (depth - 4) // 6
        widths = (16 * widen_factor, 32 * widen_factor, 64 * widen_factor)
        self.stem = _conv3x3(3, 16)
        self.groups, in_channels = _stages(
            lambda cin, cout, stride: WideBasicBlock(cin, cout, stride, dropout),
            16,
            widths,
            [blocks_per_group] * len(widths),
        )
        self.final_bn = nn.BatchNorm2d(in_channels)
        self.relu = nn.ReLU(inplace=True)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_channels, num_classes)
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.final_bn(self.groups(self.stem(x))))
        return self.fc(torch.flatten(self.pool(x), 1))


def wide_resnet(depth: int, widen_factor: int, num_classes: int = 10, dropout: float = 0.0) -> WideResNet:
    """Wide ResNet WRN-``depth``-``widen_factor``."""
    return WideResNet(depth, widen_factor, num_classes, dropout)


def wrn_28_10(num_classes: int = 10, dropout: float = 0.3) -> WideResNet:
    """WRN-28-10 with widths 160/320/640 and dropout 0.3 as in the paper's CIFAR runs;
    36,479,194 parameters for 10 classes."""
    return WideResNet(28, 10, num_classes, dropout)


# --------------------------------------------------------------------------------------------
# CPU preset
# --------------------------------------------------------------------------------------------


class ConvPoolBlock(nn.Module):
    """conv3x3 -> 2x2 max-pool -> BN -> ReLU, then optionally ``x + ReLU(BN(conv3x3(x)))``.

    Pooling straight after the conv lets the BN and ReLU run on a quarter of the pixels, which on a
    CPU, where those element-wise passes cost about as much as the conv, is most of the saving.
    """

    def __init__(self, in_channels: int, out_channels: int, residual: bool) -> None:
        super().__init__()
        self.conv = _conv3x3(in_channels, out_channels)
        self.pool = nn.MaxPool2d(2)
        self.bn = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.residual = (
            nn.Sequential(_conv3x3(out_channels, out_channels), nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))
            if residual
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn(self.pool(self.conv(x))))
        if self.residual is not None:
            x = x + self.residual(x)
        return x


class FastCNN(nn.Module):
    """A small airbench-style classifier: a 2x2 patch stem, one conv-pool-BN-ReLU block per width
    (each halving the resolution, optionally followed by a residual conv), global max pool, and a
    bias-free linear head whose output is multiplied by ``logit_scale``.

    Every conv feeds a BatchNorm, so the body is invariant to its weights' scale and tolerates a
    large learning rate; the head is not. Multiplying the logits by ``logit_scale`` shrinks the
    head's effective step by ``logit_scale**2``, so one learning rate suits both.

    On CPU, convert the model and its inputs to ``torch.channels_last``: oneDNN's NHWC kernels ran
    a training step 1.3-1.6x faster than the contiguous (NCHW) layout.
    """

    def __init__(
        self,
        num_classes: int = 10,
        widths: Sequence[int] = (32, 64, 128),
        stem_width: int = 24,
        residual: bool = True,
        logit_scale: float = 0.125,
    ) -> None:
        super().__init__()
        num_classes = _check_num_classes(num_classes)
        widths = _check_widths(widths)
        stem_width = _check_stem_width(stem_width)
        self.logit_scale = _check_positive("logit_scale", logit_scale)
        # A 2x2 unpadded stem sees every pixel at a quarter of a 3x3 conv's cost, and its 31x31
        # output halves cleanly to 15, 7, 3 (no padded borders for the pools to pick up).
        self.stem = nn.Sequential(
            nn.Conv2d(3, stem_width, kernel_size=2, bias=False), nn.BatchNorm2d(stem_width), nn.ReLU(inplace=True)
        )
        blocks = []
        in_channels = stem_width
        for width in widths:
            blocks.append(ConvPoolBlock(in_channels, width, residual))
            in_channels = width
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.fc = nn.Linear(in_channels, num_classes, bias=False)
        # Smallest side that still leaves one pixel after the stem and every 2x2 pool.
        self.min_size = 2 ** len(widths) + 1
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2] < self.min_size or x.shape[-1] < self.min_size:
            raise ValueError(
                f"Expected images of at least {self.min_size}x{self.min_size} pixels, "
                f"but got {x.shape[-2]}x{x.shape[-1]} instead."
            )
        x = self.blocks(self.stem(x))
        return self.fc(torch.flatten(self.pool(x), 1)) * self.logit_scale


def fast_cnn(
    num_classes: int = 10,
    widths: Sequence[int] = (32, 64, 128),
    stem_width: int = 24,
    residual: bool = True,
    logit_scale: float = 0.125,
) -> FastCNN:
    """The CPU preset (see :class:`FastCNN`): 0.30M parameters and 20M multiply-adds per
    32x32 image. The residual convs cost about a quarter more time per step than the plain
    network and gave about 5 points more CIFAR-10 accuracy after 3 epochs."""
    return FastCNN(num_classes, widths=widths, stem_width=stem_width, residual=residual, logit_scale=logit_scale)
