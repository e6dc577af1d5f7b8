"""Datasets for the training harness, held in memory as one uint8 ``(N, C, H, W)`` tensor each.

Sources, all reached through :func:`load_dataset` (:mod:`.sources`):

* ``"procedural"``: a synthetic dataset built from a seed in seconds, nothing to download
  (:func:`procedural_dataset`, :mod:`.procedural`).
* CIFAR-10 / CIFAR-100 in the official python format, as a folder or the official ``.tar.gz``
  (:func:`load_cifar`); :func:`download_cifar` fetches the archive and verifies its md5
  (:mod:`.cifar`).
* ImageFolder trees ``root/<split>/<class>/<image>`` (or ``root/<class>/<image>``), as a folder or
  a ``.tar`` / ``.tar.gz`` of one (:func:`load_image_folder`, :mod:`.folders`, decoding in
  :mod:`.decode`). Every split labels with the training split's class list (or ``classes=``).
  Decoded splits are cached as ``.npz`` files keyed by the source's content (:mod:`.cache`), so
  only the first load pays for decoding.

:class:`ArrayDataset` (:mod:`.container`) holds a split and its per-channel statistics
(:meth:`ArrayDataset.channel_stats`, for normalisation computed on the training split). Splits
for model selection come from :func:`train_val_split` (stratified, seeded) and low-data regimes
from :func:`class_balanced_subset` (:mod:`.splits`). Every random draw comes from a
``torch.Generator`` seeded by the caller's ``seed``; nothing reads a global random state.

Mistakes a user can fix (bad paths, undecodable images, bad layouts, sources, splits or sizes,
a failed download) raise :class:`~rsmix.errors.UsageError`. Decoding images needs
Pillow (extra ``data``); CIFAR and the procedural dataset do not.
"""

from __future__ import annotations

from .cache import default_cache_dir
from .cifar import CIFAR_ARCHIVES, download_cifar, load_cifar
from .container import ArrayDataset
from .folders import IMAGE_SUFFIXES, load_image_folder
from .procedural import procedural_dataset, procedural_split
from .sources import load_dataset
from .splits import class_balanced_subset, train_val_indices, train_val_split

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
