"""Imagenette at 128 px (issue 10): images resized once on load and cached by content and size, the
class list of the training split, the config keys and flags of the photograph recipe, and one tiny
end-to-end ``rsmix train`` / ``rsmix eval`` on a slice of the real archive at 64 px.

The real archive is ``../shared/data/imagenette2-224.tar`` next to the repository (or
``$RSMIX_IMAGENETTE``); the tests that need it skip, saying so, when it is absent. Generated image
trees cover the same loading paths without it."""

from __future__ import annotations

import io
import json
import os
import tarfile
from dataclasses import asdict
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest
import torch

from conftest import ROOT
from rsmix import cli
from rsmix.data import folders, load_dataset
from rsmix.errors import UsageError
from rsmix.train import TrainConfig, _check_resumable, load_splits

PIL = pytest.importorskip("PIL.Image")

IMAGENETTE = Path(os.environ.get("RSMIX_IMAGENETTE", ROOT / ".." / "shared" / "data"))
if IMAGENETTE.is_dir():
    IMAGENETTE = IMAGENETTE / "imagenette2-224.tar"
WNIDS = [
    "n01440764",
    "n02102040",
    "n02979186",
    "n03000684",
    "n03028079",
    "n03394916",
    "n03417042",
    "n03425413",
    "n03445777",
    "n03888257",
]
needs_imagenette = pytest.mark.skipif(
    not IMAGENETTE.is_file(), reason=f"the Imagenette archive is not at {IMAGENETTE} (set RSMIX_IMAGENETTE)"
)


pytestmark = pytest.mark.usefixtures("one_thread", "private_cache")


def _jpeg(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    PIL.fromarray(pixels).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def _photo_tree(root: Path) -> Path:
    """train/{a,b,c} and val/{a,c} (val lacks b) of JPEGs in two non-square sizes, as a photo set."""
    rng = np.random.default_rng(0)
    layout = {"train": ("a", "b", "c"), "val": ("a", "c")}
    for split, classes in layout.items():
        for c in classes:
            (root / split / c).mkdir(parents=True)
            for i, (h, w) in enumerate([(60, 80), (90, 70), (100, 100)]):
                pixels = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
                (root / split / c / f"{i}.jpg").write_bytes(_jpeg(pixels))
    return root


def _tar_of(folder: Path, archive: Path) -> Path:
    with tarfile.open(archive, "w") as tar:
        tar.add(folder, arcname=folder.name)
    return archive


class _CountDecodes:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: List[object] = []
        real = folders.decode_all

        def counting(items, size):
            self.calls.append(size)
            return real(items, size)

        monkeypatch.setattr(folders, "decode_all", counting)


# ------------------------------------------------------------------------------------------
# Size on load, on generated photographs
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [64, 96, 128])
def test_every_split_decodes_at_the_asked_size(tmp_path: Path, size: int) -> None:
    tree = _photo_tree(tmp_path / "photos")
    archive = _tar_of(tree, tmp_path / "photos.tar")
    for source in (tree, archive):
        train = load_dataset(str(source), "train", size=size)
        val = load_dataset(str(source), "val", size=size)
        assert train.images.shape == (9, 3, size, size) and train.images.dtype == torch.uint8
        assert val.images.shape == (6, 3, size, size)
        # The class list is the training split's, even though val has no "b".
        assert train.classes == val.classes == ["a", "b", "c"]
        assert val.labels.tolist() == [0, 0, 0, 2, 2, 2]
    # A folder and its archive decode to the same pixels.
    assert torch.equal(load_dataset(str(tree), "val", size=size).images, val.images)


def test_resize_then_cache_keyed_by_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, private_cache: Path) -> None:
    tree = _photo_tree(tmp_path / "photos")
    archive = _tar_of(tree, tmp_path / "photos.tar")
    decodes = _CountDecodes(monkeypatch)
    for source in (str(tree), str(archive)):
        decodes.calls.clear()
        first = load_dataset(source, "train", size=64)
        again = load_dataset(source, "train", size=64)
        assert decodes.calls == [(64, 64)]  # the second load is a cache hit
        assert torch.equal(first.images, again.images) and first.classes == again.classes
        other = load_dataset(source, "train", size=96)
        assert decodes.calls == [(64, 64), (96, 96)] and other.images.shape[-1] == 96
        load_dataset(source, "train", size=64)
        assert len(decodes.calls) == 2  # each size has its own entry
    # The entries hold the resized pixels: resizing happens once, before caching.
    shapes = set()
    for entry in private_cache.glob("*.npz"):
        with np.load(entry) as z:
            shapes.add(z["images"].shape[1:])
    assert shapes == {(3, 64, 64), (3, 96, 96)}


def test_cifar_takes_only_its_own_size(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"Expected no size= for cifar10 \(its images are 32x32\), but got 64"):
        load_dataset("cifar10", "train", root=tmp_path, size=64)
    # size=32 asks for nothing: the size check passes, and the missing files are the error.
    with pytest.raises(UsageError, match="but got neither instead"):
        load_dataset("cifar10", "train", root=tmp_path, size=32)


@pytest.mark.slow
def test_procedural_size_through_the_config() -> None:
    train, val = load_splits(TrainConfig(data="procedural:60:10", image_size=48, val_fraction=0.2))
    assert train.images.shape[1:] == val.images.shape[1:] == (3, 48, 48)
    train, _ = load_splits(TrainConfig(data="procedural:60:10", image_size=0, val_fraction=0.2))
    assert train.images.shape[1:] == (3, 32, 32)


# ------------------------------------------------------------------------------------------
# The real archive: a slice of 5 images per class
# ------------------------------------------------------------------------------------------


