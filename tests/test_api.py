"""The public API's shape: exports, keyword-only constructors, and the ``Mixer`` base class for
users' own operators (written here only against the public API)."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import re
import types

import pytest
import torch
from torch import nn

import randsaliencymix
from randsaliencymix import (
    CutMix,
    GuidedMixup,
    Mixer,
    MixParams,
    MixUp,
    NoMix,
    RandomChoiceMix,
    RandSaliencyMix,
    SaliencyMix,
    apply_mix,
)

K = 5
OPERATORS = [MixUp, CutMix, SaliencyMix, RandSaliencyMix, GuidedMixup, NoMix]


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --------------------------------------------------------------------------------------------
# Exports
# --------------------------------------------------------------------------------------------


def test_package_all_lists_exactly_its_public_names():
    public = {
        name
        for name, value in vars(randsaliencymix).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert sorted(randsaliencymix.__all__) == sorted(public)
    assert len(set(randsaliencymix.__all__)) == len(randsaliencymix.__all__)
    for name in randsaliencymix.__all__:
        assert getattr(randsaliencymix, name) is not None


MODULES = [
    "params",
    "geometry",
    "base",
    "mixing",
    "randsaliency",
    "saliency",
    "cam",
    "pairing",
    "guided",
    "loss",
    "reference",
    "_checks",
    "_random",
]


@pytest.mark.parametrize("module", MODULES)
def test_module_all_is_defined_and_lists_every_public_definition(module):
    mod = importlib.import_module(f"randsaliencymix.{module}")
    for name in mod.__all__:
        assert hasattr(mod, name), name
    defined = {
        name
        for name, value in vars(mod).items()
        if not name.startswith("_")
        and (inspect.isfunction(value) or inspect.isclass(value))
        and value.__module__ == mod.__name__
    }
    assert defined <= set(mod.__all__), defined - set(mod.__all__)


def test_mixing_still_exports_every_name_it_had():
    from randsaliencymix.mixing import (  # noqa: F401
        SALIENCY_ON,
        CutMix,
        Mixer,
        MixParams,
        MixUp,
        NoMix,
        RandomChoiceMix,
        RandSaliencyMix,
        SaliencyMix,
        apply_mix,
        source_share,
        window_mass,
    )

    assert Mixer is randsaliencymix.Mixer


# --------------------------------------------------------------------------------------------
# Keyword-only constructors
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [*OPERATORS, Mixer], ids=lambda c: c.__name__)
def test_constructors_take_keywords_only(cls):
    params = [p for p in inspect.signature(cls.__init__).parameters.values() if p.name != "self"]
    assert params and all(p.kind is p.KEYWORD_ONLY for p in params), params
    if cls is not Mixer:
        with pytest.raises(TypeError):
            cls(1.0)


def test_random_choice_takes_its_operators_positionally_and_the_rest_by_keyword():
    params = list(inspect.signature(RandomChoiceMix.__init__).parameters.values())[1:]
    assert params[0].name == "ops" and params[0].kind is params[0].POSITIONAL_OR_KEYWORD
    assert all(p.kind is p.KEYWORD_ONLY for p in params[1:])
    with pytest.raises(TypeError):
        RandomChoiceMix([MixUp(), CutMix()], [0.5, 0.5])  # type: ignore[misc]


# --------------------------------------------------------------------------------------------
# A user's own operator, written only against the public API
# --------------------------------------------------------------------------------------------


class HalfMix(Mixer):
    """The left half of each source over the left half of its target, with probability p."""

    def draw_params(self, x, generator, perm, saliency, labels=None):
        n, (h, w), dev = x.shape[0], x.shape[-2:], x.device
        if perm is None:
            perm = torch.randperm(n, generator=generator, device=dev)
        applied = torch.rand(n, generator=generator, device=dev, dtype=torch.float64) < self.p
        box = torch.tensor([0, 0, h, w // 2], device=dev).expand(n, 4)
        box = torch.where(applied[:, None], box, torch.zeros_like(box))
        area = ((box[:, 2] - box[:, 0]) * (box[:, 3] - box[:, 1])).double() / (h * w)
        return dataclasses.replace(
            MixParams.identity(n, (h, w), dev),
            perm=perm,
            src_boxes=box,
            dst_boxes=box,
            applied=applied,
            source_weight=area,
        )


def test_draw_params_is_the_one_documented_typed_hook():
    names = list(inspect.signature(Mixer.draw_params).parameters)
    assert names == ["self", "x", "generator", "perm", "saliency", "labels"]
    assert "draw_params" in (Mixer.__doc__ or "")
    assert not hasattr(Mixer, "draw_params_with_labels")  # one hook, not two
    op = HalfMix(num_classes=K)
    assert op.uses_labels is False and op.observe(torch.randn(2, K), torch.arange(2)) is None
    # Every operator of the library implements the five-argument hook itself.
    import randsaliencymix as rsm

    for cls in (rsm.MixUp, rsm.CutMix, rsm.SaliencyMix, rsm.RandSaliencyMix, rsm.GuidedMixup, rsm.RandomChoiceMix):
        assert list(inspect.signature(cls.draw_params).parameters)[-1] == "labels", cls


def test_labels_reach_an_operator_that_uses_them():
    seen = []

    class LabelMix(HalfMix):
        @property
        def uses_labels(self):
            return True

        def draw_params(self, x, generator, perm, saliency, labels=None):
            seen.append(labels)
            return super().draw_params(x, generator, perm, saliency)

    x = torch.randn(4, 3, 8, 8, generator=gen(0))
    op = LabelMix(num_classes=K)
    op(x, torch.tensor([0, 1, 2, 3]), generator=gen(1))
    op.sample_params(x, torch.nn.functional.one_hot(torch.tensor([3, 2, 1, 0]), K).float(), generator=gen(1))
    op.sample_params(x, generator=gen(1))
    assert seen[0].tolist() == [0, 1, 2, 3] and seen[1].tolist() == [3, 2, 1, 0] and seen[2] is None
    # An operator that does not use labels never sees them (sample_params still takes y).
    plain = []

    class Plain(HalfMix):
        def draw_params(self, x, generator, perm, saliency, labels=None):
            plain.append(labels)
            return super().draw_params(x, generator, perm, saliency)

    Plain(num_classes=K)(x, torch.arange(4), generator=gen(2))
    assert plain == [None]


def test_a_hook_with_another_signature_is_refused_when_the_class_is_created():
    """draw_params is the one hook, called with five arguments: a four-argument draw_params, or
    one whose labels cannot be passed by position, is a TypeError at class creation."""
    expected = re.escape("Expected draw_params(self, x, generator, perm, saliency, labels=None), but got ")
    with pytest.raises(TypeError, match=expected + re.escape("Four.draw_params(self, x, generator, perm, saliency)")):

        class Four(Mixer):
            def draw_params(self, x, generator, perm, saliency):
                return HalfMix.draw_params(self, x, generator, perm, saliency)

    with pytest.raises(TypeError, match=expected + "KeywordLabels"):

        class KeywordLabels(Mixer):
            def draw_params(self, x, generator, perm, saliency, *, labels=None):
                return HalfMix.draw_params(self, x, generator, perm, saliency)

    # A hook that takes the five arguments in any spelling is accepted; so are subclasses that
    # inherit it, and a draw_params_with_labels method is nothing to the base class.
    class Starred(Mixer):
        def draw_params(self, *args):
            return HalfMix.draw_params(self, *args[:4])

    class Inherits(HalfMix):
        def draw_params_with_labels(self, x, generator, perm, saliency, labels):
            raise AssertionError("not a hook")

    x, y = torch.randn(4, 3, 8, 8, generator=gen(0)), torch.tensor([0, 1, 2, 3])
    today = HalfMix(num_classes=K)(x, y, generator=gen(1))
    for cls in (Starred, Inherits):
        assert all(torch.equal(a, b) for a, b in zip(cls(num_classes=K)(x, y, generator=gen(1)), today)), cls


def test_user_operator_works_with_forward_sample_params_and_apply():
    x = torch.randn(6, 3, 8, 10, generator=gen(0))
    y = torch.arange(6) % K
    op = HalfMix(num_classes=K, p=1.0, label_smoothing=0.1)
    params = op.sample_params(x, generator=gen(1))
    assert params.image_size == (8, 10) and bool(params.applied.all())
    xm, ym = op.apply_params(x, y, params)
    perm = params.perm
    assert torch.equal(xm[:, :, :, :5], x[perm][:, :, :, :5]) and torch.equal(xm[:, :, :, 5:], x[:, :, :, 5:])
    soft = torch.nn.functional.one_hot(y, K).float() * 0.9 + 0.1 / K
    torch.testing.assert_close(ym, 0.5 * soft + 0.5 * soft[perm])
    # forward = sample_params + apply, replayable, and apply_mix is the same pure function.
    xf, yf = op(x, y, generator=gen(1))
    assert torch.equal(xf, xm) and torch.equal(yf, ym)
    assert all(torch.equal(a, b) for a, b in zip(op(x, y, params=params), (xm, ym)))
    assert torch.equal(apply_mix(x, soft, params)[0], xm)
    # A given pairing is passed to the hook; p = 0 mixes nothing.
    fixed = torch.tensor([1, 2, 3, 4, 5, 0])
    assert torch.equal(op.sample_params(x, generator=gen(2), perm=fixed).perm, fixed)
    assert torch.equal(HalfMix(num_classes=K, p=0.0)(x, y, generator=gen(3))[0], x)
    # The boundary checks of the base class apply to it, and it composes with RandomChoiceMix.
    with pytest.raises(ValueError, match=re.escape("Expected a batch of shape (B, C, H, W)")):
        op(x[0], y)
    both = RandomChoiceMix([op, MixUp()], mode="sample", num_classes=K)
    xr, yr = both(x, y, generator=gen(4))
    assert xr.shape == x.shape and torch.allclose(yr.sum(1), torch.ones(6))


def test_hook_results_are_checked():
    x, y = torch.rand(4, 3, 8, 8), torch.arange(4)

    class Broken(Mixer):
        def draw_params(self, x, generator, perm, saliency, labels=None):
            return {"perm": torch.arange(4)}

    class WrongSize(Mixer):
        def draw_params(self, x, generator, perm, saliency, labels=None):
            return MixParams.identity(x.shape[0], (4, 4), x.device)

    with pytest.raises(TypeError, match=re.escape("Expected draw_params to return MixParams, but got dict instead.")):
        Broken(num_classes=K)(x, y)
    with pytest.raises(ValueError, match=re.escape("Expected params for 8x8 images, but got params sampled for 4x4")):
        WrongSize(num_classes=K).sample_params(x)
    with pytest.raises(NotImplementedError, match="must implement draw_params"):
        Mixer(num_classes=K)(x, y)


def test_module_apply_with_a_function_still_walks_the_model():
    """``apply`` is nn.Module.apply (the pure mix is ``apply_params``), so a model holding an
    operator can still be initialised with ``model.apply(init_fn)``."""
    seen = []
    model = nn.Sequential(nn.Linear(2, 2), RandomChoiceMix([MixUp(), CutMix()]))
    assert model.apply(lambda m: seen.append(type(m).__name__)) is model
    assert seen.count("MixUp") == 1 and seen.count("CutMix") == 1 and "RandomChoiceMix" in seen
