"""Datasets for the training harness, held in memory as one uint8 ``(N, C, H, W)`` tensor each.

Sources, all reached through :func:`load_dataset`:

* ``"procedural"``: a synthetic dataset built from a seed in seconds, nothing to download
  (:func:`procedural_dataset`); each class is an object (shape, colour, texture) placed at random
  on a cluttered background, so where a patch is cut from matters.
* CIFAR-10 / CIFAR-100 in the official python format, as a folder or the official ``.tar.gz``
  (:func:`load_cifar`); :func:`download_cifar` fetches the archive and verifies its md5.
* ImageFolder trees ``root/<split>/<class>/<image>`` (or ``root/<class>/<image>``), as a folder or
  a ``.tar`` / ``.tar.gz`` of one (:func:`load_image_folder`). Decoded splits are cached as
  ``.npz`` files keyed by the source's content, so only the first load pays for decoding.

Splits for model selection come from :func:`train_val_split` (stratified, seeded) and low-data
regimes from :func:`class_balanced_subset`. Every random draw comes from a ``torch.Generator``
seeded by the caller's ``seed``; nothing reads a global random state.

Decoding images needs Pillow (extra ``data``); CIFAR and the procedural dataset do not.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import numbers
import os
import pickle
import posixpath
import tarfile
import tempfile
import urllib.error
import urllib.request
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

__all__ = [
    "ArrayDataset",
    "CIFAR_ARCHIVES",
    "IMAGE_SUFFIXES",
    "load_dataset",
    "load_cifar",
    "download_cifar",
    "load_image_folder",
    "procedural_dataset",
    "procedural_split",
    "train_val_indices",
    "train_val_split",
    "class_balanced_subset",
    "default_cache_dir",
]

PathLike = Union[str, "os.PathLike[str]"]
SizeArg = Optional[Union[int, Tuple[int, int]]]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".ppm", ".pgm", ".tif", ".tiff", ".gif")
_ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")
# Folder names that are splits, never classes: a split-less load of a tree made of them is a mistake.
_SPLIT_NAMES = frozenset({"train", "test", "val", "valid", "validation"})
# Bump when the cache file layout or the decoding changes, so old entries are never read.
_CACHE_FORMAT = 1
# What a damaged archive raises while it is read: tarfile's own errors, or the decompressor's.
_ARCHIVE_ERRORS: Tuple[type, ...] = (tarfile.TarError, OSError, EOFError, zlib.error)
try:
    import lzma

    _ARCHIVE_ERRORS += (lzma.LZMAError,)
except ImportError:  # pragma: no cover - Python built without lzma
    pass


# ----------------------------------------------------------------------------------------------
# The container
# ----------------------------------------------------------------------------------------------


@dataclass
class ArrayDataset:
    """A whole split in memory: ``images`` uint8 ``(N, C, H, W)``, ``labels`` int64 ``(N,)``.

    ``classes[k]`` names label ``k``. ``masks`` (bool ``(N, H, W)``, optional) marks each image's
    object where the source knows it (the procedural dataset with ``return_masks=True``).
    NumPy arrays are accepted and turned into tensors.
    """

    images: torch.Tensor
    labels: torch.Tensor
    classes: List[str]
    masks: Optional[torch.Tensor] = None

    def __post_init__(self) -> None:
        if isinstance(self.images, np.ndarray):
            self.images = torch.from_numpy(np.ascontiguousarray(self.images))
        if isinstance(self.labels, np.ndarray):
            self.labels = torch.from_numpy(np.ascontiguousarray(self.labels))
        if isinstance(self.masks, np.ndarray):
            self.masks = torch.from_numpy(np.ascontiguousarray(self.masks))
        if not isinstance(self.images, torch.Tensor) or self.images.dtype != torch.uint8:
            got = self.images.dtype if isinstance(self.images, torch.Tensor) else type(self.images).__name__
            raise TypeError(f"Expected images as a uint8 torch.Tensor, but got {got} instead.")
        if self.images.ndim != 4:
            raise ValueError(f"Expected images of shape (N, C, H, W), but got {tuple(self.images.shape)} instead.")
        if not isinstance(self.labels, torch.Tensor) or self.labels.dtype != torch.int64:
            got = self.labels.dtype if isinstance(self.labels, torch.Tensor) else type(self.labels).__name__
            raise TypeError(f"Expected labels as an int64 torch.Tensor, but got {got} instead.")
        if tuple(self.labels.shape) != (self.images.shape[0],):
            raise ValueError(
                f"Expected labels of shape ({self.images.shape[0]},) to match the images, "
                f"but got {tuple(self.labels.shape)} instead."
            )
        self.classes = [str(c) for c in self.classes]
        if len(self.classes) < 1:
            raise ValueError("Expected at least one class name, but got none instead.")
        if self.labels.numel() > 0:
            lo, hi = int(self.labels.min()), int(self.labels.max())
            if lo < 0 or hi >= len(self.classes):
                raise ValueError(
                    f"Expected labels in [0, {len(self.classes) - 1}] (one per class name), "
                    f"but got {lo if lo < 0 else hi} instead."
                )
        if self.masks is not None:
            expected = (self.images.shape[0], self.images.shape[2], self.images.shape[3])
            if self.masks.dtype != torch.bool or tuple(self.masks.shape) != expected:
                raise ValueError(
                    f"Expected masks as a bool tensor of shape {expected}, "
                    f"but got {self.masks.dtype} {tuple(self.masks.shape)} instead."
                )

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_size(self) -> Tuple[int, int]:
        return int(self.images.shape[2]), int(self.images.shape[3])

    def class_counts(self) -> torch.Tensor:
        """Number of images of each class, ``(num_classes,)`` int64."""
        return torch.bincount(self.labels, minlength=self.num_classes)

    def subset(self, indices: torch.Tensor) -> ArrayDataset:
        """The images at ``indices`` (int64 or bool mask), in that order, as a new dataset."""
        indices = torch.as_tensor(indices)
        if indices.dtype == torch.bool:
            indices = indices.nonzero().squeeze(1)
        indices = indices.long()
        masks = None if self.masks is None else self.masks.index_select(0, indices)
        return ArrayDataset(
            self.images.index_select(0, indices), self.labels.index_select(0, indices), list(self.classes), masks
        )


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"Expected {name} to be an int, but got {type(value).__name__} instead.")
    if value < minimum:
        raise ValueError(f"Expected {name} >= {minimum}, but got {value} instead.")
    return int(value)


def _check_size(size: SizeArg) -> Optional[Tuple[int, int]]:
    if size is None:
        return None
    if isinstance(size, numbers.Integral) and not isinstance(size, bool):
        return (_check_int("size", size, 1),) * 2
    if isinstance(size, (tuple, list)) and len(size) == 2:
        return _check_int("size[0]", size[0], 1), _check_int("size[1]", size[1], 1)
    raise TypeError(f"Expected size as an int or (height, width), but got {size!r} instead.")


def _first_per_class(labels: torch.Tensor, num_classes: int, limit: int) -> torch.Tensor:
    """Indices of the first ``limit`` images of each class, in dataset order (a bool mask)."""
    order = torch.sort(labels, stable=True).indices
    counts = torch.bincount(labels, minlength=num_classes)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(labels.shape[0]) - starts[labels[order]]
    keep = torch.zeros(labels.shape[0], dtype=torch.bool)
    keep[order] = rank < limit
    return keep


# ----------------------------------------------------------------------------------------------
# Cache of decoded images
# ----------------------------------------------------------------------------------------------


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


def _cache_path(cache_dir: Path, kind: str, content_digest: str, options: Dict[str, object]) -> Path:
    blob = json.dumps(
        {
            "format": _CACHE_FORMAT,
            "kind": kind,
            "content": content_digest,
            "options": options,
            "decoder": _decoder_version(),
        },
        sort_keys=True,
    )
    return cache_dir / f"{kind}-{hashlib.sha256(blob.encode()).hexdigest()[:40]}.npz"


def _read_cache(path: Path) -> Optional[ArrayDataset]:
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            return ArrayDataset(
                torch.from_numpy(z["images"]), torch.from_numpy(z["labels"]), [str(c) for c in z["classes"]]
            )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        # A cache entry is only a copy: an unreadable one is decoded again and rewritten.
        warnings.warn(f"Ignoring unreadable cache file {path}: {exc}", RuntimeWarning, stacklevel=3)
        return None


def _write_cache(path: Path, dataset: ArrayDataset) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        warnings.warn(f"Cannot write the cache in {path.parent}: {exc}", RuntimeWarning, stacklevel=3)
        return
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(
                f,
                images=dataset.images.numpy(),
                labels=dataset.labels.numpy(),
                classes=np.array(dataset.classes, dtype=str),
            )
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a cache is as readable as its folder
        # Readers see either no file or a whole one, also with several processes writing.
        os.replace(tmp, path)
    except BaseException:
        _remove_quietly(tmp)
        raise


def _remove_quietly(path: PathLike) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


def _file_digest(path: Path, algorithm: str = "sha256") -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


# ----------------------------------------------------------------------------------------------
# Image decoding
# ----------------------------------------------------------------------------------------------


def _resample_bilinear() -> int:
    from PIL import Image

    return getattr(Image, "Resampling", Image).BILINEAR


def _decode_image(data: bytes, where: str, size: Optional[Tuple[int, int]] = None) -> np.ndarray:
    """One encoded image to uint8 ``(H, W, 3)``; with ``size``, resized to cover it, centre-cropped."""
    try:
        from PIL import Image
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "Expected Pillow to decode images (pip install 'randsaliencymix[data]'), "
            "but got no module named PIL instead."
        ) from exc
    try:
        with Image.open(io.BytesIO(data)) as im:
            # load() decodes now: a truncated file fails here, not later as a silent grey patch.
            im.load()
            rgb = im if im.mode == "RGB" else im.convert("RGB")
            if size is not None and rgb.size != (size[1], size[0]):
                rgb = _cover_and_crop(rgb, size)
            return np.asarray(rgb)
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as exc:
        raise ValueError(f"Cannot decode image {where}: {exc}") from exc


def _cover_and_crop(im: object, size: Tuple[int, int]):
    """Resize so the image covers ``size`` with its aspect ratio kept, keeping the centre."""
    out_h, out_w = size
    w, h = im.size
    # The centred source window with the output's aspect ratio, resized in one resampling step.
    if w * out_h > h * out_w:
        crop_w = h * out_w / out_h
        box = ((w - crop_w) / 2, 0.0, (w + crop_w) / 2, float(h))
    else:
        crop_h = w * out_h / out_w
        box = (0.0, (h - crop_h) / 2, float(w), (h + crop_h) / 2)
    return im.resize((out_w, out_h), _resample_bilinear(), box=box)


def _decode_all(items: Sequence[Tuple[str, bytes]], size: Optional[Tuple[int, int]]) -> np.ndarray:
    """Decode every item into one ``(N, H, W, 3)`` array; all must share one size unless resized."""
    first = _decode_image(items[0][1], items[0][0], size)
    out = np.empty((len(items),) + first.shape, dtype=np.uint8)
    out[0] = first
    for i in range(1, len(items)):
        where, data = items[i]
        img = _decode_image(data, where, size)
        if img.shape != first.shape:
            raise ValueError(
                f"Expected every image to be {first.shape[0]}x{first.shape[1]} like {items[0][0]}, "
                f"but got {img.shape[0]}x{img.shape[1]} for {where} instead (pass size= to resize)."
            )
        out[i] = img
    return out


# ----------------------------------------------------------------------------------------------
# ImageFolder trees and archives
# ----------------------------------------------------------------------------------------------


def _is_archive(path: Path) -> bool:
    return path.name.lower().endswith(_ARCHIVE_SUFFIXES)


def _is_image_name(relpath: str) -> bool:
    parts = relpath.split("/")
    # Hidden files and folders (".DS_Store", "._x.jpg", ".ipynb_checkpoints") are metadata.
    return relpath.lower().endswith(IMAGE_SUFFIXES) and not any(p.startswith(".") for p in parts)


def _resolve_layout(
    relpaths: Sequence[str], split: Optional[str], where: str
) -> Tuple[List[str], List[Tuple[str, int]]]:
    """Class names and ``(relpath, class index)`` of the split's images, sorted by class and path.

    With a split, images are ``.../<split>/<class>/...`` under the shallowest folder named
    ``split``; without, shared leading folders are stripped and the next level names classes.
    """
    parts = [tuple(p.split("/")) for p in relpaths]
    depth = 0
    while all(len(p) >= depth + 3 for p in parts) and len({p[depth] for p in parts}) == 1:
        depth += 1
    top = sorted({p[depth] for p in parts if len(p) > depth + 1})
    if split is not None:
        found = sorted({i for p in parts for i in range(len(p) - 2) if p[i] == split})
        if not found:
            raise ValueError(
                f"Expected a folder {split!r} of class folders in {where}, "
                f"but got only {', '.join(top) or 'no folders'} instead."
            )
        d = found[0]
        prefixes = {p[: d + 1] for p in parts if len(p) >= d + 3 and p[d] == split}
        if len(prefixes) > 1:
            names = ", ".join(sorted("/".join(q) for q in prefixes))
            raise ValueError(f"Expected one folder {split!r} in {where}, but got several instead: {names}.")
        prefix = prefixes.pop()
        loose = [p for p in parts if p[: d + 1] == prefix and len(p) == d + 2]
        if loose:
            raise ValueError(
                f"Expected every image inside a class folder, but got {where}:{'/'.join(loose[0])} instead."
            )
        chosen = [(p, p[d + 1]) for p in parts if p[: d + 1] == prefix and len(p) >= d + 3]
    else:
        loose = [p for p in parts if len(p) < depth + 2]
        if loose:
            raise ValueError(
                f"Expected every image inside a class folder, but got {where}:{'/'.join(loose[0])} instead."
            )
        if set(top) <= _SPLIT_NAMES:
            raise ValueError(
                f"Expected class folders in {where}, but got the splits {', '.join(top)} instead "
                "(pass split= to choose one)."
            )
        chosen = [(p, p[depth]) for p in parts]
    classes = sorted({c for _, c in chosen})
    index = {c: k for k, c in enumerate(classes)}
    items = sorted(("/".join(p), index[c]) for p, c in chosen)
    items.sort(key=lambda item: item[1])  # stable: by class, then by path
    return classes, items


def _limit_items(items: List[Tuple[str, int]], limit_per_class: Optional[int]) -> List[Tuple[str, int]]:
    if limit_per_class is None:
        return items
    seen: Dict[int, int] = {}
    kept = []
    for relpath, label in items:
        if seen.get(label, 0) < limit_per_class:
            seen[label] = seen.get(label, 0) + 1
            kept.append((relpath, label))
    return kept


def _folder_listing(root: Path) -> List[str]:
    relpaths = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        rel = Path(dirpath).relative_to(root).as_posix()
        for name in filenames:
            relpath = name if rel == "." else f"{rel}/{name}"
            if _is_image_name(relpath):
                relpaths.append(relpath)
    return sorted(relpaths)


def _archive_images(path: Path, split: Optional[str]) -> Tuple[List[str], Dict[str, bytes]]:
    """All image member names, and the bytes of those that may belong to ``split``, in one pass."""
    names: List[str] = []
    contents: Dict[str, bytes] = {}
    member = ""
    try:
        with tarfile.open(path, "r:*") as tar:
            # Members are read in stream order: a compressed archive is never rewound.
            for info in tar:
                if not info.isfile():
                    continue
                member = info.name
                name = posixpath.normpath(info.name).lstrip("/")
                if name.startswith("..") or not _is_image_name(name):
                    continue
                names.append(name)
                if split is not None and split not in name.split("/")[:-1]:
                    continue
                f = tar.extractfile(info)
                if f is None:
                    raise ValueError(f"Cannot read {path}:{member}: not a regular file.")
                contents[name] = f.read()
    except _ARCHIVE_ERRORS as exc:
        at = f" at {path}:{member}" if member else ""
        raise ValueError(f"Cannot read archive {path}{at}: {exc}") from exc
    return names, contents


def load_image_folder(
    path: PathLike,
    split: Optional[str] = None,
    *,
    size: SizeArg = None,
    limit_per_class: Optional[int] = None,
    cache: bool = True,
    cache_dir: Optional[PathLike] = None,
) -> ArrayDataset:
    """Load an ImageFolder tree (a folder or a ``.tar``/``.tar.gz`` of one) as one split.

    Layout: ``<path>/.../<split>/<class>/<image>`` or, with ``split=None``,
    ``<path>/.../<class>/<image>``. Classes are the sorted class-folder names; images are ordered
    by class, then path. Every image must have the size of the first unless ``size`` (an int or
    ``(height, width)``) is given: then each is resized to cover it and centre-cropped.
    ``limit_per_class`` keeps the first images (by path) of each class.

    A file that cannot be read or decoded is an error naming it (``archive.tar.gz:member`` inside
    an archive), never skipped. Decoded splits are cached in ``cache_dir`` (default
    :func:`default_cache_dir`), keyed by the source's content and these options.
    """
    src = Path(path)
    out_size = _check_size(size)
    if limit_per_class is not None:
        limit_per_class = _check_int("limit_per_class", limit_per_class, 1)
    if split is not None and (not isinstance(split, str) or not split or "/" in split):
        raise ValueError(f"Expected split to be a folder name or None, but got {split!r} instead.")
    if not src.exists():
        raise ValueError(f"Expected an existing image folder or archive, but got {src} instead.")
    options = {"split": split, "size": out_size, "limit_per_class": limit_per_class}
    cache_root = Path(cache_dir) if cache_dir is not None else default_cache_dir()

    if src.is_dir():
        classes, items = _resolve_layout(_nonempty(_folder_listing(src), src), split, str(src))
        items = _limit_items(items, limit_per_class)
        blobs = []
        digest = hashlib.sha256()
        for relpath, _ in items:
            full = src / relpath
            try:
                data = full.read_bytes()
            except OSError as exc:
                raise ValueError(f"Cannot read image {full}: {exc}") from exc
            # The key covers what the output depends on: every used file's path and bytes.
            digest.update(f"{relpath}\0{len(data)}\0".encode())
            digest.update(data)
            blobs.append((str(full), data))
        key_path = _cache_path(cache_root, "folder", digest.hexdigest(), options)
        if cache:
            hit = _read_cache(key_path)
            if hit is not None:
                return hit
    elif src.is_file() and _is_archive(src):
        key_path = _cache_path(cache_root, "archive", _file_digest(src), options)
        if cache:
            hit = _read_cache(key_path)
            if hit is not None:
                return hit
        names, contents = _archive_images(src, split)
        classes, items = _resolve_layout(_nonempty(names, src), split, str(src))
        items = _limit_items(items, limit_per_class)
        blobs = [(f"{src}:{relpath}", contents[relpath]) for relpath, _ in items]
    else:
        raise ValueError(f"Expected an image folder or a .tar/.tar.gz archive of one, but got the file {src} instead.")

    pixels = _decode_all(blobs, out_size)
    images = torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous()
    labels = torch.tensor([label for _, label in items], dtype=torch.int64)
    dataset = ArrayDataset(images, labels, classes)
    if cache:
        _write_cache(key_path, dataset)
    return dataset


def _nonempty(relpaths: List[str], src: Path) -> List[str]:
    if not relpaths:
        raise ValueError(f"Expected images ({', '.join(IMAGE_SUFFIXES)}) in {src}, but got none instead.")
    return relpaths


# ----------------------------------------------------------------------------------------------
# CIFAR in the official python format
# ----------------------------------------------------------------------------------------------


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


class _DataUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _PICKLE_ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # numpy.core is numpy._core in 2.x
            return super().find_class(module, name)


def _unpickle(data: bytes, where: str) -> Dict[str, object]:
    try:
        # latin1 reads the Python 2 strings of the official files as text, and NumPy's raw bytes
        # unchanged.
        obj = _DataUnpickler(io.BytesIO(data), encoding="latin1").load()
    except Exception as exc:  # a corrupt pickle raises almost anything
        raise ValueError(f"Cannot read the CIFAR file {where}: {exc}") from exc
    if not isinstance(obj, dict):
        raise ValueError(f"Expected a dict in the CIFAR file {where}, but got {type(obj).__name__} instead.")
    return {(k.decode("latin1") if isinstance(k, bytes) else str(k)): v for k, v in obj.items()}


def _cifar_location(path: Path) -> Optional[Tuple[str, Path, bool]]:
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
    if path.is_file() and _is_archive(path):
        try:
            with tarfile.open(path, "r:*") as tar:
                first = tar.next()
        except _ARCHIVE_ERRORS:
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
        except _ARCHIVE_ERRORS as exc:
            raise ValueError(f"Cannot read archive {location}: {exc}") from exc
    else:
        for name in wanted:
            if (location / name).is_file():
                try:
                    found[name] = (str(location / name), (location / name).read_bytes())
                except OSError as exc:
                    raise ValueError(f"Cannot read the CIFAR file {location / name}: {exc}") from exc
    missing = [name for name in wanted if name not in found]
    if missing:
        where = f"{location}:{spec.folder}/" if is_archive else f"{location}/"
        raise ValueError(
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
        raise ValueError(f"Expected split 'train' or 'test' for CIFAR, but got {split!r} instead.")
    if labels not in ("fine", "coarse"):
        raise ValueError(f"Expected labels 'fine' or 'coarse', but got {labels!r} instead.")
    if not src.exists():
        raise ValueError(f"Expected an existing CIFAR folder or archive, but got {src} instead.")
    found = _cifar_location(src)
    if found is None:
        raise ValueError(
            "Expected a CIFAR python folder (cifar-10-batches-py, cifar-100-python) or its .tar.gz, "
            f"but got {src} instead."
        )
    name, location, is_archive = found
    spec = CIFAR_ARCHIVES[name]
    names_key, labels_key = spec.names_key, spec.labels_key
    if name == "cifar100" and labels == "coarse":
        names_key, labels_key = "coarse_label_names", "coarse_labels"
    batches = spec.train if split == "train" else spec.test
    files = _cifar_files(location, is_archive, spec, batches + (spec.meta,))

    meta_where, meta_bytes = files[spec.meta]
    meta = _unpickle(meta_bytes, meta_where)
    if names_key not in meta:
        raise ValueError(f"Expected the key {names_key!r} in {meta_where}, but got {sorted(meta)} instead.")
    classes = [c.decode("latin1") if isinstance(c, bytes) else str(c) for c in meta[names_key]]

    images, targets = [], []
    for batch_name in batches:
        where, raw = files[batch_name]
        batch = _unpickle(raw, where)
        if "data" not in batch or labels_key not in batch:
            raise ValueError(
                f"Expected the keys 'data' and {labels_key!r} in {where}, but got {sorted(batch)} instead."
            )
        data = np.asarray(batch["data"])
        target = np.asarray(batch[labels_key], dtype=np.int64)
        well_formed = data.dtype == np.uint8 and data.ndim == 2 and data.shape[1] == 3 * 32 * 32
        if not well_formed or data.shape[0] != target.shape[0]:
            raise ValueError(
                f"Expected uint8 data of shape (N, 3072) with N labels in {where}, "
                f"but got {data.dtype} {data.shape} with {target.shape[0]} labels instead."
            )
        # Rows are the red, green and blue planes of a 32x32 image, one after the other.
        images.append(data.reshape(-1, 3, 32, 32))
        targets.append(target)
    return ArrayDataset(torch.from_numpy(np.concatenate(images)), torch.from_numpy(np.concatenate(targets)), classes)


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
    archive under the real name. A mismatch removes the download and raises ValueError.
    """
    if name not in CIFAR_ARCHIVES:
        raise ValueError(f"Expected name 'cifar10' or 'cifar100', but got {name!r} instead.")
    spec = CIFAR_ARCHIVES[name]
    url = url or spec.url
    expected = (md5 or spec.md5).lower()
    folder = Path(root)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / spec.archive
    if target.is_file() and _file_digest(target, "md5") == expected:
        return target
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{spec.archive}.", suffix=".part")
    try:
        digest = hashlib.md5()
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=timeout) as response:
                    for chunk in iter(lambda: response.read(1 << 20), b""):
                        digest.update(chunk)
                        out.write(chunk)
            except (urllib.error.URLError, OSError) as exc:
                raise OSError(f"Cannot download {url}: {exc}") from exc
        actual = digest.hexdigest()
        if actual != expected:
            raise ValueError(f"Expected md5 {expected} for {url}, but got {actual} instead; the download was removed.")
        os.replace(tmp, target)
    except BaseException:
        _remove_quietly(tmp)
        raise
    return target


