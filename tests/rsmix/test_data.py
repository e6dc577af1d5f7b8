"""Datasets (``rsmix/data/``): the in-memory ArrayDataset, CIFAR in the official format and its
download, the shared CIFAR-10 JPEG archive, the procedural dataset, splits and subsets, the memory
check before decoding, and errors (a user's mistakes are usage errors, library bugs are not
wrapped). Every source is built here from scratch, nothing downloaded.

CIFAR archives are tiny fakes in the official python format, served over a local HTTP server for
the download path; the shared CIFAR-10 JPEG archive is used when present (``../shared/data``), with
a few images per class."""

from __future__ import annotations

import hashlib
import http.server
import io
import os
import pickle
import socket
import tarfile
import threading
import time
from functools import partial
from pathlib import Path
from typing import Dict, Iterator, List, Tuple

import numpy as np
import pytest
import torch

import rsmix.data.args as args_mod
from conftest import ROOT, make_image_tree, tar_folder
from rsmix import data as rdata
from rsmix.data import (
    ArrayDataset,
    class_balanced_subset,
    download_cifar,
    load_cifar,
    load_dataset,
    load_image_folder,
    procedural_dataset,
    procedural_split,
    train_val_indices,
    train_val_split,
)
from rsmix.data import decode as rdecode
from rsmix.data.container import first_per_class
from rsmix.errors import UsageError

Image = pytest.importorskip("PIL.Image")

SHARED_ARCHIVE = ROOT.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


pytestmark = pytest.mark.usefixtures("private_cache")


# ----------------------------------------------------------------------------------------------
# Builders of fake sources
# ----------------------------------------------------------------------------------------------


def _pickle_bytes(obj: object) -> bytes:
    # Protocol 2 and bytes keys, as the official files written by Python 2's cPickle read in 3.
    return pickle.dumps(obj, protocol=2)


