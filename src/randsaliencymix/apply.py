"""The one pure apply: :func:`apply_mix` turns a batch, its targets and a :class:`MixParams` into
mixed images and soft targets, with the images written by one of two paths that give the same bits:
chunked (no autograd; one read of targets and sources, one write of the output, into an optional
``out=`` buffer) or differentiable (whole-batch tensor ops, when the images require grad).

Each output pixel is ``(1 - s) * x[i] + s * src[i]`` (see :mod:`randsaliencymix.params`); the
targets are ``(1 - w) * y[i] + w * y[perm[i]]`` with ``w`` the source's label weight as applied.

Internal: import from randsaliencymix instead; may change without notice.
"""

from __future__ import annotations

from typing import Optional, Tuple, cast

import torch

from .params import MixParams, check_params, patch_mask, source_share

__all__ = ["apply_mix", "mix_checked", "mix_images"]


def apply_mix(
    x: torch.Tensor, y: torch.Tensor, params: MixParams, out: Optional[torch.Tensor] = None
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Mix images ``(B, C, H, W)`` and soft targets ``(B, K)`` as ``params`` say. Pure.

    Differentiable with respect to ``x`` (and ``y``) for float images. ``params`` must have been
    sampled for this batch size and image size (checked; on CPU also its pairing, see
    :func:`check_params`).

    ``out``, when given, is a ``(B, C, H, W)`` tensor of ``x``'s dtype and device, sharing no
    memory with ``x``, that receives the mixed images (and is returned): reusing one buffer across
    steps saves allocating (and, on CPU, page-faulting) a fresh batch every step. Without it a new
    tensor is returned. ``x`` is never modified either way. ``out`` does not support autograd.
    An empty batch (``B = 0``) gives empty images ``(0, C, H, W)`` and targets ``(0, K)``.
    """
    return mix_checked(x, y, check_params(params, x), out=out)


def mix_checked(
    x: torch.Tensor, y: torch.Tensor, params: MixParams, out: Optional[torch.Tensor] = None
) -> Tuple[torch.Tensor, torch.Tensor]:
    """:func:`apply_mix` for params already checked against ``x`` (the operators' path, which checks
    them under the operator's ``validate`` setting)."""
    mixed = mix_images(x, params, out)
    weight = params.source_weight.to(y.dtype)[:, None]
    targets = torch.lerp(y, y.index_select(0, params.perm), weight)
    return mixed, targets


def mix_images(x: torch.Tensor, params: MixParams, out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """The images of :func:`mix_checked`: ``(1 - s) x + s src`` per pixel (see the module docstring).

    Without autograd the batch is mixed in chunks of a few images (on CPU; the whole batch at once
    elsewhere): each chunk's sources are gathered into a small scratch buffer that stays in cache
    and blended straight into the output, so memory traffic is one read of the targets, one of the
    sources and one write of the output. With autograd (``x`` requires grad) the same formula runs
    as differentiable whole-batch tensor ops (:func:`_mix_differentiable`); both give the same bits.
    """
    if out is not None:
        _check_out(out, x)
    needs_grad = torch.is_grad_enabled() and (
        x.requires_grad
        or (params.share_map is not None and params.share_map.requires_grad)
        or (params.noise is not None and params.noise.requires_grad)
    )
    if needs_grad:
        if out is not None:
            raise ValueError("Expected no out= buffer when the images require grad (out= does not support autograd).")
        return _mix_differentiable(x, params)
    with torch.no_grad():
        return _mix_chunked(x, params, out)


def _check_out(out: object, x: torch.Tensor) -> None:
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"Expected out as a torch.Tensor, but got {type(out).__name__} instead.")
    if out.shape != x.shape or out.dtype != x.dtype or out.device != x.device:
        raise ValueError(
            f"Expected out of shape {tuple(x.shape)}, dtype {x.dtype} on {x.device} (those of the images), "
            f"but got {tuple(out.shape)}, {out.dtype} on {out.device} instead."
        )
    if x.numel() > 0 and out.untyped_storage().data_ptr() == x.untyped_storage().data_ptr():
        raise ValueError("Expected out to share no memory with the images (they are read while out is written).")


# --------------------------------------------------------------------------------------------
# The differentiable whole-batch path (images that require grad)
# --------------------------------------------------------------------------------------------


def _aligned_sources(x: torch.Tensor, params: MixParams) -> torch.Tensor:
    """Each target's source image, translated so the source box sits on the target box (patch
    samples; a MixUp sample's source stays in place), clamped at the image's edges."""
    if not params.shifted:
        return x.index_select(0, params.perm)
    _, c, h, w = x.shape
    dev = x.device
    shift = cast(torch.Tensor, _shift(params))  # (B, 2) rows, cols
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


def _noisy_sources(
    sources: torch.Tensor, noise: torch.Tensor, params: MixParams, work_dtype: torch.dtype
) -> torch.Tensor:
    """The aligned sources plus ``noise`` inside each pasted box, in ``work_dtype`` (for uint8
    images rounded and clipped to 0..255, so the noisy source is a valid uint8 picture)."""
    h, w = sources.shape[-2:]
    clean = sources.to(work_dtype)
    noisy = torch.where(patch_mask(params, h, w), clean + noise.to(work_dtype), clean)
    if sources.dtype == torch.uint8:
        noisy = noisy.round_().clamp_(0, 255)
    return noisy


def _work_dtype(x: torch.Tensor) -> torch.dtype:
    return x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32


def _mix_differentiable(x: torch.Tensor, params: MixParams) -> torch.Tensor:
    _, _, h, w = x.shape
    work_dtype = _work_dtype(x)
    share = source_share(params, h, w, work_dtype)
    sources = _aligned_sources(x, params)
    if params.noise is not None:
        sources = _noisy_sources(sources, params.noise, params, work_dtype)
    if params.blended or params.share_map is not None:
        # (1 - s) x + s src, not lerp: lerp's x + s (src - x) overflows for large values of opposite
        # sign (0 * inf = NaN), while this form is exact at s = 0 and s = 1 and bounded between.
        mixed = torch.mul(x.to(work_dtype), 1.0 - share).addcmul_(sources.to(work_dtype), share)
    else:
        # Every share is 0 or 1: a pure selection, bit exact in any dtype.
        mixed = torch.where(share > 0.5, sources.to(x.dtype), x)
    if x.dtype == torch.uint8:
        mixed = mixed.round_().clamp_(0, 255)
    mixed = mixed.to(x.dtype)
    if _is_channels_last(x):
        return mixed.contiguous(memory_format=torch.channels_last)
    return mixed.contiguous()


# --------------------------------------------------------------------------------------------
# The chunked path (no autograd): one read of targets and sources, one write of the output
# --------------------------------------------------------------------------------------------

# On CPU the batch is mixed a few images at a time, about this many bytes of images (in the
# working precision) per chunk: small enough that a chunk's gathered sources and shares stay in
# cache between the gather and the blend, large enough that the per-chunk Python cost is small.
CHUNK_BYTES = 2 << 20


def _is_channels_last(x: torch.Tensor) -> bool:
    return x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()


def _chunk_size(x: torch.Tensor) -> int:
    """Images per chunk: about ``CHUNK_BYTES`` of them, and at most half the batch, so that the
    scratch buffers stay well below the batch's own size."""
    b = int(x.shape[0])
    if x.device.type != "cpu":
        return b
    per_image = max(1, x[0].numel() * max(x.element_size(), 4))
    return max(1, min((b + 1) // 2, CHUNK_BYTES // per_image))


class _Rows:
    """The batch in memory order, as lines that a row shift moves whole: ``(B * P * H, L)`` with
    ``P`` planes of ``H`` lines of ``L`` elements (NCHW: ``P = C``, ``L = W``; channels_last:
    ``P = 1``, ``L = W * C``), ``pixel`` elements per pixel along a line."""

    def __init__(self, x: torch.Tensor) -> None:
        b, c, h, w = (int(v) for v in x.shape)
        self.channels_last = _is_channels_last(x)
        if self.channels_last:
            mem = x.permute(0, 2, 3, 1)
            self.planes, self.pixel = 1, c
        else:
            mem = x
            self.planes, self.pixel = c, 1
        self.shape = (b, c, h, w)
        self.images = mem.reshape(b, c * h * w)
        self.lines = mem.reshape(b * self.planes * h, w * self.pixel)

    def logical(self, flat: torch.Tensor, n: int) -> torch.Tensor:
        """``(n, C, H, W)`` view of a flat buffer holding ``n`` images in this memory order."""
        _, c, h, w = self.shape
        if self.channels_last:
            return flat.view(n, h, w, c).permute(0, 3, 1, 2)
        return flat.view(n, c, h, w)

    def empty(self, n: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        _, c, h, w = self.shape
        return torch.empty(n * c * h * w, dtype=dtype, device=device)


def _shift(params: MixParams) -> Optional[torch.Tensor]:
    """``(B, 2)`` rows, cols by which each patch sample's source moves (source box corner minus
    target box corner), or ``None`` when no patch lands away from its source. Only patch samples
    move: a MixUp sample blends its whole source in place (its boxes are ignored)."""
    if not params.shifted:
        return None
    shift = params.src_boxes[:, :2] - params.dst_boxes[:, :2]
    patch = (params.applied & ~params.mixup)[:, None]
    return torch.where(patch, shift, torch.zeros_like(shift))


def _gather_sources(
    rows: _Rows,
    perm: torch.Tensor,
    shift: Optional[torch.Tensor],
    buf: torch.Tensor,
    moved: torch.Tensor,
    starts: Optional[torch.Tensor],
) -> torch.Tensor:
    """The chunk's sources ``x[perm]`` into ``buf`` (flat, memory order), translated by ``shift``
    ``(n, 2)`` rows, cols when given. Returns the logical ``(n, C, H, W)`` view of ``buf``.

    A shift copies whole images into ``moved`` (flat scratch with ``H * W * pixel`` elements before
    and after the ``n`` images), then moves each image as one block by ``dr * W + dc`` pixels: exact
    wherever the shifted pixel stays inside the image (the whole pasted box), elsewhere a value of
    a neighbouring line (finite; the share there is 0). Two contiguous copies per image instead of
    a gather per pixel; ``starts`` ``(n,)`` are the blocks' first elements in ``moved``. Without
    ``starts`` (per-pixel shares, which may be nonzero outside a box) the rows and columns are the
    exact clamped translation of :func:`_aligned_sources` instead."""
    n = int(perm.shape[0])
    _, c, h, w = rows.shape
    if shift is None:
        torch.index_select(rows.images, 0, perm, out=buf.view(n, -1))
        return rows.logical(buf, n)
    dev = perm.device
    planes, pixel = rows.planes, rows.pixel
    size = c * h * w
    if starts is not None:
        pad = h * w * pixel
        torch.index_select(rows.images, 0, perm, out=moved[pad : pad + n * size].view(n, size))
        torch.index_select(moved.unfold(0, size, 1), 0, starts, out=buf.view(n, size))
        return rows.logical(buf, n)
    src_rows = (torch.arange(h, device=dev) + shift[:, 0:1]).clamp_(0, h - 1)  # (n, H)
    first = (perm * planes)[:, None] + torch.arange(planes, device=dev)[None, :]  # (n, P)
    line_index = (first[:, :, None] * h + src_rows[:, None, :]).reshape(-1)
    lines = moved[: n * size]
    torch.index_select(rows.lines, 0, line_index, out=lines.view(n * planes * h, w * pixel))
    cols = (torch.arange(w, device=dev) + shift[:, 1:2]).clamp_(0, w - 1)  # (n, W)
    if rows.channels_last:
        index = cols[:, None, :, None].expand(n, h, w, c)
        torch.gather(lines.view(n, h, w, c), 2, index, out=buf.view(n, h, w, c))
    else:
        index = cols[:, None, None, :].expand(n, c, h, w)
        torch.gather(lines.view(n, c, h, w), 3, index, out=buf.view(n, c, h, w))
    return rows.logical(buf, n)


def _box_lines(boxes: torch.Tensor, height: int, width: int, dtype: torch.dtype) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(B, H)`` and ``(B, W)``: 1 in the rows and columns of each box, 0 elsewhere, as ``dtype``."""
    dev = boxes.device
    rows = torch.arange(height, device=dev)
    cols = torch.arange(width, device=dev)
    in_rows = (rows >= boxes[:, 0:1]) & (rows < boxes[:, 2:3])
    in_cols = (cols >= boxes[:, 1:2]) & (cols < boxes[:, 3:4])
    return in_rows.to(dtype), in_cols.to(dtype)


def _mix_chunked(x: torch.Tensor, params: MixParams, out: Optional[torch.Tensor]) -> torch.Tensor:
    b, c, h, w = (int(v) for v in x.shape)
    dev = x.device
    if not (x.is_contiguous() or _is_channels_last(x)):
        x = x.contiguous()
    if out is None:
        out = torch.empty_like(
            x, memory_format=torch.channels_last if _is_channels_last(x) else torch.contiguous_format
        )
    if b == 0:  # an empty batch: nothing to mix (and no image to size a chunk by)
        return out
    work = _work_dtype(x)
    rows = _Rows(x)
    per_pixel = params.share_map is not None
    blended = params.blended or per_pixel
    patch = params.applied & ~params.mixup
    zero = torch.zeros((), dtype=work, device=dev)
    # The share outside and inside each sample's box, (B,): 1 - lam everywhere for MixUp samples,
    # eta inside the box of patch samples, 0 elsewhere (source_share's rule, the same bits).
    whole = torch.where(params.applied & params.mixup, (1.0 - params.lam).to(work), zero)
    inner = torch.where(patch, params.eta.to(work), whole)
    if not per_pixel and params.patches:
        # Per-pixel shares and selections as outer products of per-row and per-column lines, one
        # fast op per chunk (elementwise ops on bool masks, and broadcasts of three operands, are
        # several times slower on CPU). A MixUp sample's lines are 1 everywhere.
        in_rows, in_cols = _box_lines(params.dst_boxes, h, w, work)
        if blended or params.noise is not None or not x.is_floating_point():
            # share = inner * row * col: inner where row = col = 1 (a MixUp sample: whole
            # everywhere, as inner = whole), 0 elsewhere; exact, as the lines are 0 or 1.
            everywhere = (params.applied & params.mixup).to(work)[:, None]
            in_rows = torch.maximum(in_rows, everywhere).mul_(inner[:, None])
            in_cols = torch.maximum(in_cols, everywhere)
        else:
            # The selection share > 0.5 as a 0/1 mask, row * col: row is 1 on the box's rows
            # where inner > 0.5, col on the box's columns, both everywhere where whole > 0.5.
            everywhere = (whole > 0.5).to(work)[:, None]
            in_rows = torch.maximum(in_rows.mul_((inner > 0.5).to(work)[:, None]), everywhere).to(x.dtype)
            in_cols = torch.maximum(in_cols, everywhere).to(x.dtype)
    shift = _shift(params)
    # Where the noise goes under a per-pixel share: the pasted box of each patch sample (the box
    # shares are zero outside it, so for them the share itself says where).
    noise_inside = patch_mask(params, h, w) if per_pixel and params.noise is not None else None
    step = _chunk_size(x)
    buf = rows.empty(min(step, b), x.dtype, dev)
    moved, starts = buf, None
    if shift is not None:
        pad = h * w * rows.pixel
        moved = torch.empty(min(step, b) * c * h * w + 2 * pad, dtype=x.dtype, device=dev)
        moved[:pad].zero_()
        moved[-pad:].zero_()
        if not per_pixel:
            # Where each image's shifted block starts in its chunk's scratch (see _gather_sources).
            # A per-pixel share may be nonzero outside a box, where only the exact clamped
            # translation will do; box shares are zero outside the box.
            position = torch.arange(b, device=dev) % step
            starts = (shift[:, 0] * w + shift[:, 1]).mul_(rows.pixel).add_(position * (c * h * w) + pad)
    for i0 in range(0, b, step):
        i1 = min(b, i0 + step)
        n = i1 - i0
        src = _gather_sources(
            rows,
            params.perm[i0:i1],
            None if shift is None else shift[i0:i1],
            buf[: n * c * h * w],
            moved,
            None if starts is None else starts[i0:i1],
        )
        xc, oc = x[i0:i1], out[i0:i1]
        if per_pixel:
            share_map = cast(torch.Tensor, params.share_map)
            share = torch.where(params.applied[i0:i1, None, None, None], share_map[i0:i1].to(work), zero)
        elif not params.patches:
            share = whole[i0:i1, None, None, None]  # constant over each image: broadcast
        elif not blended and params.noise is None and x.is_floating_point():
            # A hard paste as x * (1 - m) + src * m with m the 0/1 selection: the selected value
            # exactly (x * 1 + src * 0 = x; only a zero's sign may change), and several times
            # faster on CPU than torch.where with a mask. (Non-finite pixels, rejected where
            # values are checked, propagate as in a blend.)
            mask = torch.mul(in_rows[i0:i1, None, :, None], in_cols[i0:i1, None, None, :])
            torch.mul(xc, 1.0 - mask, out=oc).addcmul_(src, mask)
            continue
        else:
            share = torch.mul(in_rows[i0:i1, None, :, None], in_cols[i0:i1, None, None, :])
        if params.noise is not None:
            # The noise inside each patch sample's box (share > 0 there), added in place to the
            # gathered sources (the scratch buffer, or a working-precision copy of it); outside
            # the box zero is added, whatever the noise holds there (inf * 0 would be NaN).
            if noise_inside is not None:  # a per-pixel share may be nonzero outside the box
                inside = noise_inside[i0:i1]
            else:
                inside = (share > 0) & patch[i0:i1, None, None, None]
            src = src if src.dtype == work else src.to(work)
            src.add_(torch.where(inside, params.noise[i0:i1].to(work), zero))
            if x.dtype == torch.uint8:
                src = src.round_().clamp_(0, 255)
        if not blended:
            # Every share is 0 or 1: a pure selection, bit exact in any dtype.
            torch.where(share > 0.5, src.to(x.dtype), xc, out=oc)
            continue
        # (1 - s) x + s src, not lerp: lerp's x + s (src - x) overflows for large values of opposite
        # sign (0 * inf = NaN), while this form is exact at s = 0 and s = 1 and bounded between.
        if x.dtype == work:
            torch.mul(xc, 1.0 - share, out=oc).addcmul_(src.to(work), share)
        else:
            mixed = torch.mul(xc.to(work), 1.0 - share).addcmul_(src.to(work), share)
            if x.dtype == torch.uint8:
                mixed = mixed.round_().clamp_(0, 255)
            oc.copy_(mixed)
    return out
