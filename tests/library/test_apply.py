"""Applying params (``apply.py``): the fast paths of issue 11 against the plain formula they replace
(the chunked mix, :func:`randsaliencymix.apply.mix_images` without autograd, gives the same bits,
strides and dtype as the differentiable whole-batch formula for every operator, dtype, layout and
chunk size, and the opt-in ``out=`` buffer gets exactly those values), images that require grad,
huge but finite pixels, and an empty batch."""

from __future__ import annotations

import dataclasses
from typing import Callable, Dict

import pytest
import torch

import randsaliencymix as rsm
from conftest import HUGE, OPS5, gen, huge_images, images, labels, no_host_reads
from randsaliencymix import (
    SALIENCY_ON,
    MixParams,
    RandSaliencyMix,
    SaliencyMix,
    apply_mix,
    fine_grained,
    source_share,
)
from randsaliencymix import apply as apply_module
from randsaliencymix.saliency import spectral_residual

K = 5


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
# Images that require grad
# --------------------------------------------------------------------------------------------


def _recording_detector(seen: list) -> Callable[[torch.Tensor], torch.Tensor]:
    def detector(t: torch.Tensor) -> torch.Tensor:
        seen.append(t.requires_grad)
        return fine_grained(t)

    return detector


GRAD_CASES = {
    "SaliencyMix-official": lambda seen: SaliencyMix(num_classes=K, variant="official"),
    "SaliencyMix-per_sample": lambda seen: SaliencyMix(num_classes=K, variant="per_sample"),
    "SaliencyMix-per_sample-callable": lambda seen: SaliencyMix(
        num_classes=K, variant="per_sample", detector=_recording_detector(seen)
    ),
    "RandSaliencyMix-on": lambda seen: RandSaliencyMix(num_classes=K, **SALIENCY_ON),
    "RandSaliencyMix-blend-spectral": lambda seen: RandSaliencyMix(
        num_classes=K, **{**SALIENCY_ON, "eta": "beta", "mixup_prob": 0.3}, detector="spectral"
    ),
    "RandSaliencyMix-callable": lambda seen: RandSaliencyMix(
        num_classes=K, **SALIENCY_ON, detector=_recording_detector(seen)
    ),
}


@pytest.mark.parametrize("given_maps", [False, True], ids=["detected", "given-maps-with-grad"])
@pytest.mark.parametrize("case", list(GRAD_CASES))
def test_images_that_require_grad(case, given_maps):
    """The detector reads x.detach(); the mix stays differentiable: each output pixel is
    (1 - s) x_t + s x_s, so the gradient of its sum hands out exactly one unit per pixel."""
    if case == "SaliencyMix-official":
        pytest.importorskip("cv2")
        if given_maps:
            pytest.skip("the official SaliencyMix refuses given maps (test_mixing.py pins it)")
    seen: list = []
    op = GRAD_CASES[case](seen)
    x = images().requires_grad_()
    y = labels()
    maps = torch.rand(6, 16, 16, generator=gen(3)).requires_grad_() if given_maps else None
    params = op.sample_params(x, generator=gen(1), saliency=maps)
    xm, ym = op.apply_params(x, y, params)
    assert xm.requires_grad
    xm.sum().backward()
    assert x.grad is not None and bool(torch.isfinite(x.grad).all()) and bool((x.grad >= 0).all())
    torch.testing.assert_close(x.grad.sum(), torch.tensor(float(x.numel())))
    # Adjoint test: the mix is linear in x for fixed params, so <grad of <w, mix(x)>, v> = <w, mix(v)>.
    x64 = x.detach().double().requires_grad_()
    w = torch.randn(x.shape, generator=gen(5), dtype=torch.float64)
    v = torch.randn(x.shape, generator=gen(6), dtype=torch.float64)
    (grad,) = torch.autograd.grad((op.apply_params(x64, y, params)[0] * w).sum(), x64)
    torch.testing.assert_close((grad * v).sum(), (w * op.apply_params(v, y, params)[0]).sum())
    assert all(flag is False for flag in seen), "the detector saw a tensor that requires grad"
    # Same result as without grad, and forward works too.
    plain = op.apply_params(x.detach(), y, op.sample_params(x.detach(), generator=gen(1), saliency=maps))
    assert torch.equal(plain[0], xm.detach()) and torch.equal(plain[1], ym)
    xf, _ = op(x, y, generator=gen(1), saliency=maps)
    assert xf.requires_grad and torch.equal(xf.detach(), xm.detach())


# --------------------------------------------------------------------------------------------
# Huge but finite pixels
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("validate", [None, True])
@pytest.mark.parametrize("op_name", list(OPS5))
@pytest.mark.parametrize("case", list(HUGE))
def test_huge_finite_pixels_are_mixed_exactly(case, op_name, validate):
    """Finite pixels are valid input, checked or not: no error, no overflow to inf or NaN, hard
    pastes copy them bit for bit and blends stay between target and source."""
    if op_name == "SaliencyMix-official":
        pytest.importorskip("cv2")
    dtype, big = HUGE[case]
    x = huge_images(dtype, big)
    y = labels()
    op = OPS5[op_name](validate=validate)
    params = op.sample_params(x, generator=gen(2))
    xm, ym = op.apply_params(x, y, params)
    assert bool(torch.isfinite(xm).all()), "finite pixels became inf or NaN"
    assert bool((xm.double().abs() <= x.double().abs().max()).all())
    torch.testing.assert_close(ym.sum(1), torch.ones(6))
    share = source_share(params, 16, 16, torch.float64).expand(6, 3, 16, 16)
    keep = share == 0
    assert torch.equal(xm[keep], x[keep])
    if not params.shifted:
        src = x[params.perm]
        full = share == 1
        assert torch.equal(xm[full], src[full])
        lo, hi = torch.minimum(x, src).double(), torch.maximum(x, src).double()
        slack = 4 * torch.finfo(dtype).eps * torch.maximum(lo.abs(), hi.abs())  # rounding of the blend
        assert bool(((xm.double() >= lo - slack) & (xm.double() <= hi + slack)).all())


# --------------------------------------------------------------------------------------------
# An empty batch (issue 28)
# --------------------------------------------------------------------------------------------

H, W = 12, 10


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