def make_cifar(root: Path, name: str, per_batch: int = 8, seed: int = 0) -> Dict[str, np.ndarray]:
    """Write a tiny CIFAR folder in the official layout under ``root``; return its arrays."""
    rng = np.random.default_rng(seed)
    spec = rdata.CIFAR_ARCHIVES[name]
    folder = root / spec.folder
    folder.mkdir(parents=True)
    n_classes = 10 if name == "cifar10" else 100
    arrays: Dict[str, List[np.ndarray]] = {"train_x": [], "train_y": [], "test_x": [], "test_y": []}
    for split, files in (("train", spec.train), ("test", spec.test)):
        for fname in files:
            x = rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8)
            y = rng.integers(0, n_classes, size=per_batch).tolist()
            if name == "cifar10":
                batch = {
                    b"batch_label": fname.encode(),
                    b"labels": y,
                    b"data": x,
                    b"filenames": [f"{i}.png".encode() for i in range(per_batch)],
                }
            else:
                batch = {
                    b"filenames": [b"x.png"] * per_batch,
                    b"batch_label": fname.encode(),
                    b"fine_labels": y,
                    b"coarse_labels": [v // 5 for v in y],
                    b"data": x,
                }
            (folder / fname).write_bytes(_pickle_bytes(batch))
            arrays[f"{split}_x"].append(x)
            arrays[f"{split}_y"].append(np.asarray(y))
    if name == "cifar10":
        meta = {b"label_names": [c.encode() for c in CIFAR10_CLASSES], b"num_vis": 3072}
    else:
        meta = {
            b"fine_label_names": [f"fine{i:02d}".encode() for i in range(100)],
            b"coarse_label_names": [f"coarse{i:02d}".encode() for i in range(20)],
        }
    (folder / spec.meta).write_bytes(_pickle_bytes(meta))
    return {k: np.concatenate(v) for k, v in arrays.items()}


@pytest.fixture
def http_root(tmp_path: Path) -> Iterator[Tuple[Path, str, List[str]]]:
    """A local HTTP server on a free port serving a folder; yields (folder, base url, requests)."""
    folder = tmp_path / "served"
    folder.mkdir()
    requests: List[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            requests.append(self.path)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield folder, f"http://127.0.0.1:{server.server_address[1]}", requests
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture(autouse=True)
def _no_proxy_for_localhost(monkeypatch: pytest.MonkeyPatch) -> None:
    # A proxy in the environment must not intercept the local test server.
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


# ----------------------------------------------------------------------------------------------
# ArrayDataset
# ----------------------------------------------------------------------------------------------


def test_array_dataset_checks_and_subset() -> None:
    images = torch.arange(4 * 3 * 2 * 2, dtype=torch.uint8).view(4, 3, 2, 2)
    ds = ArrayDataset(images, torch.tensor([0, 1, 1, 0]), ["a", "b"])
    assert len(ds) == 4 and ds.num_classes == 2 and ds.image_size == (2, 2)
    assert ds.class_counts().tolist() == [2, 2]
    sub = ds.subset(torch.tensor([2, 0]))
    assert torch.equal(sub.images, images[[2, 0]]) and sub.labels.tolist() == [1, 0]
    assert torch.equal(ds.subset(torch.tensor([True, False, False, True])).labels, torch.tensor([0, 0]))
    with pytest.raises(TypeError, match="uint8"):
        ArrayDataset(images.float(), torch.zeros(4, dtype=torch.int64), ["a"])
    with pytest.raises(ValueError, match=r"labels of shape \(4,\)"):
        ArrayDataset(images, torch.zeros(3, dtype=torch.int64), ["a"])
    with pytest.raises(ValueError, match=r"labels in \[0, 1\]"):
        ArrayDataset(images, torch.tensor([0, 1, 2, 0]), ["a", "b"])
    with pytest.raises(TypeError, match="int64"):
        ArrayDataset(images, torch.zeros(4, dtype=torch.int32), ["a"])


# ----------------------------------------------------------------------------------------------
# CIFAR
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_folder_and_archive_round_trip(tmp_path: Path, name: str) -> None:
    arrays = make_cifar(tmp_path / "src", name)
    spec = rdata.CIFAR_ARCHIVES[name]
    archive = tar_folder(tmp_path / "src" / spec.folder, tmp_path / spec.archive, spec.folder)
    for split in ("train", "test"):
        from_folder = load_cifar(tmp_path / "src" / spec.folder, split)
        from_parent = load_dataset(str(tmp_path / "src"), split)
        from_archive = load_dataset(str(archive), split)
        expected = torch.from_numpy(arrays[f"{split}_x"].reshape(-1, 3, 32, 32))
        for ds in (from_folder, from_parent, from_archive):
            assert ds.images.dtype == torch.uint8 and ds.images.shape == expected.shape
            assert torch.equal(ds.images, expected)
            assert ds.labels.tolist() == arrays[f"{split}_y"].tolist()
            assert ds.classes == from_folder.classes
    assert len(load_cifar(archive, "train")) == 8 * len(spec.train)
    if name == "cifar10":
        assert from_folder.classes == CIFAR10_CLASSES
    else:
        assert from_folder.classes[:2] == ["fine00", "fine01"] and from_folder.num_classes == 100
        coarse = load_cifar(archive, "test", labels="coarse")
        assert coarse.num_classes == 20
        assert coarse.labels.tolist() == (arrays["test_y"] // 5).tolist()


def test_cifar_by_name_in_root_and_missing_files(tmp_path: Path) -> None:
    make_cifar(tmp_path / "root", "cifar10")
    assert len(load_dataset("cifar10", "test", root=tmp_path / "root")) == 8
    assert load_dataset("cifar10", "train", root=tmp_path / "root", limit_per_class=1).class_counts().max() <= 1
    with pytest.raises(UsageError, match="download=True"):
        load_dataset("cifar100", "train", root=tmp_path / "root")
    os.remove(tmp_path / "root" / "cifar-10-batches-py" / "data_batch_3")
    with pytest.raises(UsageError, match="data_batch_3"):
        load_cifar(tmp_path / "root", "train")
    with pytest.raises(UsageError, match="'train' or 'test'"):
        load_cifar(tmp_path / "root", "val")


def test_cifar_refuses_a_pickle_that_runs_code(tmp_path: Path) -> None:
    make_cifar(tmp_path, "cifar10")

    class Exploit:
        def __reduce__(self):  # what a tampered file could hold
            return (os.system, ("echo pwned",))

    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(pickle.dumps({"data": Exploit()}))
    with pytest.raises(UsageError, match=r"test_batch.*refusing to load"):
        load_cifar(tmp_path, "test")


@pytest.mark.slow
def test_download_cifar_good_and_bad_checksum(tmp_path: Path, http_root) -> None:
    served, base, requests = http_root
    make_cifar(tmp_path / "src", "cifar10")
    archive = tar_folder(
        tmp_path / "src" / "cifar-10-batches-py", served / "cifar-10-python.tar.gz", "cifar-10-batches-py"
    )
    good_md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    url = f"{base}/cifar-10-python.tar.gz"

    # Bad checksum (the official md5 of the real archive): error names both, nothing is left.
    bad_root = tmp_path / "bad"
    with pytest.raises(UsageError) as err:
        download_cifar("cifar10", bad_root, url=url)
    assert rdata.CIFAR_ARCHIVES["cifar10"].md5 in str(err.value) and good_md5 in str(err.value)
    assert list(bad_root.iterdir()) == []

    # Good checksum: the archive lands under its official name and loads.
    good_root = tmp_path / "good"
    path = download_cifar("cifar10", good_root, url=url, md5=good_md5)
    assert path == good_root / "cifar-10-python.tar.gz"
    assert path.read_bytes() == archive.read_bytes()
    assert sorted(p.name for p in good_root.iterdir()) == ["cifar-10-python.tar.gz"]
    assert len(load_dataset("cifar10", "test", root=good_root)) == 8

    # Already there with the right md5: no second request.
    n_requests = len(requests)
    download_cifar("cifar10", good_root, url=url, md5=good_md5)
    assert len(requests) == n_requests

    # load_dataset downloads when asked (the official md5 fails here, as it must for a fake).
    with pytest.raises(UsageError, match="md5"):
        load_dataset("cifar10", "test", root=tmp_path / "third", download=True, url=url)
    with pytest.raises(UsageError, match=r"download of .*nothing-here\.tar\.gz failed \(HTTP Error 404"):
        download_cifar("cifar10", tmp_path / "missing", url=f"{base}/nothing-here.tar.gz", md5=good_md5)
    assert list((tmp_path / "missing").iterdir()) == []


@pytest.mark.slow
@pytest.mark.skipif(not SHARED_ARCHIVE.is_file(), reason="shared CIFAR-10 JPEG archive not present")
def test_shared_cifar10_jpeg_archive(monkeypatch: pytest.MonkeyPatch) -> None:
    ds = load_dataset(str(SHARED_ARCHIVE), "test", limit_per_class=5)
    assert ds.classes == CIFAR10_CLASSES
    assert ds.images.shape == (50, 3, 32, 32) and ds.class_counts().tolist() == [5] * 10
    # The first airplane is test/airplane/0000.jpg, decoded as Pillow does.
    with tarfile.open(SHARED_ARCHIVE) as tar:
        for info in tar:
            if info.name.endswith("test/airplane/0000.jpg"):
                with Image.open(io.BytesIO(tar.extractfile(info).read())) as im:
                    first = np.asarray(im.convert("RGB"))
                break
    assert np.array_equal(ds.images[0].permute(1, 2, 0).numpy(), first)
    monkeypatch.setattr(rdecode, "decode_image", None)  # a cache hit never decodes
    assert torch.equal(load_dataset(str(SHARED_ARCHIVE), "test", limit_per_class=5).images, ds.images)


# ----------------------------------------------------------------------------------------------
# Splits and subsets
# ----------------------------------------------------------------------------------------------


def _imbalanced(n_per_class=(40, 25, 13, 7)) -> ArrayDataset:
    labels = torch.cat([torch.full((n,), k) for k, n in enumerate(n_per_class)])
    labels = labels[torch.randperm(labels.numel(), generator=torch.Generator().manual_seed(3))]
    images = torch.arange(labels.numel(), dtype=torch.int64).remainder(256).to(torch.uint8)
    return ArrayDataset(
        images.view(-1, 1, 1, 1).expand(-1, 3, 2, 2).clone(), labels, [f"c{k}" for k in range(len(n_per_class))]
    )


def test_train_val_split_is_disjoint_stratified_and_seeded() -> None:
    ds = _imbalanced()
    train_idx, val_idx = train_val_indices(ds.labels, 0.2, seed=1)
    assert set(train_idx.tolist()).isdisjoint(val_idx.tolist())
    assert sorted(train_idx.tolist() + val_idx.tolist()) == list(range(len(ds)))
    assert torch.all(train_idx[1:] > train_idx[:-1]) and torch.all(val_idx[1:] > val_idx[:-1])
    assert torch.bincount(ds.labels[val_idx], minlength=4).tolist() == [8, 5, 3, 1]
    again = train_val_indices(ds.labels, 0.2, seed=1)
    assert torch.equal(again[1], val_idx)
    assert not torch.equal(train_val_indices(ds.labels, 0.2, seed=2)[1], val_idx)
    train, val = train_val_split(ds, 0.2, seed=1)
    assert torch.equal(val.labels, ds.labels[val_idx]) and torch.equal(train.images, ds.images[train_idx])
    assert len(train) + len(val) == len(ds)
    with pytest.raises(UsageError, match=r"val_fraction in \(0, 1\)"):
        train_val_split(ds, 1.0)
    # A large balanced set: exactly the fraction of every class.
    labels = torch.arange(5000) % 10
    _, val_idx = train_val_indices(labels, 0.1, seed=0)
    assert torch.bincount(labels[val_idx]).tolist() == [50] * 10


def test_class_balanced_subset_equal_counts_nested_seeded() -> None:
    ds = _imbalanced()
    small = class_balanced_subset(ds, per_class=3, seed=5)
    assert small.class_counts().tolist() == [3, 3, 3, 3]
    large = class_balanced_subset(ds, per_class=6, seed=5)
    key = lambda d: set(d.images[:, 0, 0, 0].tolist())  # noqa: E731 - images hold their index
    assert key(small) <= key(large)
    assert torch.equal(class_balanced_subset(ds, per_class=3, seed=5).images, small.images)
    assert not torch.equal(class_balanced_subset(ds, per_class=3, seed=6).images, small.images)
    assert class_balanced_subset(ds, fraction=0.25, seed=0).class_counts().tolist() == [5] * 4
    with pytest.raises(UsageError, match="at least 8 images of every class, but got 7 of class 'c3'"):
        class_balanced_subset(ds, per_class=8)
    with pytest.raises(UsageError, match="exactly one of"):
        class_balanced_subset(ds)


# ----------------------------------------------------------------------------------------------
# Procedural dataset
# ----------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_procedural_dataset_is_seeded_balanced_and_covered() -> None:
    start = time.perf_counter()
    train, test = procedural_dataset(500, 100, seed=7, return_masks=True)
    assert time.perf_counter() - start < 15.0
    assert train.images.shape == (500, 3, 32, 32) and train.images.dtype == torch.uint8
    assert train.class_counts().tolist() == [50] * 10 and train.num_classes == 10
    assert len(set(train.classes)) == 10 and test.masks is not None and len(test) == 100
    # Every object covers 10-30% of its image.
    coverage = train.masks.float().mean(dim=(1, 2))
    assert float(coverage.min()) >= 0.10 and float(coverage.max()) <= 0.30
    # Deterministic from the seed, different for another seed, and train differs from test.
    again = procedural_split(500, seed=7)
    assert torch.equal(again.images, train.images) and torch.equal(again.labels, train.labels)
    assert again.masks is None
    assert not torch.equal(procedural_split(100, seed=8).images, train.images[:100])
    assert not torch.equal(test.images, train.images[:100])
    # Image i does not depend on how many are asked for.
    assert torch.equal(procedural_split(300, seed=7).images, train.images[:300])
    # Cluttered: outside the object, pixels vary widely within an image.
    outside = train.images.float().masked_fill(train.masks.unsqueeze(1), float("nan")).flatten(1)
    spread = outside.nanquantile(0.9, dim=1) - outside.nanquantile(0.1, dim=1)
    assert float(spread.median()) > 40
    assert procedural_split(20, seed=0, num_classes=30, size=24).images.shape == (20, 3, 24, 24)
    with pytest.raises(UsageError, match="num_classes <= 144"):
        procedural_split(10, num_classes=145)


def test_procedural_by_name() -> None:
    ds = load_dataset("procedural:300", "train", seed=1)
    assert len(ds) == 300 and torch.equal(ds.images, procedural_split(300, seed=1).images)
    assert len(load_dataset("procedural:300:40", "test", seed=1)) == 40
    limited = load_dataset("procedural:100", "train", seed=1, limit_per_class=2)
    assert limited.class_counts().tolist() == [2] * 10
    assert torch.equal(limited.images, ds.images[first_per_class(ds.labels, 10, 2)])
    with pytest.raises(UsageError, match="procedural:N_TRAIN"):
        load_dataset("procedural:many", "train")


def test_classes_for_procedural_and_cifar_sources(tmp_path: Path) -> None:
    ds = load_dataset("procedural:60", "train", seed=3)
    reordered = list(reversed(ds.classes)) + ["spare"]
    relabelled = load_dataset("procedural:60", "train", seed=3, classes=reordered)
    assert relabelled.classes == reordered
    assert [reordered[k] for k in relabelled.labels.tolist()] == [ds.classes[k] for k in ds.labels.tolist()]
    with pytest.raises(UsageError, match="red solid disc"):
        load_dataset("procedural:60", "train", seed=3, classes=ds.classes[1:])
    make_cifar(tmp_path / "root", "cifar10")
    same = load_dataset("cifar10", "test", root=tmp_path / "root", classes=CIFAR10_CLASSES)
    assert torch.equal(same.labels, load_dataset("cifar10", "test", root=tmp_path / "root").labels)


# ----------------------------------------------------------------------------------------------
# Downloads without a network
# ----------------------------------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_download_without_a_network_is_a_usage_error(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{_closed_port()}/cifar-10-python.tar.gz"
    root = tmp_path / "root"
    with pytest.raises(UsageError) as err:
        load_dataset("cifar10", "train", root=root, download=True, url=url)
    message = str(err.value)
    assert "download" in message and "failed" in message and url in message
    assert "by hand" in message and str(root / "cifar-10-python.tar.gz") in message
    assert list(root.iterdir()) == []  # no partial file, under any name


@pytest.mark.slow
def test_download_timeout_is_a_usage_error(tmp_path: Path) -> None:
    # A server that accepts connections (the kernel's backlog) but never answers.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen(4)
        url = f"http://127.0.0.1:{server.getsockname()[1]}/cifar-10-python.tar.gz"
        start = time.perf_counter()
        with pytest.raises(UsageError, match=r"download of .* failed \(.*timed out"):
            download_cifar("cifar10", tmp_path / "root", url=url, timeout=0.5)
        assert time.perf_counter() - start < 10
    assert list((tmp_path / "root").iterdir()) == []
    with pytest.raises(UsageError, match="failed"):
        download_cifar("cifar10", tmp_path / "root", url="not a url")


# ----------------------------------------------------------------------------------------------
# User errors are UsageError; library bugs are not
# ----------------------------------------------------------------------------------------------


def test_user_mistakes_are_usage_errors(tmp_path: Path) -> None:
    make_image_tree(tmp_path / "d", splits=("train",), per_class=1)
    for call in (
        lambda: load_image_folder(tmp_path / "d", "train", size=0),
        lambda: load_image_folder(tmp_path / "d", "a/b"),
        lambda: load_dataset(str(tmp_path / "d"), "train", limit_per_class=0),
        lambda: load_dataset("procedural:10", "val"),
        lambda: load_dataset("procedural:10", "train", size=(8, 9)),
        lambda: load_dataset("cifar10", "train", root=tmp_path / "d", size=8),
        lambda: download_cifar("cifar11", tmp_path),
    ):
        with pytest.raises(UsageError):
            call()
    # CIFAR files with garbage or out-of-range labels name the file.
    make_cifar(tmp_path / "c", "cifar10")
    batch = tmp_path / "c" / "cifar-10-batches-py" / "test_batch"
    batch.write_bytes(b"\x80\x02 garbage")
    with pytest.raises(UsageError, match="test_batch"):
        load_dataset(str(tmp_path / "c"), "test")
    with pytest.raises(UsageError, match="'train' or 'test' for CIFAR"):
        load_dataset(str(tmp_path / "c"), "val")
    bad_labels = {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}
    batch.write_bytes(_pickle_bytes(bad_labels))
    with pytest.raises(UsageError, match=r"labels in \[0, 9\].*test_batch.*10"):
        load_dataset(str(tmp_path / "c"), "test")


def test_library_bugs_are_not_wrapped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_image_tree(tmp_path / "d", splits=("train",), per_class=1)

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a bug in the decoder")

    monkeypatch.setattr(rdecode, "decode_image", broken)
    with pytest.raises(RuntimeError, match="a bug") as err:
        load_dataset(str(tmp_path / "d"), "train")
    assert not isinstance(err.value, UsageError)


@pytest.mark.usefixtures("isolated_harness")
@pytest.mark.slow
def test_decoding_a_folder_checks_the_memory_before_decoding(tmp_path: Path, monkeypatch) -> None:
    from rsmix.data.decode import decode_all
    from rsmix.errors import UsageError

    monkeypatch.setattr(args_mod, "available_memory", lambda: 2**20)
    with pytest.raises(UsageError, match="2 images at 1024x1024 need"):
        decode_all([("a.png", b"not even an image"), ("b.png", b"")], (1024, 1024))
