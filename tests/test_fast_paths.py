"""The fast paths of issue 11, each against the plain formula it replaces:

* the chunked mix (:func:`randsaliencymix.apply.mix_images` without autograd) gives the same bits,
  strides and dtype as the differentiable whole-batch formula, for every operator, dtype, layout
  and chunk size, and the opt-in ``out=`` buffer gets exactly those values;
* the tau = 1 window draw (:func:`randsaliencymix.geometry.draw_window_corner_linear`), which never
  builds the grid of window masses, follows the law ``(score + eps)`` over the valid corners, and
  its sums (:class:`randsaliencymix.geometry.WindowSums`) are the grid's;
* the two-tap INTER_LINEAR_EXACT resize is OpenCV's bit for bit, and the spectral residual finds
  constant images from each channel's extremes.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Dict

import pytest
import torch
from scipy.stats import chisquare

import randsaliencymix as rsm
from randsaliencymix import apply as apply_module
from randsaliencymix.geometry import (
    WindowSums,
    categorical,
    draw_corner,
    draw_window_corner,
    draw_window_corners_linear,
    integral,
    normalised_maps,
    valid_extent,
    window_masses,
)
from randsaliencymix.saliency import resize_linear_exact_u8, rgb_to_gray_u8, spectral_residual
from test_no_sync import no_host_reads

K = 5
EPS = 1e-4


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


OPS: Dict[str, Callable[[], rsm.Mixer]] = {
    "mixup-batch": lambda: rsm.MixUp(num_classes=K),
    "mixup-sample": lambda: rsm.MixUp(num_classes=K, mode="sample", p=0.6),
    "cutmix-sample": lambda: rsm.CutMix(num_classes=K, mode="sample", p=0.7),
    "rsm-saliency-on": lambda: rsm.RandSaliencyMix(num_classes=K, **rsm.SALIENCY_ON),
    "rsm-default": lambda: rsm.RandSaliencyMix(num_classes=K),
    "rsm-noise-blend": lambda: rsm.RandSaliencyMix(num_classes=K, patch_noise=0.4, tau_src=1.0, tau_dst=1.0),
    "rsm-noise-hard": lambda: rsm.RandSaliencyMix(num_classes=K, patch_noise=0.4, eta=1.0, mixup_prob=0.0),
    "guided": lambda: rsm.GuidedMixup(num_classes=K, p=0.7),
    "choice": lambda: rsm.RandomChoiceMix(
        [rsm.GuidedMixup(p=1.0, pairing="random"), rsm.CutMix(mode="sample"), rsm.RandSaliencyMix(patch_noise=0.1)],
        mode="sample",
        num_classes=K,
    ),
}


def batch(seed: int, shape, dtype: torch.dtype, layout: str) -> torch.Tensor:
    g = gen(seed)
    if dtype == torch.uint8:
        x = torch.randint(0, 256, shape, generator=g, dtype=torch.uint8)
    else:
        x = (torch.randn(shape, generator=g) * 3).to(dtype)
    if layout == "channels_last":
        return x.contiguous(memory_format=torch.channels_last)
    if layout == "strided":  # neither layout: W-major storage
        return x.transpose(2, 3).contiguous().transpose(2, 3)
    return x


@pytest.mark.parametrize("op_name", list(OPS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.uint8])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "strided"])
def test_chunked_mix_is_the_formula_bit_for_bit(op_name, dtype, layout, monkeypatch):
    for seed, shape in enumerate([(5, 3, 17, 13), (3, 1, 9, 11), (7, 3, 24, 24)]):
        x = batch(seed, shape, dtype, layout)
        maps = torch.rand(shape[0], shape[2], shape[3], generator=gen(seed + 100)) ** 3
        params = OPS[op_name]().sample_params(x, generator=gen(seed), saliency=maps)
        expected = apply_module._mix_differentiable(x, params)
        # Chunks of one image, of two (the last one shorter), and the whole batch at once.
        per_image = shape[1] * shape[2] * shape[3] * 8
        for chunk_bytes in (1, 2 * per_image, 1 << 30):
            monkeypatch.setattr(apply_module, "CHUNK_BYTES", chunk_bytes)
            got = apply_module.mix_images(x, params)
            assert got.dtype == expected.dtype and got.stride() == expected.stride()
            assert torch.equal(got, expected), (op_name, dtype, layout, chunk_bytes)


@pytest.mark.parametrize("op_name", ["mixup-batch", "cutmix-sample", "rsm-saliency-on", "rsm-default", "guided"])
@pytest.mark.parametrize("channels_last", [False, True])
def test_out_buffer_receives_the_mix_and_inputs_are_untouched(op_name, channels_last):
    x = batch(0, (6, 3, 16, 20), torch.float32, "channels_last" if channels_last else "contiguous")
    y = torch.arange(6) % K
    x0, y0 = x.clone(), y.clone()
    op = OPS[op_name]()
    params = op.sample_params(x, generator=gen(1))
    expected = op.apply_params(x, y, params)
    buf = torch.full_like(x, float("nan"))
    got = op.apply_params(x, y, params, out=buf)
    assert got[0] is buf and torch.equal(buf, expected[0]) and torch.equal(got[1], expected[1])
    # forward with out= draws the same step and fills the buffer the same way.
    buf2 = torch.empty_like(x)
    xm, ym = op(x, y, generator=gen(1), out=buf2)
    assert xm is buf2 and torch.equal(xm, expected[0]) and torch.equal(ym, expected[1])
    xm, _ = rsm.apply_mix(x, torch.nn.functional.one_hot(y, K).float(), params, out=torch.empty_like(x))
    assert torch.equal(xm, expected[0])
    assert torch.equal(x, x0) and torch.equal(y, y0), "inputs mutated"


def test_out_buffer_is_checked():
    x = torch.randn(4, 3, 8, 8)
    y = torch.arange(4) % K
    op = rsm.CutMix(num_classes=K)
    params = op.sample_params(x, generator=gen(0))
    with pytest.raises(TypeError, match="out"):
        op.apply_params(x, y, params, out=x.numpy())  # type: ignore[arg-type]
    for bad in (torch.empty(4, 3, 8, 9), torch.empty(4, 3, 8, 8, dtype=torch.float64), torch.empty(3, 3, 8, 8)):
        with pytest.raises(ValueError, match="Expected out of shape"):
            op.apply_params(x, y, params, out=bad)
    with pytest.raises(ValueError, match="share no memory"):
        op.apply_params(x, y, params, out=x)
    with pytest.raises(ValueError, match="share no memory"):
        op.apply_params(x, y, params, out=x.view(4, 3, 8, 8)[:, :, :, :])
    xg = x.clone().requires_grad_(True)
    with pytest.raises(ValueError, match="autograd"):
        op.apply_params(xg, y, params, out=torch.empty_like(x))


def test_images_that_require_grad_still_get_gradients():
    x = torch.randn(4, 3, 8, 8, requires_grad=True)
    y = torch.arange(4) % K
    op = rsm.RandSaliencyMix(num_classes=K, **{**rsm.SALIENCY_ON, "eta": 0.5})
    xm, _ = op(x, y, generator=gen(0))
    assert xm.requires_grad
    xm.sum().backward()
    assert x.grad is not None and bool(torch.isfinite(x.grad).all())
    with torch.no_grad():
        assert torch.equal(op(x, y, generator=gen(0))[0], xm.detach())


def test_fast_paths_do_not_read_values_on_the_host():
    x = torch.randn(6, 3, 40, 36, generator=gen(0))
    y = torch.arange(6) % K
    maps = torch.rand(6, 40, 36, generator=gen(1))
    ops = [OPS[name]() for name in ("mixup-sample", "cutmix-sample", "rsm-saliency-on", "rsm-noise-hard")]
    ops.append(rsm.RandSaliencyMix(num_classes=K, detector="spectral", **rsm.SALIENCY_ON, validate=False))
    for op in ops:
        op.validate = False
        op(x, y, generator=gen(2))  # warm caches (resize taps, kernels)
        with no_host_reads():
            op(x, y, generator=gen(2), out=torch.empty_like(x))
            op(x, y, generator=gen(2), saliency=maps)
    x8 = torch.randint(0, 256, (3, 3, 224, 200), generator=gen(3), dtype=torch.uint8)
    spectral_residual(x8)
    with no_host_reads():
        spectral_residual(x8, validate=False)
        spectral_residual(x, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), validate=False)


# --------------------------------------------------------------------------------------------
# tau = 1 window draws without the grid of masses
# --------------------------------------------------------------------------------------------


def sides(n: int, height: int, width: int, seed: int):
    g = gen(seed)
    return torch.randint(0, height + 1, (n,), generator=g), torch.randint(0, width + 1, (n,), generator=g)


def side(images: torch.Tensor, how: str):
    """The three ways to read the maps: in place (identity), by the inverse of a permutation, by gathering."""
    if how == "identity":
        return (None, None)
    if how == "inverse":
        return (images, torch.empty_like(images).index_copy_(0, images, torch.arange(len(images))))
    return (images, None)


@pytest.mark.parametrize(
    "hows", [("identity",), ("inverse",), ("gather",), ("inverse", "identity"), ("gather", "identity")]
)
@pytest.mark.parametrize("height,width", [(7, 9), (12, 5), (1, 6)])
def test_window_sums_are_the_grids(height, width, hows):
    n = 40
    maps = normalised_maps(torch.rand(n, height, width, generator=gen(0)) ** 4)
    table = integral(maps)
    h, w = sides(n, height, width, 1)
    images = []
    for k, how in enumerate(hows):
        if how == "identity":
            images.append(torch.arange(n))
        elif how == "inverse":
            images.append(torch.randperm(n, generator=gen(2 + k)))
        else:  # not a permutation: some maps read twice
            images.append(torch.randint(0, n, (n,), generator=gen(2 + k)))
    sums = WindowSums(maps, [side(im, how) for im, how in zip(images, hows)])
    rows_ok, cols_ok = valid_extent(height, h), valid_extent(width, w)
    rows = [
        (torch.rand(n, generator=gen(9 + k)) * (height - h + 1)).long().clamp(max=height - 1) for k in range(len(hows))
    ]
    all_totals, all_at_rows = sums.row_totals(h, w, cols_ok), sums.masses_at_rows(torch.stack(rows), h, w)
    assert all_totals.shape == (len(hows), n, height) and all_at_rows.shape == (len(hows), n, width)
    for k, (totals, at_rows) in enumerate(zip(all_totals, all_at_rows)):
        grid = window_masses(table, h, w, images[k])
        expected = (grid.double() * cols_ok[:, None, :]).sum(2)
        torch.testing.assert_close(totals[rows_ok], expected[rows_ok], atol=1e-6, rtol=1e-6)
        expected = grid.gather(1, rows[k][:, None, None].expand(n, 1, width)).squeeze(1)
        torch.testing.assert_close(at_rows[cols_ok], expected[cols_ok], atol=1e-6, rtol=0)


@pytest.mark.parametrize("anti", [False, True])
def test_tau1_window_draw_follows_its_law(anti):
    """Many draws of one configuration: counts match P(corner) ~ (score + eps) over the valid
    corners, score = M or max(1 - M, 0) (chi-square); never an invalid corner; the returned mass
    is the drawn window's."""
    n, height, width = 30000, 6, 7
    base = normalised_maps(torch.rand(1, height, width, generator=gen(4)) ** 6)
    maps = base.expand(n, height, width).contiguous()
    h = torch.full((n,), 3, dtype=torch.long)
    w = torch.full((n,), 2, dtype=torch.long)
    vr, vc = valid_extent(height, h), valid_extent(width, w)
    ((idx, drawn),) = draw_window_corners_linear(WindowSums(maps, [(None, None)]), h, w, vr, vc, EPS, gen(5), [anti])
    mass = window_masses(integral(base), h[:1], w[:1])[0].double()
    torch.testing.assert_close(drawn, mass.flatten()[idx], atol=1e-6, rtol=0)
    score = (1 - mass).clamp(min=0) if anti else mass
    valid = (vr[0][:, None] & vc[0][None, :]).flatten()
    prob = torch.where(valid, score.flatten() + EPS, torch.zeros(height * width, dtype=torch.float64))
    prob = prob / prob.sum()
    counts = torch.bincount(idx, minlength=height * width).double()
    assert counts[~valid].sum() == 0, "an invalid corner was drawn"
    stat = chisquare(counts[valid].numpy(), (prob[valid] * n).numpy())
    assert stat.pvalue > 1e-3, (stat, counts, prob * n)


