"""The command line's errors (``cli.py``): a user's mistake is one line and exit code 2 (a missing
optional dependency names its extra; an image size the model or the memory cannot take is refused
before anything is decoded), and a library bug surfaces as itself, with its traceback."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, List

import pytest

import rsmix.data.args as args_mod
import rsmix.train as train_mod
from conftest import TINY, one_error_line
from rsmix import cli
from rsmix.models import check_model_takes

pytestmark = pytest.mark.usefixtures("isolated_harness")


# ------------------------------------------------------------------------------------------
# A missing optional dependency: one line naming the extra
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "module, argv, extra",
    [
        ("yaml", ["train", *TINY, "--epochs", "1"], "train"),
        ("skimage", ["show"], "viz"),
    ],
)
def test_a_missing_extra_is_named_in_one_line(
    module: str, argv: List[str], extra: str, tmp_path: Path, monkeypatch, capsys
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # import of it now raises ModuleNotFoundError
    assert cli.main([*argv, "--out", str(tmp_path / "out")]) == 2
    line = one_error_line(capsys, argv[0])
    assert f"randsaliencymix[{extra}]" in line and repr(module) in line
    assert not (tmp_path / "out").exists()


def test_a_library_import_error_is_not_disguised(monkeypatch, tmp_path: Path) -> None:
    def broken(*args: Any, **kwargs: Any) -> None:
        raise ModuleNotFoundError("No module named 'randsaliencymix._gone'", name="randsaliencymix._gone")

    import rsmix.train as train_mod

    monkeypatch.setattr(train_mod, "train", broken)
    with pytest.raises(ModuleNotFoundError):
        cli.main(["train", *TINY, "--out", str(tmp_path / "x")])


# ------------------------------------------------------------------------------------------
# --image-size: checked before decoding
# ------------------------------------------------------------------------------------------


def test_an_image_size_the_model_cannot_take_is_one_line(tmp_path: Path, capsys) -> None:
    assert cli.main(["train", *TINY, "--image-size", "8", "--epochs", "1", "--out", str(tmp_path / "r")]) == 2
    line = one_error_line(capsys, "train")
    assert "'fast_cnn'" in line and "8x8" in line and "at least 9x9" in line
    assert not (tmp_path / "r").exists() and not (tmp_path / "cache").exists()  # nothing decoded
    check_model_takes("fast_resnet", 32)  # takes it: no error


@pytest.mark.parametrize("size", [4096, 100_000])
def test_an_image_size_that_cannot_fit_in_memory_is_one_line(size: int, tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setattr(args_mod, "available_memory", lambda: 8 * 2**30)  # 8 GiB, whatever this machine has
    flags = [*TINY, "--model", "resnet18", "--image-size", str(size), "--epochs", "1"]
    assert cli.main(["train", *flags, "--out", str(tmp_path / "r")]) == 2
    line = one_error_line(capsys, "train")
    assert f"{size}x{size}" in line and "GiB" in line and "8.0 GiB available" in line and "px fits" in line
    assert not (tmp_path / "r").exists()


SMALL_DATA = "procedural:200:50"
SMALL = ["--data", SMALL_DATA, "--precision", "fp32", "--epochs", "1", "--batch-size", "32", "--threads", "1"]


def test_an_image_size_the_memory_cannot_hold_is_refused_before_decoding(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(args_mod, "available_memory", lambda: 2**30)  # 1 GiB free
    decoded = []
    monkeypatch.setattr(
        train_mod, "load_splits", lambda cfg: decoded.append(cfg) or (_ for _ in ()).throw(AssertionError)
    )
    out = tmp_path / "run"
    flags = ["--model", "fast_resnet", "--image-size", "512", "--batch-size", "256"]
    assert cli.main(["train", *SMALL, "--no-progress", *flags, "--out", str(out)]) == 2
    line = one_error_line(capsys, "train")
    assert "a batch of 256 images at 512x512 and its mixed copy need 1.5 GiB" in line and "px fits" in line
    assert decoded == []
