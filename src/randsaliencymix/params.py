"""What one mixing step drew (:class:`MixParams`), its checks, and the per-pixel source share it
implies; :mod:`randsaliencymix.apply` holds the one pure function that applies it.

Row ``i`` is the target, row ``perm[i]`` its source (the conventions of docs/methods.md in the
repository). Each output pixel is ``(1 - s) * x[i] + s * src[i]`` with ``src[i]`` the source
``x[perm[i]]`` at its shifted position
(plus the step's patch noise inside the pasted box, if any) and ``s`` the per-pixel source share
(:func:`source_share`): ``eta`` inside the pasted box, ``1 - lam`` everywhere for a MixUp sample,
0 elsewhere, or, for per-pixel operators (GuidedMixup), the drawn ``share_map``. The targets are
``(1 - w) * y[i] + w * y[perm[i]]`` with ``w`` the source's label weight as applied.

Internal: import from randsaliencymix instead; may change without notice.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any, Dict, Optional, Tuple, Union

import torch

__all__ = ["MixParams", "check_params", "patch_mask", "source_share"]


@dataclass
class MixParams:
    """Everything one mixing step drew, replayable with :func:`apply_mix`.

    A custom operator builds its params with :meth:`create` (or ``dataclasses.replace`` of
    :meth:`identity`), which set the static fast-path flags below to their always-correct values;
    the flags are promises that only an operator which knows its own draws should make.

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
    where values are checked. So are ``blended=False`` (every applied share is 0 or 1: ``eta`` of
    patch samples and ``lam`` of MixUp samples 0 or 1, which lets it select instead of blend) and
    ``shifted=False`` (every patch sample's source box is its destination box), and the values:
    ``lam``, ``eta`` and ``source_weight`` in [0, 1], and the boxes of patch samples inside the
    image, ``row1 <= row2`` and ``col1 <= col2``, source and destination of one size.

    ``share_map``, when given, is the per-pixel source share ``(B, 1, H, W)`` of a per-pixel
    operator (GuidedMixup; ``blended`` is then not read) and replaces the share the boxes, ``eta``
    and ``mixup`` would give; sources are still aligned by the boxes (an all-zero box: no shift).
    ``noise``, when given, is added to the source pixels inside each pasted box (patch samples
    only, never outside the box, never for MixUp samples), in the images' units (for uint8 images
    the noisy source is rounded and clipped to 0..255 before blending).
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
    def create(
        cls,
        *,
        perm: torch.Tensor,
        lam: torch.Tensor,
        src_boxes: torch.Tensor,
        dst_boxes: torch.Tensor,
        eta: torch.Tensor,
        mixup: torch.Tensor,
        applied: torch.Tensor,
        source_weight: torch.Tensor,
        image_size: Tuple[int, int],
        share_map: Optional[torch.Tensor] = None,
        noise: Optional[torch.Tensor] = None,
        perm_is_permutation: bool = False,
    ) -> MixParams:
        """Parameters of one step with every fast-path flag at its always-correct value: the way
        for a custom operator to build its :class:`MixParams` without promising anything.

        ``blended``, ``shifted`` and ``patches`` are ``True`` (any share, any box, any shift:
        :func:`apply_mix` takes its general path, which is right for every value). Whether
        ``perm`` is a permutation cannot be read from the tensor without a host synchronisation,
        so ``perm_is_permutation`` is ``False`` (sources drawn freely) unless the caller says so
        with ``perm_is_permutation=True``, which is then checked where values are checked.
        ``image_size`` is the ``(H, W)`` the parameters were drawn for.
        """
        return cls(
            perm=perm,
            lam=lam,
            src_boxes=src_boxes,
            dst_boxes=dst_boxes,
            eta=eta,
            mixup=mixup,
            applied=applied,
            source_weight=source_weight,
            image_size=(int(image_size[0]), int(image_size[1])),
            shifted=True,
            blended=True,
            share_map=share_map,
            noise=noise,
            perm_is_permutation=bool(perm_is_permutation),
            patches=True,
        )

    @classmethod
    def identity(cls, batch_size: int, image_size: Tuple[int, int], device: Union[str, torch.device]) -> MixParams:
        """Parameters that mix nothing: every sample is its own source and none is applied.

        Built by :meth:`create`, so every fast-path flag is at its general value and
        ``dataclasses.replace(MixParams.identity(...), eta=..., src_boxes=..., ...)`` is applied
        correctly whatever it sets (a custom operator may start from it, or call :meth:`create`).
        """
        return cls.create(**_unmixed_fields(batch_size, image_size, device))

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


def _unmixed_fields(batch_size: int, image_size: Tuple[int, int], device: Union[str, torch.device]) -> Dict[str, Any]:
    zeros = torch.zeros(batch_size, dtype=torch.float64, device=device)
    no = torch.zeros(batch_size, dtype=torch.bool, device=device)
    boxes = torch.zeros(batch_size, 4, dtype=torch.long, device=device)
    return {
        "perm": torch.arange(batch_size, device=device),
        "lam": zeros + 1.0,
        "src_boxes": boxes,
        "dst_boxes": boxes,
        "eta": zeros + 1.0,
        "mixup": no,
        "applied": no,
        "source_weight": zeros,
        "image_size": (int(image_size[0]), int(image_size[1])),
    }


def _unmixed_params(batch_size: int, image_size: Tuple[int, int], device: Union[str, torch.device]) -> MixParams:
    """The library's own identity params (NoMix, the timm drop-in switched off): those of
    :meth:`MixParams.identity` with the fast-path flags that are true of them (no blend, no shift,
    a permutation), so that they take the fast selection path. Not for extensions: a ``replace``
    of these that blends or moves a box breaks the flags' promise (use :meth:`MixParams.identity`)."""
    return MixParams(**_unmixed_fields(batch_size, image_size, device), shifted=False, blended=False)


