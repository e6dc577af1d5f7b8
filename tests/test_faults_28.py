"""Faults of issue 28, each with its own test: a generator passed by position, the timm drop-in's
options assigned after construction, hand-built params no operator draws, an empty batch, seeds
and batches of the collate and Lightning helpers, NumPy (C, H, W) samples, and an operator that
starts learning from the model after MixCollate accepted it."""

from __future__ import annotations

import dataclasses
from collections import namedtuple
from types import SimpleNamespace
from typing import Any, Callable, Dict

import numpy as np
import pytest
import torch

from randsaliencymix import (
    SALIENCY_ON,
    CutMix,
    GuidedMixup,
    MixCollate,
    MixParams,
    MixUp,
    RandomChoiceMix,
    RandSaliencyMix,
    SaliencyMix,
    apply_mix,
)
from randsaliencymix.integrations.lightning import BatchMixer
from randsaliencymix.integrations.timm import Mixup

K = 5
H, W = 12, 10


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def images(b: int = 6, seed: int = 0) -> torch.Tensor:
    return torch.rand(b, 3, H, W, generator=gen(seed))


def labels(b: int = 6) -> torch.Tensor:
    return torch.arange(b) % K


def timm_mixup(**kw: Any) -> Mixup:
    return Mixup(**{"num_classes": K, "mixup_alpha": 0.0, "cutmix_alpha": 1.0, "mode": "elem", **kw})


OPS: Dict[str, Callable[[], Any]] = {
    "MixUp": lambda: MixUp(num_classes=K),
    "CutMix": lambda: CutMix(num_classes=K, mode="sample"),
    "RandSaliencyMix": lambda: RandSaliencyMix(num_classes=K, **SALIENCY_ON),
    "timm Mixup": lambda: timm_mixup(mixup_alpha=1.0),
}

# --------------------------------------------------------------------------------------------
# 1. A generator passed by position
# --------------------------------------------------------------------------------------------

GENERATOR_AS_Y = (
    r"^Expected y as labels \(a tensor\) or None, but got a torch.Generator instead \(pass it as generator=g\)\.$"
)
GENERATOR_AS_PARAMS = r"^Expected params of type MixParams, but got a torch.Generator instead \(pass it as generator=g"


@pytest.mark.parametrize("op_name", list(OPS))
def test_sample_params_refuses_a_generator_passed_as_y_and_draws_nothing(op_name: str) -> None:
    op = OPS[op_name]()
    state = torch.get_rng_state()
    with pytest.raises(TypeError, match=GENERATOR_AS_Y):
        op.sample_params(images(), gen(0))
    assert torch.equal(torch.get_rng_state(), state)  # the global generator was not drawn from


@pytest.mark.parametrize("op_name", list(OPS))
def test_a_call_takes_nothing_by_position_after_the_labels(op_name: str) -> None:
    """``op(x, y, g)`` cannot mean anything: every argument after ``(x, y)`` is keyword-only."""
    op = OPS[op_name]()
    state = torch.get_rng_state()
    with pytest.raises(TypeError, match="positional argument"):
        op(images(), labels(), gen(0))
    with pytest.raises(TypeError, match="positional argument"):
        op.sample_params(images(), labels(), gen(0))
    assert torch.equal(torch.get_rng_state(), state)


@pytest.mark.parametrize("op_name", list(OPS))
def test_apply_refuses_a_generator_passed_as_params(op_name: str) -> None:
    with pytest.raises(TypeError, match=GENERATOR_AS_PARAMS):
        OPS[op_name]().apply_params(images(), labels(), gen(0))


