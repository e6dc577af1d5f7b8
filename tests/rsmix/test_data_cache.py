"""The cache of decoded splits (``rsmix/data/cache.py``): keyed by content, a damaged entry is a miss
that is decoded again and rewritten, and a write that fails is a warning, never a failed load."""

from __future__ import annotations

import errno
import os
import time
import warnings
from pathlib import Path
from typing import List

import numpy as np
import pytest
import torch

from conftest import make_image_tree, tar_folder
from rsmix.data import decode as rdecode
from rsmix.data import load_dataset, load_image_folder

Image = pytest.importorskip("PIL.Image")


pytestmark = pytest.mark.usefixtures("private_cache")


def test_decoded_splits_are_cached_by_content(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, private_cache: Path
) -> None:
    make_image_tree(tmp_path / "d", splits=("train",), per_class=3)
    archive = tar_folder(tmp_path / "d", tmp_path / "d.tar.gz", "d")
    calls = []
    real_decode = rdecode.decode_image

    def counting_decode(*args, **kwargs):
        calls.append(args[1])
        return real_decode(*args, **kwargs)

    monkeypatch.setattr(rdecode, "decode_image", counting_decode)
    for source in (tmp_path / "d", archive):
        first = load_dataset(str(source), "train")
        n_calls = len(calls)
        assert n_calls >= 9
        start = time.perf_counter()
        second = load_dataset(str(source), "train")
        assert time.perf_counter() - start < 2.0
        assert len(calls) == n_calls, "the second load decoded again"
        assert torch.equal(first.images, second.images) and torch.equal(first.labels, second.labels)
        assert first.classes == second.classes
        # Other decode options are another entry.
        load_dataset(str(source), "train", size=6)
        assert len(calls) > n_calls
    assert len(list(private_cache.glob("*.npz"))) == 4
    assert not list(private_cache.glob("*.tmp"))

    # Changed content (same names, same size on disk) is a miss, whatever the modification time.
    target = tmp_path / "d" / "train" / "cat" / "00.png"
    stat = target.stat()
    Image.fromarray(np.full((12, 10, 3), 9, np.uint8)).save(target)
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    n_calls = len(calls)
    changed = load_dataset(str(tmp_path / "d"), "train")
    assert len(calls) > n_calls and int(changed.images[3].max()) == 9
    # cache=False always decodes; cache_dir= moves the cache.
    n_calls = len(calls)
    load_dataset(str(archive), "train", cache=False)
    assert len(calls) > n_calls
    load_dataset(str(archive), "train", cache_dir=tmp_path / "elsewhere")
    assert len(list((tmp_path / "elsewhere").glob("*.npz"))) == 1


def _damage(entry: Path, how: str) -> None:
    data = entry.read_bytes()
    if how == "truncated":
        entry.write_bytes(data[: len(data) // 2])
    elif how == "empty":
        entry.write_bytes(b"")
    elif how == "garbage":
        entry.write_bytes(b"not a zip file at all" * 10)
    else:  # one flipped byte in the pixels: the zip's CRC no longer matches
        middle = len(data) // 2
        entry.write_bytes(data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1 :])


@pytest.mark.parametrize("how", ["truncated", "empty", "garbage", "flipped"])
def test_damaged_cache_entry_is_a_miss_and_is_rewritten(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, private_cache: Path, how: str
) -> None:
    make_image_tree(tmp_path / "d", splits=("train",), per_class=3)
    archive = tar_folder(tmp_path / "d", tmp_path / "d.tar.gz", "d")
    sources = (tmp_path / "d", archive)
    first = {s: load_dataset(str(s), "train") for s in sources}
    entries = sorted(private_cache.glob("*.npz"))
    assert len(entries) == 2
    for entry in entries:
        _damage(entry, how)
    calls: List[str] = []
    real_decode = rdecode.decode_image

    def counting_decode(*args, **kwargs):
        calls.append(args[1])
        return real_decode(*args, **kwargs)

    monkeypatch.setattr(rdecode, "decode_image", counting_decode)
    for source in sources:
        n_calls = len(calls)
        with pytest.warns(RuntimeWarning, match="unreadable cache file"):
            again = load_dataset(str(source), "train")
        assert len(calls) == n_calls + 9, "a damaged entry must be decoded again"
        assert torch.equal(again.images, first[source].images) and torch.equal(again.labels, first[source].labels)
    # Rewritten whole: the next loads neither warn nor decode.
    n_calls = len(calls)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for source in sources:
            assert torch.equal(load_dataset(str(source), "train").images, first[source].images)
    assert len(calls) == n_calls


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS, errno.EIO])
def test_cache_write_failure_warns_and_still_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, private_cache: Path, code: int
) -> None:
    make_image_tree(tmp_path / "d", splits=("train",), per_class=2)
    archive = tar_folder(tmp_path / "d", tmp_path / "d.tar", "d")
    reference = load_image_folder(tmp_path / "d", "train", cache=False)

    def failing_replace(src: object, dst: object, *args: object, **kwargs: object) -> None:
        raise OSError(code, os.strerror(code), str(dst))

    monkeypatch.setattr(os, "replace", failing_replace)
    for source in (tmp_path / "d", archive):
        with pytest.warns(RuntimeWarning, match=f"Cannot write the cache file .*{os.strerror(code)}"):
            ds = load_dataset(str(source), "train")
        assert torch.equal(ds.images, reference.images) and ds.classes == reference.classes
    # Nothing half-written is left behind.
    assert list(private_cache.iterdir()) == []


def test_cache_dir_below_a_regular_file_warns_and_still_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_image_tree(tmp_path / "d", splits=("train",), per_class=2)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("RSMIX_CACHE", str(blocker / "cache"))
    with pytest.warns(RuntimeWarning, match="Cannot write the cache file"):
        ds = load_dataset(str(tmp_path / "d"), "train")
    assert len(ds) == 6
    with pytest.warns(RuntimeWarning, match="Cannot write the cache file"):
        assert len(load_dataset(str(tmp_path / "d"), "train", cache_dir=blocker)) == 6
    assert blocker.read_text() == "not a folder"
