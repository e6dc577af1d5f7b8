"""What every operator shows and offers as an nn.Module (issue 26): its repr names every
constructor argument."""

from __future__ import annotations

import inspect
from typing import Any, Dict, List, Type

import pytest

import randsaliencymix
from randsaliencymix import CutMix, Mixer, MixUp
from randsaliencymix.integrations.timm import Mixup

K = 4

# The arguments an operator cannot be built without.
REQUIRED: Dict[str, Dict[str, Any]] = {
    "RandomChoiceMix": {"ops": [CutMix(num_classes=K), MixUp(num_classes=K)]},
    "Mixup": {"num_classes": K},
}


def operator_classes() -> List[Type[Mixer]]:
    public = [getattr(randsaliencymix, name) for name in randsaliencymix.__all__]
    return [c for c in public if inspect.isclass(c) and issubclass(c, Mixer) and c is not Mixer] + [Mixup]


def test_every_operator_class_is_listed() -> None:
    names = {c.__name__ for c in operator_classes()}
    assert {"NoMix", "MixUp", "CutMix", "SaliencyMix", "RandSaliencyMix", "GuidedMixup", "RandomChoiceMix"} <= names


@pytest.mark.parametrize("cls", operator_classes(), ids=lambda c: c.__name__)
def test_repr_shows_every_constructor_argument(cls: Type[Mixer]) -> None:
    op = cls(**REQUIRED.get(cls.__name__, {}))
    text = repr(op)
    assert text.startswith(f"{cls.__name__}(")
    for name in inspect.signature(cls.__init__).parameters:
        if name != "self":
            assert f"{name}=" in text or f"({name}):" in text, (name, text)


def test_repr_shows_the_values_given() -> None:
    text = repr(CutMix(alpha=0.5, p=0.25, mode="sample", num_classes=10, label_smoothing=0.1))
    assert text == "CutMix(alpha=0.5, mode='sample', num_classes=10, p=0.25, label_smoothing=0.1, validate=None)"