def _values_checked(t: torch.Tensor, validate: Optional[bool]) -> bool:
    return t.device.type == "cpu" if validate is None else bool(validate)


def check_params(params: object, x: torch.Tensor, validate: Optional[bool] = None) -> MixParams:
    """``params`` is a :class:`MixParams` for the batch ``x``: its batch size, image size, and the
    shapes of its optional per-pixel fields. Where values are checked (CPU, or ``validate=True``)
    also its pairing (sources in range, and a permutation unless ``perm_is_permutation`` is False)
    and the values of one step (:func:`_check_values`: label weights, ``lam`` and ``eta`` in
    [0, 1], boxes inside the image and of one size, and the static flags ``blended``, ``shifted``
    and ``patches`` true to the samples)."""
    if isinstance(params, torch.Generator):
        raise TypeError(
            "Expected params of type MixParams, but got a torch.Generator instead (pass it as generator=g: "
            "op(x, y, generator=g) or op.sample_params(x, generator=g))."
        )
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
        _check_values(params, height, width)
    return params


# How far a label weight, ``lam`` or ``eta`` may stray outside [0, 1]: rounding in an operator's
# own arithmetic (a convex combination of shares), never a value that changes a pixel or a target.
_UNIT_TOLERANCE = 1e-9


def _samples(mask: torch.Tensor) -> str:
    rows = torch.nonzero(mask).flatten().tolist()
    return f"sample {rows[0]}" if len(rows) == 1 else f"samples {rows[:8]}" + (" ..." if len(rows) > 8 else "")


def _check_values(params: MixParams, height: int, width: int) -> None:
    """The values of one step that no operator draws otherwise and that :func:`apply_mix` would
    turn into negative targets, NaN or extrapolated pixels, or mix other than the flags promise.
    One host synchronisation when every check passes (the flags of all checks read at once)."""
    applied, mixup = params.applied, params.mixup
    patch = applied & ~mixup  # the samples whose boxes and eta are used

    def outside_unit(t: torch.Tensor) -> torch.Tensor:  # NaN is outside
        return ~((t >= -_UNIT_TOLERANCE) & (t <= 1.0 + _UNIT_TOLERANCE))

    bad_weight = outside_unit(params.source_weight)
    bad_lam = outside_unit(params.lam)
    bad_eta = outside_unit(params.eta)
    src, dst = params.src_boxes, params.dst_boxes
    limits = torch.tensor([height, width], device=src.device)

    def off_image(box: torch.Tensor) -> torch.Tensor:
        first, last = box[:, :2], box[:, 2:]
        return ((first < 0) | (last < first) | (last > limits)).any(dim=1) & patch

    bad_src, bad_dst = off_image(src), off_image(dst)
    bad_size = ((src[:, 2:] - src[:, :2]) != (dst[:, 2:] - dst[:, :2])).any(dim=1) & patch
    per_pixel = params.share_map is not None
    if params.blended or per_pixel:
        bad_blend = torch.zeros_like(applied)
    else:
        blend_eta = patch & (params.eta > 0) & (params.eta < 1)
        blend_lam = applied & mixup & (params.lam > 0) & (params.lam < 1)
        bad_blend = blend_eta | blend_lam
    if params.shifted:
        bad_shift = torch.zeros_like(applied)
    else:
        bad_shift = (src != dst).any(dim=1) & patch
    checks = (bad_weight, bad_lam, bad_eta, bad_src, bad_dst, bad_size, bad_blend, bad_shift)
    found = torch.stack([c.any() for c in checks]).tolist()
    if not any(found):
        return
    if found[0]:
        first = params.source_weight[bad_weight][0]
        raise ValueError(
            f"Expected params.source_weight in [0, 1] (the source's share of the label), but got {float(first)} "
            f"on {_samples(bad_weight)} instead."
        )
    if found[1]:
        first = params.lam[bad_lam][0]
        raise ValueError(
            f"Expected params.lam in [0, 1] (the share of the target kept), but got {float(first)} "
            f"on {_samples(bad_lam)} instead."
        )
    if found[2]:
        first = params.eta[bad_eta][0]
        raise ValueError(
            f"Expected params.eta in [0, 1] (the blend strength inside the box), but got {float(first)} "
            f"on {_samples(bad_eta)} instead."
        )
    for name, is_bad, bad, boxes in (("src_boxes", found[3], bad_src, src), ("dst_boxes", found[4], bad_dst, dst)):
        if is_bad:
            row = int(torch.nonzero(bad).flatten()[0])
            raise ValueError(
                f"Expected params.{name} (row1, col1, row2, col2) with 0 <= row1 <= row2 <= {height} and "
                f"0 <= col1 <= col2 <= {width} on every pasted sample, but got {boxes[row].tolist()} "
                f"on sample {row} instead."
            )
    if found[5]:
        row = int(torch.nonzero(bad_size).flatten()[0])
        raise ValueError(
            "Expected params.src_boxes and params.dst_boxes of the same size on every pasted sample, but got "
            f"{src[row].tolist()} and {dst[row].tolist()} on sample {row} instead."
        )
    if found[6]:
        raise ValueError(
            "Expected every applied share to be 0 or 1 in params with blended=False (eta of pasted samples and "
            f"lam of MixUp samples 0 or 1), but got a blend on {_samples(bad_blend)} instead: "
            "set blended=True."
        )
    raise ValueError(
        "Expected every pasted box at its source's place (src_boxes == dst_boxes) in params with "
        f"shifted=False, but got a box moved on {_samples(bad_shift)} instead: set shifted=True."
    )


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
