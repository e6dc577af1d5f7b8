"""Window geometry on batches: box sides, centred boxes, saliency masses and the corner sampler.

Everything is a batched tensor op on the input's device, with no host synchronisation; every
random draw comes from the caller's ``torch.Generator``. Maps are ``(B, H, W)``; a window of
``h x w`` pixels is named by its top-left corner, valid where it fits in the image
(``r <= H - h`` and ``c <= W - w``).

Internal: import from randsaliencymix instead; may change without notice.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple, cast

import torch

from . import _random as rnd

__all__ = [
    "box_area_share",
    "box_mass",
    "box_sides",
    "categorical",
    "centred_boxes",
    "WindowSums",
    "draw_corner",
    "draw_window_corner",
    "draw_window_corners_linear",
    "integral",
    "normalised_maps",
    "peak_of_quantised",
    "valid_extent",
    "window_mass",
    "window_masses",
]


def box_sides(lam: torch.Tensor, height: int, width: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """``h = int(H * sqrt(1 - lam))``, ``w = int(W * sqrt(1 - lam))`` as in the CutMix code."""
    share = (1.0 - lam).clamp(min=0.0)
    # pow(0.5) is sqrt, bit for bit, but not parallelised: torch.sqrt of a small float64 tensor
    # costs hundreds of microseconds with two threads on CPU.
    cut = share.pow(0.5)
    # torch's float64 sqrt is off by one ulp on ~1% of inputs; that changes an integer side only
    # where the root rounds up to exactly 1 for lam in (0, ~1e-15). NumPy's correctly rounded root
    # stays below 1 there, so the authors' code gets H - 1: match it.
    cut = torch.where((cut >= 1.0) & (share < 1.0), torch.nextafter(torch.ones_like(cut), torch.zeros_like(cut)), cut)
    return (height * cut).floor().long(), (width * cut).floor().long()


def centred_boxes(
    centre_r: torch.Tensor, centre_c: torch.Tensor, h: torch.Tensor, w: torch.Tensor, height: int, width: int
) -> torch.Tensor:
    """Boxes ``(B, 4)`` of half-sides ``h // 2``, ``w // 2`` around a centre, clipped to the image
    (CutMix's and SaliencyMix's rule)."""
    r1 = (centre_r - h // 2).clamp(0, height)
    r2 = (centre_r + h // 2).clamp(0, height)
    c1 = (centre_c - w // 2).clamp(0, width)
    c2 = (centre_c + w // 2).clamp(0, width)
    return torch.stack([r1, c1, r2, c2], dim=1)


def box_area_share(boxes: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Share of the image each box covers, float64 ``(B,)``."""
    return ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).double() / (height * width)