def test_sample_params_refuses_labels_that_are_not_a_tensor() -> None:
    with pytest.raises(TypeError, match=r"^Expected y as labels \(a tensor\) or None, but got list instead\.$"):
        MixUp(num_classes=K).sample_params(images(), [0, 1, 2, 3, 4, 0])  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# 2. The timm drop-in's options assigned after construction
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("first", "then", "options"),
    [
        ("cutmix", "saliencymix", None),
        ("saliencymix", "randsaliencymix", {"detector": "spectral"}),
        ("randsaliencymix", "saliencymix", {"detector": "spectral"}),
        ("saliencymix", "cutmix", None),
    ],
)
def test_cutmix_op_assigned_after_construction_draws_as_if_constructed_with_it(
    first: str, then: str, options: Any
) -> None:
    assigned = timm_mixup(cutmix_op=first, cutmix_options=options)
    assigned.cutmix_op = then
    built = timm_mixup(cutmix_op=then, cutmix_options=options)
    assert repr(assigned) == repr(built)
    x = images(8)
    a = assigned.sample_params(x, generator=gen(3))
    b = built.sample_params(x, generator=gen(3))
    for f in dataclasses.fields(MixParams):
        va, vb = getattr(a, f.name), getattr(b, f.name)
        assert torch.equal(va, vb) if isinstance(va, torch.Tensor) else va == vb, f.name
    xa, ya = assigned(x, labels(8), generator=gen(4))
    xb, yb = built(x, labels(8), generator=gen(4))
    assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_an_unknown_cutmix_op_assigned_is_refused_and_changes_nothing() -> None:
    op = timm_mixup(cutmix_op="saliencymix")
    before = repr(op)
    with pytest.raises(
        ValueError, match=r"^Expected cutmix_op to be one of 'cutmix', 'saliencymix', 'randsaliencymix'"
    ):
        op.cutmix_op = "gridmix"
    assert repr(op) == before and op.cutmix_op == "saliencymix" and isinstance(op.cut_op, SaliencyMix)


def test_a_cutmix_op_that_refuses_the_stored_options_is_refused_and_changes_nothing() -> None:
    op = timm_mixup(cutmix_op="randsaliencymix", cutmix_options={"tau_src": 1.0})
    with pytest.raises(ValueError, match=r"^Expected cutmix_options for cutmix_op='cutmix' among \(none\)"):
        op.cutmix_op = "cutmix"
    assert op.cutmix_op == "randsaliencymix" and isinstance(op.cut_op, RandSaliencyMix)
    assert op.cut_op.tau_src == 1.0 and op.cutmix_options == {"tau_src": 1.0}


def test_validate_is_checked_at_construction_and_when_assigned() -> None:
    message = r"^Expected validate as None, True or False, but got 'yes' instead\.$"
    with pytest.raises(TypeError, match=message):
        MixUp(num_classes=K, validate="yes")  # type: ignore[arg-type]
    op = timm_mixup(cutmix_op="saliencymix")
    with pytest.raises(TypeError, match=message):
        op.validate = "yes"  # type: ignore[assignment]
    assert op.validate is None
    op.validate = True  # reaches the cut-and-paste operator, whose checks read it
    assert op.cut_op is not None and op.cut_op.validate is True


def test_num_classes_zero_assigned_is_refused() -> None:
    op = timm_mixup()
    with pytest.raises(ValueError, match=r"^Expected num_classes >= 1, but got 0 instead\.$"):
        op.num_classes = 0
    assert op.num_classes == K


# --------------------------------------------------------------------------------------------
# 3. Hand-built params that no operator draws
# --------------------------------------------------------------------------------------------


def patch_params(b: int = 4, **changes: Any) -> MixParams:
    """A valid hand-built step: every sample pastes a 4x4 box of its neighbour, hard, in place,
    with the fast-path flags that say so (``blended=False``, ``shifted=False``)."""
    box = torch.tensor([2, 3, 6, 7]).expand(b, 4)
    params = dataclasses.replace(
        MixParams.identity(b, (H, W), "cpu"),
        blended=False,
        shifted=False,
        perm=torch.arange(b).roll(1),
        src_boxes=box,
        dst_boxes=box,
        applied=torch.ones(b, dtype=torch.bool),
        source_weight=torch.full((b,), 16 / (H * W), dtype=torch.float64),
        lam=torch.full((b,), 1 - 16 / (H * W), dtype=torch.float64),
    )
    return dataclasses.replace(params, **changes)


def soft(b: int = 4) -> torch.Tensor:
    return torch.nn.functional.one_hot(labels(b), K).float()