# ----------------------------------------------------------------------------------------------
# The procedural dataset
# ----------------------------------------------------------------------------------------------

_SHAPES = ("disc", "square", "triangle", "ring", "cross", "star")
_COLOURS = ("red", "green", "blue", "yellow", "magenta", "cyan")
_TEXTURES = ("solid", "stripes", "checker", "gradient")
_PALETTE = torch.tensor(
    [
        [0.85, 0.15, 0.15],
        [0.15, 0.70, 0.20],
        [0.15, 0.30, 0.85],
        [0.90, 0.80, 0.15],
        [0.80, 0.20, 0.75],
        [0.15, 0.75, 0.80],
    ],
    dtype=torch.float32,
)
# The first ten classes by hand: every colour and texture is shared by two or three classes and
# most shapes by two, so no single attribute names a class; the rest follow in a fixed order.
_FIRST_CLASSES = (
    (0, 0, 0),
    (0, 2, 1),
    (1, 0, 2),
    (1, 1, 0),
    (2, 2, 3),
    (2, 3, 2),
    (3, 1, 1),
    (3, 3, 3),
    (4, 0, 1),
    (5, 1, 3),
)
# Difficulty, tuned so the task is learnt but far from solved: a 5-layer CNN (32-32-64-64-128
# channels, flips, one-cycle SGD) reaches 29% test accuracy after 1 epoch and 83.5% after 6 on
# 10,000 images (the same net on easier settings had 96% after 3 epochs).
_TINT_JITTER = 0.12
_MIN_OPACITY = 0.2
_DECOY_PROBABILITY = 0.7
_DECOY_COVERAGE = (0.06, 0.14)
_PIXEL_NOISE = 0.10
_CHUNK = 500  # images drawn per generator: sample i does not depend on how many are asked for
_SPLIT_IDS = {"train": 0, "test": 1}


