"""The cache of decoded splits: its folder, content keys, and ``.npz`` entries read and written.

An entry is only a copy of what decoding gives, so it never stops a load: an unreadable entry
(truncated, corrupt, from another layout) is a miss that is decoded again and rewritten, and a
write that fails (full or read-only disk, a cache path under a regular file) is a warning. Entries
are written through :func:`rsmix.files.atomic_write`, so readers see whole files only.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
import zipfile
import zlib
from pathlib import Path
from typing import IO, Dict, Mapping, Optional, Sequence

import numpy as np
import torch

from ..errors import UsageError
from ..files import atomic_write
from .container import ArrayDataset

__all__ = [
    "cache_path",
    "default_cache_dir",
    "file_digest",
    "read_arrays",
    "read_cache",
    "write_arrays",
    "write_cache",
]

# Bump when the cache file layout, the decoding or the labelling changes, so old entries are never
# read. 2: a split's labels index the training split's class list (or the classes= passed).
CACHE_FORMAT = 2
# What np.load and the arrays in an entry raise for a damaged or foreign file.
_UNREADABLE = (OSError, EOFError, ValueError, KeyError, TypeError, zipfile.BadZipFile, zlib.error)


def default_cache_dir() -> Path:
    """``$RSMIX_CACHE`` if set, else ``~/.cache/randsaliencymix``."""
    env = os.environ.get("RSMIX_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "randsaliencymix"


def _decoder_version() -> str:
    # JPEG decoders differ slightly between libjpeg builds: a new one must not reuse old pixels.
    try:
        import PIL
        from PIL import features

        return f"pillow {PIL.__version__} jpg {features.version('jpg')}"
    except ImportError:
        return "no pillow"


def cache_path(cache_dir: Path, kind: str, content_digest: str, options: Mapping[str, object]) -> Path:
    """The entry for ``kind`` of source with this content digest, decode options and decoder."""
    blob = json.dumps(
        {
            "format": CACHE_FORMAT,
            "kind": kind,
            "content": content_digest,
            "options": dict(options),
            "decoder": _decoder_version(),
        },
        sort_keys=True,
    )
    return cache_dir / f"{kind}-{hashlib.sha256(blob.encode()).hexdigest()[:40]}.npz"


def read_arrays(path: Path, names: Sequence[str]) -> Optional[Dict[str, np.ndarray]]:
    """The arrays ``names`` of the entry at ``path``, or None: missing (silently) or unreadable (with
    a warning: the caller computes them again)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            # Every array is read (and its CRC checked) inside the with: a cut file fails here.
            return {name: z[name] for name in names}
    except _UNREADABLE as exc:
        warnings.warn(
            f"Ignoring the unreadable cache file {path} ({type(exc).__name__}: {exc}); computing it again.",
            RuntimeWarning,
            stacklevel=3,
        )
        return None


def write_arrays(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    """Store ``arrays`` at ``path`` (atomically); a failure is a warning, the caller still has them."""

    def save(fh: IO[bytes]) -> None:
        np.savez(fh, **dict(arrays))  # type: ignore[arg-type]  # numpy's stub types the kwargs poorly

    try:
        atomic_write(path, save)
    except (UsageError, OSError) as exc:
        warnings.warn(
            f"Cannot write the cache file {path} ({exc}); the data is loaded but will be computed again "
            "next time (point RSMIX_CACHE or cache_dir= at a writable folder, or pass cache=False).",
            RuntimeWarning,
            stacklevel=3,
        )


def read_cache(path: Path) -> Optional[ArrayDataset]:
    """The cached split at ``path``, or None (with a warning if the file is there but unreadable)."""
    arrays = read_arrays(path, ("images", "labels", "classes"))
    if arrays is None:
        return None
    try:
        return ArrayDataset(
            torch.from_numpy(arrays["images"]),
            torch.from_numpy(arrays["labels"]),
            [str(c) for c in arrays["classes"]],
        )
    except (TypeError, ValueError) as exc:  # arrays of another layout: a miss, as an unreadable file
        warnings.warn(f"Ignoring the cache file {path} ({exc}); decoding again.", RuntimeWarning, stacklevel=2)
        return None


def write_cache(path: Path, dataset: ArrayDataset) -> None:
    """Store ``dataset`` at ``path``; a failure is a warning, the caller still has the data."""
    write_arrays(
        path,
        {
            "images": dataset.images.numpy(),
            "labels": dataset.labels.numpy(),
            "classes": np.array(dataset.classes, dtype=str),
        },
    )


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()
