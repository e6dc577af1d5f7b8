"""Folders as torchvision has them, ``root/<class>/<image>`` without split folders: a training set.

At data level the tree (or an archive of it) is the ``train`` split and has no other; at CLI level
``rsmix train`` trains on it (validation carved from it as from any training set) and ``--test``
is a one-line usage error (exit 2) that says a test split needs a source with split folders.
"""

from __future__ import annotations

import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from rsmix import cli
from rsmix.data import load_dataset
from rsmix.errors import UsageError

CLASSES = ("dog", "cat", "bird")  # written unsorted: classes come out sorted


pytestmark = pytest.mark.usefixtures("isolated_harness")


def make_flat_tree(root: Path, per_class: int = 4, size: int = 12) -> Path:
    rng = np.random.default_rng(0)
    for cls in CLASSES:
        (root / cls).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(root / cls / f"{i:02d}.png")
    return root


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


def test_cli_trains_on_a_tree_without_splits(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tree = make_flat_tree(tmp_path / "flowers", per_class=8, size=32)
    assert (
        cli.main(["train", "--data", str(tree), *TRAIN, "--val-fraction", "0.25", "--out", str(tmp_path / "run")]) == 0
    )
    assert '"train_images": 18' in capsys.readouterr().out  # 24 images, a quarter carved for validation


def test_cli_test_on_a_tree_without_splits_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tree = make_flat_tree(tmp_path / "flowers", per_class=4, size=32)
    rc = cli.main(["train", "--data", str(tree), *TRAIN, "--test", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    assert err.startswith("rsmix train: error: Expected a folder 'test'")
    assert "training set only, so a 'test' split (rsmix train --test, rsmix eval) needs a source with split" in err