@pytest.mark.parametrize("anti", [False, True])
def test_tau1_window_draw_matches_the_grid_draw(anti):
    """The same generator state draws the same corners as draw_corner on the full grid (the masses
    agree to rounding), and advances the generator the same."""
    n, height, width = 500, 11, 13
    maps = normalised_maps(torch.rand(n, height, width, generator=gen(6)) ** 3)
    h, w = sides(n, height, width, 7)
    images = torch.randperm(n, generator=gen(8))
    vr, vc = valid_extent(height, h), valid_extent(width, w)
    g1, g2 = gen(9), gen(9)
    # Two sides at once (sources by a permutation, targets in place) draw what two draws one after
    # the other on the full grid draw.
    both = WindowSums(maps, [side(images, "inverse"), (None, None)])
    (fast, _), (fast_dst, _) = draw_window_corners_linear(both, h, w, vr, vc, EPS, g1, [False, anti])
    grid, mass = draw_window_corner(integral(maps), images, h, w, vr, vc, "saliency", 1.0, EPS, g2)
    grid_dst, _ = draw_window_corner(integral(maps), torch.arange(n), h, w, vr, vc, "saliency", 1.0, EPS, g2, anti)
    assert float((fast_dst == grid_dst).double().mean()) > 0.99
    assert torch.equal(g1.get_state(), g2.get_state()), "the generator advanced differently"
    assert float((fast == grid).double().mean()) > 0.99
    assert mass is not None and mass.dtype == torch.float64


