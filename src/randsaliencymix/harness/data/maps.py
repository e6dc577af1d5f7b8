"""The saliency maps of a whole split, computed once in batches on the device and cached by content.

:func:`dataset_maps` runs one of the OpenCV-style detectors (``"fine_grained"``, ``"spectral"``) over
every image of a uint8 ``(N, C, H, W)`` dataset and returns the maps as uint8 ``(N, H, W)``: the map
times 255, rounded. The fine-grained detector's maps are multiples of 1/255, so they are stored
exactly; the spectral residual's are rounded to the nearest 1/255 (an error of at most 0.002).

The maps are cached beside the decoded images (``$RSMIX_CACHE``, see :mod:`.cache`), keyed by a
digest of the images' bytes and shape, the detector and :data:`MAPS_FORMAT`: the same pixels give
the same entry whichever source or path they came from, and different pixels never share one. The
entry also stores that key, so a file holding other maps (another dataset's, copied or renamed
into place) is a miss, as is a damaged entry: both are computed again. A cache that cannot be
written is a warning.

:class:`~randsaliencymix.harness.pipeline.DeviceLoader` (``maps=``) crops and flips the maps with their
images, with the same draws, so each batch's maps cost no detector call (the seed repository
cached maps the same way).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch

from .args import check_int
from .cache import cache_path, default_cache_dir, read_arrays, write_arrays

__all__ = ["MAP_DETECTORS", "MAPS_FORMAT", "dataset_maps", "images_digest"]

# The detectors whose maps depend on the image alone (CAM depends on the model: never cached).
MAP_DETECTORS = ("fine_grained", "spectral")
# Bump when a detector's output or the entry's layout changes, so old maps are never read.
# 2: the entry stores its own key (a file of other maps under this name is a miss).
MAPS_FORMAT = 2


def images_digest(images: torch.Tensor) -> str:
    """SHA-256 of a uint8 dataset's shape and bytes (in NCHW order, whatever its memory format)."""
    h = hashlib.sha256(repr(tuple(images.shape)).encode())
    flat = images.detach().to("cpu").contiguous().view(-1)
    step = 1 << 26  # 64 MiB at a time: no full host copy of a device dataset
    for start in range(0, flat.numel(), step):
        h.update(flat[start : start + step].numpy().data)  # the bytes in place, no copy
    return h.hexdigest()


def _check_device(device: object) -> torch.device:
    try:
        dev = torch.device(device)  # type: ignore[call-overload]
    except (RuntimeError, ValueError, TypeError):
        raise ValueError(
            f"Expected device to be a torch device such as 'cpu' or 'cuda', but got {device!r} instead."
        ) from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"Expected an available device, but got {device!r} instead (torch.cuda.is_available() is False)."
        )
    return dev


def dataset_maps(
    images: torch.Tensor,
    detector: str,
    *,
    device: Optional[Union[str, torch.device]] = None,
    batch_size: int = 256,
    cache: bool = True,
    cache_dir: Optional[Union[str, Path]] = None,
) -> torch.Tensor:
    """Saliency maps of every image of ``images`` by ``detector``, as uint8 ``(N, H, W)`` (map x 255).

    ``images``: uint8 ``(N, C, H, W)`` (C = 1 or 3), the stored (unaugmented) dataset. The detector
    runs on ``device`` (default: the images' device) ``batch_size`` images at a time; the maps are
    returned on that device. With ``cache`` they are read from, or written to, ``cache_dir``
    (default ``$RSMIX_CACHE`` or ``~/.cache/randsaliencymix``).
    """
    from ...saliency import saliency_map

    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.ndim != 4:
        got = f"{images.dtype} {tuple(images.shape)}" if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"Expected uint8 images of shape (N, C, H, W), but got {got} instead.")
    if detector not in MAP_DETECTORS:
        raise ValueError(f"Expected detector to be one of {', '.join(MAP_DETECTORS)}, but got {detector!r} instead.")
    batch_size = check_int("batch_size", batch_size, 1)
    dev = _check_device(device) if device is not None else images.device
    n, _, h, w = images.shape
    path, key = None, ""
    if cache:
        folder = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
        options = {"detector": detector, "format": MAPS_FORMAT}
        digest = images_digest(images)
        path = cache_path(folder, f"maps-{detector}", digest, options)
        key = f"{detector}:{MAPS_FORMAT}:{digest}"
        stored = read_arrays(path, ("maps", "key"))
        if (
            stored is not None
            and str(stored["key"]) == key
            and stored["maps"].shape == (n, h, w)
            and stored["maps"].dtype == np.uint8
        ):
            return torch.from_numpy(stored["maps"]).to(dev)
    maps = torch.empty(n, h, w, dtype=torch.uint8, device=dev)
    for start in range(0, n, batch_size):
        chunk = images[start : start + batch_size].to(dev)
        maps[start : start + batch_size] = saliency_map(chunk, detector).mul_(255.0).round_().to(torch.uint8)
    if path is not None:
        write_arrays(path, {"maps": maps.cpu().numpy(), "key": np.array(key)})  # a failure is a warning
    return maps