def _class_table(num_classes: int) -> torch.Tensor:
    """``(num_classes, 3)`` (shape, colour, texture) indices of each class."""
    rest = [
        (s, c, t)
        for s in range(len(_SHAPES))
        for c in range(len(_COLOURS))
        for t in range(len(_TEXTURES))
        if (s, c, t) not in _FIRST_CLASSES
    ]
    order = torch.randperm(len(rest), generator=torch.Generator().manual_seed(12345)).tolist()
    table = list(_FIRST_CLASSES) + [rest[i] for i in order]
    return torch.tensor(table[:num_classes], dtype=torch.int64)


_SQRT3 = math.sqrt(3.0)
# Each shape's inside test in object coordinates (u, v); every shape fits in the unit disc.
_SHAPE_TESTS = (
    lambda u, v: u * u + v * v <= 1.0,
    lambda u, v: torch.maximum(u.abs(), v.abs()) <= math.sqrt(0.5),
    lambda u, v: (v >= -0.5) & (_SQRT3 * u.abs() + v <= 1.0),
    lambda u, v: ((u * u + v * v) <= 1.0) & ((u * u + v * v) >= 0.55**2),
    lambda u, v: (torch.minimum(u.abs(), v.abs()) <= 0.3) & (torch.maximum(u.abs(), v.abs()) <= 0.9),
    lambda u, v: torch.hypot(u, v) <= 0.62 + 0.38 * torch.cos(5.0 * torch.atan2(v, u)),
)
# Share of the unit disc each shape covers, to scale objects to a chosen image coverage.
_SHAPE_AREA = torch.tensor(
    [
        1.0,
        2.0 / math.pi,
        3.0 * _SQRT3 / 4.0 / math.pi,
        1.0 - 0.55**2,
        (2 * 0.6 * 1.8 - 0.36) / math.pi,
        0.62**2 + 0.38**2 / 2.0,
    ],
    dtype=torch.float32,
)
# Each texture's darkening in [0, 1], in object coordinates so it turns with the object.
_TEXTURE_PATTERNS = (
    lambda u, v: torch.zeros_like(u),
    lambda u, v: (torch.sin(3.0 * math.pi * u) > 0).float(),
    lambda u, v: ((torch.sin(2.5 * math.pi * u) * torch.sin(2.5 * math.pi * v)) > 0).float(),
    lambda u, v: ((u + 1.0) / 2.0).clamp(0.0, 1.0),
)


