"""Networks for photographs: the ``fast_resnet`` CPU preset for 96-160 px and the ImageNet ResNet-18,
both ending in global average pooling and one linear layer (the head CAM needs)."""

from __future__ import annotations

from typing import Sequence, Tuple

import torch
from torch import nn

from .layers import (
    BasicBlock,
    _check_blocks,
    _check_num_classes,
    _check_stages,
    _check_stem_width,
    _conv3x3,
    _init_weights,
    _stages,
)

# --------------------------------------------------------------------------------------------
# Photographs: a CPU preset for 96-160 px and the ImageNet ResNet-18
# --------------------------------------------------------------------------------------------


class _PooledResNet(nn.Module):
    """A stem, residual stages of :class:`BasicBlock`, global average pooling and one linear layer.

    ``features(x)`` is the last stage's map ``(B, C, h, w)``; the logits are ``fc`` of its spatial
    mean, so ``fc.weight[k]`` applied to ``features(x)`` is the class activation map of class ``k``.
    """

    stem: nn.Module

    def _build_body(self, widths: Tuple[int, ...], blocks_per_stage: Sequence[int], num_classes: int) -> None:
        self.stages, in_channels = _stages(BasicBlock, widths[0], widths, blocks_per_stage)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_channels, num_classes)
        _init_weights(self)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


class FastResNet(_PooledResNet):
    """A residual network for photographs of 96-160 px on a CPU.

    The stem, conv3x3/2-BN-ReLU to ``stem_width`` then conv3x3/2-BN-ReLU to ``widths[0]``,
    downsamples by 4, so the first stage of a 128-px image runs at 32x32, as a CIFAR network's
    does. Then one stage of :class:`BasicBlock` per width (``blocks_per_stage`` blocks each; every
    stage after the first halves the resolution), global average pooling and a linear layer. Two
    3x3 convs see a 7x7 window of the image, like ResNet's 7x7 stem, for about a quarter of its
    cost at these widths.
    """

    def __init__(
        self,
        num_classes: int = 10,
        widths: Sequence[int] = (32, 64, 128, 256),
        blocks_per_stage: Sequence[int] = (1, 1, 1, 1),
        stem_width: int = 24,
    ) -> None:
        super().__init__()
        num_classes = _check_num_classes(num_classes)
        blocks = _check_blocks(blocks_per_stage)
        widths = _check_stages(blocks, widths)
        stem_width = _check_stem_width(stem_width)
        self.stem = nn.Sequential(
            _conv3x3(3, stem_width, 2),
            nn.BatchNorm2d(stem_width),
            nn.ReLU(inplace=True),
            _conv3x3(stem_width, widths[0], 2),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
        )
        self._build_body(widths, blocks, num_classes)


def fast_resnet(
    num_classes: int = 10,
    widths: Sequence[int] = (32, 64, 128, 256),
    blocks_per_stage: Sequence[int] = (1, 1, 1, 1),
    stem_width: int = 24,
) -> FastResNet:
    """The CPU preset for 96-160-px photographs (see :class:`FastResNet`): 1,235,714 parameters
    for 10 classes, 73M multiply-adds per 128x128 image (fast_cnn: 20M per 32x32 image). Convert it and its inputs to
    channels_last on a CPU, as :class:`FastCNN`."""
    return FastResNet(num_classes, widths=widths, blocks_per_stage=blocks_per_stage, stem_width=stem_width)


class ImageNetResNet(_PooledResNet):
    """ResNet with the ImageNet stem (He et al., 2016): conv7x7/2-BN-ReLU, max-pool 3x3/2, then
    stages of :class:`BasicBlock` at strides 1/2/2/2, global average pooling, a linear layer. The
    layers and their order are torchvision's ``resnet18``; the initialisation is this module's."""

    def __init__(
        self,
        blocks_per_stage: Sequence[int] = (2, 2, 2, 2),
        num_classes: int = 10,
        widths: Sequence[int] = (64, 128, 256, 512),
    ) -> None:
        super().__init__()
        num_classes = _check_num_classes(num_classes)
        blocks = _check_blocks(blocks_per_stage)
        widths = _check_stages(blocks, widths)
        self.stem = nn.Sequential(
            nn.Conv2d(3, widths[0], kernel_size=7, stride=2, padding=3, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
        )
        self._build_body(widths, blocks, num_classes)


def resnet18_imagenet(num_classes: int = 10) -> ImageNetResNet:
    """The ImageNet ResNet-18: 11,181,642 parameters for 10 classes (11,689,512 for 1000, as
    torchvision's). Meant for GPUs; on 2 CPU cores it trains at a fraction of ``fast_resnet``'s speed."""
    return ImageNetResNet((2, 2, 2, 2), num_classes)