@pytest.mark.slow
@needs_imagenette
def test_real_archive_slice_sizes_classes_and_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    decodes = _CountDecodes(monkeypatch)
    train = load_dataset(str(IMAGENETTE), "train", size=64, limit_per_class=5)
    assert train.images.shape == (50, 3, 64, 64) and train.classes == WNIDS
    assert train.class_counts().tolist() == [5] * 10
    val = load_dataset(str(IMAGENETTE), "val", size=64, limit_per_class=5)
    assert val.classes == train.classes and val.images.shape == (50, 3, 64, 64)
    assert decodes.calls == [(64, 64), (64, 64)]
    again = load_dataset(str(IMAGENETTE), "train", size=64, limit_per_class=5)
    assert len(decodes.calls) == 2 and torch.equal(again.images, train.images)
    big = load_dataset(str(IMAGENETTE), "train", size=128, limit_per_class=2)
    assert big.images.shape == (20, 3, 128, 128)
    # Real photographs, greyscale ones converted to RGB: no blank images, some colour.
    assert bool((big.images.flatten(1).float().std(dim=1) > 5).all())


@pytest.fixture(scope="module")
def imagenette_slice(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A .tar of the first 4 training and 3 validation images of every class of the real archive."""
    if not IMAGENETTE.is_file():
        pytest.skip(f"the Imagenette archive is not at {IMAGENETTE} (set RSMIX_IMAGENETTE)")
    out = tmp_path_factory.mktemp("slice") / "imagenette-slice.tar"
    wanted = {"train": 4, "val": 3}
    taken: Dict[tuple, int] = {}
    with tarfile.open(IMAGENETTE, "r:") as src, tarfile.open(out, "w") as dst:
        for info in src:
            parts = info.name.split("/")
            if not info.isfile() or len(parts) < 3 or parts[-3] not in wanted:
                continue
            key = (parts[-3], parts[-2])
            if taken.get(key, 0) < wanted[parts[-3]]:
                taken[key] = taken.get(key, 0) + 1
                dst.addfile(info, src.extractfile(info))
            if len(taken) == 20 and all(taken[k] == wanted[k[0]] for k in taken):
                break
    return out


@pytest.mark.slow
@needs_imagenette
def test_train_and_eval_end_to_end_at_64px(
    imagenette_slice: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    import rsmix.evaluate as evaluate

    run = tmp_path / "run"
    args = ["train", "--data", str(imagenette_slice), "--image-size", "64", "--model", "fast_resnet"]
    args += ["--augment", "resized_crop", "--rrc-scale", "0.35,1", "--method", "cutmix", "--epochs", "1"]
    args += ["--batch-size", "16", "--val-fraction", "0.25", "--threads", "1", "--no-progress"]
    args += ["--channels-last", "--test", "--test-split", "val", "--out", str(run)]
    assert cli.main(args) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["image_size"] == 64 and config["augment"] == "resized_crop"
    assert config["rrc_scale"] == [0.35, 1.0] and config["model"] == "fast_resnet"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["train_images"] == 30 and metrics["val_images"] == 10 and metrics["test_images"] == 30
    assert 0 <= metrics["test_top1_err"] <= 100
    capsys.readouterr()
    # rsmix eval reads the image size from the checkpoint's config.
    sizes = []
    real = evaluate.load_dataset

    def spy(*a, **kw):
        sizes.append(kw.get("size"))
        return real(*a, **kw)

    monkeypatch.setattr(evaluate, "load_dataset", spy)
    assert cli.main(["eval", "--checkpoint", str(run), "--data", str(imagenette_slice), "--split", "val"]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert sizes == [64]
    assert abs(scores["top1_err"] - metrics["test_top1_err"]) < 1e-3


# ------------------------------------------------------------------------------------------
# Config keys and flags
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "flags, words",
    [
        (["--augment", "rrc"], "unknown augment 'rrc'; accepted: pad_crop, resized_crop"),
        (["--rrc-scale", "0,1"], "Expected rrc_scale as (min, max) with 0 < min <= max <= 1"),
        (["--rrc-scale", "0.5"], "Expected rrc_scale as (min, max)"),
        (["--rrc-ratio", "2,1"], "Expected rrc_ratio as (min, max) with 0 < min <= max"),
        (["--image-size", "-1"], "image_size must be >= 0, got -1"),
    ],
)
def test_bad_photo_flags_are_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture, flags: List[str], words: str
) -> None:
    out = tmp_path / "run"
    rc = cli.main(["train", "--data", "procedural:40:10", "--epochs", "1", *flags, "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and words in err
    assert not out.exists()


def test_config_keys_round_trip_and_old_runs_resume(tmp_path: Path) -> None:
    cfg = TrainConfig.from_dict({"image_size": 128, "augment": "resized_crop", "rrc_scale": [0.25, 1.0]})
    assert cfg.rrc_ratio == [0.75, 4 / 3]
    assert TrainConfig.from_dict(json.loads(json.dumps(asdict(cfg)))) == cfg
    # A run saved before these keys existed resumes under the defaults that reproduce it ...
    old = asdict(TrainConfig())
    for key in ("image_size", "augment", "rrc_scale", "rrc_ratio"):
        old.pop(key)
    _check_resumable(old, TrainConfig(), tmp_path, extend=False, done=1)
    # ... and a changed one is refused, naming the key.
    with pytest.raises(UsageError, match=r"changed config \(image_size\)"):
        _check_resumable({**old, "image_size": 64}, TrainConfig(), tmp_path, extend=False, done=1)
    with pytest.raises(UsageError, match=r"changed config \(augment\)"):
        _check_resumable(old, TrainConfig(augment="resized_crop"), tmp_path, extend=False, done=1)
