"""CIFAR-10 and CIFAR-100 in the official python format (a folder or the official ``.tar.gz``), and
the download of that archive with its md5 checked.

The official files are pickles; they are read with an unpickler that only builds dicts, lists,
strings and NumPy arrays, so a tampered file cannot run code.
"""

from __future__ import annotations

import hashlib
import http.client
import io
import pickle
import posixpath
import tarfile
import urllib.error
import urllib.request
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np
import torch

from ..errors import UsageError
from ..files import atomic_write
from .args import PathLike
from .cache import file_digest
from .container import ArrayDataset
from .folders import ARCHIVE_ERRORS, is_archive

__all__ = ["CIFAR_ARCHIVES", "cifar_location", "download_cifar", "load_cifar"]


@dataclass(frozen=True)
class _CifarArchive:
    url: str
    md5: str
    archive: str  # file name of the official archive
    folder: str  # its top-level folder
    train: Tuple[str, ...]
    test: Tuple[str, ...]
    meta: str
    names_key: str  # class names in the meta file
    labels_key: str


CIFAR_ARCHIVES: Dict[str, _CifarArchive] = {
    "cifar10": _CifarArchive(
        url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        md5="c58f30108f718f92721af3b95e74349a",
        archive="cifar-10-python.tar.gz",
        folder="cifar-10-batches-py",
        train=tuple(f"data_batch_{i}" for i in range(1, 6)),
        test=("test_batch",),
        meta="batches.meta",
        names_key="label_names",
        labels_key="labels",
    ),
    "cifar100": _CifarArchive(
        url="https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        md5="eb9058c3a382ffc7106e4002c42a8d85",
        archive="cifar-100-python.tar.gz",
        folder="cifar-100-python",
        train=("train",),
        test=("test",),
        meta="meta",
        names_key="fine_label_names",
        labels_key="fine_labels",
    ),
}

# What the official pickles need: dicts, lists, strings and NumPy arrays. Anything else (a pickle
# can name any callable) is refused, so a tampered file cannot run code.
_PICKLE_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}
# What a corrupt or foreign pickle raises while it is read with the allowed callables above.
_PICKLE_ERRORS = (
    pickle.UnpicklingError,
    EOFError,
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    AttributeError,
    OverflowError,
)
# What a failed download raises: no network, a refused or reset connection, a timeout, an HTTP
# error status (URLError and the socket errors are OSErrors), or a broken HTTP response.
_NETWORK_ERRORS = (urllib.error.URLError, OSError, http.client.HTTPException)


class _DataUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _PICKLE_ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # numpy.core is numpy._core in 2.x
            return super().find_class(module, name)


def _unpickle(data: bytes, where: str) -> Dict[str, Any]:
    try:
        # latin1 reads the Python 2 strings of the official files as text, and NumPy's raw bytes
        # unchanged.
        obj = _DataUnpickler(io.BytesIO(data), encoding="latin1").load()
    except _PICKLE_ERRORS as exc:
        raise UsageError(f"Cannot read the CIFAR file {where}: {exc}") from exc
    if not isinstance(obj, dict):
        raise UsageError(f"Expected a dict in the CIFAR file {where}, but got {type(obj).__name__} instead.")
    return {(k.decode("latin1") if isinstance(k, bytes) else str(k)): v for k, v in obj.items()}


def cifar_location(path: Path) -> Optional[Tuple[str, Path, bool]]:
    """``(name, location, is_archive)`` when ``path`` is, or directly holds, a CIFAR source."""
    if path.is_dir():
        for name, spec in CIFAR_ARCHIVES.items():
            if (path / spec.meta).is_file() and all((path / f).is_file() for f in spec.test):
                return name, path, False
        for name, spec in CIFAR_ARCHIVES.items():
            if (path / spec.folder).is_dir():
                return name, path / spec.folder, False
            if (path / spec.archive).is_file():
                return name, path / spec.archive, True
        return None
    if path.is_file() and is_archive(path):
        try:
            with tarfile.open(path, "r:*") as tar:
                first = tar.next()
        except ARCHIVE_ERRORS:
            return None
        if first is None:
            return None
        top = posixpath.normpath(first.name).lstrip("/").split("/")[0]
        for name, spec in CIFAR_ARCHIVES.items():
            if top == spec.folder:
                return name, path, True
    return None


def _cifar_files(
    location: Path, is_archive: bool, spec: _CifarArchive, wanted: Sequence[str]
) -> Dict[str, Tuple[str, bytes]]:
    found: Dict[str, Tuple[str, bytes]] = {}
    if is_archive:
        try:
            with tarfile.open(location, "r:*") as tar:
                for info in tar:
                    parts = posixpath.normpath(info.name).lstrip("/").split("/")
                    if info.isfile() and len(parts) == 2 and parts[0] == spec.folder and parts[1] in wanted:
                        f = tar.extractfile(info)
                        found[parts[1]] = (f"{location}:{info.name}", f.read() if f else b"")
        except ARCHIVE_ERRORS as exc:
            raise UsageError(f"Cannot read archive {location}: {exc}") from exc
    else:
        for name in wanted:
            if (location / name).is_file():
                try:
                    found[name] = (str(location / name), (location / name).read_bytes())
                except OSError as exc:
                    raise UsageError(f"Cannot read the CIFAR file {location / name}: {exc}") from exc
    missing = [name for name in wanted if name not in found]
    if missing:
        where = f"{location}:{spec.folder}/" if is_archive else f"{location}/"
        raise UsageError(
            f"Expected the CIFAR files {', '.join(wanted)} in {where}, but got none for {', '.join(missing)} instead."
        )
    return found


