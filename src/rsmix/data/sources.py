"""One entry point, :func:`load_dataset`: a source string (``procedural[:N[:M]]``, ``cifar10``,
``cifar100`` or a path) and a split name to an :class:`~rsmix.data.ArrayDataset`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence, Tuple

from ..errors import UsageError
from .args import PathLike, SizeArg, check_fits, check_int, check_size
from .cache import default_cache_dir
from .cifar import CIFAR_ARCHIVES, cifar_location, download_cifar, load_cifar
from .container import ArrayDataset, check_classes, first_per_class, relabel
from .folders import load_image_folder
from .procedural import SPLIT_IDS, procedural_split

__all__ = ["load_dataset"]

_CIFAR_SIZE = (32, 32)  # the size CIFAR is stored at: size=32 asks for nothing to be done


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
        raise UsageError(
            f"Expected 'procedural', 'procedural:N_TRAIN' or 'procedural:N_TRAIN:N_TEST', but got {source!r} instead."
        ) from None
    return n_train, n_test


def _cifar_split(split: Optional[str]) -> str:
    if split not in (None, "train", "test"):
        raise UsageError(f"Expected split 'train' or 'test' for CIFAR, but got {split!r} instead.")
    return split or "train"


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
    classes: Optional[Sequence[str]] = None,
) -> ArrayDataset:
    """Load one split of a dataset named by ``source``:

    * ``"procedural"``, ``"procedural:N"`` (N training images) or ``"procedural:N:M"`` (and M test
      images; default 50000 and 10000), drawn from ``seed`` at ``size`` (default 32);
    * ``"cifar10"`` / ``"cifar100"``: the official python format in ``root`` (default
      :func:`~rsmix.data.default_cache_dir`), as the folder or the ``.tar.gz``; with
      ``download=True`` the archive is fetched (from ``url`` if given) and verified when missing;
      CIFAR is never resized (``size`` may only be None or its own 32);
    * a path to a CIFAR python folder or archive, an ImageFolder tree, or a ``.tar``/``.tar.gz``
      of one (``size``, ``cache`` and ``cache_dir`` as in
      :func:`~rsmix.data.load_image_folder`).

    Labels index one class list, ``dataset.classes``, the same for every split of a source: an
    ImageFolder split other than ``train`` takes the class folders of the ``train`` split. With
    ``classes`` (e.g. the training split's ``classes``), labels index that list instead; a split
    may lack some of them, and a class not in it is an error.

    ``limit_per_class`` keeps the first images of each class (fast experiments and tests).
    """
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"Expected source as a string, but got {type(source).__name__} instead.")
    if limit_per_class is not None:
        limit_per_class = check_int("limit_per_class", limit_per_class, 1)
    given = None if classes is None else check_classes(classes)
    text = os.fspath(source)

    def finish(ds: ArrayDataset) -> ArrayDataset:
        if given is not None:
            ds = relabel(ds, given, text)
        if limit_per_class is None:
            return ds
        return ds.subset(first_per_class(ds.labels, ds.num_classes, limit_per_class))

    if text == "procedural" or text.startswith("procedural:"):
        n_train, n_test = _parse_procedural(text)
        side = 32
        shape = check_size(size)
        if shape is not None:
            if shape[0] != shape[1]:
                raise UsageError(f"Expected a square size for the procedural dataset, but got {size} instead.")
            side = shape[0]
        if split not in SPLIT_IDS:
            raise UsageError(f"Expected split 'train' or 'test', but got {split!r} instead.")
        n = n_train if split == "train" else n_test
        check_fits(n, 3, side, side, f"the procedural {split} split")
        return finish(procedural_split(n, seed, split, size=side))

    if text in CIFAR_ARCHIVES:
        if check_size(size) not in (None, _CIFAR_SIZE):
            raise UsageError(f"Expected no size= for {text} (its images are 32x32), but got {size} instead.")
        cifar_split = _cifar_split(split)
        spec = CIFAR_ARCHIVES[text]
        folder = Path(root) if root is not None else default_cache_dir()
        if not (folder / spec.folder).is_dir() and not (folder / spec.archive).is_file():
            if not download:
                raise UsageError(
                    f"Expected {spec.folder}/ or {spec.archive} in {folder}, but got neither instead "
                    "(pass download=True to fetch it)."
                )
            download_cifar(text, folder, url=url)
        return finish(load_cifar(folder, cifar_split))

    path = Path(text)
    if not path.exists():
        raise UsageError(
            f"Expected 'procedural[:N]', 'cifar10', 'cifar100' or an existing path, but got {text} instead."
        )
    if cifar_location(path) is not None:
        if check_size(size) not in (None, _CIFAR_SIZE):
            raise UsageError(f"Expected no size= for CIFAR (its images are 32x32), but got {size} instead.")
        return finish(load_cifar(path, _cifar_split(split)))
    return load_image_folder(
        path, split, classes=given, size=size, limit_per_class=limit_per_class, cache=cache, cache_dir=cache_dir
    )