def peak_of_quantised(maps: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Row, column of the first maximum of ``(map * 255).astype(uint8)``, as the authors' code.

    Maps are read clipped to ``[0, 1]`` (NaN as 0, +inf as 1): the authors' maps are in that range,
    and out of it NumPy's cast is undefined.
    """
    clean = torch.nan_to_num(maps.float(), nan=0.0, posinf=1.0, neginf=0.0).clamp_(0.0, 1.0)
    q = clean.mul_(255.0).to(torch.uint8).flatten(1)
    # argmax of uint8 is not implemented everywhere; int16 keeps the order and the first index.
    flat = q.to(torch.int16).argmax(dim=1)
    width = maps.shape[-1]
    return flat // width, flat % width


def normalised_maps(maps: torch.Tensor, assume_clean: bool = False, inplace: bool = False) -> torch.Tensor:
    """Saliency maps as float32 scaled to sum 1 per image; a map with no saliency becomes uniform.

    Any map is safe: NaN counts as 0, negative values as 0, +inf as the most salient value (the
    pixels at +inf share the mass); a map is first divided by its maximum, so no sum overflows.
    ``assume_clean=True`` skips the cleaning for maps known to be finite and non-negative (checked
    values): the same result, two passes fewer. ``inplace=True`` (with ``assume_clean``, float32
    maps the caller owns, e.g. a detector's fresh output) writes the result into ``maps``, which
    saves allocating (and page-faulting) a second batch of maps.
    """
    tiny = torch.finfo(torch.float32).tiny
    if assume_clean:
        own = inplace and maps.dtype == torch.float32
        m = maps if own else maps.float()
        peak = m.amax(dim=(1, 2), keepdim=True).clamp_(min=tiny)
        m = m.div_(peak) if own else m.div(peak)
    else:
        fmax = torch.finfo(torch.float32).max
        m = torch.nan_to_num(maps.float(), nan=0.0, posinf=fmax, neginf=0.0).clamp_(min=0.0)
        m = m.div_(m.amax(dim=(1, 2), keepdim=True).clamp_(min=tiny))
    total = m.sum(dim=(1, 2), keepdim=True)
    uniform = 1.0 / (m.shape[1] * m.shape[2])
    # Adding the uniform share only where the total is 0 keeps this to two passes.
    return m.div_(total.clamp(min=tiny)).add_((total <= 0).float() * uniform)


def integral(maps: torch.Tensor) -> torch.Tensor:
    """Zero-padded integral image (B, H+1, W+1) in float32 (masses are probabilities, <= 1)."""
    b, height, width = maps.shape
    out = maps.new_zeros(b, height + 1, width + 1)
    torch.cumsum(maps, dim=2, out=out[:, 1:, 1:])
    out[:, 1:, 1:] = out[:, 1:, 1:].cumsum(dim=1)
    return out


def window_masses(
    table: torch.Tensor, h: torch.Tensor, w: torch.Tensor, images: Optional[torch.Tensor] = None
) -> torch.Tensor:
    """Mass inside the ``h x w`` window at every top-left corner, ``(B, H, W)``, for the maps
    ``images`` (row indices into the integral image ``table``, default all). Corners past
    ``H - h`` / ``W - w`` hold meaningless (finite, non-negative) values: callers mask them."""
    n_maps, h1, w1 = table.shape
    height, width = h1 - 1, w1 - 1
    dev = table.device
    images = torch.arange(n_maps, device=dev) if images is None else images
    b = images.shape[0]
    rows = torch.arange(height, device=dev)
    # Row shift by h per sample as whole-row copies of the flattened integral (fast, contiguous).
    base = images[:, None] * h1
    lines = table.reshape(n_maps * h1, w1)
    low = lines.index_select(0, (base + rows).reshape(-1))
    high = lines.index_select(0, (base + (rows + h[:, None]).clamp(max=height)).reshape(-1))
    row_diff = high.sub_(low).reshape(b, height, w1)
    cols = (torch.arange(width, device=dev) + w[:, None]).clamp(max=width)
    mass = row_diff.gather(2, cols[:, None, :].expand(b, height, width))
    return mass.sub_(row_diff[:, :, :width]).clamp_(min=0.0)


def box_mass(
    table: torch.Tensor, images: torch.Tensor, corner: torch.Tensor, h: torch.Tensor, w: torch.Tensor
) -> torch.Tensor:
    """Mass of map ``images[i]`` in the ``h x w`` box at flat corner ``corner[i]``, float64 (B,)."""
    _, h1, w1 = table.shape
    r, c = corner // (w1 - 1), corner % (w1 - 1)
    top = images * (h1 * w1) + r * w1 + c
    bottom = top + h * w1
    corners = torch.take(table, torch.stack([bottom + w, top + w, bottom, top])).double()
    mass = corners[0] - corners[1] - corners[2] + corners[3]
    return mass.clamp(min=0.0)


def valid_extent(size: int, side: torch.Tensor) -> torch.Tensor:
    """(B, size) bool: top-left positions where a window of ``side`` fits."""
    return torch.arange(size, device=side.device)[None, :] <= (size - side)[:, None]


def window_mass(maps: torch.Tensor, h: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Mass of each map inside the ``h x w`` window at every top-left corner, ``(B, H, W)``.

    Corners whose window leaves the image (r > H - h or c > W - w) get ``nan``.
    """
    mass = window_masses(integral(maps.float()), h, w)
    valid = valid_extent(maps.shape[1], h)[:, :, None] & valid_extent(maps.shape[2], w)[:, None, :]
    return torch.where(valid, mass, torch.full_like(mass, float("nan")))


def categorical(
    weights: torch.Tensor,
    generator: torch.Generator,
    u: Optional[torch.Tensor] = None,
    last: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """One index per row of non-negative ``weights`` (B, N), with probability proportional to them.

    One uniform draw per row (inverse CDF; ``u``, when given, is that ``(B,)`` draw, made earlier
    from ``generator``), no host synchronisation. A row must have some positive weight; ``last``
    ``(B,)``, when given, is the index of each row's last positive weight (else found here)."""
    cdf = weights.double().cumsum(dim=1)
    if u is None:
        u = rnd.uniform(weights.shape[0], generator, weights.device)
    index = torch.searchsorted(cdf, u[:, None] * cdf[:, -1:], right=True).squeeze(1)
    # A u that lands on the total would step past the end: keep the last positive entry.
    if last is None:
        last = weights.shape[1] - 1 - (weights.flip(1) > 0).double().argmax(dim=1)
    return torch.minimum(index, last)


def draw_corner(
    score: torch.Tensor,
    valid_rows: torch.Tensor,
    valid_cols: torch.Tensor,
    mode: str,
    tau: float,
    eps: float,
    generator: torch.Generator,
) -> torch.Tensor:
    """Flat index ``r * W + c`` of one window corner per sample.

    ``score`` (B, H, W) is finite and non-negative (it is overwritten); the valid corners of
    sample ``i`` are the rectangle ``valid_rows[i] x valid_cols[i]`` (top-left aligned, never empty).
    ``mode="saliency"`` draws a valid corner with probability proportional to
    ``(score + eps) ** tau`` (``tau = 0`` is uniform), ``"uniform"`` draws uniformly, and ``"peak"``
    takes the first valid corner of maximal score (row-major order). Both drawing modes use two
    uniforms per sample (row, then column), so the generator advances the same in every mode.
    """
    vr, vc = valid_rows.to(score.dtype), valid_cols.to(score.dtype)
    if mode == "peak":
        # Invalid corners scored 0: a maximum of 0 is taken at corner 0, which is always valid.
        return score.mul_(vr[:, :, None]).mul_(vc[:, None, :]).flatten(1).argmax(dim=1)
    if mode == "uniform" or tau == 0:
        row = categorical(vr, generator)
        col = categorical(vc, generator)
        return row * valid_cols.shape[1] + col
    # Invalid corners weigh 0 before the maximum is taken, so they cannot push every valid weight
    # to underflow; scaling by the maximum lets a large tau keep the peak at exactly 1.
    weights = score.add_(eps).mul_(vr[:, :, None]).mul_(vc[:, None, :])
    if tau != 1.0:
        weights = weights.div_(weights.amax(dim=(1, 2), keepdim=True)).pow_(tau)
    # Row then column: the only full pass over the grid is one batched matrix-vector product.
    row_mass = torch.bmm(weights, vc[:, :, None]).squeeze(2)
    row = categorical(row_mass, generator)
    row_weights = weights.gather(1, row[:, None, None].expand(-1, 1, weights.shape[2])).squeeze(1)
    col = categorical(row_weights, generator)
    return row * valid_cols.shape[1] + col


# --------------------------------------------------------------------------------------------
# Window draws that never build the (B, H, W) grid of masses when tau = 1
# --------------------------------------------------------------------------------------------


def draw_window_corner(
    table: Optional[torch.Tensor],
    images: torch.Tensor,
    h: torch.Tensor,
    w: torch.Tensor,
    valid_rows: torch.Tensor,
    valid_cols: torch.Tensor,
    mode: str,
    tau: float,
    eps: float,
    generator: torch.Generator,
    anti: bool = False,
) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Flat corner ``r * W + c`` of one ``h x w`` window per sample, drawn on map ``images[i]``,
    and the drawn window's mass (float64 ``(B,)``; ``None`` for a uniform draw, which reads no map).

    The law is :func:`draw_corner`'s on the score ``M`` (the window mass of the normalised map,
    from its integral image ``table``, :func:`integral`), or ``max(1 - M, 0)`` with ``anti``:
    ``mode="saliency"`` with probability ``(score + eps) ** tau``, ``"uniform"`` (or ``tau = 0``)
    uniformly, ``"peak"`` the first window of maximal score. This builds the ``(B, H, W)`` grid of
    masses; :func:`draw_window_corner_linear` draws ``tau = 1`` without it. ``table`` may be
    ``None`` for uniform draws.
    """
    if mode == "uniform" or (mode == "saliency" and tau == 0):
        row = categorical(valid_rows.double(), generator)
        col = categorical(valid_cols.double(), generator)
        return row * valid_cols.shape[1] + col, None
    if table is None:
        raise ValueError(f"Expected an integral image for a {mode!r} draw with tau={tau}, but got None instead.")
    mass = window_masses(table, h, w, images)
    score = torch.sub(1.0, mass).clamp_(min=0.0) if anti else mass.clone()
    corner = draw_corner(score, valid_rows, valid_cols, mode, tau, eps, generator)
    return corner, mass.flatten(1).gather(1, corner[:, None]).squeeze(1).double()


class WindowSums:
    """Window masses of normalised maps ``(N, H, W)``, for one or more sides (e.g. the sources and
    the targets of a batch), each a batch of samples where sample ``i`` reads map ``images[i]``:

    * :meth:`row_totals`: for every top row, the summed mass of all valid windows with that top row
      (a window covers column ``j`` as many times as ``j`` lies in one, so this is the map's row
      sums weighted by that count, then added up over the window's rows);
    * :meth:`masses_at_rows`: the masses of the windows at one top row per sample, every column
      (the band's column sums, then window sums along the columns).

    Both are batched matrix products over the maps, with no prefix-sum tables and no grid of masses.
    A side is ``(images, inverse)``: ``images=None`` means sample ``i`` reads map ``i``; ``inverse``
    (``(N,)``, the sample that reads each map) says that ``images`` is a permutation. Sides that
    read the maps in place (either) share one product, which reads the maps once for all of them;
    a side with neither gathers its maps first.
    """

    def __init__(
        self, maps: torch.Tensor, sides: Sequence[Tuple[Optional[torch.Tensor], Optional[torch.Tensor]]]
    ) -> None:
        self.maps, self.sides = maps, list(sides)
        self._gathered: Dict[int, torch.Tensor] = {}

    def _products(self, vectors: Sequence[torch.Tensor], rows: bool) -> List[torch.Tensor]:
        """Per side and sample: the map times ``vectors[k][i]`` (over columns, ``rows=True``:
        ``(B, H)``) or ``vectors[k][i]`` times the map (over rows: ``(B, W)``)."""
        out: List[Optional[torch.Tensor]] = [None] * len(self.sides)
        in_place = [k for k, (images, inverse) in enumerate(self.sides) if images is None or inverse is not None]
        if in_place:
            # Per map: the vectors of the samples that read it, for every in-place side at once.
            per_map = []
            for k in in_place:
                images, inverse = self.sides[k]
                per_map.append(
                    vectors[k] if images is None else vectors[k].index_select(0, cast(torch.Tensor, inverse))
                )
            # Vectors on the left in both directions: (N, sides, W) @ (N, W, H) reads the maps as
            # transposed matrices, several times faster on CPU than maps @ (N, W, sides).
            maps = self.maps.transpose(1, 2) if rows else self.maps
            both = torch.bmm(torch.stack(per_map, dim=1), maps)  # (N, sides, H or W)
            for slot, k in enumerate(in_place):
                result = both[:, slot, :]
                images = self.sides[k][0]
                out[k] = result if images is None else result.index_select(0, images)
        for k, (images, _) in enumerate(self.sides):
            if out[k] is not None:
                continue
            if k not in self._gathered:
                self._gathered[k] = self.maps.index_select(0, cast(torch.Tensor, images))
            maps = self._gathered[k].transpose(1, 2) if rows else self._gathered[k]
            out[k] = torch.bmm(vectors[k].unsqueeze(1), maps).squeeze(1)
        return [cast(torch.Tensor, o) for o in out]

    def row_totals(self, h: torch.Tensor, w: torch.Tensor, valid_cols: torch.Tensor) -> torch.Tensor:
        """``(sides, B, H)`` float64: for each top row ``r``, the summed mass of the ``h x w``
        windows at ``(r, c)`` over the valid ``c`` (``valid_cols``, a prefix); rows past ``H - h``
        meaningless."""
        _, height, width = self.maps.shape
        dev = self.maps.device
        nc = valid_cols.sum(dim=1)  # windows per row
        # The windows c in [0, nc) that cover column j (c <= j <= c + w - 1) number
        # min(j + 1, W - j, w, nc): a trapezoid, its slopes fixed by W, its height by w and nc.
        j = torch.arange(width, device=dev, dtype=self.maps.dtype)
        count = torch.minimum(
            torch.minimum(j + 1, width - j)[None, :], torch.minimum(w, nc).to(self.maps.dtype)[:, None]
        )
        per_row = torch.stack(self._products([count] * len(self.sides), rows=True))  # (sides, B, H)
        k, b = per_row.shape[:2]
        prefix = per_row.new_zeros(k, b, height + 1, dtype=torch.float64)
        torch.cumsum(per_row, dim=2, dtype=torch.float64, out=prefix[:, :, 1:])
        top = (torch.arange(height, device=dev)[None, :] + h[:, None]).clamp(max=height)
        return prefix.gather(2, top.expand(k, b, height)) - prefix[:, :, :height]

    def masses_at_rows(self, rows: torch.Tensor, h: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """``(sides, B, W)`` float32: the mass of the ``h x w`` window at ``(rows[k, i], c)`` for
        every ``c`` (columns past ``W - w`` meaningless); ``rows`` ``(sides, B)``."""
        _, height, width = self.maps.shape
        dev = self.maps.device
        # Rows r .. r + h - 1 of every side at once: 0 <= i - r < h.
        offset = torch.arange(height, device=dev)[None, None, :] - rows[:, :, None]
        bands = ((offset >= 0) & (offset < h[None, :, None])).to(self.maps.dtype)
        sums = torch.stack(self._products(list(bands.unbind(0)), rows=False))  # (sides, B, W)
        k, b = sums.shape[:2]
        prefix = sums.new_zeros(k, b, width + 1)
        torch.cumsum(sums, dim=2, out=prefix[:, :, 1:])
        cols = (torch.arange(width, device=dev)[None, :] + w[:, None]).clamp(max=width)
        return prefix.gather(2, cols.expand(k, b, width)).sub_(prefix[:, :, :width]).clamp_(min=0.0)


def draw_window_corners_linear(
    sums: WindowSums,
    h: torch.Tensor,
    w: torch.Tensor,
    valid_rows: torch.Tensor,
    valid_cols: torch.Tensor,
    eps: float,
    generator: torch.Generator,
    anti: Sequence[bool],
) -> List[Tuple[torch.Tensor, torch.Tensor]]:
    """:func:`draw_window_corner` with ``mode="saliency", tau=1`` for every side of ``sums``
    (``anti[k]``: score ``max(1 - M, 0)`` on side ``k``): the row from each row's summed weight,
    then the column from that row's window masses. Returns per side the flat corner and the drawn
    window's mass (float64). The uniforms are those of one draw after the other (side 0's row and
    column, then side 1's), so the sides draw what they would draw one at a time; the sides are
    drawn together, as one batch."""
    n, dev = h.shape[0], h.device
    k = len(anti)
    uniforms = torch.stack([rnd.uniform(n, generator, dev) for _ in range(2 * k)]).view(k, 2, n)
    vr, vc = valid_rows.double(), valid_cols.to(torch.float32)
    # Every valid row and column has a positive weight: the last one is the count of valid ones.
    nc = valid_cols.sum(dim=1)
    last_row, last_col = (valid_rows.sum(dim=1) - 1).repeat(k), (nc - 1).repeat(k)
    nc = nc.double()[:, None]
    # The sum over a row's windows of (score + eps); with anti, of (1 - M + eps) (its clamp at 0
    # only matters where rounding makes M exceed 1, by far less than eps).
    total = sums.row_totals(h, w, valid_cols)
    for side in range(k):
        if anti[side]:
            total[side].neg_().add_(nc)
    total = total.clamp_(min=0.0).add_(nc * eps).mul_(vr)
    rows = categorical(total.view(k * n, -1), generator, uniforms[:, 0].reshape(-1), last_row).view(k, n)
    mass = sums.masses_at_rows(rows, h, w)  # (sides, B, W)
    score = mass.clone()
    for side in range(k):
        if anti[side]:
            score[side].neg_().add_(1.0).clamp_(min=0.0)
    score = score.add_(eps).mul_(vc)
    cols = categorical(score.view(k * n, -1), generator, uniforms[:, 1].reshape(-1), last_col).view(k, n)
    drawn = mass.gather(2, cols[:, :, None]).squeeze(2).double()
    corners = rows * valid_cols.shape[1] + cols
    return [(corners[i], drawn[i]) for i in range(k)]