def one_changed(name: str, row: int, value: Any, params: MixParams) -> torch.Tensor:
    t = getattr(params, name).clone()
    t[row] = torch.as_tensor(value, dtype=t.dtype)
    return t


def test_the_valid_hand_built_step_mixes() -> None:
    x = images(4)
    mixed, targets = apply_mix(x, soft(), patch_params())
    assert torch.equal(mixed[0, :, 2:6, 3:7], x[3, :, 2:6, 3:7])
    assert bool((targets >= 0).all()) and torch.allclose(targets.sum(1), torch.ones(4, dtype=targets.dtype))


@pytest.mark.parametrize("value", [1.5, -0.5, float("nan")])
def test_source_weight_outside_0_1_is_refused(value: float) -> None:
    p = patch_params()
    p = dataclasses.replace(p, source_weight=one_changed("source_weight", 1, value, p))
    with pytest.raises(ValueError, match=r"^Expected params.source_weight in \[0, 1\].* on sample 1 instead\.$"):
        apply_mix(images(4), soft(), p)


@pytest.mark.parametrize("value", [1.5, -0.5, float("nan")])
def test_lam_outside_0_1_is_refused(value: float) -> None:
    p = patch_params(mixup=torch.tensor([False, False, True, False]))
    p = dataclasses.replace(p, lam=one_changed("lam", 2, value, p))
    with pytest.raises(ValueError, match=r"^Expected params.lam in \[0, 1\].* on sample 2 instead\.$"):
        apply_mix(images(4), soft(), p)


@pytest.mark.parametrize("value", [2.0, -0.1, float("nan")])
def test_eta_outside_0_1_is_refused(value: float) -> None:
    p = patch_params(blended=True)
    p = dataclasses.replace(p, eta=one_changed("eta", 0, value, p))
    with pytest.raises(ValueError, match=r"^Expected params.eta in \[0, 1\].* on sample 0 instead\.$"):
        apply_mix(images(4), soft(), p)


