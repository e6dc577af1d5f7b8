"""Mixing operators: MixUp, CutMix, SaliencyMix (official and per-sample) and RandSaliencyMix.

Every operator is a sampler of :class:`MixParams` plus one shared, pure :func:`apply_mix`:

* ``op.sample_params(x, y, generator) -> MixParams`` draws everything random (permutation, lam,
  boxes, blend strength, switches) from the caller's generator and computes the label weights;
* ``op.apply(x, y, params)`` (or :func:`apply_mix`) mixes images and targets and is deterministic;
* ``op(x, y, params=None, generator=None)`` does both.

Row ``i`` is the target, row ``perm[i]`` its source, as in ``SPEC.md``. Each output pixel is
``(1 - s) * x[i] + s * x[perm[i]]`` at the source's shifted position, with ``s`` the per-pixel source
share: ``eta`` inside the pasted box, ``1 - lam`` everywhere for a MixUp sample, 0 elsewhere.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import nn

from . import _random as rnd
from ._checks import (
    check_choice,
    check_images,
    check_nonnegative,
    check_normalisation,
    check_num_classes,
    check_perm,
    check_positive,
    check_probability,
    check_saliency_maps,
    to_soft_targets,
)
from .saliency import saliency_map

__all__ = [
    "MixParams",
    "apply_mix",
    "MixUp",
    "CutMix",
    "SaliencyMix",
    "RandSaliencyMix",
    "RandomChoiceMix",
    "NoMix",
]


@dataclass
class MixParams:
    """Everything one mixing step drew, replayable with :func:`apply_mix`.

    Boxes are ``(row1, col1, row2, col2)``, half-open, in pixels; an empty box is all zeros.
    """

    perm: torch.Tensor  # (B,) long: source row of each target row
    lam: torch.Tensor  # (B,) float64: lam as drawn (share of the target kept, before rounding)
    src_boxes: torch.Tensor  # (B, 4) long: patch cut from the source
    dst_boxes: torch.Tensor  # (B, 4) long: where it lands in the target (same size)
    eta: torch.Tensor  # (B,) float64: blend strength inside the box (1 = hard paste)
    mixup: torch.Tensor  # (B,) bool: whole-image MixUp with source share 1 - lam instead of a patch
    applied: torch.Tensor  # (B,) bool: the sample is mixed at all (probability p)
    source_weight: torch.Tensor  # (B,) float64: label weight of the source, as applied
    shifted: bool = False  # static: some patch lands away from its source coordinates
    blended: bool = True  # static: some share may lie strictly between 0 and 1 (else a hard paste)

    @property
    def batch_size(self) -> int:
        return int(self.perm.shape[0])

    def to(self, device: Union[str, torch.device]) -> MixParams:
        return replace(
            self,
            **{
                f.name: getattr(self, f.name).to(device)
                for f in fields(self)
                if isinstance(getattr(self, f.name), torch.Tensor)
            },
        )


def _check_params(params: object, x: torch.Tensor) -> MixParams:
    if not isinstance(params, MixParams):
        raise TypeError(f"Expected params of type MixParams, but got {type(params).__name__} instead.")
    if params.batch_size != x.shape[0]:
        raise ValueError(
            f"Expected params for a batch of {x.shape[0]}, but got params for {params.batch_size} instead."
        )
    return params


def source_share(params: MixParams, height: int, width: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Per-pixel share of the source in the output, ``(B, 1, H, W)``."""
    dev = params.perm.device
    rows = torch.arange(height, device=dev)
    cols = torch.arange(width, device=dev)
    box = params.dst_boxes
    in_rows = (rows >= box[:, 0:1]) & (rows < box[:, 2:3])
    in_cols = (cols >= box[:, 1:2]) & (cols < box[:, 3:4])
    inside = in_rows[:, :, None] & in_cols[:, None, :]
    eta = params.eta.to(dtype)[:, None, None]
    share = torch.where(inside, eta, torch.zeros((), dtype=dtype, device=dev))
    mix = (1.0 - params.lam).to(dtype)[:, None, None].expand_as(share)
    share = torch.where(params.mixup[:, None, None], mix, share)
    share = torch.where(params.applied[:, None, None], share, torch.zeros((), dtype=dtype, device=dev))
    return share.unsqueeze(1)