def test_uniform_window_draw_needs_no_map_and_matches_draw_corner():
    n, height, width = 64, 6, 7
    h, w = sides(n, height, width, 10)
    vr, vc = valid_extent(height, h), valid_extent(width, w)
    fast, mass = draw_window_corner(None, torch.arange(n), h, w, vr, vc, "uniform", 0.0, EPS, gen(11))
    grid = draw_corner(torch.rand(n, height, width), vr, vc, "uniform", 0.0, EPS, gen(11))
    assert torch.equal(fast, grid) and mass is None
    row = categorical(vr.double(), gen(12))
    assert bool((row < (height - h + 1).clamp(max=height)).all())


# --------------------------------------------------------------------------------------------
# Spectral residual: two-tap resize and constant images
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("hw", [(32, 32), (224, 224), (29, 41), (64, 64), (100, 7), (2, 2), (300, 200), (65, 63)])
def test_two_tap_resize_is_opencv_linear_exact(hw):
    cv2 = pytest.importorskip("cv2")
    h, w = hw
    grey = torch.randint(0, 256, (3, h, w), generator=gen(h * 1000 + w), dtype=torch.uint8)
    ours = resize_linear_exact_u8(grey.float(), (64, 64))
    for i in range(3):
        ref = cv2.resize(grey[i].numpy(), (64, 64), interpolation=cv2.INTER_LINEAR_EXACT)
        assert torch.equal(ours[i], torch.from_numpy(ref).float()), i


