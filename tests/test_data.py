"""Datasets and input pipelines: every source built here from scratch, nothing downloaded.

CIFAR archives are tiny fakes in the official python format, served over a local HTTP server for
the download path; ImageFolder trees are written with Pillow; the shared CIFAR-10 JPEG archive is
used when present (``../shared/data``), with a few images per class.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import os
import pickle
import tarfile
import threading
import time
from functools import partial
from pathlib import Path
from typing import Dict, Iterator, List, Tuple

import numpy as np
import pytest
import torch

from randsaliencymix import data as rdata
from randsaliencymix.data import (
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
from randsaliencymix.pipeline import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    DeviceLoader,
    channel_stats,
    crop_flip,
    make_dataloader,
    normalize,
)

Image = pytest.importorskip("PIL.Image")

SHARED_ARCHIVE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cifar10-jpeg.tar.gz"
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("RSMIX_CACHE", str(cache))
    return cache


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


def tar_folder(src: Path, archive: Path, arcname: str) -> Path:
    mode = "w:gz" if archive.name.endswith(".gz") else "w"
    with tarfile.open(archive, mode) as tar:
        tar.add(src, arcname=arcname)
    return archive


def make_image_tree(
    root: Path,
    fmt: str = "png",
    splits=("train", "test"),
    per_class: int = 3,
    size: Tuple[int, int] = (12, 10),
    seed: int = 0,
) -> Dict[str, Dict[str, List[np.ndarray]]]:
    """``root/<split>/<class>/NN.<fmt>`` with random pixels; returns them by split and class."""
    rng = np.random.default_rng(seed)
    out: Dict[str, Dict[str, List[np.ndarray]]] = {}
    for split in splits:
        out[split] = {}
        for cls in ("dog", "cat", "bird"):  # written unsorted: classes must come out sorted
            folder = root / split / cls if split else root / cls
            folder.mkdir(parents=True)
            out[split][cls] = []
            for i in range(per_class):
                pixels = rng.integers(0, 256, size=size + (3,), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{i:02d}.{fmt}")
                out[split][cls].append(pixels)
    return out


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
    with pytest.raises(ValueError, match="download=True"):
        load_dataset("cifar100", "train", root=tmp_path / "root")
    os.remove(tmp_path / "root" / "cifar-10-batches-py" / "data_batch_3")
    with pytest.raises(ValueError, match="data_batch_3"):
        load_cifar(tmp_path / "root", "train")
    with pytest.raises(ValueError, match="'train' or 'test'"):
        load_cifar(tmp_path / "root", "val")


def test_cifar_refuses_a_pickle_that_runs_code(tmp_path: Path) -> None:
    make_cifar(tmp_path, "cifar10")

    class Exploit:
        def __reduce__(self):  # what a tampered file could hold
            return (os.system, ("echo pwned",))

    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(pickle.dumps({"data": Exploit()}))
    with pytest.raises(ValueError, match=r"test_batch.*refusing to load"):
        load_cifar(tmp_path, "test")


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
    with pytest.raises(ValueError) as err:
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
    with pytest.raises(ValueError, match="md5"):
        load_dataset("cifar10", "test", root=tmp_path / "third", download=True, url=url)
    with pytest.raises(OSError, match="Cannot download"):
        download_cifar("cifar10", tmp_path / "missing", url=f"{base}/nothing-here.tar.gz", md5=good_md5)
    assert list((tmp_path / "missing").iterdir()) == []


# ----------------------------------------------------------------------------------------------
# ImageFolder trees and archives
# ----------------------------------------------------------------------------------------------


def test_image_folder_png_tree_and_archives_agree(tmp_path: Path) -> None:
    pixels = make_image_tree(tmp_path / "tree" / "mydata")
    root = tmp_path / "tree" / "mydata"
    train = load_image_folder(root, "train")
    assert train.classes == ["bird", "cat", "dog"]
    assert train.images.shape == (9, 3, 12, 10) and train.labels.tolist() == [0] * 3 + [1] * 3 + [2] * 3
    expected = np.stack([p for cls in ("bird", "cat", "dog") for p in pixels["train"][cls]])
    assert torch.equal(train.images, torch.from_numpy(expected).permute(0, 3, 1, 2))
    test = load_image_folder(root, "test")
    assert not torch.equal(test.images, train.images)

    for name in ("mydata.tar.gz", "mydata.tar"):
        archive = tar_folder(root, tmp_path / name, "mydata")
        for split, ref in (("train", train), ("test", test)):
            ds = load_dataset(str(archive), split)
            assert torch.equal(ds.images, ref.images) and torch.equal(ds.labels, ref.labels)
            assert ds.classes == ref.classes
    assert torch.equal(load_dataset(str(tmp_path / "tree"), "train").images, train.images)


def test_image_folder_without_split_jpeg_and_limit(tmp_path: Path) -> None:
    make_image_tree(tmp_path / "flat", fmt="jpg", splits=("",), per_class=4)
    ds = load_dataset(str(tmp_path / "flat"), None)
    assert ds.classes == ["bird", "cat", "dog"] and len(ds) == 12
    with Image.open(tmp_path / "flat" / "cat" / "02.jpg") as im:
        assert np.array_equal(ds.images[6].permute(1, 2, 0).numpy(), np.asarray(im.convert("RGB")))
    limited = load_dataset(str(tmp_path / "flat"), None, limit_per_class=2)
    assert limited.class_counts().tolist() == [2, 2, 2]
    assert torch.equal(limited.images[2:4], ds.images[4:6])  # the first files of "cat"
    # A tree of splits needs split=.
    make_image_tree(tmp_path / "split", splits=("train", "test"), per_class=1)
    with pytest.raises(ValueError, match="pass split="):
        load_dataset(str(tmp_path / "split"), None)
    with pytest.raises(ValueError, match=r"'val'.*test, train"):
        load_dataset(str(tmp_path / "split"), "val")


def test_image_folder_sizes_must_match_unless_resized(tmp_path: Path) -> None:
    make_image_tree(tmp_path / "t", splits=("train",), per_class=2, size=(12, 10))
    odd = tmp_path / "t" / "train" / "dog" / "05.png"
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(odd)
    with pytest.raises(ValueError, match=r"12x10 like .*bird.*00\.png.*20x30 for .*dog.05\.png"):
        load_image_folder(tmp_path / "t", "train")
    ds = load_image_folder(tmp_path / "t", "train", size=8)
    assert ds.images.shape == (7, 3, 8, 8)
    # Resizing keeps the centre: a picture with a bright central square stays bright in the middle.
    centre = np.zeros((40, 60, 3), np.uint8)
    centre[10:30, 20:40] = 255
    Image.fromarray(centre).save(odd)
    resized = load_image_folder(tmp_path / "t", "train", size=(8, 8))
    odd_image = resized.images[-1]
    assert odd_image[:, 3:5, 3:5].min() > 200 and odd_image[:, 0, 0].max() < 30
    assert load_image_folder(tmp_path / "t", "train", size=(6, 4)).images.shape[2:] == (6, 4)


def test_corrupt_missing_and_empty_sources_are_errors(tmp_path: Path) -> None:
    make_image_tree(tmp_path / "d", splits=("train",), per_class=2)
    bad = tmp_path / "d" / "train" / "cat" / "01.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    with pytest.raises(ValueError, match=f"Cannot decode image {bad}"):
        load_image_folder(tmp_path / "d", "train")
    archive = tar_folder(tmp_path / "d", tmp_path / "d.tar.gz", "d")
    with pytest.raises(ValueError, match=rf"Cannot decode image {archive}:d/train/cat/01\.png"):
        load_dataset(str(archive), "train")
    # A truncated JPEG is not silently padded with grey.
    jpeg = io.BytesIO()
    Image.fromarray(np.full((16, 16, 3), 77, np.uint8)).save(jpeg, "JPEG")
    bad.unlink()
    (tmp_path / "d" / "train" / "cat" / "01.jpg").write_bytes(jpeg.getvalue()[: len(jpeg.getvalue()) // 2])
    with pytest.raises(ValueError, match=r"01\.jpg"):
        load_image_folder(tmp_path / "d", "train")
    # A truncated archive names itself.
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(ValueError, match="cut.tar.gz"):
        load_dataset(str(cut), "train")

    missing = tmp_path / "nowhere"
    with pytest.raises(ValueError, match=str(missing)):
        load_dataset(str(missing), "train")
    with pytest.raises(ValueError, match=str(missing)):
        load_image_folder(missing, "train")
    empty = tmp_path / "empty"
    (empty / "train" / "cat").mkdir(parents=True)
    (empty / "train" / "cat" / "notes.txt").write_text("no images here")
    with pytest.raises(ValueError, match=f"Expected images .* in {empty}"):
        load_dataset(str(empty), "train")
    empty_tar = tmp_path / "empty.tar"
    tarfile.open(empty_tar, "w").close()
    with pytest.raises(ValueError, match="empty.tar"):
        load_dataset(str(empty_tar), "train")
    loose = tmp_path / "loose"
    loose.mkdir()
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(loose / "a.png")
    with pytest.raises(ValueError, match="inside a class folder"):
        load_dataset(str(loose), None)
    (loose / "train" / "cat").mkdir(parents=True)
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(loose / "train" / "cat" / "b.png")
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(loose / "train" / "c.png")
    with pytest.raises(ValueError, match=r"inside a class folder.*train/c\.png"):
        load_dataset(str(loose), "train")
    with pytest.raises(ValueError, match="procedural"):
        load_dataset("no-such-dataset", "train")


def test_decoded_splits_are_cached_by_content(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, _private_cache: Path
) -> None:
    make_image_tree(tmp_path / "d", splits=("train",), per_class=3)
    archive = tar_folder(tmp_path / "d", tmp_path / "d.tar.gz", "d")
    calls = []
    real_decode = rdata._decode_image

    def counting_decode(*args, **kwargs):
        calls.append(args[1])
        return real_decode(*args, **kwargs)

    monkeypatch.setattr(rdata, "_decode_image", counting_decode)
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
    assert len(list(_private_cache.glob("*.npz"))) == 4
    assert not list(_private_cache.glob("*.tmp"))

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
    monkeypatch.setattr(rdata, "_decode_image", None)  # a cache hit never decodes
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
    with pytest.raises(ValueError, match=r"val_fraction in \(0, 1\)"):
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
    with pytest.raises(ValueError, match="at least 8 images of every class, but got 7 of class 'c3'"):
        class_balanced_subset(ds, per_class=8)
    with pytest.raises(ValueError, match="exactly one of"):
        class_balanced_subset(ds)


# ----------------------------------------------------------------------------------------------
# Procedural dataset
# ----------------------------------------------------------------------------------------------


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
    with pytest.raises(ValueError, match="num_classes <= 144"):
        procedural_split(10, num_classes=145)


def test_procedural_by_name() -> None:
    ds = load_dataset("procedural:300", "train", seed=1)
    assert len(ds) == 300 and torch.equal(ds.images, procedural_split(300, seed=1).images)
    assert len(load_dataset("procedural:300:40", "test", seed=1)) == 40
    limited = load_dataset("procedural:100", "train", seed=1, limit_per_class=2)
    assert limited.class_counts().tolist() == [2] * 10
    assert torch.equal(limited.images, ds.images[rdata._first_per_class(ds.labels, 10, 2)])
    with pytest.raises(ValueError, match="procedural:N_TRAIN"):
        load_dataset("procedural:many", "train")


# ----------------------------------------------------------------------------------------------
# Input pipelines
# ----------------------------------------------------------------------------------------------


def _distinct_images(n: int, size: int = 8) -> torch.Tensor:
    """Images whose pixels are all nonzero and differ, so a crop identifies its offset and flip."""
    g = torch.Generator().manual_seed(0)
    return torch.randint(1, 256, (n, 3, size, size), generator=g, dtype=torch.uint8)


def _match_crop(
    out: torch.Tensor, image: torch.Tensor, padding: int, mode: str = "zeros"
) -> List[Tuple[int, int, bool]]:
    """Every (top, left, flipped) whose crop of the padded image equals ``out``."""
    if mode == "zeros":
        padded = torch.nn.functional.pad(image, (padding,) * 4)
    else:
        padded = torch.nn.functional.pad(image[None].float(), (padding,) * 4, mode=mode)[0].to(image.dtype)
    h, w = image.shape[1:]
    found = []
    for top in range(2 * padding + 1):
        for left in range(2 * padding + 1):
            crop = padded[:, top : top + h, left : left + w]
            for flipped in (False, True):
                if torch.equal(crop.flip(2) if flipped else crop, out):
                    found.append((top, left, flipped))
    return found


def _as_uint8(x: torch.Tensor) -> torch.Tensor:
    return (x * 255).round().to(torch.uint8)


def test_device_loader_epoch_shapes_and_coverage() -> None:
    images = _distinct_images(50)
    ids = torch.arange(50)
    loader = DeviceLoader(images, ids, 16, torch.Generator().manual_seed(0), mean=CIFAR10_MEAN, std=CIFAR10_STD)
    assert len(loader) == 4
    batches = list(loader)
    assert [b[0].shape[0] for b in batches] == [16, 16, 16, 2]
    x, y = batches[0]
    assert x.dtype == torch.float32 and x.shape == (16, 3, 8, 8) and y.dtype == torch.int64
    assert x.is_contiguous()
    seen = torch.cat([b[1] for b in batches])
    assert sorted(seen.tolist()) == list(range(50))
    assert not torch.equal(seen, ids)  # shuffled
    second_epoch = torch.cat([b[1] for b in loader])
    assert sorted(second_epoch.tolist()) == list(range(50)) and not torch.equal(second_epoch, seen)
    dropped = DeviceLoader(images, ids, 16, torch.Generator().manual_seed(0), drop_last=True)
    assert len(dropped) == 3 and sum(b[1].numel() for b in dropped) == 48
    cl = next(iter(DeviceLoader(images, ids, 8, torch.Generator(), channels_last=True, dtype=torch.bfloat16)))[0]
    assert cl.dtype == torch.bfloat16 and cl.is_contiguous(memory_format=torch.channels_last)
    # Normalisation: (x / 255 - mean) / std.
    plain = DeviceLoader(images, ids, 50, train=False, mean=CIFAR10_MEAN, std=CIFAR10_STD)
    x = next(iter(plain))[0]
    mean = torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR10_STD).view(1, 3, 1, 1)
    torch.testing.assert_close(x, (images.float() / 255 - mean) / std)


def test_device_loader_same_seed_same_batches() -> None:
    images, ids = _distinct_images(40), torch.arange(40)
    runs = []
    for _ in range(2):
        loader = DeviceLoader(images, ids, 8, torch.Generator().manual_seed(123))
        runs.append([(x.clone(), y.clone()) for _ in range(2) for x, y in loader])
    for (xa, ya), (xb, yb) in zip(*runs):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    other = [(x, y) for x, y in DeviceLoader(images, ids, 8, torch.Generator().manual_seed(124))]
    assert not all(torch.equal(a[1], b[1]) for a, b in zip(runs[0], other))


@pytest.mark.parametrize("mode", ["zeros", "reflect", "replicate"])
def test_device_loader_crops_are_crops_and_flips_are_flips(mode: str) -> None:
    images, ids = _distinct_images(64), torch.arange(64)
    loader = DeviceLoader(images, ids, 32, torch.Generator().manual_seed(1), crop_padding=3, padding_mode=mode)
    flips, corners = 0, set()
    for x, y in loader:
        for out, i in zip(_as_uint8(x), y.tolist()):
            found = _match_crop(out, images[i], 3, mode)
            assert found, f"sample {i} is not a crop of its padded image"
            top, left, flipped = found[0]
            flips += flipped
            corners.add((top, left))
    assert 16 < flips < 48 and len(corners) > 20
    # Only flips, no crops: each output is the image or its mirror.
    flip_only = DeviceLoader(images, ids, 64, torch.Generator().manual_seed(2), crop_padding=0)
    x, y = next(iter(flip_only))
    out = _as_uint8(x)
    mirrored = torch.tensor([torch.equal(o, images[i].flip(2)) for o, i in zip(out, y)])
    same = torch.tensor([torch.equal(o, images[i]) for o, i in zip(out, y)])
    assert bool((mirrored | same).all()) and 0 < int(mirrored.sum()) < 64
    nothing = DeviceLoader(images, ids, 64, torch.Generator(), crop_padding=0, flip=False)
    x, y = next(iter(nothing))
    assert torch.equal(_as_uint8(x), images[y])


def test_crop_flip_matches_explicit_padding() -> None:
    images = _distinct_images(6, size=5)
    corners = torch.tensor([[0, 0], [4, 4], [2, 1], [0, 4], [3, 0], [2, 2]])
    flips = torch.tensor([False, True, True, False, True, False])
    padded = torch.nn.functional.pad(images, (2, 2, 2, 2))
    out = crop_flip(images, corners, flips, 2)
    for k in range(6):
        top, left = corners[k].tolist()
        crop = padded[k, :, top : top + 5, left : left + 5]
        assert torch.equal(out[k], crop.flip(2) if flips[k] else crop)


def test_device_loader_eval_mode_is_ordered_and_plain() -> None:
    images, ids = _distinct_images(30), torch.arange(30)
    loader = DeviceLoader(images, ids, 8, train=False)
    a = [(x.clone(), y.clone()) for x, y in loader]
    b = list(loader)
    assert torch.equal(torch.cat([y for _, y in a]), ids)
    assert torch.equal(_as_uint8(torch.cat([x for x, _ in a])), images)
    assert all(torch.equal(p[0], q[0]) for p, q in zip(a, b))
    with pytest.raises(ValueError, match="crop_padding < 8"):
        DeviceLoader(images, ids, 8, padding_mode="reflect", crop_padding=8)
    with pytest.raises(TypeError, match="uint8"):
        DeviceLoader(images.float(), ids, 8)
    with pytest.raises(TypeError, match="torch.Generator"):
        DeviceLoader(images, ids, 8, generator=0)


def test_make_dataloader_same_semantics_and_worker_independent() -> None:
    images, ids = _distinct_images(40), torch.arange(40)
    loader = make_dataloader(images, ids, 16, torch.Generator().manual_seed(0), crop_padding=2)
    first = [(x.clone(), y.clone()) for x, y in loader]
    assert [x.shape for x, _ in first] == [(16, 3, 8, 8), (16, 3, 8, 8), (8, 3, 8, 8)]
    assert sorted(torch.cat([y for _, y in first]).tolist()) == list(range(40))
    flips = 0
    for x, y in first:
        for out, i in zip(_as_uint8(x), y.tolist()):
            found = _match_crop(out, images[i], 2)
            assert found
            flips += found[0][2]
    assert 5 < flips < 35
    with_workers = make_dataloader(images, ids, 16, torch.Generator().manual_seed(0), crop_padding=2, num_workers=2)
    for (xa, ya), (xb, yb) in zip(first, with_workers):
        assert torch.equal(ya, yb) and torch.equal(xa, xb)
    evaluation = make_dataloader(images, ids, 16, train=False, mean=CIFAR10_MEAN, std=CIFAR10_STD)
    xs = torch.cat([x for x, _ in evaluation])
    assert torch.equal(xs, normalize(images, torch.tensor(CIFAR10_MEAN), torch.tensor(CIFAR10_STD)))


def test_channel_stats() -> None:
    images = _distinct_images(20)
    mean, std = channel_stats(images, batch_size=7)
    ref = images.double() / 255
    torch.testing.assert_close(torch.tensor(mean, dtype=torch.float64), ref.mean(dim=(0, 2, 3)))
    torch.testing.assert_close(torch.tensor(std, dtype=torch.float64), ref.std(dim=(0, 2, 3), unbiased=False))