@pytest.mark.parametrize(
    ("field", "box"),
    [
        ("src_boxes", [2, 3, 6, W + 1]),  # beyond the image
        ("dst_boxes", [H - 2, 3, H + 2, 7]),
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
        apply_mix(images(4), soft(), p)


def test_source_and_destination_boxes_of_different_sizes_are_refused() -> None:
    p = patch_params(shifted=True)
    src = p.src_boxes.clone()
    src[3] = torch.tensor([0, 0, 5, 4])
    with pytest.raises(ValueError, match=r"^Expected params.src_boxes and params.dst_boxes of the same size"):
        apply_mix(images(4), soft(), dataclasses.replace(p, src_boxes=src))


@pytest.mark.parametrize("case", ["eta", "mixup lam"])
def test_blended_false_with_a_blend_is_refused(case: str) -> None:
    p = patch_params()  # blended=False: a hard paste
    if case == "eta":
        p = dataclasses.replace(p, eta=one_changed("eta", 1, 0.5, p))
    else:
        mixup = torch.tensor([False, True, False, False])
        p = dataclasses.replace(p, mixup=mixup, lam=one_changed("lam", 1, 0.5, p))
    with pytest.raises(ValueError, match=r"^Expected every applied share to be 0 or 1 in params with blended=False"):
        apply_mix(images(4), soft(), p)
    # The same step with blended=True mixes: sample 1 holds both images in every channel it blends.
    x = images(4)
    mixed, _ = apply_mix(x, soft(), dataclasses.replace(p, blended=True))
    assert torch.allclose(mixed[1, :, 2:6, 3:7], 0.5 * x[1, :, 2:6, 3:7] + 0.5 * x[0, :, 2:6, 3:7])


def test_shifted_false_with_a_moved_box_is_refused() -> None:
    p = patch_params()  # shifted=False: every patch at its source's place
    src = p.src_boxes.clone()
    src[2] = torch.tensor([0, 0, 4, 4])
    p = dataclasses.replace(p, src_boxes=src)
    with pytest.raises(ValueError, match=r"^Expected every pasted box at its source's place .* shifted=False"):
        apply_mix(images(4), soft(), p)
    x = images(4)
    mixed, _ = apply_mix(x, soft(), dataclasses.replace(p, shifted=True))
    assert torch.equal(mixed[2, :, 2:6, 3:7], x[1, :, 0:4, 0:4])  # the patch from where src_boxes says


def test_values_are_checked_only_where_values_are_checked() -> None:
    p = patch_params()
    p = dataclasses.replace(p, eta=one_changed("eta", 1, 0.5, p))  # a blend under blended=False
    op = CutMix(num_classes=K, validate=False)
    op.apply_params(images(4), labels(4), p)  # no value check: no error (and no host synchronisation)
    with pytest.raises(ValueError, match="blended=False"):
        CutMix(num_classes=K, validate=True).apply_params(images(4), labels(4), p)


OPERATORS: Dict[str, Callable[[], Any]] = {
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
    "timm cutmix": lambda: timm_mixup(cutmix_minmax=(0.2, 0.8)),
    "timm saliencymix": lambda: timm_mixup(cutmix_op="saliencymix", mixup_alpha=1.0),
    "timm randsaliencymix": lambda: timm_mixup(cutmix_op="randsaliencymix", cutmix_options={"eta": 1.0}),
}


@pytest.mark.parametrize("op_name", list(OPERATORS))
def test_every_operators_draws_pass_the_value_checks(op_name: str) -> None:
    op = OPERATORS[op_name]()
    op.validate = True
    for seed in range(6):
        x = images(7, seed)
        params = op.sample_params(x, generator=gen(seed))  # checked as drawn
        apply_mix(x, soft(7), params)  # and as hand-built params


# --------------------------------------------------------------------------------------------
# 4. An empty batch
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("flags", [{}, {"blended": True, "shifted": True}, {"patches": False}])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "requires_grad", "out"])
def test_apply_mix_on_an_empty_batch_gives_empty_outputs(flags: Dict[str, bool], layout: str) -> None:
    params = dataclasses.replace(MixParams.identity(0, (H, W), "cpu"), **flags)
    x = torch.rand(0, 3, H, W)
    out = None
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    elif layout == "requires_grad":
        x.requires_grad_()
    elif layout == "out":
        out = torch.empty(0, 3, H, W)
    mixed, targets = apply_mix(x, torch.zeros(0, K), params, out=out)
    assert mixed.shape == (0, 3, H, W) and mixed.dtype == x.dtype
    assert targets.shape == (0, K)
    assert out is None or mixed is out


# --------------------------------------------------------------------------------------------
# 5. Seeds and batches of MixCollate and BatchMixer
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make", [lambda s: MixCollate(CutMix(num_classes=K), seed=s), lambda s: BatchMixer(CutMix(num_classes=K), seed=s)]
)
@pytest.mark.parametrize("seed", [2**63, 2**64, -(2**63) - 1])
def test_seeds_that_a_batch_seed_cannot_hold_are_refused_at_construction(make: Any, seed: int) -> None:
    with pytest.raises(ValueError, match=r"^Expected seed in \["):
        make(seed)


