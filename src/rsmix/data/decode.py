"""Image decoding with Pillow: encoded bytes to uint8 RGB arrays, optionally resized to cover a
size and centre-cropped. A file that does not decode is a :class:`~rsmix.errors.UsageError`
naming it, never a silent grey patch.
"""

from __future__ import annotations

import io
from typing import Any, Optional, Sequence, Tuple

import numpy as np

from ..errors import UsageError
from .args import check_fits

__all__ = ["decode_image", "decode_all"]


def _pillow() -> Any:
    try:
        from PIL import Image
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise UsageError(
            "Expected Pillow to decode images (pip install 'randsaliencymix[data]'), "
            "but got no module named PIL instead."
        ) from exc
    return Image


def decode_image(data: bytes, where: str, size: Optional[Tuple[int, int]] = None) -> np.ndarray:
    """One encoded image to uint8 ``(H, W, 3)``; with ``size``, resized to cover it, centre-cropped."""
    Image = _pillow()
    try:
        with Image.open(io.BytesIO(data)) as im:
            # load() decodes now: a truncated file fails here, not later as a silent grey patch.
            im.load()
            rgb = im if im.mode == "RGB" else im.convert("RGB")
            if size is not None and rgb.size != (size[1], size[0]):
                rgb = _cover_and_crop(rgb, size)
            return np.asarray(rgb)
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as exc:
        raise UsageError(f"Cannot decode image {where}: {exc}") from exc


def _cover_and_crop(im: Any, size: Tuple[int, int]) -> Any:
    """Resize so the image covers ``size`` with its aspect ratio kept, keeping the centre."""
    Image = _pillow()
    out_h, out_w = size
    w, h = im.size
    # The centred source window with the output's aspect ratio, resized in one resampling step.
    if w * out_h > h * out_w:
        crop_w = h * out_w / out_h
        box = ((w - crop_w) / 2, 0.0, (w + crop_w) / 2, float(h))
    else:
        crop_h = w * out_h / out_w
        box = (0.0, (h - crop_h) / 2, float(w), (h + crop_h) / 2)
    bilinear = getattr(Image, "Resampling", Image).BILINEAR
    return im.resize((out_w, out_h), bilinear, box=box)


def decode_all(items: Sequence[Tuple[str, bytes]], size: Optional[Tuple[int, int]]) -> np.ndarray:
    """Decode every ``(where, bytes)`` into one ``(N, H, W, 3)`` array; all must share one size
    unless resized (then a size whose array cannot fit in memory is refused before decoding)."""
    if size is not None:
        check_fits(len(items), 3, size[0], size[1], "decoding")
    first = decode_image(items[0][1], items[0][0], size)
    out = np.empty((len(items), *first.shape), dtype=np.uint8)
    out[0] = first
    for i in range(1, len(items)):
        where, data = items[i]
        img = decode_image(data, where, size)
        if img.shape != first.shape:
            raise UsageError(
                f"Expected every image to be {first.shape[0]}x{first.shape[1]} like {items[0][0]}, "
                f"but got {img.shape[0]}x{img.shape[1]} for {where} instead (pass size= to resize)."
            )
        out[i] = img
    return out
