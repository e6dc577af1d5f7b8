"""Params (``params.py``, :class:`MixParams`) that cannot lie (issue 26): however a params is built (an
operator's ``sample_params``, :meth:`MixParams.create`, ``dataclasses.replace`` of
:meth:`MixParams.identity`, or by hand with flags true to its values), :func:`apply_mix` gives what a
flag-free reference gives: per pixel ``(1 - s) * x + s * src`` with ``s`` from :func:`source_share` and
``src`` the source shifted so that its box lands on the destination box (plus the patch noise inside
the box), and targets ``(1 - w) * y + w * y[perm]``. Hand-built params whose values or flags no
operator draws are refused (issue 28), and so are params drawn for another image size."""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Callable, Dict, List, Optional, Tuple

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import randsaliencymix as rsm
from conftest import OPS5, SMALL_H, SMALL_W, drop_in_mixup, gen, images, labels, small_images
from randsaliencymix import (
    SALIENCY_ON,
    CutMix,
    GuidedMixup,
    MixParams,
    MixUp,
    NoMix,
    RandomChoiceMix,
    RandSaliencyMix,
    SaliencyMix,
    apply_mix,
    source_share,
)
from randsaliencymix.integrations.timm import Mixup
from randsaliencymix.params import patch_mask

K = 5
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
OP_SETTINGS = settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --------------------------------------------------------------------------------------------
# The flag-free reference
# --------------------------------------------------------------------------------------------


def reference(x: torch.Tensor, y: torch.Tensor, params: MixParams) -> Tuple[torch.Tensor, torch.Tensor]:
    """``apply_mix`` from its definition, in float64, reading no static flag."""
    _, c, h, w = x.shape
    share = source_share(params, h, w, torch.float64)
    patch = params.applied & ~params.mixup
    shift = params.src_boxes[:, :2] - params.dst_boxes[:, :2]
    shift = torch.where(patch[:, None], shift, torch.zeros_like(shift))
    rows = (torch.arange(h) + shift[:, 0:1]).clamp(0, h - 1)
    cols = (torch.arange(w) + shift[:, 1:2]).clamp(0, w - 1)
    src = x[
        params.perm[:, None, None, None],
        torch.arange(c)[None, :, None, None],
        rows[:, None, :, None],
        cols[:, None, None, :],
    ].double()
    if params.noise is not None:
        src = torch.where(patch_mask(params, h, w), src + params.noise.double(), src)
        if x.dtype == torch.uint8:
            src = src.round().clamp(0, 255)
    out = (1 - share) * x.double() + share * src
    if x.dtype == torch.uint8:
        out = out.round().clamp(0, 255)
    weight = params.source_weight.double()[:, None]
    targets = (1 - weight) * y.double() + weight * y.double()[params.perm]
    return out, targets


def hard(params: MixParams) -> bool:
    """Every applied share is 0 or 1 and nothing is added to the source."""
    if params.noise is not None:
        return False
    share = source_share(params, *params.image_size, dtype=torch.float64)
    return bool(((share == 0) | (share == 1)).all())