def test_a_rank_environment_variable_out_of_range_is_refused_at_construction(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANK", str(2**64))
    with pytest.raises(ValueError, match=r"^Expected the RANK environment variable in \[0, 2\*\*63 - 1\]"):
        MixCollate(CutMix(num_classes=K), seed=0)


def training_trainer(ready: int = 5) -> Any:
    progress = SimpleNamespace(total=SimpleNamespace(ready=ready))
    fit_loop = SimpleNamespace(epoch_loop=SimpleNamespace(batch_progress=progress))
    return SimpleNamespace(training=True, sanity_checking=False, global_rank=0, fit_loop=fit_loop)


def test_batch_mixer_takes_numpy_integer_seeds() -> None:
    batch = (images(4), labels(4))
    a = BatchMixer(CutMix(num_classes=K), seed=np.int64(3))  # type: ignore[arg-type]
    b = BatchMixer(CutMix(num_classes=K), seed=3)
    xa, ya = a(batch, training_trainer())
    xb, yb = b(batch, training_trainer())
    assert torch.equal(xa, xb) and torch.equal(ya, yb)
    with pytest.raises(TypeError, match=r"^Expected seed to be an int, but got bool instead\.$"):
        BatchMixer(CutMix(num_classes=K), seed=True)


Batch = namedtuple("Batch", ["image", "label", "index"])


def test_batch_mixer_gives_a_namedtuple_batch_back_as_its_own_type() -> None:
    x, y, index = images(4), labels(4), torch.arange(4)
    mixing = BatchMixer(CutMix(num_classes=K), seed=0)
    mixed = mixing(Batch(x, y, index), training_trainer())
    plain = mixing((x, y, index), training_trainer())
    assert type(mixed) is Batch and type(plain) is tuple
    assert torch.equal(mixed.image, plain[0]) and torch.equal(mixed.label, plain[1])
    assert mixed.label.shape == (4, K) and mixed.index is index


# --------------------------------------------------------------------------------------------
# 6. NumPy samples laid out (C, H, W)
# --------------------------------------------------------------------------------------------


def _samples(layout: str, dtype: Any = np.float32) -> Any:
    chw = [np.random.default_rng(i).random((3, H, W)).astype(dtype) for i in range(6)]
    if layout == "tensor":
        return [(torch.from_numpy(c), i % K) for i, c in enumerate(chw)]
    if layout == "CHW":
        return [(c, i % K) for i, c in enumerate(chw)]
    return [(c.transpose(1, 2, 0).copy(), i % K) for i, c in enumerate(chw)]  # HWC


@pytest.mark.parametrize("layout", ["CHW", "HWC"])
def test_numpy_samples_are_read_in_the_layout_their_shape_tells(layout: str) -> None:
    expected = MixCollate(CutMix(num_classes=K, mode="sample"), seed=0)(_samples("tensor"))
    got = MixCollate(CutMix(num_classes=K, mode="sample"), seed=0)(_samples(layout))
    assert got[0].shape == (6, 3, H, W)
    assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])


@pytest.mark.parametrize(("shape", "reads"), [((3, 8, 3), "both ways"), ((8, 8, 8), "neither way")])
def test_numpy_samples_whose_layout_is_ambiguous_are_refused(shape: Any, reads: str) -> None:
    collate = MixCollate(MixUp(num_classes=K), seed=0)
    samples = [(np.zeros(shape, dtype=np.float32), 0), (np.zeros(shape, dtype=np.float32), 1)]
    with pytest.raises(ValueError, match=rf"^Expected a NumPy image whose shape tells its layout.*reads {reads}"):
        collate(samples)


def test_numpy_rgba_hwc_images_keep_working() -> None:
    hwc = [np.full((H, W, 4), i, dtype=np.uint8) for i in range(4)]
    x, _ = MixCollate(CutMix(num_classes=K), seed=0)([(a, i) for i, a in enumerate(hwc)])
    assert x.shape == (4, 4, H, W) and x.dtype == torch.uint8


# --------------------------------------------------------------------------------------------
# 7. An operator switched to learn from the model after MixCollate accepted it
# --------------------------------------------------------------------------------------------


def test_mix_collate_refuses_an_operator_switched_to_learn_from_the_model() -> None:
    op = RandSaliencyMix(num_classes=K)
    collate = MixCollate(op, seed=0)
    collate(_samples("tensor"))
    op.pairing = "confusion"
    with pytest.raises(ValueError, match=r"^Expected an operator without state that follows the model"):
        collate(_samples("tensor"))


# -- the identity's waste (issue 28): NoMix returns the batch itself ---------------------------------


