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

from typing import Callable, Dict, Tuple

import torch
from torch import nn

from ..errors import UsageError
from .cifar import (
    CifarResNet,
    FastCNN,
    PreActResNet,
    WideResNet,
    cifar_resnet18,
    fast_cnn,
    preact_resnet18,
    wide_resnet,
    wrn_28_10,
)
from .photo import FastResNet, ImageNetResNet, fast_resnet, resnet18_imagenet

__all__ = [
    "MODEL_NAMES",
    "CifarResNet",
    "FastCNN",
    "FastResNet",
    "ImageNetResNet",
    "PreActResNet",
    "WideResNet",
    "build_model",
    "check_model_takes",
    "cifar_resnet18",
    "fast_cnn",
    "fast_resnet",
    "preact_resnet18",
    "resnet18_imagenet",
    "wide_resnet",
    "wrn_28_10",
]

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


def check_model_takes(name: str, size: int, channels: int = 3) -> None:
    """A UsageError unless model ``name`` runs on ``size`` x ``size`` images, naming the smallest
    size that does: no-grad forwards of one image in evaluation mode (milliseconds). Only small
    sizes are probed (up to 256 px): a model that takes those takes any larger one, memory aside."""
    if size > 256:
        return
    model = build_model(name, 10).eval()

    def runs(side: int) -> bool:
        try:
            with torch.no_grad():
                model(torch.zeros(1, channels, side, side))
        except (RuntimeError, ValueError):
            return False
        return True

    if runs(size):
        return
    smallest = next((side for side in range(size + 1, 257) if runs(side)), None)
    needs = f"at least {smallest}x{smallest}" if smallest else "larger images"
    raise UsageError(f"model {name!r} cannot take {size}x{size} images (it needs {needs}): raise --image-size")
