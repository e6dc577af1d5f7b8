"""Property tests of the mixing operators of ``mixing.py`` (MixUp, CutMix, SaliencyMix, NoMix,
RandomChoiceMix) against SPEC.md, and of every operator's common contract (dtypes, layouts, batch
sizes, replay, seeds, p, a given perm).

Every check is an invariant computed independently of ``src`` (reference shares, shifted sources,
box sums, the authors' SaliencyMix box), never a seed-pinned golden number; the shared checks
(``check_mix``, ``run_and_check``) are in tests/conftest.py."""

from __future__ import annotations

import math
from dataclasses import fields
from typing import Any, Callable, Dict, List

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

import randsaliencymix.base as base_mod
from conftest import (
    DTYPES,
    K5,
    MIX_SETTINGS,
    alphas,
    check_mix,
    design_rsm,
    exact,
    gen,
    images,
    labels,
    mix_batches,
    mix_images,
    mix_labels,
    mix_maps,
    ref_soft,
    rsm_box_sides,
    run_and_check,
)
from conftest import MIX_K as K
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
)

probs_p = st.sampled_from([0.0, 0.5, 1.0])


@MIX_SETTINGS
@given(batch=mix_batches(), alpha=alphas, p=probs_p, mode=st.sampled_from(["batch", "sample"]))
def test_mixup_invariants(batch, alpha, p, mode):
    op = MixUp(alpha=alpha, num_classes=K, p=p, mode=mode, label_smoothing=batch["smoothing"])
    _, _, params = run_and_check(op, batch["x"], batch["y"], seed=batch["seed"], label_smoothing=batch["smoothing"])
    assert bool(params.mixup[params.applied].all())
    torch.testing.assert_close(params.source_weight[params.applied], 1 - params.lam[params.applied])


@MIX_SETTINGS
@given(batch=mix_batches(), alpha=alphas, p=probs_p, mode=st.sampled_from(["batch", "sample"]))
def test_cutmix_invariants(batch, alpha, p, mode):
    op = CutMix(alpha=alpha, num_classes=K, p=p, mode=mode, label_smoothing=batch["smoothing"])
    x = batch["x"]
    _, _, params = run_and_check(op, x, batch["y"], seed=batch["seed"], label_smoothing=batch["smoothing"])
    check_centred_box_rule(params, x.shape[-2], x.shape[-1])
    assert not bool(params.mixup.any())
    assert bool((params.eta == 1).all())