def test_nomix_returns_the_batch_itself_and_draws_nothing() -> None:
    from randsaliencymix import NoMix

    x = torch.rand(4, 3, 8, 8)
    y = torch.tensor([0, 1, 2, 1])
    g = torch.Generator().manual_seed(0)
    state = g.get_state()
    op = NoMix(num_classes=3, label_smoothing=0.1)
    xm, ym = op(x, y, generator=g)
    assert xm is x  # no copy: nothing is mixed
    assert torch.equal(g.get_state(), state)  # nothing drawn
    torch.testing.assert_close(ym, torch.nn.functional.one_hot(y, 3).float() * 0.9 + 0.1 / 3)
    # the general path gives the same values, as a copy
    params = op.sample_params(x, generator=g)
    xa, ya = op.apply_params(x, y, params)
    assert torch.equal(xa, x) and xa.data_ptr() != x.data_ptr() and torch.equal(ya, ym)
    buf = torch.empty_like(x)
    xo, _ = op(x, y, out=buf)
    assert xo is buf and torch.equal(buf, x)
    with pytest.raises(ValueError):
        op(x, y, saliency=torch.rand(3, 8, 8))  # maps of another batch are refused as everywhere


# -- MixCollate built before the process knows its rank (issue 28) -----------------------------------


def test_mixcollate_reads_the_rank_at_the_first_batch_not_when_built(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under Lightning's strategy="ddp" the collate is built in LightningModule.__init__, before the
    launcher sets the process's rank: every rank then drew rank 0's mixes."""
    from randsaliencymix import CutMix, MixCollate

    for name in ("RANK", "LOCAL_RANK", "NODE_RANK"):
        monkeypatch.delenv(name, raising=False)
    samples = [(torch.rand(3, 8, 8, generator=torch.Generator().manual_seed(i)), i % 3) for i in range(6)]

    def first_batch(collate: MixCollate) -> torch.Tensor:
        return collate(samples)[0]

    early = MixCollate(CutMix(num_classes=3, mode="sample"), seed=0)  # built before the rank is known
    assert "rank=unresolved" in repr(early)
    monkeypatch.setenv("LOCAL_RANK", "1")  # what Lightning's launcher sets in rank 1's process
    monkeypatch.setenv("NODE_RANK", "0")
    got = first_batch(early)
    assert early.rank == 1
    assert torch.equal(got, first_batch(MixCollate(CutMix(num_classes=3, mode="sample"), seed=0, rank=1)))
    assert not torch.equal(got, first_batch(MixCollate(CutMix(num_classes=3, mode="sample"), seed=0, rank=0)))
    monkeypatch.setenv("RANK", "3")  # torchrun's global rank wins over Lightning's local one
    assert MixCollate(CutMix(num_classes=3), seed=0).rank == 3


# -- a composite computes each detector once per batch (issue 26) ------------------------------------


def test_random_choice_runs_each_detector_once_and_draws_as_with_given_maps() -> None:
    from randsaliencymix import GuidedMixup, RandomChoiceMix, RandSaliencyMix, SaliencyMix
    from randsaliencymix.saliency import fine_grained

    calls = []

    def detector(x: torch.Tensor) -> torch.Tensor:
        calls.append(x.shape[0])
        return fine_grained(x)

    ops = [
        RandSaliencyMix(num_classes=4, p=1.0, tau_src=1.0, gamma=0.5, detector=detector),
        SaliencyMix(num_classes=4, variant="per_sample", detector=detector),
        GuidedMixup(num_classes=4, p=1.0, detector=detector),
        RandSaliencyMix(num_classes=4, p=1.0, tau_src=1.0, detector="spectral"),  # another detector: its own maps
    ]
    choice = RandomChoiceMix(ops, mode="sample", num_classes=4)
    x = torch.rand(6, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    shared = choice.sample_params(x, generator=torch.Generator().manual_seed(1))
    assert calls == [6]  # three operators, one detector call
    # the same draws as each operator computing its own maps (a fresh composite per operator's maps)
    for i, op in enumerate(ops):
        alone = RandomChoiceMix([op], num_classes=4)
        maps = op.detect(x)
        a = alone.sample_params(x, generator=torch.Generator().manual_seed(2), saliency=maps)
        b = alone.sample_params(x, generator=torch.Generator().manual_seed(2))
        for field in ("perm", "lam", "src_boxes", "dst_boxes", "eta", "source_weight"):
            assert torch.equal(getattr(a, field), getattr(b, field)), (i, field)
    assert shared.batch_size == 6
