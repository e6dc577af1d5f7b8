"""Params that cannot lie (issue 26): however a :class:`MixParams` is built (an operator's
``sample_params``, :meth:`MixParams.create`, ``dataclasses.replace`` of :meth:`MixParams.identity`,
or by hand with flags true to its values), :func:`apply_mix` gives what a flag-free reference gives:
per pixel ``(1 - s) * x + s * src`` with ``s`` from :func:`source_share` and ``src`` the source
shifted so that its box lands on the destination box (plus the patch noise inside the box), and
targets ``(1 - w) * y + w * y[perm]``."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Dict, List, Optional, Tuple

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from randsaliencymix import (
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
