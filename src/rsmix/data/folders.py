"""ImageFolder trees ``root/<split>/<class>/<image>``, as a folder or a ``.tar``/``.tar.gz`` of one,
decoded into an :class:`~rsmix.data.ArrayDataset` and cached by content. A tree
``root/<class>/<image>`` without split folders (torchvision's layout) is a training set: its
``train`` split is the whole tree, and it has no other split.

Every split of a source labels with one class list: the ``classes=`` passed, else, for a split
other than ``train``, the class folders of the ``train`` split next to it, else its own.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import tarfile
import zlib
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Set, Tuple

import torch

from ..errors import UsageError
from .args import PathLike, SizeArg, check_int, check_size
from .cache import cache_path, default_cache_dir, file_digest, read_cache, write_cache
from .container import ArrayDataset, check_classes, class_index
from .decode import decode_all

__all__ = ["IMAGE_SUFFIXES", "ARCHIVE_ERRORS", "TRAIN_SPLIT", "is_archive", "load_image_folder"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".ppm", ".pgm", ".tif", ".tiff", ".gif")
_ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")
# The split whose class folders name the labels of every other split of a source.
TRAIN_SPLIT = "train"
# Folder names that are splits, never classes: a split-less load of a tree made of them is a mistake.
_SPLIT_NAMES = frozenset({"train", "test", "val", "valid", "validation"})
# What a damaged archive raises while it is read: tarfile's own errors, or the decompressor's.
ARCHIVE_ERRORS: Tuple[type[BaseException], ...] = (tarfile.TarError, OSError, EOFError, zlib.error)
try:
    import lzma

    ARCHIVE_ERRORS += (lzma.LZMAError,)
except ImportError:  # pragma: no cover - Python built without lzma
    pass

Parts = Tuple[str, ...]


def is_archive(path: Path) -> bool:
    return path.name.lower().endswith(_ARCHIVE_SUFFIXES)


def _is_image_name(relpath: str) -> bool:
    parts = relpath.split("/")
    # Hidden files and folders (".DS_Store", "._x.jpg", ".ipynb_checkpoints") are metadata.
    return relpath.lower().endswith(IMAGE_SUFFIXES) and not any(p.startswith(".") for p in parts)


def _split_layout(parts: Sequence[Parts], split: Optional[str], where: str) -> Tuple[Parts, List[Tuple[Parts, str]]]:
    """The folder holding the split's class folders, and ``(image, class folder)`` of its images.

    With a split, images are ``.../<split>/<class>/...`` under the shallowest folder named
    ``split``; without, shared leading folders are stripped and the next level names classes.
    """
    depth = 0
    while all(len(p) >= depth + 3 for p in parts) and len({p[depth] for p in parts}) == 1:
        depth += 1
    top = sorted({p[depth] for p in parts if len(p) > depth + 1})
    if split is None:
        loose = [p for p in parts if len(p) < depth + 2]
        if loose:
            raise UsageError(
                f"Expected every image inside a class folder, but got {where}:{'/'.join(loose[0])} instead."
            )
        if set(top) <= _SPLIT_NAMES:
            raise UsageError(
                f"Expected class folders in {where}, but got the splits {', '.join(top)} instead "
                "(pass split= to choose one)."
            )
        return parts[0][:depth], [(p, p[depth]) for p in parts]
    found = sorted({i for p in parts for i in range(len(p) - 2) if p[i] == split})
    if not found and top and not set(top) & _SPLIT_NAMES and all(len(p) >= depth + 2 for p in parts):
        # Class folders and no split folders (torchvision's ImageFolder layout): a training set.
        if split == TRAIN_SPLIT:
            return _split_layout(parts, None, where)
        raise UsageError(
            f"Expected a folder {split!r} of class folders in {where}, but got class folders without split "
            f"folders instead ({', '.join(top)}): such a tree is a training set only, so a {split!r} split "
            f"(rsmix train --test, rsmix eval) needs a source with split folders, "
            f"<root>/{TRAIN_SPLIT}/<class>/... and <root>/{split}/<class>/..."
        )
    if not found:
        raise UsageError(
            f"Expected a folder {split!r} of class folders in {where}, "
            f"but got only {', '.join(top) or 'no folders'} instead."
        )
    d = found[0]
    prefixes = {p[: d + 1] for p in parts if len(p) >= d + 3 and p[d] == split}
    if len(prefixes) > 1:
        names = ", ".join(sorted("/".join(q) for q in prefixes))
        raise UsageError(f"Expected one folder {split!r} in {where}, but got several instead: {names}.")
    prefix = prefixes.pop()
    loose = [p for p in parts if p[: d + 1] == prefix and len(p) == d + 2]
    if loose:
        raise UsageError(f"Expected every image inside a class folder, but got {where}:{'/'.join(loose[0])} instead.")
    return prefix, [(p, p[d + 1]) for p in parts if p[: d + 1] == prefix and len(p) >= d + 3]


def _sibling_classes(parts: Sequence[Parts], prefix: Parts, sibling: str) -> List[str]:
    """Sorted class folders (holding images) of the split ``sibling`` next to the folder ``prefix``."""
    other = (*prefix[:-1], sibling)
    n = len(other)
    return sorted({p[n] for p in parts if len(p) >= n + 2 and p[:n] == other})


def _resolve_layout(
    relpaths: Sequence[str], split: Optional[str], classes: Optional[List[str]], where: str, sep: str = "/"
) -> Tuple[List[str], List[Tuple[str, int]]]:
    """The class list and ``(relpath, label)`` of the split's images, sorted by label, then path.

    Labels index ``classes`` when given; else, for a split other than ``train``, the class folders
    of the ``train`` split beside it (when there is one); else the split's own class folders.
    """
    parts = [tuple(p.split("/")) for p in relpaths]
    prefix, chosen = _split_layout(parts, split, where)
    here = f"{where}{sep}{'/'.join(prefix)}" if prefix else where
    listed = "the classes passed as classes="
    if classes is None and split is not None and split != TRAIN_SPLIT:
        classes = _sibling_classes(parts, prefix, TRAIN_SPLIT) or None
        listed = f"the class folders of the {TRAIN_SPLIT!r} split"
    if classes is None:
        classes = sorted({c for _, c in chosen})
    index = class_index(classes, (c for _, c in chosen), here, listed)
    items = sorted((index[c], "/".join(p)) for p, c in chosen)
    return classes, [(relpath, label) for label, relpath in items]


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
    def fail(exc: OSError) -> None:
        raise UsageError(f"Cannot list the folder {exc.filename}: {exc.strerror or exc}") from exc

    relpaths = []
    visited: Set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root, onerror=fail, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in visited:  # a symlink back up the tree: list each folder once, never loop
            dirnames[:] = []
            continue
        visited.add(real)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        rel = Path(dirpath).relative_to(root).as_posix()
        for name in filenames:
            relpath = name if rel == "." else f"{rel}/{name}"
            if _is_image_name(relpath):
                relpaths.append(relpath)
    return sorted(relpaths)


def _archive_images(path: Path, split: Optional[str]) -> Tuple[List[str], Dict[str, bytes]]:
    """All image member names, and the bytes of those that may belong to ``split``, in one pass.

    The names of the other splits' images come for free (the ``train`` split's class folders); their
    bytes are skipped, never decoded.
    """
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
                    raise UsageError(f"Cannot read {path}:{member}: not a regular file.")
                contents[name] = f.read()
    except ARCHIVE_ERRORS as exc:
        at = f" at {path}:{member}" if member else ""
        raise UsageError(f"Cannot read archive {path}{at}: {exc}") from exc
    return names, contents


def _nonempty(relpaths: List[str], src: Path) -> List[str]:
    if not relpaths:
        raise UsageError(f"Expected images ({', '.join(IMAGE_SUFFIXES)}) in {src}, but got none instead.")
    return relpaths


def load_image_folder(
    path: PathLike,
    split: Optional[str] = None,
    *,
    classes: Optional[Sequence[str]] = None,
    size: SizeArg = None,
    limit_per_class: Optional[int] = None,
    cache: bool = True,
    cache_dir: Optional[PathLike] = None,
) -> ArrayDataset:
    """Load an ImageFolder tree (a folder or a ``.tar``/``.tar.gz`` of one) as one split.

    Layout: ``<path>/.../<split>/<class>/<image>`` or, with ``split=None``,
    ``<path>/.../<class>/<image>``. A tree of class folders without split folders (torchvision's
    ImageFolder) is also the ``"train"`` split; any other split of it is an error saying so.
    Labels index one class list, ``dataset.classes``:

    * ``classes`` when given: a split may lack some of them; a class folder not in the list is an
      error naming it;
    * else, for a split other than ``train``, the sorted class folders of the ``train`` split next
      to it (when the source has one), so a test split lacking a class keeps the training labels;
    * else the split's own sorted class folders.

    Images are ordered by label, then path. Every image must have the size of the first unless
    ``size`` (an int or ``(height, width)``) is given: then each is resized to cover it and
    centre-cropped. ``limit_per_class`` keeps the first images (by path) of each class.

    A file that cannot be read or decoded is an error naming it (``archive.tar.gz:member`` inside
    an archive), never skipped. Decoded splits are cached in ``cache_dir`` (default
    :func:`~rsmix.data.default_cache_dir`), keyed by the source's content, the class
    list and these options; a cache that cannot be read or written only costs a decode.
    """
    src = Path(path)
    out_size = check_size(size)
    given = None if classes is None else check_classes(classes)
    if limit_per_class is not None:
        limit_per_class = check_int("limit_per_class", limit_per_class, 1)
    if split is not None and (not isinstance(split, str) or not split or "/" in split):
        raise UsageError(f"Expected split to be a folder name or None, but got {split!r} instead.")
    if not src.exists():
        raise UsageError(f"Expected an existing image folder or archive, but got {src} instead.")
    options: Dict[str, object] = {"split": split, "size": out_size, "limit_per_class": limit_per_class}
    cache_root = Path(cache_dir) if cache_dir is not None else default_cache_dir()

    if src.is_dir():
        names, items = _resolve_layout(_nonempty(_folder_listing(src), src), split, given, str(src))
        items = _limit_items(items, limit_per_class)
        blobs = []
        digest = hashlib.sha256()
        for relpath, _ in items:
            full = src / relpath
            try:
                data = full.read_bytes()
            except OSError as exc:
                raise UsageError(f"Cannot read image {full}: {exc}") from exc
            # The key covers what the output depends on: every used file's path and bytes, and the
            # class list (a class folder added to train shifts the labels of every split).
            digest.update(f"{relpath}\0{len(data)}\0".encode())
            digest.update(data)
            blobs.append((str(full), data))
        key_path = cache_path(cache_root, "folder", digest.hexdigest(), {**options, "classes": names})
        if cache:
            hit = read_cache(key_path)
            if hit is not None:
                return hit
    elif src.is_file() and is_archive(src):
        try:
            content = file_digest(src)
        except OSError as exc:
            raise UsageError(f"Cannot read archive {src}: {exc}") from exc
        # The archive's digest fixes every class folder, so the given list (or None) is enough.
        key_path = cache_path(cache_root, "archive", content, {**options, "classes": given})
        if cache:
            hit = read_cache(key_path)
            if hit is not None:
                return hit
        members, contents = _archive_images(src, split)
        names, items = _resolve_layout(_nonempty(members, src), split, given, str(src), ":")
        items = _limit_items(items, limit_per_class)
        if any(relpath not in contents for relpath, _ in items):  # a split-less tree read as "train"
            contents = _archive_images(src, None)[1]
        blobs = [(f"{src}:{relpath}", contents[relpath]) for relpath, _ in items]
    else:
        raise UsageError(f"Expected an image folder or a .tar/.tar.gz archive of one, but got the file {src} instead.")

    pixels = decode_all(blobs, out_size)
    images = torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous()
    labels = torch.tensor([label for _, label in items], dtype=torch.int64)
    dataset = ArrayDataset(images, labels, names)
    if cache:
        write_cache(key_path, dataset)
    return dataset