def _aligned_sources(x: torch.Tensor, params: MixParams) -> torch.Tensor:
    """Each target's source image, translated so the source box sits on the target box."""
    if not params.shifted:
        return x.index_select(0, params.perm)
    b, c, h, w = x.shape
    dev = x.device
    shift = params.src_boxes[:, :2] - params.dst_boxes[:, :2]  # (B, 2) rows, cols
    rows = (torch.arange(h, device=dev) + shift[:, 0:1]).clamp(0, h - 1)  # (B, H)
    cols = (torch.arange(w, device=dev) + shift[:, 1:2]).clamp(0, w - 1)  # (B, W)
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        # Advanced indices around a slice put the broadcast dims first: (B, H, W, C), which is
        # channels_last once permuted, and reads whole pixels at a time.
        return x[params.perm[:, None, None], :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
    channels = torch.arange(c, device=dev)
    return x[
        params.perm[:, None, None, None], channels[None, :, None, None], rows[:, None, :, None], cols[:, None, None, :]
    ]


def apply_mix(x: torch.Tensor, y: torch.Tensor, params: MixParams) -> Tuple[torch.Tensor, torch.Tensor]:
    """Mix images ``(B, C, H, W)`` and soft targets ``(B, K)`` as ``params`` say. Pure."""
    b, _, h, w = x.shape
    work_dtype = x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32
    share = source_share(params, h, w, work_dtype)
    sources = _aligned_sources(x, params)
    # lerp is exact at weights 0 and 1, so a hard paste copies pixels bit for bit.
    if params.blended:
        # (1 - s) x + s src, not lerp: lerp's x + s (src - x) overflows for large values of opposite
        # sign (0 * inf = NaN), while this form is exact at s = 0 and s = 1 and bounded between.
        share = share.expand(b, x.shape[1], h, w)
        mixed = torch.mul(x.to(work_dtype), 1.0 - share).addcmul_(sources.to(work_dtype), share)
    else:
        # Every share is 0 or 1: a pure selection, bit exact in any dtype.
        mixed = torch.where(share > 0.5, sources, x)
    if x.dtype == torch.uint8:
        mixed = mixed.round_().clamp_(0, 255)
    mixed = mixed.to(x.dtype)
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        mixed = mixed.contiguous(memory_format=torch.channels_last)
    else:
        mixed = mixed.contiguous()
    weight = params.source_weight.to(y.dtype)[:, None]
    targets = torch.lerp(y, y.index_select(0, params.perm), weight)
    return mixed, targets


def _box_sides(lam: torch.Tensor, height: int, width: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """``h = int(H * sqrt(1 - lam))``, ``w = int(W * sqrt(1 - lam))`` as in the CutMix code."""
    share = (1.0 - lam).clamp(min=0.0)
    cut = torch.sqrt(share)
    # torch's float64 sqrt is off by one ulp on ~1% of inputs; that changes an integer side only
    # where the root rounds up to exactly 1 for lam in (0, ~1e-15). NumPy's correctly rounded root
    # stays below 1 there, so the authors' code gets H - 1: match it.
    cut = torch.where((cut >= 1.0) & (share < 1.0), torch.nextafter(torch.ones_like(cut), torch.zeros_like(cut)), cut)
    return (height * cut).floor().long(), (width * cut).floor().long()


def _centred_boxes(
    centre_r: torch.Tensor, centre_c: torch.Tensor, h: torch.Tensor, w: torch.Tensor, height: int, width: int
) -> torch.Tensor:
    """Boxes of half-sides h // 2, w // 2 around a centre, clipped to the image (CutMix's rule)."""
    r1 = (centre_r - h // 2).clamp(0, height)
    r2 = (centre_r + h // 2).clamp(0, height)
    c1 = (centre_c - w // 2).clamp(0, width)
    c2 = (centre_c + w // 2).clamp(0, width)
    return torch.stack([r1, c1, r2, c2], dim=1)


def _box_area_share(boxes: torch.Tensor, height: int, width: int) -> torch.Tensor:
    return ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).double() / (height * width)


class _Mixer(nn.Module):
    """Shared plumbing: validation, soft targets, forward = sample + apply."""

    def __init__(
        self,
        num_classes: Optional[int],
        p: float,
        label_smoothing: float,
        validate: Optional[bool],
    ) -> None:
        super().__init__()
        self.num_classes = check_num_classes(num_classes)
        self.p = check_probability("p", p)
        self.label_smoothing = check_probability("label_smoothing", label_smoothing)
        self.validate = validate

    # -- subclasses implement -------------------------------------------------------------
    def _sample(self, x: torch.Tensor, generator: torch.Generator, **kw: object) -> MixParams:
        raise NotImplementedError

    # -- public API ----------------------------------------------------------------------
    def sample_params(
        self,
        x: torch.Tensor,
        y: Optional[torch.Tensor] = None,
        generator: Optional[torch.Generator] = None,
        perm: Optional[torch.Tensor] = None,
        saliency: Optional[torch.Tensor] = None,
    ) -> MixParams:
        """Draw the parameters of one mixing step for the batch ``x`` (``y`` is not needed).

        ``perm`` fixes the pairing (target ``i`` gets source ``perm[i]``) instead of drawing it;
        ``saliency`` gives precomputed ``(B, H, W)`` maps of ``x`` to the saliency-based operators.
        """
        check_images(x, self.validate)
        return self._checked_sample(x, generator, perm, saliency)

    def _checked_sample(
        self,
        x: torch.Tensor,
        generator: Optional[torch.Generator],
        perm: Optional[torch.Tensor],
        saliency: Optional[torch.Tensor],
    ) -> MixParams:
        gen = rnd.pick_generator(generator, x.device)
        if perm is not None:
            perm = check_perm(perm, x, self.validate)
        if saliency is not None:
            saliency = check_saliency_maps(saliency, x)
        return self._sample(x, gen, perm=perm, saliency=saliency)

    def apply(self, x: torch.Tensor, y: torch.Tensor, params: MixParams) -> Tuple[torch.Tensor, torch.Tensor]:
        """Mix ``x`` and ``y`` with given parameters; ``y`` as ``(B,)`` indices or ``(B, K)`` probabilities."""
        check_images(x, self.validate)
        soft = to_soft_targets(y, x.shape[0], self.num_classes, self.label_smoothing, self.validate)
        return apply_mix(x, soft, _check_params(params, x))

    def forward(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        params: Optional[MixParams] = None,
        generator: Optional[torch.Generator] = None,
        perm: Optional[torch.Tensor] = None,
        saliency: Optional[torch.Tensor] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Mix a batch: ``x (B, C, H, W)``, ``y (B,)`` or ``(B, K)`` -> ``(x', y' (B, K))``."""
        check_images(x, self.validate)
        soft = to_soft_targets(y, x.shape[0], self.num_classes, self.label_smoothing, self.validate)
        if params is None:
            params = self._checked_sample(x, generator, perm, saliency)
        return apply_mix(x, soft, _check_params(params, x))

    def _coins(self, n: int, per_sample: bool, gen: torch.Generator, dev: torch.device) -> torch.Tensor:
        u = rnd.uniform(n if per_sample else 1, gen, dev)
        return (u < self.p).expand(n)

    def _lam(self, alpha: float, n: int, per_sample: bool, gen: torch.Generator, dev: torch.device) -> torch.Tensor:
        return rnd.beta(alpha, n if per_sample else 1, gen, dev).expand(n).contiguous()


def _draw_perm(n: int, generator: torch.Generator, dev: torch.device, perm: Optional[torch.Tensor]) -> torch.Tensor:
    return rnd.permutation(n, generator, dev) if perm is None else perm


def _empty_boxes(n: int, dev: torch.device) -> torch.Tensor:
    return torch.zeros(n, 4, dtype=torch.long, device=dev)


class NoMix(_Mixer):
    """Identity (the "no mixing" baseline): returns the images and their (smoothed) soft targets."""

    def __init__(
        self, num_classes: Optional[int] = None, label_smoothing: float = 0.0, validate: Optional[bool] = None
    ) -> None:
        super().__init__(num_classes, 0.0, label_smoothing, validate)

    def _sample(self, x: torch.Tensor, generator: torch.Generator, **kw: object) -> MixParams:
        n, dev = x.shape[0], x.device
        zeros = torch.zeros(n, dtype=torch.float64, device=dev)
        return MixParams(
            perm=torch.arange(n, device=dev),
            lam=zeros + 1.0,
            src_boxes=_empty_boxes(n, dev),
            dst_boxes=_empty_boxes(n, dev),
            eta=zeros + 1.0,
            mixup=torch.zeros(n, dtype=torch.bool, device=dev),
            applied=torch.zeros(n, dtype=torch.bool, device=dev),
            source_weight=zeros,
            blended=False,
        )


class _BatchOrSampleMixer(_Mixer):
    """An operator whose lam (and box) and coin are drawn per batch or per sample (``mode``)."""

    def __init__(
        self,
        alpha: float = 1.0,
        num_classes: Optional[int] = None,
        p: float = 1.0,
        mode: str = "batch",
        label_smoothing: float = 0.0,
        validate: Optional[bool] = None,
    ) -> None:
        super().__init__(num_classes, p, label_smoothing, validate)
        self.alpha = check_positive("alpha", alpha)
        self.mode = check_choice("mode", mode, ("batch", "sample"))


class MixUp(_BatchOrSampleMixer):
    """MixUp (Zhang et al., 2018): ``x' = lam x + (1 - lam) x[perm]``, the same for the labels."""

    def _sample(self, x: torch.Tensor, generator: torch.Generator, **kw: object) -> MixParams:
        n, dev = x.shape[0], x.device
        per_sample = self.mode == "sample"
        perm = _draw_perm(n, generator, dev, kw.get("perm"))  # type: ignore[arg-type]
        lam = self._lam(self.alpha, n, per_sample, generator, dev)
        applied = self._coins(n, per_sample, generator, dev)
        return MixParams(
            perm=perm,
            lam=lam,
            src_boxes=_empty_boxes(n, dev),
            dst_boxes=_empty_boxes(n, dev),
            eta=torch.ones(n, dtype=torch.float64, device=dev),
            mixup=torch.ones(n, dtype=torch.bool, device=dev),
            applied=applied,
            source_weight=torch.where(applied, 1.0 - lam, torch.zeros_like(lam)),
        )


class CutMix(_BatchOrSampleMixer):
    """CutMix (Yun et al., 2019): a random box of the source pasted at the same place.

    ``mode="batch"`` is the official code (one lam, box and coin per batch); ``"sample"`` draws
    them per sample. ``lam`` is recomputed from the clipped box.
    """

    def _sample(self, x: torch.Tensor, generator: torch.Generator, **kw: object) -> MixParams:
        n, dev = x.shape[0], x.device
        height, width = x.shape[-2:]
        per_sample = self.mode == "sample"
        m = n if per_sample else 1
        perm = _draw_perm(n, generator, dev, kw.get("perm"))  # type: ignore[arg-type]
        lam = self._lam(self.alpha, n, per_sample, generator, dev)
        centre_r = torch.randint(height, (m,), generator=generator, device=dev).expand(n)
        centre_c = torch.randint(width, (m,), generator=generator, device=dev).expand(n)
        applied = self._coins(n, per_sample, generator, dev)
        h, w = _box_sides(lam, height, width)
        boxes = _centred_boxes(centre_r, centre_c, h, w, height, width)
        boxes = torch.where(applied[:, None], boxes, torch.zeros_like(boxes))
        return MixParams(
            perm=perm,
            lam=lam,
            src_boxes=boxes,
            dst_boxes=boxes,
            eta=torch.ones(n, dtype=torch.float64, device=dev),
            mixup=torch.zeros(n, dtype=torch.bool, device=dev),
            applied=applied,
            source_weight=_box_area_share(boxes, height, width),
            blended=False,
        )


def _peak_of_quantised(maps: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Row, column of the first maximum of ``(map * 255).astype(uint8)``, as the authors' code."""
    q = (maps.float() * 255.0).to(torch.uint8).flatten(1)
    # argmax of uint8 is not implemented everywhere; int16 keeps the order and the first index.
    flat = q.to(torch.int16).argmax(dim=1)
    width = maps.shape[-1]
    return flat // width, flat % width


class SaliencyMix(_Mixer):
    """SaliencyMix (Uddin et al., 2021): the box around the source's saliency peak, same place.

    ``mode="official"`` reproduces the authors' code: one lam, one box and one coin per batch, the
    box taken from OpenCV's fine-grained map of ``x[perm[0]]`` *as the tensor holds it* (normalised
    float, channels last; OpenCV then reads float pixels as bytes, so the map is near noise). It
    needs the ``opencv`` extra and copies that one image to the host.

    ``mode="per_sample"`` is the corrected variant: each source has its own correctly computed map
    (batched detector), lam, peak and box.
    """

    def __init__(
        self,
        alpha: float = 1.0,
        num_classes: Optional[int] = None,
        p: float = 1.0,
        mode: str = "official",
        detector: Union[str, Callable[[torch.Tensor], torch.Tensor]] = "fine_grained",
        value_range: Optional[Tuple[float, float]] = None,
        mean: Optional[Sequence[float]] = None,
        std: Optional[Sequence[float]] = None,
        label_smoothing: float = 0.0,
        validate: Optional[bool] = None,
    ) -> None:
        super().__init__(num_classes, p, label_smoothing, validate)
        self.alpha = check_positive("alpha", alpha)
        self.mode = check_choice("mode", mode, ("official", "per_sample"))
        if isinstance(detector, str):
            check_choice("detector", detector, ("fine_grained", "spectral"))
        self.detector = detector
        check_normalisation(value_range, mean, std)
        self.value_range, self.mean, self.std = value_range, mean, std

    def _sample(self, x: torch.Tensor, generator: torch.Generator, **kw: object) -> MixParams:
        saliency: Optional[torch.Tensor] = kw.get("saliency")  # type: ignore[assignment]
        n, dev = x.shape[0], x.device
        height, width = x.shape[-2:]
        perm = _draw_perm(n, generator, dev, kw.get("perm"))  # type: ignore[arg-type]
        if self.mode == "official":
            lam = self._lam(self.alpha, n, False, generator, dev)
            applied = self._coins(n, False, generator, dev)
            peak_r, peak_c = _official_peak(x[perm[0]])
            centre_r = torch.full((n,), peak_r, dtype=torch.long, device=dev)
            centre_c = torch.full((n,), peak_c, dtype=torch.long, device=dev)
        else:
            lam = self._lam(self.alpha, n, True, generator, dev)
            applied = self._coins(n, True, generator, dev)
            maps = self._maps(x, saliency)
            centre_r, centre_c = _peak_of_quantised(maps.index_select(0, perm))
        h, w = _box_sides(lam, height, width)
        boxes = _centred_boxes(centre_r, centre_c, h, w, height, width)
        boxes = torch.where(applied[:, None], boxes, torch.zeros_like(boxes))
        return MixParams(
            perm=perm,
            lam=lam,
            src_boxes=boxes,
            dst_boxes=boxes,
            eta=torch.ones(n, dtype=torch.float64, device=dev),
            mixup=torch.zeros(n, dtype=torch.bool, device=dev),
            applied=applied,
            source_weight=_box_area_share(boxes, height, width),
            blended=False,
        )

    def _maps(self, x: torch.Tensor, saliency: Optional[torch.Tensor]) -> torch.Tensor:
        if saliency is not None:
            return saliency
        return check_saliency_maps(
            saliency_map(x, self.detector, self.value_range, self.mean, self.std, validate=False), x
        )


def _official_peak(image_chw: torch.Tensor) -> Tuple[int, int]:
    """The authors' saliency_bbox peak: OpenCV on the CHW tensor transposed to HWC, as given."""
    from .reference import opencv_saliency_hwc

    img = image_chw.detach()
    if img.dtype in (torch.float16, torch.bfloat16):
        img = img.float()  # OpenCV has no 16-bit float path; a training loop would hold float32
    hwc = img.cpu().numpy().transpose(1, 2, 0)
    if hwc.shape[-1] == 1:
        hwc = hwc[..., 0]
    saliency = opencv_saliency_hwc(hwc, "fine_grained")
    quantised = (saliency * 255).astype("uint8")
    r, c = np.unravel_index(np.argmax(quantised, axis=None), quantised.shape)
    return int(r), int(c)


def _normalised_maps(maps: torch.Tensor) -> torch.Tensor:
    """Saliency maps scaled to sum 1 per image; an all-zero map becomes uniform."""
    maps = maps.float().clamp(min=0)
    total = maps.sum(dim=(1, 2), keepdim=True)
    uniform = 1.0 / (maps.shape[1] * maps.shape[2])
    # Adding the uniform share only where the total is 0 keeps this to two passes.
    return maps.div_(total.clamp(min=torch.finfo(torch.float32).tiny)).add_((total <= 0).float() * uniform)


def _integral(maps: torch.Tensor) -> torch.Tensor:
    """Zero-padded integral image (B, H+1, W+1) in float32 (masses are probabilities, <= 1)."""
    b, height, width = maps.shape
    integral = maps.new_zeros(b, height + 1, width + 1)
    torch.cumsum(maps, dim=2, out=integral[:, 1:, 1:])
    integral[:, 1:, 1:] = integral[:, 1:, 1:].cumsum(dim=1)
    return integral


def _window_mass(
    integral: torch.Tensor, h: torch.Tensor, w: torch.Tensor, images: Optional[torch.Tensor] = None
) -> torch.Tensor:
    """Mass inside the ``h x w`` window at every top-left corner, ``(B, H, W)``, for the maps
    ``images`` (row indices into ``integral``, default all). Corners past ``H - h`` / ``W - w``
    hold meaningless values: callers mask them."""
    n_maps, h1, w1 = integral.shape
    height, width = h1 - 1, w1 - 1
    dev = integral.device
    images = torch.arange(n_maps, device=dev) if images is None else images
    b = images.shape[0]
    rows = torch.arange(height, device=dev)
    # Row shift by h per sample as whole-row copies of the flattened integral (fast, contiguous).
    base = images[:, None] * h1
    lines = integral.reshape(n_maps * h1, w1)
    low = lines.index_select(0, (base + rows).reshape(-1))
    high = lines.index_select(0, (base + (rows + h[:, None]).clamp(max=height)).reshape(-1))
    row_diff = high.sub_(low).reshape(b, height, w1)
    cols = (torch.arange(width, device=dev) + w[:, None]).clamp(max=width)
    mass = row_diff.gather(2, cols[:, None, :].expand(b, height, width))
    return mass.sub_(row_diff[:, :, :width]).clamp_(min=0.0)


def _box_mass(
    integral: torch.Tensor, images: torch.Tensor, corner: torch.Tensor, h: torch.Tensor, w: torch.Tensor
) -> torch.Tensor:
    """Mass of map ``images[i]`` in the ``h x w`` box at flat corner ``corner[i]``, float64 (B,)."""
    _, h1, w1 = integral.shape
    r, c = corner // (w1 - 1), corner % (w1 - 1)
    flat = integral.reshape(-1)

    def at(rr: torch.Tensor, cc: torch.Tensor) -> torch.Tensor:
        return flat[images * (h1 * w1) + rr * w1 + cc].double()

    mass = at(r + h, c + w) - at(r, c + w) - at(r + h, c) + at(r, c)
    return mass.clamp(min=0.0)


def _valid_extent(size: int, side: torch.Tensor) -> torch.Tensor:
    """(B, size) bool: top-left positions where a window of ``side`` fits."""
    return torch.arange(size, device=side.device)[None, :] <= (size - side)[:, None]


def window_mass(maps: torch.Tensor, h: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Mass of each map inside the ``h x w`` window at every top-left corner, ``(B, H, W)``.

    Corners whose window leaves the image (r > H - h or c > W - w) get ``nan``.
    """
    mass = _window_mass(_integral(maps.float()), h, w)
    valid = _valid_extent(maps.shape[1], h)[:, :, None] & _valid_extent(maps.shape[2], w)[:, None, :]
    return torch.where(valid, mass, torch.full_like(mass, float("nan")))


def _inverse_cdf(weights: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One index per row of non-negative ``weights`` (B, N), with probability proportional to them."""
    cdf = weights.double().cumsum(dim=1)
    u = rnd.uniform(weights.shape[0], generator, weights.device)[:, None] * cdf[:, -1:]
    index = torch.searchsorted(cdf, u, right=True)
    # A u that lands on the total would step past the end: keep the last positive entry.
    last = weights.shape[1] - 1 - (weights.flip(1) > 0).double().argmax(dim=1, keepdim=True)
    return torch.minimum(index, last).squeeze(1)


def _sample_corner(
    weights: Optional[torch.Tensor], valid_rows: torch.Tensor, valid_cols: torch.Tensor, generator: torch.Generator
) -> torch.Tensor:
    """Flat index of a corner drawn with probability proportional to ``weights`` (B, H, W) over the
    valid rectangle (``None`` = uniform). Two stages, row then column, so the only full pass
    over the grid is one batched matrix-vector product for the row marginals."""
    dtype = torch.float32 if weights is None else weights.dtype
    vr, vc = valid_rows.to(dtype), valid_cols.to(dtype)
    if weights is None:
        row = _inverse_cdf(vr, generator)
        col = _inverse_cdf(vc, generator)
    else:
        row_mass = torch.bmm(weights, vc[:, :, None]).squeeze(2) * vr
        row = _inverse_cdf(row_mass, generator)
        row_weights = weights.gather(1, row[:, None, None].expand(-1, 1, weights.shape[2])).squeeze(1)
        col = _inverse_cdf(row_weights * vc, generator)
    return row * valid_cols.shape[1] + col


def _corner_weights(score: torch.Tensor, tau: float, eps: float) -> torch.Tensor:
    """``(score + eps) ** tau``, scaled by its maximum per sample so large tau cannot underflow
    every entry. ``score`` may be modified in place."""
    w = score.add_(eps)
    if tau == 1.0:
        return w
    w = w.div_(w.amax(dim=(1, 2), keepdim=True))
    return w.pow_(tau)


def _draw_corner(score: torch.Tensor, tau: float, eps: float, mode: str, generator: torch.Generator) -> torch.Tensor:
    """Flat index of a corner with probability proportional to ``(score + eps) ** tau``.

    ``score`` is ``(B, H, W)`` with ``nan`` at invalid corners (a top-left rectangle is valid).
    ``mode="peak"`` takes the first maximum; ``"uniform"`` is ``tau = 0``.
    """
    valid = ~torch.isnan(score)
    valid_rows, valid_cols = valid.any(dim=2), valid.any(dim=1)
    if mode == "peak":
        return torch.where(valid, score, torch.full_like(score, -math.inf)).flatten(1).argmax(dim=1)
    if mode == "uniform" or tau == 0:
        return _sample_corner(None, valid_rows, valid_cols, generator)
    clean = torch.where(valid, score, torch.zeros_like(score))
    return _sample_corner(_corner_weights(clean, tau, eps), valid_rows, valid_cols, generator)


# Every saliency idea switched on, hard paste on every sample: the settings RandSaliencyMix had as
# defaults before the CIFAR-10 study chose the current ones. ``RandSaliencyMix(**SALIENCY_ON)``.
SALIENCY_ON: Dict[str, Any] = {"p": 1.0, "tau_src": 1.0, "tau_dst": 1.0, "eta": 1.0, "mixup_prob": 0.0, "gamma": 0.5}


class RandSaliencyMix(_Mixer):
    """RandSaliencyMix: saliency-proportional crop, object-avoiding paste, blend and saliency labels.

    See ``SPEC.md``. Per sample ``i`` (target ``i``, source ``perm[i]``):

    * ``source``: where the patch is cut. ``"saliency"`` draws the top-left corner with probability
      ``(M_s + eps) ** tau_src`` (``M_s`` = source saliency mass in the window), ``"peak"`` takes the
      window of largest mass, ``"uniform"`` any window.
    * ``paste``: where it lands. ``"anti_saliency"`` ``(1 - M_t + eps) ** tau_dst``, ``"saliency"``
      ``(M_t + eps) ** tau_dst``, ``"uniform"``, or ``"same"`` (the source's coordinates).
    * ``eta``: blend strength inside the box, a number (1 = hard paste) or ``"beta"`` for
      ``Beta(beta_blend, beta_blend)`` per sample; ``mixup_prob``: per-sample switch to MixUp.
    * ``gamma``: source label weight ``gamma * w_saliency + (1 - gamma) * w_area``.

    The defaults are the settings the CIFAR-10 study chose on validation data (RESULTS.md, stage 1):
    ``p=0.5, eta="beta", mixup_prob=0.25`` and ``tau_src=0, tau_dst=0, gamma=0``. With the last
    three no draw uses saliency and the detector is skipped; the study found no benefit from the
    saliency ideas at its budget. Switch them on with e.g. ``tau_src=1, tau_dst=1, gamma=0.5``.
    """

    def __init__(
        self,
        alpha: float = 1.0,
        num_classes: Optional[int] = None,
        p: float = 0.5,
        source: str = "saliency",
        tau_src: float = 0.0,
        paste: str = "anti_saliency",
        tau_dst: float = 0.0,
        eta: Union[float, str] = "beta",
        beta_blend: float = 1.0,
        mixup_prob: float = 0.25,
        gamma: float = 0.0,
        detector: Union[str, Callable[[torch.Tensor], torch.Tensor]] = "fine_grained",
        eps: float = 1e-4,
        value_range: Optional[Tuple[float, float]] = None,
        mean: Optional[Sequence[float]] = None,
        std: Optional[Sequence[float]] = None,
        label_smoothing: float = 0.0,
        validate: Optional[bool] = None,
    ) -> None:
        super().__init__(num_classes, p, label_smoothing, validate)
        self.alpha = check_positive("alpha", alpha)
        self.source = check_choice("source", source, ("saliency", "peak", "uniform"))
        self.paste = check_choice("paste", paste, ("anti_saliency", "same", "uniform", "saliency"))
        self.tau_src = check_nonnegative("tau_src", tau_src)
        self.tau_dst = check_nonnegative("tau_dst", tau_dst)
        if isinstance(eta, str):
            check_choice("eta", eta, ("beta",))
        else:
            check_probability("eta", eta)
        self.eta = eta
        self.beta_blend = check_positive("beta_blend", beta_blend)
        self.mixup_prob = check_probability("mixup_prob", mixup_prob)
        self.gamma = check_probability("gamma", gamma)
        if isinstance(detector, str):
            check_choice("detector", detector, ("fine_grained", "spectral"))
        self.detector = detector
        self.eps = check_positive("eps", eps)
        check_normalisation(value_range, mean, std)
        self.value_range, self.mean, self.std = value_range, mean, std

    @property
    def uses_saliency(self) -> bool:
        """Whether any draw or label weight depends on the saliency maps (with ``tau_src = 0``,
        ``tau_dst = 0`` and ``gamma = 0`` none does, and the detector is not run)."""
        source = self.source == "peak" or (self.source == "saliency" and self.tau_src > 0)
        paste = self.paste in ("anti_saliency", "saliency") and self.tau_dst > 0
        return source or paste or self.gamma > 0

    def _pick(
        self,
        score: torch.Tensor,
        mode: str,
        tau: float,
        valid_rows: torch.Tensor,
        valid_cols: torch.Tensor,
        generator: torch.Generator,
    ) -> torch.Tensor:
        if mode == "peak":
            valid = valid_rows[:, :, None] & valid_cols[:, None, :]
            return torch.where(valid, score, torch.full_like(score, -1.0)).flatten(1).argmax(dim=1)
        if mode == "uniform" or tau == 0:
            return _sample_corner(None, valid_rows, valid_cols, generator)
        return _sample_corner(_corner_weights(score, tau, self.eps), valid_rows, valid_cols, generator)

    def _sample(self, x: torch.Tensor, generator: torch.Generator, **kw: object) -> MixParams:
        saliency: Optional[torch.Tensor] = kw.get("saliency")  # type: ignore[assignment]
        n, dev = x.shape[0], x.device
        height, width = x.shape[-2:]
        perm = _draw_perm(n, generator, dev, kw.get("perm"))  # type: ignore[arg-type]
        lam = rnd.beta(self.alpha, n, generator, dev)
        h, w = _box_sides(lam, height, width)

        if saliency is not None:
            maps = saliency
        elif self.uses_saliency:
            maps = check_saliency_maps(
                saliency_map(x, self.detector, self.value_range, self.mean, self.std, validate=False), x
            )
        else:
            # No draw and no label reads the maps: skip the detector. A zero map normalises to the
            # uniform one, and every draw below is the one it would be with any map.
            maps = torch.zeros(n, height, width, device=dev)
        integral = _integral(_normalised_maps(maps))
        valid_rows, valid_cols = _valid_extent(height, h), _valid_extent(width, w)
        src_mass = _window_mass(integral, h, w, perm)
        src_corner = self._pick(src_mass, self.source, self.tau_src, valid_rows, valid_cols, generator)
        del src_mass
        if self.paste == "same":
            dst_corner = src_corner
        else:
            dst_mass = _window_mass(integral, h, w)
            score = torch.sub(1.0, dst_mass, out=dst_mass) if self.paste == "anti_saliency" else dst_mass
            mode = "uniform" if self.paste == "uniform" else "saliency"
            dst_corner = self._pick(score.clamp_(min=0.0), mode, self.tau_dst, valid_rows, valid_cols, generator)
            del dst_mass, score
        m_src = _box_mass(integral, perm, src_corner, h, w)
        m_dst = _box_mass(integral, torch.arange(n, device=dev), dst_corner, h, w)

        if isinstance(self.eta, str):
            eta = rnd.beta(self.beta_blend, n, generator, dev)
        else:
            eta = torch.full((n,), float(self.eta), dtype=torch.float64, device=dev)
        mixup = rnd.uniform(n, generator, dev) < self.mixup_prob
        applied = rnd.uniform(n, generator, dev) < self.p
        patch = applied & ~mixup

        def box(corner: torch.Tensor) -> torch.Tensor:
            r1, c1 = corner // width, corner % width
            b = torch.stack([r1, c1, r1 + h, c1 + w], dim=1)
            return torch.where(patch[:, None], b, torch.zeros_like(b))

        area = eta * (h * w).double() / (height * width)
        kept_src = eta * m_src
        kept_dst = 1.0 - eta * m_dst
        total = kept_src + kept_dst
        by_saliency = torch.where(total > 0, kept_src / total.clamp(min=1e-300), area)
        weight = self.gamma * by_saliency + (1.0 - self.gamma) * area
        weight = torch.where(mixup, 1.0 - lam, weight)
        weight = torch.where(applied, weight, torch.zeros_like(weight))
        return MixParams(
            perm=perm,
            lam=lam,
            src_boxes=box(src_corner),
            dst_boxes=box(dst_corner),
            eta=eta,
            mixup=mixup & applied,
            applied=applied,
            source_weight=weight,
            shifted=self.paste != "same",
            blended=self.eta != 1.0 or self.mixup_prob > 0,
        )


class RandomChoiceMix(_Mixer):
    """Pick one of several operators with given probabilities, per batch or per sample.

    Every operator samples its parameters for the whole batch (so no host synchronisation is
    needed to branch) and the chosen one is kept per batch or per sample. ``p`` applies on top.
    """

    def __init__(
        self,
        ops: Sequence[_Mixer],
        probs: Optional[Sequence[float]] = None,
        mode: str = "batch",
        num_classes: Optional[int] = None,
        p: float = 1.0,
        label_smoothing: float = 0.0,
        validate: Optional[bool] = None,
    ) -> None:
        super().__init__(num_classes, p, label_smoothing, validate)
        if (
            not isinstance(ops, (list, tuple, nn.ModuleList))
            or len(ops) == 0
            or not all(isinstance(o, _Mixer) for o in ops)
        ):
            raise TypeError("Expected a non-empty sequence of mixing operators, but got something else instead.")
        if probs is None:
            probs = [1.0 / len(ops)] * len(ops)
        if len(probs) != len(ops):
            raise ValueError(f"Expected {len(ops)} probabilities, one per operator, but got {len(probs)} instead.")
        for q in probs:
            check_nonnegative("probs", q)
        if not math.isclose(sum(probs), 1.0, abs_tol=1e-6):
            raise ValueError(f"Expected probs that sum to 1, but got a sum of {sum(probs):.6f} instead.")
        self.ops = nn.ModuleList(ops)
        self.probs = [float(q) for q in probs]
        self.mode = check_choice("mode", mode, ("batch", "sample"))

    def _sample(self, x: torch.Tensor, generator: torch.Generator, **kw: object) -> MixParams:
        n, dev = x.shape[0], x.device
        all_params: List[MixParams] = [op._sample(x, generator, **kw) for op in self.ops]
        cdf = torch.tensor(np.cumsum(self.probs), dtype=torch.float64, device=dev)
        u = rnd.uniform(n if self.mode == "sample" else 1, generator, dev)
        choice = torch.searchsorted(cdf, u, right=True).clamp(max=len(self.ops) - 1).expand(n)
        applied = (rnd.uniform(n if self.mode == "sample" else 1, generator, dev) < self.p).expand(n)
        merged = {}
        for f in fields(MixParams):
            if f.name in ("shifted", "blended"):
                continue
            stacked = torch.stack([getattr(q, f.name) for q in all_params])  # (n_ops, B, ...)
            index = choice.reshape(1, n, *([1] * (stacked.ndim - 2))).expand(1, *stacked.shape[1:])
            merged[f.name] = stacked.gather(0, index).squeeze(0)
        merged["applied"] = merged["applied"] & applied
        merged["source_weight"] = torch.where(
            applied, merged["source_weight"], torch.zeros_like(merged["source_weight"])
        )
        merged["mixup"] = merged["mixup"] & applied
        return MixParams(
            **merged, shifted=any(q.shifted for q in all_params), blended=any(q.blended for q in all_params)
        )
