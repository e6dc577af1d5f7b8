"""What one mixing step drew (:class:`MixParams`), its checks, and the per-pixel source share it
implies; :mod:`randsaliencymix.apply` holds the one pure function that applies it.

Row ``i`` is the target, row ``perm[i]`` its source, as in ``SPEC.md``. Each output pixel is
``(1 - s) * x[i] + s * src[i]`` with ``src[i]`` the source ``x[perm[i]]`` at its shifted position
(plus the step's patch noise inside the pasted box, if any) and ``s`` the per-pixel source share
(:func:`source_share`): ``eta`` inside the pasted box, ``1 - lam`` everywhere for a MixUp sample,
0 elsewhere, or, for per-pixel operators (GuidedMixup), the drawn ``share_map``. The targets are
``(1 - w) * y[i] + w * y[perm[i]]`` with ``w`` the source's label weight as applied.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Optional, Tuple, Union

import torch

__all__ = ["MixParams", "check_params", "patch_mask", "source_share"]


@dataclass
class MixParams:
    """Everything one mixing step drew, replayable with :func:`apply_mix`.

    Boxes are ``(row1, col1, row2, col2)``, half-open, in pixels; an empty box is all zeros. Only
    patch samples (applied, not MixUp) use them: a MixUp sample blends its whole source in place.
    ``image_size`` is the ``(H, W)`` the parameters were sampled for: boxes and label weights only
    mean something for images of that size, so :func:`apply_mix` rejects any other.

    ``perm`` is a permutation of the batch (every image is the source of exactly one target) unless
    ``perm_is_permutation`` is ``False``: then sources were drawn independently per target (the
    confusion pairing of RandSaliencyMix, RandomChoiceMix per sample) and an image may be the source
    of several targets or of none. Every invariant of one row holds either way.

    ``patches=False`` promises that no applied sample outside MixUp has a box (every share is
    constant over its image), which lets :func:`apply_mix` skip the per-pixel share; it is checked
    where values are checked. ``share_map``, when given, is the per-pixel source share ``(B, 1, H, W)`` of a per-pixel operator
    (GuidedMixup) and replaces the share the boxes, ``eta`` and ``mixup`` would give; sources are
    still aligned by the boxes (an all-zero box: no shift). ``noise``, when given, is added to the
    source pixels inside each pasted box (patch samples only, never outside the box, never for
    MixUp samples), in the images' units (for uint8 images the noisy source is rounded and clipped
    to 0..255 before blending).
    """

    perm: torch.Tensor  # (B,) long: source row of each target row
    lam: torch.Tensor  # (B,) float64: lam as drawn (share of the target kept, before rounding)
    src_boxes: torch.Tensor  # (B, 4) long: patch cut from the source
    dst_boxes: torch.Tensor  # (B, 4) long: where it lands in the target (same size)
    eta: torch.Tensor  # (B,) float64: blend strength inside the box (1 = hard paste)
    mixup: torch.Tensor  # (B,) bool: whole-image MixUp with source share 1 - lam instead of a patch
    applied: torch.Tensor  # (B,) bool: the sample is mixed at all (probability p)
    source_weight: torch.Tensor  # (B,) float64: label weight of the source, as applied
    image_size: Tuple[int, int]  # static: (H, W) of the images the parameters were sampled for
    shifted: bool = False  # static: some patch lands away from its source coordinates
    blended: bool = True  # static: some share may lie strictly between 0 and 1 (else a hard paste)
    share_map: Optional[torch.Tensor] = None  # (B, 1, H, W) float: per-pixel source share, or None
    noise: Optional[torch.Tensor] = None  # (B, C, H, W) float: noise on the pasted source pixels, or None
    perm_is_permutation: bool = True  # static: perm is a permutation of 0..B-1
    patches: bool = True  # static: some sample may paste a box (False: whole-image MixUp or unmixed only)

    @property
    def batch_size(self) -> int:
        return int(self.perm.shape[0])

    @classmethod
    def identity(cls, batch_size: int, image_size: Tuple[int, int], device: Union[str, torch.device]) -> MixParams:
        """Parameters that mix nothing: every sample is its own source and none is applied.

        A convenient start for a custom operator: ``dataclasses.replace(MixParams.identity(...), ...)``.
        """
        zeros = torch.zeros(batch_size, dtype=torch.float64, device=device)
        no = torch.zeros(batch_size, dtype=torch.bool, device=device)
        boxes = torch.zeros(batch_size, 4, dtype=torch.long, device=device)
        return cls(
            perm=torch.arange(batch_size, device=device),
            lam=zeros + 1.0,
            src_boxes=boxes,
            dst_boxes=boxes,
            eta=zeros + 1.0,
            mixup=no,
            applied=no,
            source_weight=zeros,
            image_size=(int(image_size[0]), int(image_size[1])),
            blended=False,
        )

    def to(self, device: Union[str, torch.device]) -> MixParams:
        """The same parameters on another device (static fields, ``image_size`` included, kept)."""
        return replace(
            self,
            **{
                f.name: getattr(self, f.name).to(device)
                for f in fields(self)
                if isinstance(getattr(self, f.name), torch.Tensor)
            },
        )


def _values_checked(t: torch.Tensor, validate: Optional[bool]) -> bool:
    return t.device.type == "cpu" if validate is None else bool(validate)


def check_params(params: object, x: torch.Tensor, validate: Optional[bool] = None) -> MixParams:
    """``params`` is a :class:`MixParams` for the batch ``x``: its batch size, image size, and the
    shapes of its optional per-pixel fields. Where values are checked (CPU, or ``validate=True``)
    also its pairing: sources in range, and a permutation unless ``perm_is_permutation`` is False."""
    if not isinstance(params, MixParams):
        raise TypeError(f"Expected params of type MixParams, but got {type(params).__name__} instead.")
    if params.batch_size != x.shape[0]:
        raise ValueError(
            f"Expected params for a batch of {x.shape[0]}, but got params for {params.batch_size} instead."
        )
    height, width = int(x.shape[-2]), int(x.shape[-1])
    if tuple(params.image_size) != (height, width):
        got_h, got_w = params.image_size
        raise ValueError(
            f"Expected params for {height}x{width} images, but got params sampled for {got_h}x{got_w} instead."
        )
    b = x.shape[0]
    if params.share_map is not None:
        expected = (b, 1, height, width)
        if tuple(params.share_map.shape) != expected or not params.share_map.is_floating_point():
            got = f"{tuple(params.share_map.shape)} {params.share_map.dtype}"
            raise ValueError(
                f"Expected params.share_map of shape (B, 1, H, W) = {expected}, floating point, but got {got} instead."
            )
    if params.noise is not None:
        expected = (b, int(x.shape[1]), height, width)
        if tuple(params.noise.shape) != expected or not params.noise.is_floating_point():
            got = f"{tuple(params.noise.shape)} {params.noise.dtype}"
            raise ValueError(
                f"Expected params.noise of shape (B, C, H, W) = {expected}, floating point, but got {got} instead."
            )
    perm = params.perm
    if perm.dtype not in (torch.int32, torch.int64):
        raise TypeError(f"Expected params.perm as an integer tensor, but got {perm.dtype} instead.")
    if _values_checked(perm, validate) and b > 0:
        lo, hi = int(perm.min()), int(perm.max())
        if lo < 0 or hi >= b:
            raise ValueError(
                f"Expected params.perm with source rows in [0, {b - 1}], but got {lo if lo < 0 else hi} instead."
            )
        if params.perm_is_permutation and not torch.equal(perm.sort().values, torch.arange(b, device=perm.device)):
            raise ValueError(
                f"Expected params.perm to be a permutation of 0..{b - 1} (perm_is_permutation=True), "
                f"but got {perm.tolist()} instead."
            )
        if not params.patches and params.share_map is None:
            box = params.dst_boxes
            boxed = (box[:, 2] > box[:, 0]) & (box[:, 3] > box[:, 1]) & params.applied & ~params.mixup
            if bool(boxed.any()):
                raise ValueError(
                    "Expected no pasted boxes in params with patches=False, but got a box on samples "
                    f"{torch.nonzero(boxed).flatten().tolist()} instead."
                )
    return params


def patch_mask(params: MixParams, height: int, width: int) -> torch.Tensor:
    """``(B, 1, H, W)`` bool: the pixels inside each sample's pasted box (applied patch samples only;
    MixUp samples and unapplied samples have none)."""
    dev = params.perm.device
    rows = torch.arange(height, device=dev)
    cols = torch.arange(width, device=dev)
    box = params.dst_boxes
    in_rows = (rows >= box[:, 0:1]) & (rows < box[:, 2:3])
    in_cols = (cols >= box[:, 1:2]) & (cols < box[:, 3:4])
    inside = in_rows[:, :, None] & in_cols[:, None, :]
    patch = params.applied & ~params.mixup
    return (inside & patch[:, None, None]).unsqueeze(1)


def source_share(params: MixParams, height: int, width: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Per-pixel share of the source in the output, ``(B, 1, H, W)``."""
    dev = params.perm.device
    zero = torch.zeros((), dtype=dtype, device=dev)
    if params.share_map is not None:
        share = params.share_map.to(dtype)[:, 0]
    else:
        inside = patch_mask(params, height, width)[:, 0]
        eta = params.eta.to(dtype)[:, None, None]
        share = torch.where(inside, eta, zero)
        mix = (1.0 - params.lam).to(dtype)[:, None, None].expand_as(share)
        share = torch.where(params.mixup[:, None, None], mix, share)
    share = torch.where(params.applied[:, None, None], share, zero)
    return share.unsqueeze(1)
