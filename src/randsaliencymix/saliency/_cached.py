"""The saliency maps of a whole dataset, computed once in batches on the device and cached by content.

:func:`dataset_maps` runs one of the detectors whose maps depend on the image alone
(``"fine_grained"``, ``"spectral"``) over every image of a uint8 ``(N, C, H, W)`` dataset and returns
the maps as uint8 ``(N, H, W)``: the map times 255, rounded. The fine-grained detector's maps are
multiples of 1/255, so they are stored exactly; the spectral residual's are rounded to the nearest
1/255 (an error of at most 0.002).

The maps are cached in ``cache_dir`` (default ``$RSMIX_CACHE``, else ``~/.cache/randsaliencymix``),
keyed by a digest of the images' bytes and shape, the detector and the entry's format: the same
pixels give the same entry wherever they came from, and different pixels never share one. The entry
stores that key too, so a file holding other maps (copied or renamed into place) is a miss, as is a
damaged entry: both are computed again. A cache that cannot be written is a warning; an entry is
written to a temporary file and renamed, so a reader sees whole entries only.

Internal: import from randsaliencymix.saliency instead; may change without notice.
"""

from __future__ import annotations

import hashlib
import json
import numbers
import os
import tempfile
import warnings
import zipfile
import zlib
from pathlib import Path
from typing import Dict, Optional, Union

import numpy as np
import torch

__all__ = ["MAP_DETECTORS", "dataset_maps"]

# The detectors whose maps depend on the image alone (CAM depends on the model: never cached).
MAP_DETECTORS = ("fine_grained", "spectral")
# Bump when a detector's output or the entry's layout changes, so old maps are never read.
# 2: the entry stores its own key (a file of other maps under this name is a miss).
_FORMAT = 2
# What np.load and the arrays in an entry raise for a damaged or foreign file.
_UNREADABLE = (OSError, EOFError, ValueError, KeyError, TypeError, zipfile.BadZipFile, zlib.error)


def _default_cache_dir() -> Path:
    env = os.environ.get("RSMIX_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "randsaliencymix"


def _images_digest(images: torch.Tensor) -> str:
    """SHA-256 of a uint8 dataset's shape and bytes (in NCHW order, whatever its memory format)."""
    h = hashlib.sha256(repr(tuple(images.shape)).encode())
    flat = images.detach().to("cpu").contiguous().view(-1)
    step = 1 << 26  # 64 MiB at a time: no full host copy of a device dataset
    for start in range(0, flat.numel(), step):
        h.update(flat[start : start + step].numpy().data)  # the bytes in place, no copy
    return h.hexdigest()


def _read(path: Path) -> Optional[Dict[str, np.ndarray]]:
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            return {name: z[name] for name in ("maps", "key")}  # read (and CRC-checked) inside the with
    except _UNREADABLE as exc:
        warnings.warn(
            f"Ignoring the unreadable cache file {path} ({type(exc).__name__}: {exc}); computing it again.",
            RuntimeWarning,
            stacklevel=3,
        )
        return None


def _write(path: Path, maps: np.ndarray, key: str) -> None:
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, maps=maps, key=np.array(key))
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        warnings.warn(
            f"Cannot write the cache file {path} ({exc.strerror or exc}); the maps are computed but will be "
            "computed again next time (point RSMIX_CACHE or cache_dir= at a writable folder, or pass cache=False).",
            RuntimeWarning,
            stacklevel=3,
        )
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass


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
    cache_dir: Optional[Union[str, os.PathLike[str]]] = None,
) -> torch.Tensor:
    """Saliency maps of every image of ``images`` by ``detector``, as uint8 ``(N, H, W)`` (map x 255).

    ``images``: uint8 ``(N, C, H, W)`` (C = 1 or 3), the stored (unaugmented) dataset. ``detector``:
    ``"fine_grained"`` or ``"spectral"``. The detector runs on ``device`` (default: the images'
    device) ``batch_size`` images at a time; the maps are returned on that device. With ``cache``
    they are read from, or written to, ``cache_dir`` (default ``$RSMIX_CACHE`` or
    ``~/.cache/randsaliencymix``). Index the maps with a batch's dataset indices, give them the
    batch's crops and flips, and pass ``saliency=maps_batch.float() / 255`` to an operator: no
    detector runs during training.
    """
    from . import saliency_map

    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.ndim != 4:
        got = f"{images.dtype} {tuple(images.shape)}" if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"Expected uint8 images of shape (N, C, H, W), but got {got} instead.")
    if detector not in MAP_DETECTORS:
        raise ValueError(f"Expected detector to be one of {', '.join(MAP_DETECTORS)}, but got {detector!r} instead.")
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral):
        raise TypeError(f"Expected batch_size to be an int, but got {type(batch_size).__name__} instead.")
    if batch_size < 1:
        raise ValueError(f"Expected batch_size >= 1, but got {batch_size} instead.")
    dev = _check_device(device) if device is not None else images.device
    n, _, h, w = images.shape
    path, key = None, ""
    if cache:
        folder = Path(cache_dir).expanduser() if cache_dir is not None else _default_cache_dir()
        digest = _images_digest(images)
        key = f"{detector}:{_FORMAT}:{digest}"
        blob = json.dumps({"kind": f"maps-{detector}", "content": digest, "format": _FORMAT}, sort_keys=True)
        path = folder / f"maps-{detector}-{hashlib.sha256(blob.encode()).hexdigest()[:40]}.npz"
        stored = _read(path)
        if (
            stored is not None
            and str(stored["key"]) == key
            and stored["maps"].shape == (n, h, w)
            and stored["maps"].dtype == np.uint8
        ):
            return torch.from_numpy(stored["maps"]).to(dev)
    maps = torch.empty(n, h, w, dtype=torch.uint8, device=dev)
    for start in range(0, n, int(batch_size)):
        chunk = images[start : start + batch_size].to(dev)
        maps[start : start + batch_size] = saliency_map(chunk, detector).mul_(255.0).round_().to(torch.uint8)
    if path is not None:
        _write(path, maps.cpu().numpy(), key)
    return maps
