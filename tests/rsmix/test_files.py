"""The one atomic writer (``files.py``): an interrupted write keeps the old file, and a full or
read-only disk is a one-line usage error for ``rsmix train``, ``compare`` and ``show``."""

from __future__ import annotations

import errno
import pathlib
from pathlib import Path
from typing import Any

import pytest
import torch

import rsmix.files as files_mod
from conftest import one_error_line, train_one_epoch
from rsmix import cli

pytestmark = pytest.mark.usefixtures("isolated_harness")


def test_atomic_write_keeps_the_old_file_when_interrupted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "checkpoint.pt"
    files_mod.atomic_save({"epoch": 1}, path)

    def interrupted(src: str, dst: str) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(files_mod.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        files_mod.atomic_save({"epoch": 2}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=False) == {"epoch": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


@pytest.mark.parametrize(
    "code, reason", [(errno.ENOSPC, "No space left on device"), (errno.EROFS, "Read-only file system")]
)
def test_a_full_or_read_only_disk_is_a_usage_error(tmp_path: Path, capsys, monkeypatch, code: int, reason: str):
    def refuse(src: str, dst: str) -> None:
        raise OSError(code, reason)

    monkeypatch.setattr(files_mod.os, "replace", refuse)
    assert train_one_epoch(tmp_path / "run") == 2
    line = one_error_line(capsys, "train")
    assert reason in line and "cannot write" in line
    assert not list((tmp_path / "run").glob(".*.tmp"))


DATA = "procedural:300:100"


def _read_only_under(monkeypatch: pytest.MonkeyPatch, root: Path) -> None:
    """Every write under ``root`` fails as on a read-only file system (root ignores chmod)."""
    real_mkdir, real_mkstemp = pathlib.Path.mkdir, __import__("tempfile").mkstemp

    def mkdir(self: Path, *args: Any, **kwargs: Any) -> None:
        if str(self).startswith(str(root)):
            raise OSError(errno.EROFS, "Read-only file system", str(self))
        real_mkdir(self, *args, **kwargs)

    def mkstemp(*args: Any, **kwargs: Any) -> Any:
        if str(kwargs.get("dir", "")).startswith(str(root)):
            raise OSError(errno.EROFS, "Read-only file system")
        return real_mkstemp(*args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "mkdir", mkdir)
    monkeypatch.setattr("rsmix.files.tempfile.mkstemp", mkstemp)


def test_a_read_only_out_is_one_line_for_compare_and_show(tmp_path: Path, monkeypatch, capsys) -> None:
    ro = tmp_path / "ro"
    _read_only_under(monkeypatch, ro)
    flags = ["--data", DATA, "--batch-size", "32", "--epochs", "1", "--threads", "1", "--methods", "none"]
    assert cli.main(["compare", *flags, "--out", str(ro / "study")]) == 2
    assert "Read-only file system" in one_error_line(capsys, "compare")
    images = tmp_path / "images"
    images.mkdir()
    from PIL import Image

    for i in range(2):
        Image.new("RGB", (16, 16), (40 * i, 90, 200)).save(images / f"{i}.png")
    assert cli.main(["show", "--images", str(images), "--size", "16", "--out", str(ro / "g.png")]) == 2
    assert "Read-only file system" in one_error_line(capsys, "show")
