"""What every operator shows and offers as an nn.Module (issue 26): its repr names every
constructor argument, and ``apply`` is nn.Module's (the pure mix is ``apply_params``)."""

from __future__ import annotations

import inspect
from typing import Any, Dict, List, Type

import pytest
import torch
from torch import nn

import randsaliencymix
from randsaliencymix import CutMix, Mixer, MixUp, RandomChoiceMix, SaliencyMix, apply_mix
from randsaliencymix.integrations.timm import Mixup
from rsmix.methods import build_mixer

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


@pytest.mark.parametrize("cls", operator_classes(), ids=lambda c: c.__name__)
def test_apply_is_module_apply_and_apply_params_mixes(cls: Type[Mixer]) -> None:
    assert cls.apply is nn.Module.apply  # no override, no overload: op.apply(fn) walks modules
    op = cls(**REQUIRED.get(cls.__name__, {}))
    seen: List[nn.Module] = []
    assert op.apply(seen.append) is op
    # every module once, the operator itself last (children first), as nn.Module.apply walks them
    assert seen[-1] is op and sorted(map(id, seen)) == sorted(map(id, op.modules()))
    x, y = torch.rand(4, 3, 8, 8), torch.arange(4) % K
    op.num_classes = K
    params = op.sample_params(x, y, generator=torch.Generator().manual_seed(0))
    mixed, targets = op.apply_params(x, y, params)
    want_x, _ = apply_mix(x, torch.nn.functional.one_hot(y, K).float(), params)
    assert torch.equal(mixed, want_x) and targets.shape == (4, K)


def test_module_apply_walks_a_composite_operator() -> None:
    op = RandomChoiceMix([CutMix(num_classes=K), MixUp(num_classes=K)], num_classes=K)
    names: List[str] = []
    op.apply(lambda m: names.append(type(m).__name__))
    assert names == ["CutMix", "MixUp", "ModuleList", "RandomChoiceMix"]


def test_saliencymix_defaults_to_the_per_sample_method_and_the_cli_keeps_the_official_one() -> None:
    op = SaliencyMix()
    assert op.variant == "per_sample" and op.uses_saliency
    official = build_mixer("saliencymix", K, {})
    assert isinstance(official, SaliencyMix) and official.variant == "official"
    per_sample = build_mixer("saliencymix_per_sample", K, {})
    assert isinstance(per_sample, SaliencyMix) and per_sample.variant == "per_sample"