def check_centred_box_rule(params: MixParams, h: int, w: int) -> None:
    """CutMix/SaliencyMix: src == dst; a box of half-sides h//2, w//2 around a centre, clipped."""
    assert torch.equal(params.src_boxes, params.dst_boxes)
    cut = torch.sqrt(1 - params.lam)
    for i in range(params.batch_size):
        if not bool(params.applied[i]):
            continue
        bh, bw = int(h * float(cut[i])), int(w * float(cut[i]))
        r1, c1, r2, c2 = [int(v) for v in params.dst_boxes[i]]
        assert r2 - r1 <= 2 * (bh // 2) and c2 - c1 <= 2 * (bw // 2)
        if 0 < r1 and r2 < h:
            assert r2 - r1 == 2 * (bh // 2)
        if 0 < c1 and c2 < w:
            assert c2 - c1 == 2 * (bw // 2)


@MIX_SETTINGS
@given(
    batch=mix_batches(),
    alpha=alphas,
    p=probs_p,
    mode=st.sampled_from(["official", "per_sample"]),
    detector=st.sampled_from(["fine_grained", "spectral"]),
    give_maps=st.booleans(),
)
def test_saliencymix_invariants(batch, alpha, p, mode, detector, give_maps):
    op = SaliencyMix(
        alpha=alpha, num_classes=K, p=p, variant=mode, detector=detector, label_smoothing=batch["smoothing"]
    )
    x = batch["x"]
    maps = batch["maps"] if give_maps and mode != "official" else None  # official computes its own map
    _, _, params = run_and_check(op, x, batch["y"], maps=maps, seed=batch["seed"], label_smoothing=batch["smoothing"])
    check_centred_box_rule(params, x.shape[-2], x.shape[-1])
    if mode == "official":
        assert bool((params.lam == params.lam[0]).all())
        assert bool((params.applied == params.applied[0]).all())
        assert bool((params.dst_boxes == params.dst_boxes[0]).all())


@MIX_SETTINGS
@given(
    batch=mix_batches(),
    mode=st.sampled_from(["batch", "sample"]),
    p=probs_p,
    probs=st.sampled_from([None, [0.2, 0.3, 0.5], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]),
)
def test_randomchoice_invariants(batch, mode, p, probs):
    ops = [
        MixUp(mode="sample", p=0.8),
        CutMix(mode="sample"),
        RandSaliencyMix(gamma=0.0, eta="beta", mixup_prob=0.2, paste="uniform"),
    ]
    op = RandomChoiceMix(ops, probs=probs, mode=mode, num_classes=K, p=p, label_smoothing=batch["smoothing"])
    _, _, params = run_and_check(
        op, batch["x"], batch["y"], maps=batch["maps"], seed=batch["seed"], label_smoothing=batch["smoothing"]
    )
    if p == 0.0:
        assert not bool(params.applied.any())


@MIX_SETTINGS
@given(batch=mix_batches())
def test_nomix_invariants(batch):
    op = NoMix(num_classes=K, label_smoothing=batch["smoothing"])
    x, y = batch["x"], batch["y"]
    xm, ym, _ = run_and_check(op, x, y, seed=batch["seed"], label_smoothing=batch["smoothing"])
    assert torch.equal(xm, x)
    torch.testing.assert_close(ym.double(), ref_soft(y, batch["smoothing"]), atol=1e-6, rtol=0)


# ------------------------------------------------------------------------------------------------
# Named operator configurations, for deterministic coverage of dtypes, layouts and shapes
# ------------------------------------------------------------------------------------------------

MIX_OPS: Dict[str, Callable[[], object]] = {
    "mixup_batch": lambda: MixUp(num_classes=K),
    "mixup_sample": lambda: MixUp(num_classes=K, mode="sample", p=0.7),
    "cutmix_batch": lambda: CutMix(num_classes=K),
    "cutmix_sample": lambda: CutMix(num_classes=K, mode="sample", p=0.7),
    "saliencymix_official": lambda: SaliencyMix(num_classes=K, variant="official"),
    "saliencymix_per_sample": lambda: SaliencyMix(num_classes=K, variant="per_sample"),
    "saliencymix_spectral": lambda: SaliencyMix(num_classes=K, variant="per_sample", detector="spectral"),
    "rsm_default": lambda: RandSaliencyMix(num_classes=K),
    "rsm_design": lambda: design_rsm(),
    "rsm_area_blend": lambda: RandSaliencyMix(
        num_classes=K, eta="beta", mixup_prob=0.3, gamma=0.0, paste="uniform", detector="spectral"
    ),
    "rsm_peak_same": lambda: RandSaliencyMix(num_classes=K, source="peak", paste="same", eta=0.5, gamma=1.0),
    "rsm_saliency_paste": lambda: RandSaliencyMix(
        num_classes=K, source="uniform", paste="saliency", tau_dst=4.0, label_smoothing=0.1
    ),
    "choice_batch": lambda: RandomChoiceMix([MixUp(), CutMix()], mode="batch", num_classes=K),
    "choice_sample": lambda: RandomChoiceMix(
        [MixUp(mode="sample"), CutMix(mode="sample"), RandSaliencyMix(gamma=0.0, eta=0.5)],
        probs=[0.3, 0.3, 0.4],
        mode="sample",
        num_classes=K,
    ),
    "nomix": lambda: NoMix(num_classes=K),
    "guided_random": lambda: GuidedMixup(num_classes=K, pairing="random", p=0.7),
    "choice_guided_cutmix": lambda: RandomChoiceMix(
        [GuidedMixup(p=1.0), CutMix(mode="sample")], mode="sample", num_classes=K
    ),
    "rsm_complementary": lambda: RandSaliencyMix(num_classes=K, pairing="complementary"),
}
# Operators whose label weights are not the area of the applied mask by design (saliency labels).
SALIENCY_LABELS = {"rsm_design", "rsm_peak_same", "rsm_saliency_paste"}


def op_smoothing(op) -> float:
    return float(getattr(op, "label_smoothing", 0.0))


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).replace("torch.", ""))
@pytest.mark.parametrize("name", list(MIX_OPS))
def test_dtypes_and_layouts(name, dtype, channels_last):
    op = MIX_OPS[name]()
    x = mix_images(3, 5, 3, 12, 20, dtype, channels_last)  # odd batch, non-square
    y = mix_labels(3, 5, "index")
    run_and_check(op, x, y, seed=11, label_smoothing=op_smoothing(op), area_labels=name not in SALIENCY_LABELS)


@pytest.mark.parametrize("shape", [(1, 3, 8, 8), (5, 1, 12, 20), (4, 3, 20, 12), (2, 3, 32, 32)])
@pytest.mark.parametrize("name", list(MIX_OPS))
def test_batch_sizes_and_shapes(name, shape):
    op = MIX_OPS[name]()
    b, c, h, w = shape
    x = mix_images(5, b, c, h, w)
    y = mix_labels(5, b, "prob64")
    for seed in range(3):
        run_and_check(
            op,
            x,
            y,
            maps=None if name == "saliencymix_official" else mix_maps(seed, b, h, w),  # it refuses maps
            seed=seed,
            label_smoothing=op_smoothing(op),
            area_labels=name not in SALIENCY_LABELS,
        )


@pytest.mark.parametrize("name", list(MIX_OPS))
def test_replay_and_seeds(name):
    x = mix_images(1, 16, 3, 16, 16)
    y = mix_labels(1, 16, "index")
    op = MIX_OPS[name]()
    p1 = op.sample_params(x, generator=gen(123))
    p2 = op.sample_params(x, generator=gen(123))
    for f in fields(MixParams):
        a, b = getattr(p1, f.name), getattr(p2, f.name)
        assert torch.equal(a, b) if isinstance(a, torch.Tensor) else a == b, f.name
    assert all(torch.equal(a, b) for a, b in zip(op.apply_params(x, y, p1), op.apply_params(x, y, p1)))
    assert all(torch.equal(a, b) for a, b in zip(op.apply_params(x, y, p1), op.apply_params(x, y, p2)))
    out1 = op(x, y, generator=gen(7))
    out2 = op(x, y, generator=gen(7))
    assert all(torch.equal(a, b) for a, b in zip(out1, out2))


@pytest.mark.parametrize("name", [n for n in MIX_OPS if n != "nomix"])
def test_different_seeds_differ(name):
    x = mix_images(2, 16, 3, 16, 16)
    y = mix_labels(2, 16, "index")
    op = MIX_OPS[name]()
    op.p = 1.0  # so that neither draw can be a no-op batch
    outs = [op(x, y, generator=gen(s))[0] for s in (0, 1, 2)]
    assert not (torch.equal(outs[0], outs[1]) and torch.equal(outs[1], outs[2]))


@pytest.mark.parametrize("name", [n for n in MIX_OPS if n != "nomix"])
def test_p_zero_is_identity_and_p_one_mixes(name):
    x = mix_images(4, 8, 3, 16, 16, torch.uint8)
    y = mix_labels(4, 8, "index")
    op = MIX_OPS[name]()
    op.p = 0.0
    if isinstance(op, RandomChoiceMix):
        for sub in op.ops:
            sub.p = 1.0
    smoothing = op_smoothing(op)
    for seed in range(3):
        xm, ym = op(x, y, generator=gen(seed))
        assert torch.equal(xm, x)
        torch.testing.assert_close(ym.double(), ref_soft(y, smoothing), atol=1e-7, rtol=0)
        if smoothing == 0:
            assert torch.equal(ym, F.one_hot(y, K).to(ym.dtype))
    op.p = 1.0
    params = op.sample_params(x, generator=gen(0), perm=torch.roll(torch.arange(8), 1))
    assert bool(params.applied.all())
    xm, _ = op.apply_params(x, y, params)
    assert not torch.equal(xm, x)
    assert bool((params.source_weight > 0).any())


@pytest.mark.parametrize("name", list(MIX_OPS))
def test_given_perm_is_used(name):
    x = mix_images(6, 6, 3, 12, 12)
    y = mix_labels(6, 6, "index")
    perm = torch.tensor([3, 0, 5, 1, 2, 4])
    op = MIX_OPS[name]()
    params = op.sample_params(x, generator=gen(0), perm=perm)
    if name != "nomix":
        assert torch.equal(params.perm, perm)
    check_mix(x, y, *op.apply_params(x, y, params), params, op_smoothing(op), name not in SALIENCY_LABELS)


def test_apply_mix_functional_matches_operator():
    x = mix_images(8, 6, 3, 16, 16)
    y = mix_labels(8, 6, "prob32")
    op = design_rsm(eta="beta", mixup_prob=0.3)
    params = op.sample_params(x, generator=gen(0), saliency=mix_maps(0, 6, 16, 16))
    a = op.apply_params(x, y, params)
    # The operator renormalises accepted probability rows (to_soft_targets); apply_mix takes them as given.
    b = apply_mix(x, y / y.sum(1, keepdim=True), params)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_hard_paste_copies_extreme_finite_values_exactly():
    """A hard paste is a copy: finite but large-magnitude pixels must not turn into NaN."""
    big = 3.0e38  # finite float32; x_src - x_t overflows
    x = torch.zeros(2, 1, 8, 8)
    x[0], x[1] = big, -big
    y = torch.tensor([0, 1])
    op = CutMix(num_classes=K)
    params = op.sample_params(x, generator=gen(3), perm=torch.tensor([1, 0]))
    xm, _ = op.apply_params(x, y, params)
    assert not bool(torch.isnan(xm).any()), "unmixed / pasted pixels became NaN"
    check_mix(x, y, xm, op.apply_params(x, y, params)[1], params)


# ------------------------------------------------------------------------------------------------
# Batch vs sample modes
# ------------------------------------------------------------------------------------------------


def test_batch_mode_one_draw_sample_mode_varies():
    x = mix_images(9, 32, 3, 16, 16)
    for cls in (MixUp, CutMix):
        pb = cls(num_classes=K, mode="batch", p=0.5).sample_params(x, generator=gen(1))
        assert bool((pb.lam == pb.lam[0]).all())
        assert bool((pb.applied == pb.applied[0]).all())
        assert bool((pb.dst_boxes == pb.dst_boxes[0]).all())
        ps = cls(num_classes=K, mode="sample", p=0.5).sample_params(x, generator=gen(1))
        assert len(set(ps.lam.tolist())) > 1
        assert 0 < int(ps.applied.sum()) < 32
        if cls is CutMix:
            assert len({tuple(b) for b in ps.dst_boxes.tolist()}) > 1
    po = SaliencyMix(num_classes=K, variant="official").sample_params(x, generator=gen(1))
    assert bool((po.lam == po.lam[0]).all()) and bool((po.dst_boxes == po.dst_boxes[0]).all())
    pp = SaliencyMix(num_classes=K, variant="per_sample").sample_params(x, generator=gen(1))
    assert len(set(pp.lam.tolist())) > 1
    pr = design_rsm().sample_params(x, generator=gen(1))
    assert len(set(pr.lam.tolist())) > 1


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# ------------------------------------------------------------------------------------------------
# SaliencyMix: the authors' algorithm
# ------------------------------------------------------------------------------------------------


def authors_saliency_bbox(img: torch.Tensor, lam: float):
    """SaliencyMix's ``saliency_bbox`` as in the authors' training scripts (CHW tensor)."""
    cv2 = pytest.importorskip("cv2")
    size = img.size()
    W = size[1]
    H = size[2]
    cut_rat = np.sqrt(1.0 - lam)
    cut_w = int(W * cut_rat)
    cut_h = int(H * cut_rat)
    temp_img = img.cpu().numpy().transpose(1, 2, 0)
    saliency = cv2.saliency.StaticSaliencyFineGrained_create()
    (_success, saliencyMap) = saliency.computeSaliency(temp_img)
    saliencyMap = (saliencyMap * 255).astype("uint8")
    maximum_indices = np.unravel_index(np.argmax(saliencyMap, axis=None), saliencyMap.shape)
    x = maximum_indices[0]
    y = maximum_indices[1]
    bbx1 = np.clip(x - cut_w // 2, 0, W)
    bby1 = np.clip(y - cut_h // 2, 0, H)
    bbx2 = np.clip(x + cut_w // 2, 0, W)
    bby2 = np.clip(y + cut_h // 2, 0, H)
    return bbx1, bby1, bbx2, bby2


def mix_photos(h: int, w: int) -> torch.Tensor:
    """Four scikit-image photographs, resized, ImageNet-normalised float CHW (as a loader gives)."""
    data = pytest.importorskip("skimage.data")
    imgs = []
    for name in ("astronaut", "chelsea", "coffee", "rocket"):
        t = torch.from_numpy(np.ascontiguousarray(getattr(data, name)()[..., :3])).permute(2, 0, 1).float()[None]
        t = F.interpolate(t, size=(h, w), mode="bilinear", antialias=True, align_corners=False)[0]
        imgs.append(t.round().clamp(0, 255) / 255.0)
    x = torch.stack(imgs)
    mean = torch.tensor(IMAGENET_MEAN).reshape(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).reshape(1, 3, 1, 1)
    return (x - mean) / std


@pytest.mark.parametrize("source", ["photos", "photos_nonsquare", "random"])
def test_saliencymix_official_matches_authors(source):
    pytest.importorskip("cv2")
    if source == "photos":
        x = mix_photos(32, 32)
    elif source == "photos_nonsquare":
        x = mix_photos(24, 40)
    else:
        x = mix_images(12, 6, 3, 28, 20)
    b = x.shape[0]
    y = torch.arange(b) % K
    op = SaliencyMix(num_classes=K, variant="official", p=1.0)
    for seed in range(8):
        params = op.sample_params(x, generator=gen(seed))
        perm = params.perm
        lam = float(params.lam[0])
        bbx1, bby1, bbx2, bby2 = authors_saliency_bbox(x[perm[0]], lam)
        expected_box = torch.tensor([bbx1, bby1, bbx2, bby2], dtype=torch.long)
        assert torch.equal(params.dst_boxes, expected_box.expand(b, 4)), (params.dst_boxes[0], expected_box)
        assert torch.equal(params.src_boxes, params.dst_boxes)
        authors_lam = 1 - ((bbx2 - bbx1) * (bby2 - bby1) / (x.size()[-1] * x.size()[-2]))
        torch.testing.assert_close(
            1 - params.source_weight, torch.full((b,), float(authors_lam), dtype=torch.float64), atol=1e-12, rtol=0
        )
        images = x.clone()
        images[:, :, bbx1:bbx2, bby1:bby2] = images[perm, :, bbx1:bbx2, bby1:bby2]
        xm, ym = op.apply_params(x, y, params)
        assert torch.equal(xm, images)
        onehot = F.one_hot(y, K).double()
        torch.testing.assert_close(
            ym.double(), authors_lam * onehot + (1 - authors_lam) * onehot[perm], atol=1e-6, rtol=0
        )


def peak_box(q_map: np.ndarray, lam: float, height: int, width: int):
    pr, pc = np.unravel_index(np.argmax(q_map, axis=None), q_map.shape)
    bh, bw = rsm_box_sides(lam, height, width)
    return [
        int(np.clip(pr - bh // 2, 0, height)),
        int(np.clip(pc - bw // 2, 0, width)),
        int(np.clip(pr + bh // 2, 0, height)),
        int(np.clip(pc + bw // 2, 0, width)),
    ]


@MIX_SETTINGS
@given(b=st.integers(1, 8), h=st.integers(8, 24), w=st.integers(8, 24), seed=st.integers(0, 2**31 - 1), alpha=alphas)
def test_saliencymix_per_sample_boxes_on_source_peaks(b, h, w, seed, alpha):
    x = mix_images(seed, b, 3, h, w)
    maps = mix_maps(seed, b, h, w)
    op = SaliencyMix(num_classes=K, variant="per_sample", alpha=alpha)
    params = op.sample_params(x, generator=gen(seed), saliency=maps)
    q = (maps * 255).to(torch.uint8).numpy()
    for i in range(b):
        expected = peak_box(q[int(params.perm[i])], float(params.lam[i]), h, w)
        assert params.dst_boxes[i].tolist() == expected
        assert params.src_boxes[i].tolist() == expected


def test_saliencymix_per_sample_detector_is_opencv_on_uint8():
    """Without given maps, per_sample uses each source's correct map (OpenCV's, for uint8 RGB)."""
    cv2 = pytest.importorskip("cv2")
    x = mix_images(21, 6, 3, 24, 24, torch.uint8)
    op = SaliencyMix(num_classes=K, variant="per_sample")
    params = op.sample_params(x, generator=gen(0))
    for i in range(6):
        src = x[int(params.perm[i])].permute(1, 2, 0).numpy()[..., ::-1]  # RGB -> BGR for OpenCV
        sal = cv2.saliency.StaticSaliencyFineGrained_create().computeSaliency(np.ascontiguousarray(src))[1]
        expected = peak_box((sal * 255).astype("uint8"), float(params.lam[i]), 24, 24)
        assert params.dst_boxes[i].tolist() == expected


def _opencv_peak_box(img_chw: torch.Tensor, lam: float):
    """The authors' saliency_bbox on a float32 CHW tensor (what their training loop holds)."""
    cv2 = pytest.importorskip("cv2")
    h, w = img_chw.shape[-2:]
    sal = cv2.saliency.StaticSaliencyFineGrained_create().computeSaliency(img_chw.numpy().transpose(1, 2, 0))[1]
    r, c = np.unravel_index(np.argmax((sal * 255).astype("uint8"), axis=None), sal.shape)
    cut = np.sqrt(1.0 - lam)
    bh, bw = int(h * cut), int(w * cut)
    return [
        int(np.clip(r - bh // 2, 0, h)),
        int(np.clip(c - bw // 2, 0, w)),
        int(np.clip(r + bh // 2, 0, h)),
        int(np.clip(c + bw // 2, 0, w)),
    ]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_official_saliencymix_takes_float64_and_half_images(dtype):
    """OpenCV cannot read float64 (or 16-bit float) colour images; it gets the float32 image a
    float32 training loop would hold, so the box is the authors' box of ``x.float()``."""
    pytest.importorskip("cv2")
    x = images(5, 20, 24, seed=4, dtype=dtype)
    y = labels(5)
    op = SaliencyMix(num_classes=K5, variant="official")
    for seed in range(4):
        params = op.sample_params(x, generator=gen(seed))
        expected = _opencv_peak_box(x[int(params.perm[0])].float(), float(params.lam[0]))
        assert params.dst_boxes.tolist() == [expected] * 5
        same = op.sample_params(x.float(), generator=gen(seed))
        assert torch.equal(same.dst_boxes, params.dst_boxes)
        xm, _ = op.apply_params(x, y, params)
        assert xm.dtype == dtype
        r1, c1, r2, c2 = expected
        ref = x.clone()
        ref[:, :, r1:r2, c1:c2] = x[params.perm][:, :, r1:r2, c1:c2]
        assert torch.equal(xm, ref)


@pytest.mark.slow
def test_official_saliencymix_refuses_given_maps() -> None:
    x, y = torch.rand(4, 3, 16, 16), torch.arange(4)
    maps = torch.rand(4, 16, 16)
    with pytest.raises(ValueError, match=r"variant='official'.*variant='per_sample'"):
        SaliencyMix(variant="official", num_classes=4)(x, y, saliency=maps)
    SaliencyMix(variant="per_sample", num_classes=4)(x, y, saliency=maps)  # reads them
    SaliencyMix(variant="official", num_classes=4)(x, y)  # its own map


# ------------------------------------------------------------------------------------------------
# NoMix returns the batch itself (issue 28)
# ------------------------------------------------------------------------------------------------


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


# ------------------------------------------------------------------------------------------------
# RandomChoiceMix
# ------------------------------------------------------------------------------------------------


def test_randomchoice_per_sample_picks_several_ops():
    b, h, w = 48, 16, 16
    x = mix_images(70, b, 3, h, w)
    y = mix_labels(70, b, "index")
    maps = mix_maps(70, b, h, w)
    ops = [MixUp(mode="sample"), CutMix(mode="sample"), design_rsm(num_classes=None, gamma=0.0, paste="uniform")]
    op = RandomChoiceMix(ops, mode="sample", num_classes=K)
    _, _, params = run_and_check(op, x, y, maps=maps, seed=0)
    assert bool(params.mixup.any()) and bool((~params.mixup).any())
    assert bool((params.src_boxes != params.dst_boxes).any(1).any()), "no RandSaliencyMix sample picked"
    # batch mode: one operator for the whole batch.
    op = RandomChoiceMix(ops, mode="batch", num_classes=K)
    for seed in range(6):
        params = op.sample_params(x, generator=gen(seed), saliency=maps)
        assert bool((params.mixup == params.mixup[0]).all())


def test_randomchoice_degenerate_probs():
    x = mix_images(71, 16, 3, 12, 12)
    y = mix_labels(71, 16, "index")
    for seed in range(5):
        first = RandomChoiceMix(
            [MixUp(mode="sample"), CutMix(mode="sample")], probs=[1.0, 0.0], mode="sample", num_classes=K
        )
        _, _, params = run_and_check(first, x, y, seed=seed)
        assert bool(params.mixup.all())
        second = RandomChoiceMix(
            [MixUp(mode="sample"), CutMix(mode="sample")], probs=[0.0, 1.0], mode="sample", num_classes=K
        )
        _, _, params = run_and_check(second, x, y, seed=seed)
        assert not bool(params.mixup.any())
        assert torch.equal(params.src_boxes, params.dst_boxes)


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


@pytest.mark.slow
def test_random_choice_validate_governs_its_sub_operators(monkeypatch) -> None:
    seen: List[Any] = []
    real = base_mod.check_params

    def spy(params: Any, x: torch.Tensor, validate: Any) -> Any:
        seen.append(validate)
        return real(params, x, validate)

    monkeypatch.setattr(base_mod, "check_params", spy)
    x, y = torch.rand(4, 3, 16, 16), torch.arange(4)
    subs = [CutMix(validate=True), RandSaliencyMix(validate=True, tau_src=1.0)]
    RandomChoiceMix(subs, validate=False, num_classes=4)(x, y, generator=torch.Generator().manual_seed(0))
    assert seen and all(v is False for v in seen), seen
    seen.clear()
    subs[0](x, torch.nn.functional.one_hot(y, 4).float())  # alone, the operator's own setting holds
    assert seen and all(v is True for v in seen), seen


@pytest.mark.parametrize(
    "ops",
    [[], (), [MixUp(), "cutmix"], [torch.nn.Identity()]],
    ids=["empty-list", "empty-tuple", "non-operator", "plain-module"],
)
def test_random_choice_rejects_bad_ops(ops):
    with pytest.raises(
        TypeError, match=exact("Expected a non-empty sequence of mixing operators, but got something else instead.")
    ):
        RandomChoiceMix(ops)


@pytest.mark.parametrize("probs", [[1.0], [0.2, 0.3, 0.5], []])
def test_random_choice_rejects_probs_of_wrong_length(probs):
    with pytest.raises(
        ValueError, match=exact(f"Expected 2 probabilities, one per operator, but got {len(probs)} instead.")
    ):
        RandomChoiceMix([MixUp(), CutMix()], probs=probs)


@pytest.mark.parametrize("probs", [[0.5, 0.4], [0.7, 0.7], [0.0, 0.0]])
def test_random_choice_rejects_probs_not_summing_to_one(probs):
    with pytest.raises(
        ValueError, match=exact(f"Expected probs that sum to 1, but got a sum of {sum(probs):.6f} instead.")
    ):
        RandomChoiceMix([MixUp(), CutMix()], probs=probs)


@pytest.mark.parametrize("probs", [[1.5, -0.5], [math.nan, 1.0]])
def test_random_choice_rejects_negative_or_nan_probs(probs):
    bad = next(q for q in probs if not q >= 0)
    with pytest.raises(ValueError, match=exact(f"Expected probs >= 0 and finite, but got {bad} instead.")):
        RandomChoiceMix([MixUp(), CutMix()], probs=probs)


def test_random_choice_rejects_none():
    from randsaliencymix import RandomChoiceMix

    with pytest.raises(TypeError, match="Expected a non-empty sequence of mixing operators"):
        RandomChoiceMix(None)  # type: ignore[arg-type]