def test_spectral_residual_constant_means_every_channel_constant():
    """A constant image (every channel constant once quantised) has an all-zero map; an image with
    a constant grey but two colours is not constant, and gets OpenCV's map."""
    cv = pytest.importorskip("randsaliencymix.reference")
    pytest.importorskip("cv2")
    x = torch.zeros(3, 3, 40, 48, dtype=torch.uint8)
    x[0] = torch.tensor([30, 140, 250], dtype=torch.uint8).reshape(3, 1, 1)
    # Image 1: two colours of the same OpenCV grey value.
    a = torch.tensor([200, 0, 0], dtype=torch.uint8)
    b = torch.tensor([0, 102, 0], dtype=torch.uint8)
    assert torch.equal(rgb_to_gray_u8(a.reshape(1, 3, 1, 1)), rgb_to_gray_u8(b.reshape(1, 3, 1, 1)))
    x[1] = a.reshape(3, 1, 1)
    x[1, :, :, 20:] = b.reshape(3, 1, 1)
    x[2] = torch.randint(0, 256, (3, 40, 48), generator=gen(13), dtype=torch.uint8)
    out = spectral_residual(x)
    assert torch.equal(out[0], torch.zeros_like(out[0]))
    ref = cv.opencv_saliency(x[1:], "spectral")
    assert float((out[1:].double() - ref.double()).abs().max()) < 1e-4
    # Float images: constant after quantisation, even if not constant as floats.
    xf = torch.full((2, 3, 20, 20), 0.5)
    xf[0, :, 3, 3] = 0.5 + 1e-4  # quantises to the same 0-255 value
    xf[1, 1, 5, 5] = 0.9
    out = spectral_residual(xf, value_range=(0.0, 1.0))
    assert torch.equal(out[0], torch.zeros_like(out[0])) and float(out[1].max()) > 0.1


def test_spectral_residual_reads_only_the_resized_pixels_and_the_extremes():
    """The map does not depend on pixels the 64x64 resize skips, except through the per-image
    min-max scaling (here fixed by a value range) and constancy."""
    x = torch.rand(2, 3, 224, 224, generator=gen(14))
    y = x.clone()
    y[:, :, 3, :] = torch.rand(2, 3, 224, generator=gen(15))  # rows 3 and 6 are not read by the resize
    y[:, :, :, 6] = torch.rand(2, 3, 224, generator=gen(16))
    kw = dict(value_range=(0.0, 1.0))
    assert torch.equal(spectral_residual(x, **kw), spectral_residual(y, **kw))


def test_normalised_maps_assume_clean_is_the_same_for_clean_maps():
    maps = torch.rand(5, 9, 11, generator=gen(20)) ** 3
    maps[1] = 0.0
    maps[2, 3, 4] = 3e38
    assert torch.equal(normalised_maps(maps, assume_clean=True), normalised_maps(maps))
    assert torch.equal(maps[1], torch.zeros_like(maps[1])), "input mutated"


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
