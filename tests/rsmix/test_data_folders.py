"""ImageFolder trees (``rsmix/data/folders.py``): ``root/<split>/<class>/<image>`` as a folder or an
archive, in PNG or JPEG, sizes that must match unless resized, corrupt, missing and empty sources,
the class list of a split (the training split's, or the ``classes`` given); and folders as
torchvision has them, ``root/<class>/<image>`` without split folders: a training set.

At data level a tree without splits (or an archive of it) is the ``train`` split and has no other;
at CLI level ``rsmix train`` trains on it (validation carved from it as from any training set) and
``--test`` is a one-line usage error (exit 2) that says a test split needs a source with split
folders."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path
from typing import Dict, List, Sequence

import numpy as np
import pytest
import torch

from conftest import make_image_tree, tar_folder
from rsmix import cli
from rsmix.data import ArrayDataset, load_dataset, load_image_folder
from rsmix.data import decode as rdecode
from rsmix.errors import UsageError

Image = pytest.importorskip("PIL.Image")


pytestmark = pytest.mark.usefixtures("private_cache")


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
    with pytest.raises(UsageError, match="pass split="):
        load_dataset(str(tmp_path / "split"), None)
    with pytest.raises(UsageError, match=r"'val'.*test, train"):
        load_dataset(str(tmp_path / "split"), "val")


def test_image_folder_sizes_must_match_unless_resized(tmp_path: Path) -> None:
    make_image_tree(tmp_path / "t", splits=("train",), per_class=2, size=(12, 10))
    odd = tmp_path / "t" / "train" / "dog" / "05.png"
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(odd)
    with pytest.raises(UsageError, match=r"12x10 like .*bird.*00\.png.*20x30 for .*dog.05\.png"):
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
    with pytest.raises(UsageError, match=f"Cannot decode image {bad}"):
        load_image_folder(tmp_path / "d", "train")
    archive = tar_folder(tmp_path / "d", tmp_path / "d.tar.gz", "d")
    with pytest.raises(UsageError, match=rf"Cannot decode image {archive}:d/train/cat/01\.png"):
        load_dataset(str(archive), "train")
    # A truncated JPEG is not silently padded with grey.
    jpeg = io.BytesIO()
    Image.fromarray(np.full((16, 16, 3), 77, np.uint8)).save(jpeg, "JPEG")
    bad.unlink()
    (tmp_path / "d" / "train" / "cat" / "01.jpg").write_bytes(jpeg.getvalue()[: len(jpeg.getvalue()) // 2])
    with pytest.raises(UsageError, match=r"01\.jpg"):
        load_image_folder(tmp_path / "d", "train")
    # A truncated archive names itself.
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(UsageError, match=r"cut\.tar\.gz"):
        load_dataset(str(cut), "train")

    missing = tmp_path / "nowhere"
    with pytest.raises(UsageError, match=str(missing)):
        load_dataset(str(missing), "train")
    with pytest.raises(UsageError, match=str(missing)):
        load_image_folder(missing, "train")
    empty = tmp_path / "empty"
    (empty / "train" / "cat").mkdir(parents=True)
    (empty / "train" / "cat" / "notes.txt").write_text("no images here")
    with pytest.raises(UsageError, match=f"Expected images .* in {empty}"):
        load_dataset(str(empty), "train")
    empty_tar = tmp_path / "empty.tar"
    tarfile.open(empty_tar, "w").close()
    with pytest.raises(UsageError, match=r"empty\.tar"):
        load_dataset(str(empty_tar), "train")
    loose = tmp_path / "loose"
    loose.mkdir()
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(loose / "a.png")
    with pytest.raises(UsageError, match="inside a class folder"):
        load_dataset(str(loose), None)
    (loose / "train" / "cat").mkdir(parents=True)
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(loose / "train" / "cat" / "b.png")
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(loose / "train" / "c.png")
    with pytest.raises(UsageError, match=r"inside a class folder.*train/c\.png"):
        load_dataset(str(loose), "train")
    with pytest.raises(UsageError, match="procedural"):
        load_dataset("no-such-dataset", "train")


def make_split_tree(root: Path, classes_by_split: Dict[str, Sequence[str]], per_class: int = 2) -> Path:
    """``root/<split>/<class>/NN.png``; every image of class ``c`` is filled with ``10 * (index of c
    in the sorted union of classes) + image number``, so pixels name their class and file."""
    every = sorted({c for names in classes_by_split.values() for c in names})
    for split, names in classes_by_split.items():
        for cls in names:
            folder = root / split / cls
            folder.mkdir(parents=True)
            for i in range(per_class):
                value = 10 * every.index(cls) + i
                Image.fromarray(np.full((6, 5, 3), value, np.uint8)).save(folder / f"{i:02d}.png")
    return root


def _class_of_pixels(ds: ArrayDataset, every: Sequence[str]) -> List[str]:
    return [every[int(v) // 10] for v in ds.images[:, 0, 0, 0]]


@pytest.mark.parametrize("packed", [False, True], ids=["folder", "tar"])
def test_test_split_lacking_a_class_keeps_the_training_labels(tmp_path: Path, packed: bool) -> None:
    every = ["bird", "cat", "dog"]
    root = make_split_tree(tmp_path / "tree", {"train": every, "test": ["bird", "dog"]})
    source = tar_folder(root, tmp_path / "tree.tar", "tree") if packed else root
    train = load_dataset(str(source), "train")
    calls: List[str] = []
    real_decode = rdecode.decode_image

    def counting_decode(*args, **kwargs):
        calls.append(args[1])
        return real_decode(*args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(rdecode, "decode_image", counting_decode)
        test = load_dataset(str(source), "test")
    # Only the test images were decoded: the training class list came from names alone.
    assert len(calls) == 4 and all("/test/" in where for where in calls)
    assert train.classes == test.classes == every
    index = {c: k for k, c in enumerate(train.classes)}
    assert test.labels.tolist() == [index[c] for c in _class_of_pixels(test, every)] == [0, 0, 2, 2]
    assert test.class_counts().tolist() == [2, 0, 2]
    # The same through load_image_folder, and from the cache.
    direct = load_image_folder(source, "test")
    assert direct.classes == every and torch.equal(direct.labels, test.labels)
    assert torch.equal(load_dataset(str(source), "test").labels, test.labels)


@pytest.mark.parametrize("packed", [False, True], ids=["folder", "tar"])
def test_test_split_with_an_extra_class_is_a_usage_error(tmp_path: Path, packed: bool) -> None:
    root = make_split_tree(tmp_path / "tree", {"train": ["bird", "cat"], "test": ["bird", "cat", "fox"]})
    source = tar_folder(root, tmp_path / "tree.tar", "tree") if packed else root
    with pytest.raises(UsageError, match=r"only the classes bird, cat \(the class folders of the 'train' split\).*fox"):
        load_dataset(str(source), "test")
    with pytest.raises(UsageError, match="fox"):
        load_image_folder(source, "test")
    # A tree without a train split labels a split with its own classes, as before.
    alone = make_split_tree(tmp_path / "alone", {"val": ["cat", "fox"]})
    assert load_dataset(str(alone), "val").classes == ["cat", "fox"]


@pytest.mark.parametrize("packed", [False, True], ids=["folder", "tar"])
def test_classes_argument_names_the_labels(tmp_path: Path, packed: bool) -> None:
    every = ["bird", "cat", "dog"]
    root = make_split_tree(tmp_path / "tree", {"train": every, "test": ["cat"]})
    source = tar_folder(root, tmp_path / "tree.tar", "tree") if packed else root
    order = ["dog", "fox", "bird", "cat"]
    ds = load_dataset(str(source), "train", classes=order)
    assert ds.classes == order
    # Labels index the list; images are ordered by label, then path.
    assert ds.labels.tolist() == [0, 0, 2, 2, 3, 3]
    assert [order[k] for k in ds.labels.tolist()] == _class_of_pixels(ds, every)
    # Another list is another cache entry, never a stale hit with the first list's labels.
    plain = load_dataset(str(source), "train")
    assert plain.classes == every and plain.labels.tolist() == [0, 0, 1, 1, 2, 2]
    assert load_image_folder(source, "test", classes=order).labels.tolist() == [3, 3]
    with pytest.raises(UsageError, match=r"only the classes cat, dog \(the classes passed as classes=\).*bird"):
        load_dataset(str(source), "train", classes=["cat", "dog"])
    with pytest.raises(UsageError, match="distinct"):
        load_dataset(str(source), "train", classes=["cat", "cat"])
    with pytest.raises(TypeError, match="list of names"):
        load_dataset(str(source), "train", classes="cat")


def test_adding_a_training_class_changes_the_test_labels(tmp_path: Path) -> None:
    root = make_split_tree(tmp_path / "tree", {"train": ["bird", "cat"], "test": ["cat"]})
    assert load_dataset(str(root), "test").labels.tolist() == [1, 1]
    make_split_tree(tmp_path / "tree", {"train": ["ant"]})
    # The test files are unchanged, but the class list (part of the cache key) is not.
    again = load_dataset(str(root), "test")
    assert again.classes == ["ant", "bird", "cat"] and again.labels.tolist() == [2, 2]


# ------------------------------------------------------------------------------------------------
# Folders without split folders
# ------------------------------------------------------------------------------------------------

CLASSES = ("dog", "cat", "bird")  # written unsorted: classes come out sorted


def make_flat_tree(root: Path, per_class: int = 4, size: int = 12) -> Path:
    rng = np.random.default_rng(0)
    for cls in CLASSES:
        (root / cls).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(root / cls / f"{i:02d}.png")
    return root


@pytest.mark.usefixtures("isolated_harness")
@pytest.mark.parametrize("packed", [False, True])
def test_a_tree_without_splits_is_the_training_split(tmp_path: Path, packed: bool) -> None:
    tree = make_flat_tree(tmp_path / "flowers")
    source = tree
    if packed:
        source = tmp_path / "flowers.tar.gz"
        with tarfile.open(source, "w:gz") as tar:
            tar.add(tree, arcname="flowers")
    train = load_dataset(str(source), "train")
    whole = load_dataset(str(tree), None)
    assert train.classes == ["bird", "cat", "dog"] and len(train) == 12
    assert torch.equal(train.images, whole.images) and torch.equal(train.labels, whole.labels)


@pytest.mark.usefixtures("isolated_harness")
@pytest.mark.parametrize("packed", [False, True])
def test_other_splits_of_a_tree_without_splits_are_refused(tmp_path: Path, packed: bool) -> None:
    tree = make_flat_tree(tmp_path / "flowers", per_class=1)
    source = tree
    if packed:
        source = tmp_path / "flowers.tar"
        with tarfile.open(source, "w") as tar:
            tar.add(tree, arcname="flowers")
    with pytest.raises(UsageError, match=r"Expected a folder 'test' .* class folders without split folders instead "
                       r"\(bird, cat, dog\): such a tree is a training set only"):  # fmt: skip
        load_dataset(str(source), "test")


@pytest.mark.usefixtures("isolated_harness")
def test_a_tree_with_some_split_folder_keeps_the_old_error(tmp_path: Path) -> None:
    """Class folders next to a split folder are ambiguous: no fallback, the error names what is there."""
    tree = make_flat_tree(tmp_path / "mixed", per_class=1)
    (tree / "val" / "cat").mkdir(parents=True)
    Image.fromarray(np.zeros((12, 12, 3), np.uint8)).save(tree / "val" / "cat" / "00.png")
    with pytest.raises(
        UsageError, match=r"Expected a folder 'train' of class folders .* but got only bird, cat, dog, val"
    ):
        load_dataset(str(tree), "train")


TRAIN = ["--model", "fast_cnn", "--epochs", "1", "--batch-size", "4", "--threads", "1", "--no-progress"]


@pytest.mark.usefixtures("isolated_harness")
def test_cli_trains_on_a_tree_without_splits(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tree = make_flat_tree(tmp_path / "flowers", per_class=8, size=32)
    assert (
        cli.main(["train", "--data", str(tree), *TRAIN, "--val-fraction", "0.25", "--out", str(tmp_path / "run")]) == 0
    )
    assert '"train_images": 18' in capsys.readouterr().out  # 24 images, a quarter carved for validation


@pytest.mark.usefixtures("isolated_harness")
def test_cli_test_on_a_tree_without_splits_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tree = make_flat_tree(tmp_path / "flowers", per_class=4, size=32)
    rc = cli.main(["train", "--data", str(tree), *TRAIN, "--test", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    assert err.startswith("rsmix train: error: Expected a folder 'test'")
    assert "training set only, so a 'test' split (rsmix train --test, rsmix eval) needs a source with split" in err
