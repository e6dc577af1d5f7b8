"""``rsmix show`` (``gallery.py``): the gallery of saliency maps and operator outputs, with a trained
run's CAM maps and CAM operators, and its bad arguments in one line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List

import pytest
import torch

from conftest import one_error_line
from rsmix import cli


@pytest.mark.slow
def test_cli_show_writes_png(tmp_path):
    pytest.importorskip("matplotlib")
    pytest.importorskip("skimage")
    pytest.importorskip("cv2")
    from rsmix.cli import main

    out = tmp_path / "g.png"
    assert main(["show", "--out", str(out), "--size", "48"]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_missing_images_folder(tmp_path, capsys):
    from rsmix.cli import main

    assert main(["show", "--out", str(tmp_path / "g.png"), "--images", str(tmp_path / "missing")]) == 2
    assert "error" in capsys.readouterr().err
    assert not (tmp_path / "g.png").exists()


# ------------------------------------------------------------------------------------------------
# A trained run's CAM maps and CAM operators
# ------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_gallery_shows_a_trained_runs_cam_maps_and_cam_operators(tmp_path, monkeypatch):
    """rsmix show --checkpoint: the run's model gives the CAM columns (for its predicted class,
    with the run's normalisation) and RandSaliencyMix and GuidedMixup read those maps."""
    pytest.importorskip("matplotlib")
    import rsmix.gallery as gallery_mod
    from rsmix.cli import main

    monkeypatch.setenv("RSMIX_CACHE", str(tmp_path / "cache"))
    run = tmp_path / "run"
    flags = ["--data", "procedural:200:50", "--batch-size", "32", "--epochs", "1", "--threads", "1", "--no-progress"]
    assert main(["train", *flags, "--out", str(run)]) == 0
    seen = {}
    real = gallery_mod.class_activation_maps

    def spy(model, x, classes):
        seen["x"], seen["classes"] = x, classes
        seen["maps"] = real(model, x, classes)
        return seen["maps"]

    monkeypatch.setattr(gallery_mod, "class_activation_maps", spy)
    images = tmp_path / "images"
    images.mkdir()
    from PIL import Image

    g = torch.Generator().manual_seed(0)
    for i in range(3):
        pixels = (torch.rand(40, 40, 3, generator=g) * 255).to(torch.uint8).numpy()
        Image.fromarray(pixels).save(images / f"{i}.png")
    out = tmp_path / "g.png"
    args = ["show", "--checkpoint", str(run), "--images", str(images), "--size", "32", "--out", str(out)]
    assert main(args) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert seen["classes"] == "predicted" and seen["x"].shape == (3, 3, 32, 32)
    config = json.loads((run / "config.json").read_text())
    pixels = seen["x"] * torch.tensor(config["std"]).view(1, 3, 1, 1) + torch.tensor(config["mean"]).view(1, 3, 1, 1)
    assert pixels.min() >= -1e-5 and pixels.max() <= 1 + 1e-5 and pixels.max() > 0.9  # the run's normalisation


def test_gallery_refuses_a_missing_checkpoint(tmp_path, capsys):
    from rsmix.cli import main

    assert main(["show", "--checkpoint", str(tmp_path / "nothing"), "--out", str(tmp_path / "g.png")]) == 2
    assert "no checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "g.png").exists()


# ------------------------------------------------------------------------------------------------
# Bad arguments: one line
# ------------------------------------------------------------------------------------------------


@pytest.mark.usefixtures("isolated_harness")
@pytest.mark.slow
@pytest.mark.parametrize(
    "flags, fragment",
    [
        (["--limit", "0"], "--limit must be >= 2"),
        (["--limit", "-1"], "--limit must be >= 2"),
        (["--size", "-5"], "--size must be from 8 to 2048"),
        (["--size", "0"], "--size must be from 8 to 2048"),
        (["--size", "1"], "--size must be from 8 to 2048"),
        (["--size", "100000"], "--size must be from 8 to 2048"),
    ],
)
def test_bad_show_arguments_are_one_line(flags: List[str], fragment: str, tmp_path: Path, capsys) -> None:
    assert cli.main(["show", *flags, "--out", str(tmp_path / "g.png")]) == 2
    assert fragment in one_error_line(capsys, "show")
    assert not (tmp_path / "g.png").exists()


@pytest.mark.usefixtures("isolated_harness")
@pytest.mark.slow
def test_show_with_an_unknown_figure_format_is_refused(tmp_path: Path, capsys) -> None:
    assert cli.main(["show", "--out", str(tmp_path / "x.bogus")]) == 2
    assert "expected a figure file ending in one of" in one_error_line(capsys, "show")