def _chunk_seed(seed: int, split_id: int, chunk: int) -> int:
    state = np.random.SeedSequence([seed, split_id, chunk]).generate_state(2, np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


def _by_kind(
    kind: torch.Tensor, functions: Sequence, u: torch.Tensor, v: torch.Tensor, out: torch.Tensor
) -> torch.Tensor:
    """``out[i] = functions[kind[i]](u[i], v[i])``, each function run only on its own samples."""
    for k, fn in enumerate(functions):
        rows = (kind == k).nonzero().squeeze(1)
        if rows.numel() > 0:
            out[rows] = fn(u[rows], v[rows]).to(out.dtype)
    return out


def _object_frame(
    shape: torch.Tensor, coverage: torch.Tensor, size: int, g: torch.Generator
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Object coordinates ``(u, v)`` of every pixel, ``(n, H, W)`` each, for objects of the given
    shapes covering ``coverage`` of the image, at a random place, angle and stretch, fully inside."""
    n = shape.shape[0]
    coords = torch.arange(size, dtype=torch.float32) + 0.5
    ys, xs = coords.view(1, size, 1), coords.view(1, 1, size)
    stretch = 0.85 + 0.3 * torch.rand(n, generator=g)
    reach = torch.maximum(stretch, 1.0 / stretch)  # furthest extent, in radii
    radius = torch.sqrt(coverage * size * size / (_SHAPE_AREA[shape] * math.pi))
    radius = torch.minimum(radius, (size / 2.0 - 0.5) / reach)
    margin = radius * reach
    cy = margin + (size - 2 * margin) * torch.rand(n, generator=g)
    cx = margin + (size - 2 * margin) * torch.rand(n, generator=g)
    turn = 2 * math.pi * torch.rand(n, generator=g)
    dy = (ys - cy.view(-1, 1, 1)) / radius.view(-1, 1, 1)
    dx = (xs - cx.view(-1, 1, 1)) / radius.view(-1, 1, 1)
    cos, sin = torch.cos(turn).view(-1, 1, 1), torch.sin(turn).view(-1, 1, 1)
    u = (cos * dx + sin * dy) / stretch.view(-1, 1, 1)
    v = (cos * dy - sin * dx) * stretch.view(-1, 1, 1)
    return u, v


def _objects(
    combo: torch.Tensor, coverage: torch.Tensor, size: int, g: torch.Generator
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Masks ``(m, H, W)``, colours ``(m, 3, H, W)`` and alpha ``(m, 1, H, W)`` of objects
    ``combo[i]`` = (shape, colour, texture); alpha is the object's opacity inside its mask."""
    m = combo.shape[0]
    shape, colour, texture = combo.unbind(1)
    u, v = _object_frame(shape, coverage, size, g)
    mask = _by_kind(shape, _SHAPE_TESTS, u, v, torch.zeros(m, size, size, dtype=torch.bool))
    darken = _by_kind(texture, _TEXTURE_PATTERNS, u, v, torch.zeros(m, size, size))
    # Colour jitter per object, so a palette colour is a region of colours, not one value.
    tint = _PALETTE[colour] + _TINT_JITTER * torch.randn(m, 3, generator=g)
    tint = tint * (0.8 + 0.3 * torch.rand(m, 1, generator=g))
    rgb = tint.clamp(0, 1).view(m, 3, 1, 1) * (1.0 - 0.55 * darken.unsqueeze(1))
    # Partly see-through objects: the background shows through, so contrast varies per image.
    opacity = _MIN_OPACITY + (1.0 - _MIN_OPACITY) * torch.rand(m, 1, 1, generator=g)
    return mask, rgb, (mask * opacity).unsqueeze(1)


def _near_misses(classes: torch.Tensor) -> torch.Tensor:
    """Combinations one attribute away from some class that are no class themselves (decoys)."""
    every = _class_table(len(_SHAPES) * len(_COLOURS) * len(_TEXTURES))
    differences = (every[:, None, :] != classes[None, :, :]).sum(dim=2)  # (combos, classes)
    near = differences.min(dim=1).values == 1
    if not bool(near.any()):
        near = differences.min(dim=1).values > 0
    return every[near]


def _render_chunk(
    n: int, classes: torch.Tensor, decoys: torch.Tensor, size: int, g: torch.Generator
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``n`` images (uint8), labels and object masks, all drawn from ``g``.

    ``decoys`` are (shape, colour, texture) combinations that are no class: up to two of them,
    smaller, are drawn behind the object, so a class is only told apart by the conjunction of its
    three attributes on the right object.
    """
    k = classes.shape[0]
    labels = (torch.arange(n) % k)[torch.randperm(n, generator=g)]
    combo = classes[labels]
    coords = torch.arange(size, dtype=torch.float32) + 0.5
    ys, xs = coords.view(1, size, 1), coords.view(1, 1, size)

    def rand(*dims: int) -> torch.Tensor:
        return torch.rand(*dims, generator=g)

    def col(t: torch.Tensor) -> torch.Tensor:  # (n,) -> (n, 1, 1) for broadcasting over pixels
        return t.view(-1, 1, 1)

    # Background: a muted base colour with faint stripes of another colour at a random angle.
    base = 0.25 + 0.45 * rand(n, 3)
    angle = math.pi * rand(n)
    freq = 0.3 + 0.9 * rand(n)
    phase = 2 * math.pi * rand(n)
    stripe_colour = rand(n, 3)
    stripe_strength = 0.35 * rand(n)
    along = col(torch.cos(angle) * freq) * xs + col(torch.sin(angle) * freq) * ys + col(phase)
    stripes = (torch.sin(along) > 0).float() * col(stripe_strength)
    img = torch.lerp(base.view(n, 3, 1, 1), stripe_colour.view(n, 3, 1, 1), stripes.unsqueeze(1))

    # Clutter: up to five ellipses in palette colours other than the object's. Only the index of
    # the topmost blob is kept per pixel, and colours are looked up once at the end.
    n_blobs = 5
    blob = torch.zeros(n, size, size, dtype=torch.int64)
    blob_colours = torch.zeros(n, n_blobs + 1, 3)
    for j in range(1, n_blobs + 1):
        present = rand(n) < 0.75
        cy, cx = size * rand(n), size * rand(n)
        ry = size * (0.06 + 0.16 * rand(n))
        rx = size * (0.06 + 0.16 * rand(n))
        other = (combo[:, 1] + 1 + torch.randint(0, len(_COLOURS) - 1, (n,), generator=g)) % len(_COLOURS)
        blob_colours[:, j] = (_PALETTE[other] * (0.7 + 0.3 * rand(n, 1))).clamp(0, 1)
        # Rows and columns apart, then one broadcast sum: a single full-size pass per blob.
        inside = ((ys - col(cy)) / col(ry)).square_() + ((xs - col(cx)) / col(rx)).square_() <= 1.0
        blob.masked_fill_(inside & col(present), j)
    painted = blob_colours.transpose(1, 2).gather(2, blob.view(n, 1, -1).expand(n, 3, -1))
    img = torch.where((blob > 0).unsqueeze(1), painted.view(n, 3, size, size), img)

    # Two decoys, then the object on top, all drawn in one batch of 3n objects. Decoys are smaller
    # and their attribute combination is no class but one attribute away from one, so only the
    # whole conjunction, on the right object, tells the class. The object covers 12-28% of the
    # image and is always whole.
    lo, hi = _DECOY_COVERAGE
    n_decoys = 2 if decoys.shape[0] > 0 else 0
    picks = [decoys[torch.randint(0, decoys.shape[0], (n,), generator=g)] for _ in range(n_decoys)]
    coverage = [lo + (hi - lo) * rand(n) for _ in range(n_decoys)] + [0.12 + 0.16 * rand(n)]
    present = [rand(n) < _DECOY_PROBABILITY for _ in range(n_decoys)] + [torch.ones(n, dtype=torch.bool)]
    masks, colours, alphas = _objects(torch.cat(picks + [combo]), torch.cat(coverage), size, g)
    for j in range(n_decoys + 1):
        rows = slice(j * n, (j + 1) * n)
        img = torch.lerp(img, colours[rows], alphas[rows] * col(present[j]).unsqueeze(1))
    mask = masks[n_decoys * n :]
    img += _PIXEL_NOISE * torch.randn(n, 3, size, size, generator=g)
    pixels = img.clamp_(0, 1).mul_(255.0).round_().to(torch.uint8)
    return pixels, labels, mask


def procedural_split(
    n: int,
    seed: int = 0,
    split: str = "train",
    num_classes: int = 10,
    size: int = 32,
    return_masks: bool = False,
) -> ArrayDataset:
    """``n`` procedural images of one split (``"train"`` or ``"test"``); see :func:`procedural_dataset`."""
    n = _check_int("n", n, 1)
    seed = _check_int("seed", seed, 0)
    num_classes = _check_int("num_classes", num_classes, 2)
    size = _check_int("size", size, 8)
    combos = len(_SHAPES) * len(_COLOURS) * len(_TEXTURES)
    if num_classes > combos:
        raise ValueError(f"Expected num_classes <= {combos}, but got {num_classes} instead.")
    if split not in _SPLIT_IDS:
        raise ValueError(f"Expected split 'train' or 'test', but got {split!r} instead.")
    classes = _class_table(num_classes)
    decoys = _near_misses(classes)
    parts = []
    for chunk, start in enumerate(range(0, n, _CHUNK)):
        g = torch.Generator().manual_seed(_chunk_seed(seed, _SPLIT_IDS[split], chunk))
        # Always a whole chunk, cut afterwards: the draws, hence the images, never depend on n.
        parts.append(_render_chunk(_CHUNK, classes, decoys, size, g))
    images, labels, masks = (torch.cat(t)[:n] for t in zip(*parts))
    names = [f"{_COLOURS[c]} {_TEXTURES[t]} {_SHAPES[s]}" for s, c, t in classes.tolist()]
    return ArrayDataset(images, labels, names, masks if return_masks else None)


def procedural_dataset(
    n_train: int,
    n_test: int,
    seed: int = 0,
    num_classes: int = 10,
    size: int = 32,
    return_masks: bool = False,
) -> Tuple[ArrayDataset, ArrayDataset]:
    """A synthetic classification dataset, deterministic from ``seed``, made in seconds.

    Class ``k`` is an object of a fixed shape, colour and texture (``classes[k]`` names them),
    covering 12-28% of the image at a random place, angle and stretch, with jittered colour and
    an opacity of 0.2-1, over a background of faint stripes, up to five blobs in other palette
    colours and up to two smaller decoys (attribute combinations one attribute away from a class),
    plus pixel noise. Six shapes, six colours and four textures give up to 144 classes; the
    first ten share attributes so that no single one names a class. Classes are balanced within
    each block of 500 images. Train and test come from separate
    random streams, and image ``i`` does not depend on how many are asked for, so ``n_test`` never
    changes the training set. ``return_masks`` keeps each object's mask in ``dataset.masks``.
    """
    return (
        procedural_split(n_train, seed, "train", num_classes, size, return_masks),
        procedural_split(n_test, seed, "test", num_classes, size, return_masks),
    )


# ----------------------------------------------------------------------------------------------
# Validation splits and subsets
# ----------------------------------------------------------------------------------------------


def _pick_per_class(labels: torch.Tensor, counts: torch.Tensor, seed: int) -> torch.Tensor:
    """Bool mask choosing ``counts[c]`` random images of each class ``c``.

    One shuffle of everything, then a stable sort by class keeps each class in random order; the
    first ``counts[c]`` of class ``c`` are taken. A smaller count picks a subset of a larger one.
    """
    g = torch.Generator().manual_seed(seed)
    n = labels.shape[0]
    shuffled = torch.randperm(n, generator=g)
    by_class = shuffled[torch.sort(labels[shuffled], stable=True).indices]
    sorted_labels = labels[by_class]
    per_class = torch.bincount(labels, minlength=counts.shape[0])
    starts = torch.cumsum(per_class, 0) - per_class
    rank = torch.arange(n) - starts[sorted_labels]
    picked = torch.zeros(n, dtype=torch.bool)
    picked[by_class] = rank < counts[sorted_labels]
    return picked


def train_val_indices(labels: torch.Tensor, val_fraction: float, seed: int = 0) -> Tuple[torch.Tensor, torch.Tensor]:
    """Sorted index tensors ``(train, val)`` of a stratified split: in every class,
    ``round(val_fraction * count)`` images (at most ``count - 1``) go to validation."""
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, numbers.Real):
        raise TypeError(f"Expected val_fraction to be a number, but got {type(val_fraction).__name__} instead.")
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"Expected val_fraction in (0, 1), but got {val_fraction} instead.")
    seed = _check_int("seed", seed, 0)
    labels = torch.as_tensor(labels).long().cpu()
    per_class = torch.bincount(labels)
    n_val = torch.floor(per_class.double() * float(val_fraction) + 0.5).long()
    n_val = torch.minimum(n_val, (per_class - 1).clamp(min=0))
    val = _pick_per_class(labels, n_val, seed)
    return (~val).nonzero().squeeze(1), val.nonzero().squeeze(1)


def train_val_split(dataset: ArrayDataset, val_fraction: float, seed: int = 0) -> Tuple[ArrayDataset, ArrayDataset]:
    """Carve a stratified validation split out of a training set: ``(train, val)``, disjoint,
    each in the original order, the same for the same seed."""
    train_idx, val_idx = train_val_indices(dataset.labels, val_fraction, seed)
    return dataset.subset(train_idx), dataset.subset(val_idx)


def class_balanced_subset(
    dataset: ArrayDataset,
    fraction: Optional[float] = None,
    seed: int = 0,
    *,
    per_class: Optional[int] = None,
) -> ArrayDataset:
    """The same number of random images from every class, in the original order.

    Give ``per_class``, or ``fraction`` of the dataset: ``round(fraction * len / num_classes)``
    per class. For one seed a smaller subset is contained in a larger one, so low-data regimes
    are nested.
    """
    if (fraction is None) == (per_class is None):
        raise ValueError("Expected exactly one of fraction and per_class, but got both or neither instead.")
    seed = _check_int("seed", seed, 0)
    if fraction is not None:
        if isinstance(fraction, bool) or not isinstance(fraction, numbers.Real):
            raise TypeError(f"Expected fraction to be a number, but got {type(fraction).__name__} instead.")
        if not 0.0 < fraction <= 1.0:
            raise ValueError(f"Expected fraction in (0, 1], but got {fraction} instead.")
        per_class = max(1, int(math.floor(fraction * len(dataset) / dataset.num_classes + 0.5)))
    per_class = _check_int("per_class", per_class, 1)
    counts = dataset.class_counts()
    short = (counts < per_class).nonzero().squeeze(1)
    if short.numel() > 0:
        c = int(short[0])
        raise ValueError(
            f"Expected at least {per_class} images of every class, "
            f"but got {int(counts[c])} of class {dataset.classes[c]!r} instead."
        )
    picked = _pick_per_class(dataset.labels, torch.full_like(counts, per_class), seed)
    return dataset.subset(picked)


# ----------------------------------------------------------------------------------------------
# One entry point
# ----------------------------------------------------------------------------------------------


def _parse_procedural(source: str) -> Tuple[int, int]:
    n_train, n_test = 50_000, 10_000
    fields = source.split(":")[1:]
    try:
        if len(fields) >= 1 and fields[0]:
            n_train = int(fields[0])
        if len(fields) == 2 and fields[1]:
            n_test = int(fields[1])
        if len(fields) > 2:
            raise ValueError
    except ValueError:
        raise ValueError(
            f"Expected 'procedural', 'procedural:N_TRAIN' or 'procedural:N_TRAIN:N_TEST', but got {source!r} instead."
        ) from None
    return n_train, n_test


def load_dataset(
    source: str,
    split: Optional[str] = "train",
    *,
    root: Optional[PathLike] = None,
    download: bool = False,
    url: Optional[str] = None,
    size: SizeArg = None,
    limit_per_class: Optional[int] = None,
    seed: int = 0,
    cache: bool = True,
    cache_dir: Optional[PathLike] = None,
) -> ArrayDataset:
    """Load one split of a dataset named by ``source``:

    * ``"procedural"``, ``"procedural:N"`` (N training images) or ``"procedural:N:M"`` (and M test
      images; default 50000 and 10000), drawn from ``seed`` at ``size`` (default 32);
    * ``"cifar10"`` / ``"cifar100"``: the official python format in ``root`` (default
      :func:`default_cache_dir`), as the folder or the ``.tar.gz``; with ``download=True`` the
      archive is fetched (from ``url`` if given) and verified when missing;
    * a path to a CIFAR python folder or archive, an ImageFolder tree, or a ``.tar``/``.tar.gz``
      of one (``size``, ``cache`` and ``cache_dir`` as in :func:`load_image_folder`).

    ``limit_per_class`` keeps the first images of each class (fast experiments and tests).
    """
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"Expected source as a string, but got {type(source).__name__} instead.")
    if limit_per_class is not None:
        limit_per_class = _check_int("limit_per_class", limit_per_class, 1)
    text = os.fspath(source)

    def limited(ds: ArrayDataset) -> ArrayDataset:
        if limit_per_class is None:
            return ds
        return ds.subset(_first_per_class(ds.labels, ds.num_classes, limit_per_class))

    if text == "procedural" or text.startswith("procedural:"):
        n_train, n_test = _parse_procedural(text)
        side = 32
        if size is not None:
            height, width = _check_size(size)
            if height != width:
                raise ValueError(f"Expected a square size for the procedural dataset, but got {size} instead.")
            side = height
        if split not in _SPLIT_IDS:
            raise ValueError(f"Expected split 'train' or 'test', but got {split!r} instead.")
        n = n_train if split == "train" else n_test
        return limited(procedural_split(n, seed, split, size=side))

    if text in CIFAR_ARCHIVES:
        if size is not None:
            raise ValueError(f"Expected no size= for {text} (its images are 32x32), but got {size} instead.")
        spec = CIFAR_ARCHIVES[text]
        folder = Path(root) if root is not None else default_cache_dir()
        if not (folder / spec.folder).is_dir() and not (folder / spec.archive).is_file():
            if not download:
                raise ValueError(
                    f"Expected {spec.folder}/ or {spec.archive} in {folder}, but got neither instead "
                    "(pass download=True to fetch it)."
                )
            download_cifar(text, folder, url=url)
        return limited(load_cifar(folder, split or "train"))

    path = Path(text)
    if not path.exists():
        raise ValueError(
            f"Expected 'procedural[:N]', 'cifar10', 'cifar100' or an existing path, but got {text} instead."
        )
    if _cifar_location(path) is not None:
        if size is not None:
            raise ValueError(f"Expected no size= for CIFAR (its images are 32x32), but got {size} instead.")
        return limited(load_cifar(path, split or "train"))
    return load_image_folder(path, split, size=size, limit_per_class=limit_per_class, cache=cache, cache_dir=cache_dir)