def assert_matches_reference(x: torch.Tensor, y: torch.Tensor, params: MixParams) -> None:
    mixed, targets = apply_mix(x, y, params)
    want, want_targets = reference(x, y, params)
    assert mixed.dtype == x.dtype and mixed.shape == x.shape
    if x.dtype == torch.uint8:
        # A hard paste of uint8 is a selection: exact. A blend is rounded once, in float32 here.
        tolerance = 0.0 if hard(params) else 1.0
        assert (mixed.double() - want).abs().max().item() <= tolerance
    else:
        torch.testing.assert_close(mixed.double(), want, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(targets.double(), want_targets, rtol=1e-6, atol=1e-6)


# --------------------------------------------------------------------------------------------
# Random batches and random steps
# --------------------------------------------------------------------------------------------


@st.composite
def batches(draw: Callable[..., Any], min_side: int = 4) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    b = draw(st.integers(1, 6))
    c = draw(st.sampled_from([1, 3]))
    h, w = draw(st.integers(min_side, 12)), draw(st.integers(min_side, 12))
    seed = draw(st.integers(0, 2**31 - 1))
    g = torch.Generator().manual_seed(seed)
    if draw(st.booleans()):
        x = torch.randint(0, 256, (b, c, h, w), generator=g, dtype=torch.uint8)
    else:
        x = torch.rand(b, c, h, w, generator=g)
    labels = torch.randint(0, K, (b,), generator=g)
    return x, labels, torch.nn.functional.one_hot(labels, K).float(), seed


def random_fields(x: torch.Tensor, g: torch.Generator, kind: Dict[str, bool]) -> Dict[str, Any]:
    """Valid values of one step, drawn freely: any pairing, shares, boxes and shifts."""
    b, c, h, w = x.shape

    def unit(n: int) -> torch.Tensor:
        u = torch.rand(n, generator=g, dtype=torch.float64)
        return u.round() if kind["hard"] else u

    if kind["permutation"]:
        perm = torch.randperm(b, generator=g)
    else:
        perm = torch.randint(0, b, (b,), generator=g)
    bh = torch.randint(0, h + 1, (b,), generator=g)
    bw = torch.randint(0, w + 1, (b,), generator=g)

    def corners() -> torch.Tensor:
        r = (torch.rand(b, generator=g) * (h - bh + 1).float()).long()
        col = (torch.rand(b, generator=g) * (w - bw + 1).float()).long()
        return torch.stack([r, col, r + bh, col + bw], dim=1)

    src = corners()
    dst = src.clone() if kind["same_place"] else corners()
    mixup = torch.rand(b, generator=g) < (0.3 if kind["mixup"] else 0.0)
    applied = torch.rand(b, generator=g) < 0.8
    fields: Dict[str, Any] = {
        "perm": perm,
        "lam": unit(b),
        "src_boxes": src,
        "dst_boxes": dst,
        "eta": unit(b),
        "mixup": mixup,
        "applied": applied,
        "source_weight": torch.rand(b, generator=g, dtype=torch.float64),
        "image_size": (h, w),
    }
    if kind["share_map"]:
        fields["share_map"] = torch.rand(b, 1, h, w, generator=g)
    if kind["noise"]:
        scale = 20.0 if x.dtype == torch.uint8 else 0.1
        fields["noise"] = torch.randn(b, c, h, w, generator=g) * scale
    return fields


def kinds() -> st.SearchStrategy[Dict[str, bool]]:
    names = ("hard", "permutation", "same_place", "mixup", "share_map", "noise")
    return st.fixed_dictionaries({name: st.booleans() for name in names})


def true_flags(fields: Dict[str, Any]) -> Dict[str, bool]:
    """The fast-path flags that are true of these values (host reads: this is a test)."""
    applied, mixup, eta, lam = fields["applied"], fields["mixup"], fields["eta"], fields["lam"]
    patch = applied & ~mixup
    src, dst = fields["src_boxes"], fields["dst_boxes"]
    boxed = (dst[:, 2] > dst[:, 0]) & (dst[:, 3] > dst[:, 1]) & patch
    b = fields["perm"].shape[0]
    blend = (patch & (eta > 0) & (eta < 1)) | (applied & mixup & (lam > 0) & (lam < 1))
    return {
        "blended": bool(blend.any()) or fields.get("share_map") is not None,
        "shifted": bool(((src != dst).any(dim=1) & patch).any()),
        "patches": bool(boxed.any()),
        "perm_is_permutation": torch.equal(fields["perm"].sort().values, torch.arange(b)),
    }


# --------------------------------------------------------------------------------------------
# Every documented way of building params
# --------------------------------------------------------------------------------------------


def by_create(fields: Dict[str, Any]) -> MixParams:
    return MixParams.create(**fields)


def by_replacing_identity(fields: Dict[str, Any]) -> MixParams:
    b = fields["perm"].shape[0]
    base = MixParams.identity(b, fields["image_size"], "cpu")
    return dataclasses.replace(base, **{k: v for k, v in fields.items() if k != "image_size"})


def by_hand_with_true_flags(fields: Dict[str, Any]) -> MixParams:
    return MixParams(**fields, **true_flags(fields))


@pytest.mark.parametrize("build", [by_create, by_replacing_identity, by_hand_with_true_flags])
@SETTINGS
@given(batch=batches(), kind=kinds())
def test_built_params_apply_as_the_reference(
    build: Callable[[Dict[str, Any]], MixParams], batch: Tuple[torch.Tensor, ...], kind: Dict[str, bool]
) -> None:
    x, _, y, seed = batch
    fields = random_fields(x, torch.Generator().manual_seed(seed + 1), kind)
    assert_matches_reference(x, y, build(fields))


def test_create_sets_every_fast_path_flag_to_its_general_value() -> None:
    plain = dict.fromkeys(("hard", "permutation", "same_place", "mixup", "share_map", "noise"), False)
    fields = random_fields(torch.rand(3, 3, 8, 8), torch.Generator().manual_seed(0), plain)
    for params in (MixParams.create(**fields), MixParams.identity(3, (8, 8), "cpu")):
        assert (params.blended, params.shifted, params.patches) == (True, True, True)
        assert params.perm_is_permutation is False  # not read from the tensor: no host synchronisation
    assert MixParams.create(**fields, perm_is_permutation=True).perm_is_permutation is True


def test_a_blend_and_a_moved_box_replaced_into_identity_are_applied() -> None:
    """The trap of issue 26: ``replace(identity, eta=0.5, moved boxes)`` once kept ``blended=False``
    and ``shifted=False`` and pasted the wrong pixels, unblended."""
    x, y = torch.rand(2, 3, 8, 8), torch.eye(2)
    params = dataclasses.replace(
        MixParams.identity(2, (8, 8), "cpu"),
        perm=torch.tensor([1, 0]),
        src_boxes=torch.tensor([[0, 0, 4, 4], [0, 0, 4, 4]]),
        dst_boxes=torch.tensor([[4, 4, 8, 8], [4, 4, 8, 8]]),
        eta=torch.full((2,), 0.5, dtype=torch.float64),
        applied=torch.ones(2, dtype=torch.bool),
        source_weight=torch.full((2,), 0.125, dtype=torch.float64),
    )
    mixed, _ = apply_mix(x, y, params)
    torch.testing.assert_close(mixed[0, :, 4:, 4:], 0.5 * x[0, :, 4:, 4:] + 0.5 * x[1, :, :4, :4])
    assert_matches_reference(x, y, params)


# --------------------------------------------------------------------------------------------
# Every library operator's own params
# --------------------------------------------------------------------------------------------

OPERATORS: List[Tuple[str, Callable[[], Any]]] = [
    ("NoMix", lambda: NoMix(num_classes=K)),
    ("MixUp batch", lambda: MixUp(num_classes=K)),
    ("MixUp sample", lambda: MixUp(num_classes=K, mode="sample", p=0.7)),
    ("CutMix batch", lambda: CutMix(num_classes=K)),
    ("CutMix sample", lambda: CutMix(num_classes=K, mode="sample", p=0.7)),
    ("SaliencyMix official", lambda: SaliencyMix(num_classes=K, variant="official")),
    ("SaliencyMix per_sample", lambda: SaliencyMix(num_classes=K, variant="per_sample")),
    ("RandSaliencyMix", lambda: RandSaliencyMix(num_classes=K, p=1.0)),
    (
        "RandSaliencyMix shifted blends, noise, confusion",
        lambda: RandSaliencyMix(
            num_classes=K, p=1.0, tau_src=1.0, tau_dst=1.0, gamma=0.5, eta=0.5, patch_noise=0.1, pairing="confusion"
        ),
    ),
    ("RandSaliencyMix same place hard", lambda: RandSaliencyMix(num_classes=K, p=1.0, paste="same", eta=1.0)),
    ("GuidedMixup", lambda: GuidedMixup(num_classes=K, p=1.0)),
    (
        "RandomChoiceMix sample",
        lambda: RandomChoiceMix(
            [CutMix(num_classes=K), MixUp(num_classes=K), GuidedMixup(num_classes=K, p=1.0)],
            mode="sample",
            num_classes=K,
        ),
    ),
    ("timm Mixup", lambda: Mixup(mixup_alpha=1.0, cutmix_alpha=1.0, mode="elem", num_classes=K)),
    (
        "timm Mixup randsaliencymix",
        lambda: Mixup(
            mixup_alpha=0.0,
            cutmix_alpha=1.0,
            num_classes=K,
            cutmix_op="randsaliencymix",
            cutmix_options={"paste": "uniform", "eta": 0.5},
        ),
    ),
]


@pytest.mark.parametrize("name, make", OPERATORS, ids=[name for name, _ in OPERATORS])
@OP_SETTINGS
@given(batch=batches(min_side=8))
def test_operator_params_apply_as_the_reference(
    name: str, make: Callable[[], Any], batch: Tuple[torch.Tensor, ...]
) -> None:
    x, labels, y, seed = batch
    op = make()
    params: Optional[MixParams] = op.sample_params(x, labels, generator=torch.Generator().manual_seed(seed))
    assert isinstance(params, MixParams)
    assert_matches_reference(x, y, params)


# --------------------------------------------------------------------------------------------
# Hand-built params that no operator draws (issue 28)
# --------------------------------------------------------------------------------------------


def patch_params(b: int = 4, **changes: Any) -> MixParams:
    """A valid hand-built step: every sample pastes a 4x4 box of its neighbour, hard, in place,
    with the fast-path flags that say so (``blended=False``, ``shifted=False``)."""
    box = torch.tensor([2, 3, 6, 7]).expand(b, 4)
    params = dataclasses.replace(
        MixParams.identity(b, (SMALL_H, SMALL_W), "cpu"),
        blended=False,
        shifted=False,
        perm=torch.arange(b).roll(1),
        src_boxes=box,
        dst_boxes=box,
        applied=torch.ones(b, dtype=torch.bool),
        source_weight=torch.full((b,), 16 / (SMALL_H * SMALL_W), dtype=torch.float64),
        lam=torch.full((b,), 1 - 16 / (SMALL_H * SMALL_W), dtype=torch.float64),
    )
    return dataclasses.replace(params, **changes)


def soft(b: int = 4) -> torch.Tensor:
    return torch.nn.functional.one_hot(labels(b), K).float()


def one_changed(name: str, row: int, value: Any, params: MixParams) -> torch.Tensor:
    t = getattr(params, name).clone()
    t[row] = torch.as_tensor(value, dtype=t.dtype)
    return t


def test_the_valid_hand_built_step_mixes() -> None:
    x = small_images(4)
    mixed, targets = apply_mix(x, soft(), patch_params())
    assert torch.equal(mixed[0, :, 2:6, 3:7], x[3, :, 2:6, 3:7])
    assert bool((targets >= 0).all()) and torch.allclose(targets.sum(1), torch.ones(4, dtype=targets.dtype))


@pytest.mark.parametrize("value", [1.5, -0.5, float("nan")])
def test_source_weight_outside_0_1_is_refused(value: float) -> None:
    p = patch_params()
    p = dataclasses.replace(p, source_weight=one_changed("source_weight", 1, value, p))
    with pytest.raises(ValueError, match=r"^Expected params.source_weight in \[0, 1\].* on sample 1 instead\.$"):
        apply_mix(small_images(4), soft(), p)


@pytest.mark.parametrize("value", [1.5, -0.5, float("nan")])
def test_lam_outside_0_1_is_refused(value: float) -> None:
    p = patch_params(mixup=torch.tensor([False, False, True, False]))
    p = dataclasses.replace(p, lam=one_changed("lam", 2, value, p))
    with pytest.raises(ValueError, match=r"^Expected params.lam in \[0, 1\].* on sample 2 instead\.$"):
        apply_mix(small_images(4), soft(), p)


@pytest.mark.parametrize("value", [2.0, -0.1, float("nan")])
def test_eta_outside_0_1_is_refused(value: float) -> None:
    p = patch_params(blended=True)
    p = dataclasses.replace(p, eta=one_changed("eta", 0, value, p))
    with pytest.raises(ValueError, match=r"^Expected params.eta in \[0, 1\].* on sample 0 instead\.$"):
        apply_mix(small_images(4), soft(), p)


@pytest.mark.parametrize(
    ("field", "box"),
    [
        ("src_boxes", [2, 3, 6, SMALL_W + 1]),  # beyond the image
        ("dst_boxes", [SMALL_H - 2, 3, SMALL_H + 2, 7]),
        ("src_boxes", [-1, 3, 3, 7]),
        ("dst_boxes", [6, 3, 2, 7]),  # row2 < row1
    ],
)
def test_boxes_outside_the_image_or_reversed_are_refused(field: str, box: Any) -> None:
    p = patch_params(shifted=True)
    boxes = getattr(p, field).clone()
    boxes[1] = torch.tensor(box)
    p = dataclasses.replace(p, **{field: boxes})
    with pytest.raises(ValueError, match=rf"^Expected params.{field} \(row1, col1, row2, col2\) with 0 <= row1"):
        apply_mix(small_images(4), soft(), p)


def test_source_and_destination_boxes_of_different_sizes_are_refused() -> None:
    p = patch_params(shifted=True)
    src = p.src_boxes.clone()
    src[3] = torch.tensor([0, 0, 5, 4])
    with pytest.raises(ValueError, match=r"^Expected params.src_boxes and params.dst_boxes of the same size"):
        apply_mix(small_images(4), soft(), dataclasses.replace(p, src_boxes=src))


@pytest.mark.parametrize("case", ["eta", "mixup lam"])
def test_blended_false_with_a_blend_is_refused(case: str) -> None:
    p = patch_params()  # blended=False: a hard paste
    if case == "eta":
        p = dataclasses.replace(p, eta=one_changed("eta", 1, 0.5, p))
    else:
        mixup = torch.tensor([False, True, False, False])
        p = dataclasses.replace(p, mixup=mixup, lam=one_changed("lam", 1, 0.5, p))
    with pytest.raises(ValueError, match=r"^Expected every applied share to be 0 or 1 in params with blended=False"):
        apply_mix(small_images(4), soft(), p)
    # The same step with blended=True mixes: sample 1 holds both images in every channel it blends.
    x = small_images(4)
    mixed, _ = apply_mix(x, soft(), dataclasses.replace(p, blended=True))
    assert torch.allclose(mixed[1, :, 2:6, 3:7], 0.5 * x[1, :, 2:6, 3:7] + 0.5 * x[0, :, 2:6, 3:7])


def test_shifted_false_with_a_moved_box_is_refused() -> None:
    p = patch_params()  # shifted=False: every patch at its source's place
    src = p.src_boxes.clone()
    src[2] = torch.tensor([0, 0, 4, 4])
    p = dataclasses.replace(p, src_boxes=src)
    with pytest.raises(ValueError, match=r"^Expected every pasted box at its source's place .* shifted=False"):
        apply_mix(small_images(4), soft(), p)
    x = small_images(4)
    mixed, _ = apply_mix(x, soft(), dataclasses.replace(p, shifted=True))
    assert torch.equal(mixed[2, :, 2:6, 3:7], x[1, :, 0:4, 0:4])  # the patch from where src_boxes says


def test_values_are_checked_only_where_values_are_checked() -> None:
    p = patch_params()
    p = dataclasses.replace(p, eta=one_changed("eta", 1, 0.5, p))  # a blend under blended=False
    op = CutMix(num_classes=K, validate=False)
    op.apply_params(small_images(4), labels(4), p)  # no value check: no error (and no host synchronisation)
    with pytest.raises(ValueError, match="blended=False"):
        CutMix(num_classes=K, validate=True).apply_params(small_images(4), labels(4), p)


DRAWING_OPERATORS: Dict[str, Callable[[], Any]] = {
    "MixUp": lambda: MixUp(num_classes=K, mode="sample", p=0.7),
    "CutMix": lambda: CutMix(num_classes=K, mode="sample", p=0.7),
    "SaliencyMix": lambda: SaliencyMix(num_classes=K, variant="per_sample", p=0.7),
    "RandSaliencyMix hard, same place": lambda: RandSaliencyMix(
        num_classes=K, p=0.8, eta=1.0, mixup_prob=0.0, paste="same"
    ),
    "RandSaliencyMix blended, moved": lambda: RandSaliencyMix(
        num_classes=K, **{**SALIENCY_ON, "p": 0.8, "eta": "beta", "mixup_prob": 0.3}
    ),
    "RandSaliencyMix noise": lambda: RandSaliencyMix(num_classes=K, p=0.8, patch_noise=0.1),
    "GuidedMixup": lambda: GuidedMixup(num_classes=K, p=0.7),
    "RandomChoiceMix": lambda: RandomChoiceMix(
        [CutMix(), RandSaliencyMix(eta=1.0, mixup_prob=0.0, paste="same"), MixUp()], mode="sample", num_classes=K
    ),
    "timm cutmix": lambda: drop_in_mixup(cutmix_minmax=(0.2, 0.8)),
    "timm saliencymix": lambda: drop_in_mixup(cutmix_op="saliencymix", mixup_alpha=1.0),
    "timm randsaliencymix": lambda: drop_in_mixup(cutmix_op="randsaliencymix", cutmix_options={"eta": 1.0}),
}


@pytest.mark.parametrize("op_name", list(DRAWING_OPERATORS))
def test_every_operators_draws_pass_the_value_checks(op_name: str) -> None:
    op = DRAWING_OPERATORS[op_name]()
    op.validate = True
    for seed in range(6):
        x = small_images(7, seed)
        params = op.sample_params(x, generator=gen(seed))  # checked as drawn
        apply_mix(x, soft(7), params)  # and as hand-built params


# --------------------------------------------------------------------------------------------
# Params sampled for one image size, applied at another
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("via", ["apply_params", "forward", "apply_mix"])
@pytest.mark.parametrize("op_name", list(OPS5))
def test_params_for_another_image_size_are_rejected(op_name, via):
    op = OPS5[op_name]()
    params = op.sample_params(images(4, 8, 8), generator=gen(0))
    assert params.image_size == (8, 8)
    x = images(4, 8, 12)
    msg = re.escape("Expected params for 8x12 images, but got params sampled for 8x8 instead.")
    with pytest.raises(ValueError, match=msg):
        if via == "apply_params":
            op.apply_params(x, labels(4), params)
        elif via == "forward":
            op(x, labels(4), params=params)
        else:
            apply_mix(x, F.one_hot(labels(4), K).float(), params)


def test_image_size_survives_to_and_random_choice_merging():
    x = images(6, 12, 20)
    op = OPS5["RandomChoiceMix"]()
    params = op.sample_params(x, generator=gen(1))
    assert params.image_size == (12, 20)
    moved = params.to("cpu")
    assert moved.image_size == (12, 20) and moved.shifted == params.shifted
    assert MixParams.identity(3, (5, 7), "cpu").image_size == (5, 7)


# --------------------------------------------------------------------------------------------
# The patches flag (issue 11)
# --------------------------------------------------------------------------------------------


def test_patches_false_is_checked_and_means_whole_image_shares():
    x = torch.randn(4, 3, 8, 8, generator=gen(21))
    y = torch.arange(4) % K
    op = rsm.MixUp(num_classes=K, mode="sample")
    params = op.sample_params(x, generator=gen(22))
    assert params.patches is False
    boxed = dataclasses.replace(
        params,
        mixup=torch.zeros(4, dtype=torch.bool),
        dst_boxes=torch.tensor([[0, 0, 4, 4]] * 4),
        src_boxes=torch.tensor([[0, 0, 4, 4]] * 4),
    )
    with pytest.raises(ValueError, match="patches=False"):
        rsm.apply_mix(x, y.float()[:, None].expand(4, K), boxed)
    assert torch.equal(
        rsm.apply_mix(x, torch.eye(K)[y], dataclasses.replace(boxed, patches=True))[0][:, :, 4:, 4:], x[:, :, 4:, 4:]
    )
