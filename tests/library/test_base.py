"""The ``Mixer`` base class every operator shares (``base.py``): keyword-only constructors, the
``draw_params`` hook for users' own operators (written here only against the public API), what an
operator shows and offers as an nn.Module (its repr names every constructor argument; ``apply`` is
nn.Module's, the pure mix is ``apply_params``), a call that takes nothing by position after the
labels, and operators that never read a tensor's values on the host."""

from __future__ import annotations

import dataclasses
import inspect
import re
from typing import Any, Callable, Dict, List, Type

import pytest
import torch
from torch import nn

import randsaliencymix
from conftest import drop_in_mixup, gen, labels, no_host_reads, small_images
from randsaliencymix import (
    SALIENCY_ON,
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
from randsaliencymix.integrations.timm import Mixup

K = 5
OPERATORS = [MixUp, CutMix, SaliencyMix, RandSaliencyMix, GuidedMixup, NoMix]


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


# --------------------------------------------------------------------------------------------
# Every operator as an nn.Module: its repr and apply
# --------------------------------------------------------------------------------------------

K4 = 4

# The arguments an operator cannot be built without.
REQUIRED: Dict[str, Dict[str, Any]] = {
    "RandomChoiceMix": {"ops": [CutMix(num_classes=K4), MixUp(num_classes=K4)]},
    "Mixup": {"num_classes": K4},
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
    x, y = torch.rand(4, 3, 8, 8), torch.arange(4) % K4
    op.num_classes = K4
    params = op.sample_params(x, y, generator=torch.Generator().manual_seed(0))
    mixed, targets = op.apply_params(x, y, params)
    want_x, _ = apply_mix(x, torch.nn.functional.one_hot(y, K4).float(), params)
    assert torch.equal(mixed, want_x) and targets.shape == (4, K4)


def test_module_apply_walks_a_composite_operator() -> None:
    op = RandomChoiceMix([CutMix(num_classes=K4), MixUp(num_classes=K4)], num_classes=K4)
    names: List[str] = []
    op.apply(lambda m: names.append(type(m).__name__))
    assert names == ["CutMix", "MixUp", "ModuleList", "RandomChoiceMix"]


# --------------------------------------------------------------------------------------------
# A generator passed by position (issue 28)
# --------------------------------------------------------------------------------------------

OPS: Dict[str, Callable[[], Any]] = {
    "MixUp": lambda: MixUp(num_classes=K),
    "CutMix": lambda: CutMix(num_classes=K, mode="sample"),
    "RandSaliencyMix": lambda: RandSaliencyMix(num_classes=K, **SALIENCY_ON),
    "timm Mixup": lambda: drop_in_mixup(mixup_alpha=1.0),
}

GENERATOR_AS_Y = (
    r"^Expected y as labels \(a tensor\) or None, but got a torch.Generator instead \(pass it as generator=g\)\.$"
)
GENERATOR_AS_PARAMS = r"^Expected params of type MixParams, but got a torch.Generator instead \(pass it as generator=g"


@pytest.mark.parametrize("op_name", list(OPS))
def test_sample_params_refuses_a_generator_passed_as_y_and_draws_nothing(op_name: str) -> None:
    op = OPS[op_name]()
    state = torch.get_rng_state()
    with pytest.raises(TypeError, match=GENERATOR_AS_Y):
        op.sample_params(small_images(), gen(0))
    assert torch.equal(torch.get_rng_state(), state)  # the global generator was not drawn from


@pytest.mark.parametrize("op_name", list(OPS))
def test_a_call_takes_nothing_by_position_after_the_labels(op_name: str) -> None:
    """``op(x, y, g)`` cannot mean anything: every argument after ``(x, y)`` is keyword-only."""
    op = OPS[op_name]()
    state = torch.get_rng_state()
    with pytest.raises(TypeError, match="positional argument"):
        op(small_images(), labels(), gen(0))
    with pytest.raises(TypeError, match="positional argument"):
        op.sample_params(small_images(), labels(), gen(0))
    assert torch.equal(torch.get_rng_state(), state)


@pytest.mark.parametrize("op_name", list(OPS))
def test_apply_refuses_a_generator_passed_as_params(op_name: str) -> None:
    with pytest.raises(TypeError, match=GENERATOR_AS_PARAMS):
        OPS[op_name]().apply_params(small_images(), labels(), gen(0))


def test_sample_params_refuses_labels_that_are_not_a_tensor() -> None:
    with pytest.raises(TypeError, match=r"^Expected y as labels \(a tensor\) or None, but got list instead\.$"):
        MixUp(num_classes=K).sample_params(small_images(), [0, 1, 2, 3, 4, 0])  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# No host reads: the operators never read a tensor's values on the host (an accelerator's synchronisation)
# with validate=False (value checks are the documented exception)
# --------------------------------------------------------------------------------------------


def test_the_tripwire_fires():
    with no_host_reads(), pytest.raises(AssertionError, match=r"Tensor\.item"):
        torch.ones(1).item()
    assert torch.ones(1).item() == 1.0


HOST_READ_OPS = {
    "guided-complementary": lambda: GuidedMixup(num_classes=K, p=0.7, validate=False),
    "guided-random": lambda: GuidedMixup(num_classes=K, pairing="random", validate=False),
    "rsm-noise-complementary": lambda: RandSaliencyMix(
        num_classes=K, patch_noise=0.4, pairing="complementary", tau_src=1.0, gamma=0.5, validate=False
    ),
    "rsm-confusion": lambda: RandSaliencyMix(num_classes=K, pairing="confusion", validate=False),
    "rsm-confusion-sequential": lambda: RandSaliencyMix(
        num_classes=K, pairing="confusion", confusion_update="sequential", validate=False
    ),
    "choice": lambda: RandomChoiceMix(
        [
            GuidedMixup(p=1.0, pairing="random", validate=False),
            CutMix(mode="sample", validate=False),
            RandSaliencyMix(patch_noise=0.1, validate=False),
        ],
        mode="sample",
        num_classes=K,
        validate=False,
    ),
}


@pytest.mark.parametrize("name", list(HOST_READ_OPS))
@pytest.mark.parametrize("given_maps", [False, True], ids=["detector", "maps"])
def test_operators_do_not_read_values_on_the_host(name, given_maps):
    op = HOST_READ_OPS[name]()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 3, 16, 16, generator=g)
    y = torch.randint(0, K, (6,), generator=g)
    maps = torch.rand(6, 16, 16, generator=g) if given_maps else None
    logits = torch.randn(6, K, generator=g)
    op(x, y, generator=g, saliency=maps)  # warm caches (kernel weights, reflect indices)
    with no_host_reads():
        params = op.sample_params(x, y, generator=g, saliency=maps)
        op.apply_params(x, y, params)
        op(x, y, generator=g, saliency=maps)
        op.observe(logits, y)
