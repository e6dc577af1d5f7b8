"""Image classifiers for the training harness: the SaliencyMix paper's CIFAR networks, CPU presets
for 32-px and for 96-160-px images, and the ImageNet ResNet-18.

* ``resnet18`` - the CIFAR ResNet-18 of the SaliencyMix CIFAR experiments (3x3 stem, no max-pool,
  four stages of two basic blocks, 64/128/256/512 channels), about 11.2M parameters.
* ``preact_resnet18`` - the same layout with pre-activation blocks (He et al., 2016, "Identity
  Mappings in Deep Residual Networks").
* ``wrn28_10`` - Wide ResNet 28-10 (Zagoruyko & Komodakis, 2016), about 36.5M parameters.
* ``fast_cnn`` - a small conv-pool-BN-ReLU network (0.3M parameters) for studies whose budget is
  a few minutes of CPU: on 2 cores it trains at about 1,200 images/s (channels_last) and reaches
  about 84% CIFAR-10 accuracy in 6 epochs, where ``resnet18`` trains at about 60 images/s.

* ``fast_resnet`` - the CPU preset for photographs at 96-160 px (Imagenette at 128 px): a stem of
  two stride-2 3x3 convs (the image downsampled by 4), four stages of one basic block at
  32/64/128/256 channels, 1.24M parameters. Its 128-px image costs about 4x ``fast_cnn``'s 32-px
  image (``benchmarks/train_step.py``), so an Imagenette epoch (8.5k images) takes less time
  than a CIFAR-10 epoch (45k images) of ``fast_cnn``.
* ``resnet18_imagenet`` - the standard ImageNet ResNet-18 (He et al., 2016; torchvision's layout):
  7x7 stride-2 stem, 3x3 stride-2 max-pool, four stages of two basic blocks at 64/128/256/512
  channels, 11.2M parameters for 10 classes. For GPUs.

Every network maps ``(B, 3, H, W)`` float images to ``(B, num_classes)`` logits and ends in adaptive
pooling, so it accepts sizes other than 32x32. ``fast_resnet`` and ``resnet18_imagenet`` end in
global average pooling and one linear layer, ``fc``, and expose the last feature map as
``features(x)``: the class activation map of class ``k`` is ``fc.weight[k]`` applied to it.
"""

from __future__ import annotations

import numbers
from typing import Callable, Dict, Sequence, Tuple

import torch
from torch import nn

from ._checks import check_num_classes, check_positive, check_probability

__all__ = [
    "MODEL_NAMES",
    "CifarResNet",
    "FastCNN",
    "FastResNet",
    "ImageNetResNet",
    "PreActResNet",
    "WideResNet",
    "build_model",
    "cifar_resnet18",
    "fast_cnn",
    "fast_resnet",
    "preact_resnet18",
    "resnet18_imagenet",
    "wide_resnet",
    "wrn_28_10",
]


def _check_num_classes(num_classes: object) -> int:
    # A model needs a class count: the mixing operators' None ("labels are probabilities") is an error.
    checked = check_num_classes(num_classes)
    if checked is None:
        raise TypeError("Expected num_classes to be an int, but got NoneType instead.")
    return checked


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
        dropout = check_probability("dropout", dropout)
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
        self.logit_scale = check_positive("logit_scale", logit_scale)
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


def _check_blocks(blocks_per_stage: object) -> Tuple[int, ...]:
    if isinstance(blocks_per_stage, (str, bytes)) or not isinstance(blocks_per_stage, Sequence):
        raise TypeError(
            f"Expected blocks_per_stage as a sequence of ints, but got {type(blocks_per_stage).__name__} instead."
        )
    for n in blocks_per_stage:
        if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
            raise ValueError(f"Expected every block count to be an int >= 1, but got {blocks_per_stage!r} instead.")
    return tuple(int(n) for n in blocks_per_stage)


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


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------

_BUILDERS: Dict[str, Callable[..., nn.Module]] = {
    "resnet18": cifar_resnet18,
    "preact_resnet18": preact_resnet18,
    "wrn28_10": wrn_28_10,
    "fast_cnn": fast_cnn,
    "fast_resnet": fast_resnet,
    "resnet18_imagenet": resnet18_imagenet,
}

MODEL_NAMES: Tuple[str, ...] = tuple(_BUILDERS)


def build_model(name: str, num_classes: int, **kw: object) -> nn.Module:
    """Build a registered network by name; ``kw`` goes to its builder (e.g. ``dropout`` for
    ``wrn28_10``, ``widths`` for ``fast_cnn`` and ``fast_resnet``)."""
    if not isinstance(name, str):
        raise TypeError(f"Expected the model name as a str, but got {type(name).__name__} instead.")
    if name not in _BUILDERS:
        raise ValueError(f"Expected a model name in {', '.join(map(repr, MODEL_NAMES))}, but got {name!r} instead.")
    return _BUILDERS[name](num_classes, **kw)
