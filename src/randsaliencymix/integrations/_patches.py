"""The cut-and-paste part of :class:`~randsaliencymix.integrations.timm.Mixup`: given each sample's
patch size, where the patch is cut, where it lands and the label weight of its source.

timm shares its draws per batch, per pair or per sample (``mode``); the saliency placements are
always per sample (each source has its own map). Every function here is batched, draws only from
the caller's generator and never synchronises with the host.

Internal: import from randsaliencymix.integrations.timm instead; may change without notice.
"""

from __future__ import annotations

from typing import Optional, Tuple, Union

import torch

from .. import _random as rnd
from ..geometry import (
    box_area_share,
    box_sides,
    centred_boxes,
    peak_of_quantised,
)
from ..mixing import SaliencyMix
from ..randsaliency import RandSaliencyMix

__all__ = ["Patches", "cutmix_patches", "randsaliency_patches", "saliency_peak_patches", "unit_sides"]

# (src_boxes (B, 4), dst_boxes (B, 4), eta (B,) float64, source label weight (B,) float64)
Patches = Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]
MinMax = Optional[Tuple[float, float]]


def unit_sides(
    lam: torch.Tensor, minmax: MinMax, height: int, width: int, generator: torch.Generator
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Patch sides per draw unit: ``int(H sqrt(1 - lam))`` (CutMix), or with ``minmax = (lo, hi)``
    uniform integers in ``[int(H lo), int(H hi))`` for the height and, independently, the width
    (timm's ``rand_bbox_minmax``)."""
    if minmax is None:
        return box_sides(lam, height, width)
    m, dev = lam.shape[0], lam.device
    lo_h, hi_h = int(height * minmax[0]), int(height * minmax[1])
    lo_w, hi_w = int(width * minmax[0]), int(width * minmax[1])
    if hi_h <= lo_h or hi_w <= lo_w:
        raise ValueError(
            f"Expected cutmix_minmax to allow at least one patch side on {height}x{width} images, "
            f"but got {minmax}, which gives heights in [{lo_h}, {hi_h}) and widths in [{lo_w}, {hi_w}) instead."
        )
    h = torch.randint(lo_h, hi_h, (m,), generator=generator, device=dev)
    w = torch.randint(lo_w, hi_w, (m,), generator=generator, device=dev)
    return h, w


def _corner(room: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A uniform integer in ``[0, room)`` per entry (``room >= 1``)."""
    u = rnd.uniform(room.shape[0], generator, room.device)
    return (u * room).floor().long().clamp_(max=room - 1)


def cutmix_patches(
    h: torch.Tensor,
    w: torch.Tensor,
    unit: torch.Tensor,
    lam: torch.Tensor,
    minmax: MinMax,
    correct_lam: bool,
    height: int,
    width: int,
    generator: torch.Generator,
) -> Patches:
    """timm's CutMix boxes, one per draw unit (``h``, ``w`` per unit), the same place in both images.

    Without ``minmax`` the centre is uniform over the image and the box spans ``[c - h // 2,
    c + (h + 1) // 2)``, clipped; with it the box is never clipped and its corner is uniform where
    it fits. The label weight is the box's area share when ``correct_lam`` or ``minmax``, else
    ``1 - lam`` as drawn (timm's rule). ``unit`` maps each sample to its draw unit; ``lam`` is per sample.
    """
    m, dev = h.shape[0], h.device
    if minmax is None:
        cy = torch.randint(height, (m,), generator=generator, device=dev)
        cx = torch.randint(width, (m,), generator=generator, device=dev)
        r1, r2 = (cy - h // 2).clamp(0, height), (cy + (h + 1) // 2).clamp(0, height)
        c1, c2 = (cx - w // 2).clamp(0, width), (cx + (w + 1) // 2).clamp(0, width)
    else:
        r1 = _corner(height - h + 1, generator)
        c1 = _corner(width - w + 1, generator)
        r2, c2 = r1 + h, c1 + w
    boxes = torch.stack([r1, c1, r2, c2], dim=1).index_select(0, unit)
    n = unit.shape[0]
    weight = box_area_share(boxes, height, width) if correct_lam or minmax is not None else 1.0 - lam
    return boxes, boxes, torch.ones(n, dtype=torch.float64, device=dev), weight


def _maps(
    op: Union[SaliencyMix, RandSaliencyMix], x: torch.Tensor, saliency: Optional[torch.Tensor], needed: bool
) -> torch.Tensor:
    if saliency is not None:
        return saliency
    if not needed:
        # No draw and no weight reads a map: a zero map normalises to the uniform one.
        return torch.zeros(x.shape[0], x.shape[-2], x.shape[-1], device=x.device)
    return op.detect(x)


def saliency_peak_patches(
    op: SaliencyMix,
    x: torch.Tensor,
    saliency: Optional[torch.Tensor],
    partner: torch.Tensor,
    h: torch.Tensor,
    w: torch.Tensor,
    lam: torch.Tensor,
    exact_area: bool,
) -> Patches:
    """SaliencyMix's patch (per sample): a box of ``h x w`` (per sample) centred on the peak of
    the source's map (its first maximum once quantised to 8 bits), clipped, the same place in the
    target. Label weight: the box's area share when ``exact_area``, else ``1 - lam``."""
    height, width = x.shape[-2], x.shape[-1]
    maps = _maps(op, x, saliency, needed=True)
    peak_r, peak_c = peak_of_quantised(maps.index_select(0, partner))
    boxes = centred_boxes(peak_r, peak_c, h, w, height, width)
    weight = box_area_share(boxes, height, width) if exact_area else 1.0 - lam
    return boxes, boxes, torch.ones_like(lam), weight


def randsaliency_patches(
    op: RandSaliencyMix,
    x: torch.Tensor,
    saliency: Optional[torch.Tensor],
    partner: torch.Tensor,
    h: torch.Tensor,
    w: torch.Tensor,
    eta: torch.Tensor,
    lam: torch.Tensor,
    exact_area: bool,
    generator: torch.Generator,
) -> Patches:
    """RandSaliencyMix's patch (per sample; defined in docs/methods.md in the repository), drawn by
    the operator itself (:meth:`RandSaliencyMix.draw_windows`, :meth:`RandSaliencyMix.label_weight`)
    for the given sides, pairing and blend: the label weight's area term is ``eta * h * w / (H * W)``,
    or ``eta * (1 - lam)`` unless ``exact_area`` (timm's rule)."""
    height, width = x.shape[-2], x.shape[-1]
    maps = op.batch_maps(x, saliency)
    boxes, m_src, m_dst = op.draw_windows(maps, saliency is None, partner, False, h, w, (height, width), generator)
    area = eta * ((h * w).double() / (height * width) if exact_area else 1.0 - lam)
    return boxes[0], boxes[1], eta, op.label_weight(m_src, m_dst, eta, area)