def load_cifar(path: PathLike, split: str = "train", labels: str = "fine") -> ArrayDataset:
    """CIFAR-10 or CIFAR-100 in the official python format: a ``cifar-10-batches-py`` /
    ``cifar-100-python`` folder, a folder holding one (or the official archive), or the
    ``.tar.gz`` itself. ``split`` is ``"train"`` or ``"test"``; ``labels`` ``"fine"`` or
    ``"coarse"`` picks CIFAR-100's label set.
    """
    src = Path(path)
    if split not in ("train", "test"):
        raise UsageError(f"Expected split 'train' or 'test' for CIFAR, but got {split!r} instead.")
    if labels not in ("fine", "coarse"):
        raise UsageError(f"Expected labels 'fine' or 'coarse', but got {labels!r} instead.")
    if not src.exists():
        raise UsageError(f"Expected an existing CIFAR folder or archive, but got {src} instead.")
    found = cifar_location(src)
    if found is None:
        raise UsageError(
            "Expected a CIFAR python folder (cifar-10-batches-py, cifar-100-python) or its .tar.gz, "
            f"but got {src} instead."
        )
    name, location, archived = found
    spec = CIFAR_ARCHIVES[name]
    names_key, labels_key = spec.names_key, spec.labels_key
    if name == "cifar100" and labels == "coarse":
        names_key, labels_key = "coarse_label_names", "coarse_labels"
    batches = spec.train if split == "train" else spec.test
    files = _cifar_files(location, archived, spec, (*batches, spec.meta))

    meta_where, meta_bytes = files[spec.meta]
    meta = _unpickle(meta_bytes, meta_where)
    if names_key not in meta:
        raise UsageError(f"Expected the key {names_key!r} in {meta_where}, but got {sorted(meta)} instead.")
    classes = [c.decode("latin1") if isinstance(c, bytes) else str(c) for c in meta[names_key]]

    images, targets = [], []
    for batch_name in batches:
        where, raw = files[batch_name]
        batch = _unpickle(raw, where)
        if "data" not in batch or labels_key not in batch:
            raise UsageError(
                f"Expected the keys 'data' and {labels_key!r} in {where}, but got {sorted(batch)} instead."
            )
        data = np.asarray(batch["data"])
        try:
            target = np.asarray(batch[labels_key], dtype=np.int64)
        except (TypeError, ValueError) as exc:
            raise UsageError(f"Expected integer labels {labels_key!r} in {where}: {exc}") from exc
        well_formed = data.dtype == np.uint8 and data.ndim == 2 and data.shape[1] == 3 * 32 * 32
        if not well_formed or target.ndim != 1 or data.shape[0] != target.shape[0]:
            raise UsageError(
                f"Expected uint8 data of shape (N, 3072) with N labels in {where}, "
                f"but got {data.dtype} {data.shape} with labels of shape {target.shape} instead."
            )
        if target.size and (target.min() < 0 or target.max() >= len(classes)):
            raise UsageError(
                f"Expected labels in [0, {len(classes) - 1}] (one per class of {meta_where}) in {where}, "
                f"but got {int(target.min()) if target.min() < 0 else int(target.max())} instead."
            )
        # Rows are the red, green and blue planes of a 32x32 image, one after the other.
        images.append(data.reshape(-1, 3, 32, 32))
        targets.append(target)
    return ArrayDataset(torch.from_numpy(np.concatenate(images)), torch.from_numpy(np.concatenate(targets)), classes)


def _download_failed(url: str, target: Path, spec: _CifarArchive, exc: BaseException) -> UsageError:
    reason = exc if isinstance(exc, urllib.error.HTTPError) else getattr(exc, "reason", None) or exc
    return UsageError(
        f"The download of {url} failed ({reason}). Without network access, fetch {spec.archive} "
        f"elsewhere and place it by hand as {target} (or unpack it there as {spec.folder}/), then load again."
    )


def download_cifar(
    name: str,
    root: PathLike,
    url: Optional[str] = None,
    md5: Optional[str] = None,
    timeout: float = 60.0,
) -> Path:
    """Download the official CIFAR archive (``"cifar10"`` or ``"cifar100"``) into ``root``.

    Returns the path of the archive. A file already there with the right md5 is kept; otherwise
    the archive is streamed to a temporary file, its md5 verified (``md5`` overrides the official
    one, ``url`` the official address) and renamed into place, so ``root`` never holds a partial
    archive under the real name. A failed download (no network, a timeout, an HTTP error) or an
    md5 mismatch raises :class:`~rsmix.errors.UsageError` and leaves nothing behind.
    """
    if name not in CIFAR_ARCHIVES:
        raise UsageError(f"Expected name 'cifar10' or 'cifar100', but got {name!r} instead.")
    spec = CIFAR_ARCHIVES[name]
    url = url or spec.url
    expected = (md5 or spec.md5).lower()
    target = Path(root) / spec.archive
    if target.is_file():
        try:
            if file_digest(target, "md5") == expected:
                return target
        except OSError as exc:
            raise UsageError(f"Cannot read {target}: {exc}") from exc

    def fetch(out: Any) -> None:
        digest = hashlib.md5()
        try:
            response = urllib.request.urlopen(url, timeout=timeout)
        except (*_NETWORK_ERRORS, ValueError) as exc:  # ValueError: not a URL urllib can open
            raise _download_failed(url, target, spec, exc) from exc
        with response:
            while True:
                try:
                    chunk = response.read(1 << 20)
                except _NETWORK_ERRORS as exc:
                    raise _download_failed(url, target, spec, exc) from exc
                if not chunk:
                    break
                digest.update(chunk)
                out.write(chunk)  # a full disk here is atomic_write's "cannot write" UsageError
        actual = digest.hexdigest()
        if actual != expected:
            raise UsageError(f"Expected md5 {expected} for {url}, but got {actual} instead; the download was removed.")

    atomic_write(target, fetch)
    return target
