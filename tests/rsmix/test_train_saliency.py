"""A run's saliency sources and self-CAM labels (``train.py`` with ``--saliency`` and ``--self-cam``):
a detector's maps of the clean batch, cached maps of the training split (issue 9), the model's own
CAM with the confusion pairing resumed exactly, and self-CAM labels read from the training forward.
Real, tiny training runs on the CPU."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

import rsmix.train as train_mod
from conftest import TINY, crash_at_checkpoint, one_error_line, read_log, train_one_epoch
from rsmix import cli

pytestmark = pytest.mark.usefixtures("isolated_harness")


def test_saliency_source_from_the_run_equals_the_operators_own_detector(tmp_path: Path) -> None:
    """--saliency spectral gives every saliency operator the spectral maps of the clean batch: the
    same run as the operator computing them itself with detector=spectral."""
    common = ["--method", "saliencymix_per_sample", "--epochs", "2"]
    assert train_one_epoch(tmp_path / "own", *common, "--mix-opt", "detector=spectral") == 0
    assert train_one_epoch(tmp_path / "run", *common, "--saliency", "spectral") == 0
    a = torch.load(tmp_path / "own" / "checkpoint.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert 0 < metrics["saliency_share"] < 1


def test_cam_source_and_confusion_pairing_resume_exactly(tmp_path: Path, monkeypatch) -> None:
    flags = ["--method", "randsaliencymix", "--epochs", "3", "--saliency", "cam", "--mix-opt", "tau_src=1",
             "--mix-opt", "pairing=confusion"]  # fmt: skip
    assert train_one_epoch(tmp_path / "whole", *flags) == 0
    with crash_at_checkpoint(monkeypatch, epoch=2, exc=KeyboardInterrupt):
        train_one_epoch(tmp_path / "cut", *flags)
    assert train_one_epoch(tmp_path / "cut", *flags, "--resume") == 0
    a = torch.load(tmp_path / "whole" / "checkpoint.pt", weights_only=False)
    b = torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=False)
    assert torch.equal(a["mixer"]["confusion"], b["mixer"]["confusion"])
    assert not torch.allclose(a["mixer"]["confusion"], torch.full_like(a["mixer"]["confusion"], 0.1))
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])


def test_cam_source_needs_a_pooling_linear_head_and_official_saliencymix_refuses_a_source(tmp_path, capsys):
    assert train_one_epoch(tmp_path / "run", "--method", "saliencymix", "--saliency", "cam") == 2
    assert "saliencymix_per_sample" in one_error_line(capsys, "train")
    assert train_one_epoch(tmp_path / "run", "--saliency", "bogus") == 2
    assert "'bogus'" in one_error_line(capsys, "train")


# ------------------------------------------------------------------------------------------
# Cached maps of the training split
# ------------------------------------------------------------------------------------------

TWO_EPOCHS = ["--data", "procedural:300:100", "--batch-size", "32", "--threads", "1", "--no-progress", "--epochs", "2"]


def test_cached_maps_without_augmentation_train_as_the_detector_on_each_batch(tmp_path: Path) -> None:
    """Without crop and flip, the cached fine-grained maps are the maps of each clean batch exactly
    (they are multiples of 1/255), so the run equals --saliency fine_grained bit for bit."""
    config = tmp_path / "plain.yaml"
    config.write_text("crop_padding: 0\nflip: false\n")
    common = [*TWO_EPOCHS, "--config", str(config), "--method", "randsaliencymix", "--mix-opt", "tau_src=1"]
    assert cli.main(["train", *common, "--saliency", "fine_grained", "--out", str(tmp_path / "batch")]) == 0
    assert cli.main(["train", *common, "--saliency", "fine_grained_cached", "--out", str(tmp_path / "cached")]) == 0
    a = torch.load(tmp_path / "batch" / "checkpoint.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "cached" / "checkpoint.pt", weights_only=False)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert list((tmp_path / "cache").glob("maps-fine_grained-*.npz"))
    assert json.loads((tmp_path / "cached" / "config.json").read_text())["saliency"] == "fine_grained_cached"


def test_cached_maps_with_augmentation_reach_the_operator(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:

    received = []
    real = train_mod.build_mixer

    def recording(*args, **kwargs):
        mixer = real(*args, **kwargs)
        forward = mixer.forward

        def spy(x, y, **kw):
            received.append(kw.get("saliency"))
            return forward(x, y, **kw)

        mixer.forward = spy
        return mixer

    monkeypatch.setattr(train_mod, "build_mixer", recording)
    flags = [*TWO_EPOCHS, "--method", "saliencymix_per_sample", "--saliency", "spectral_cached"]
    assert cli.main(["train", *flags, "--out", str(tmp_path / "run")]) == 0
    assert received and all(s is not None and s.shape == (32, 32, 32) for s in received)


def test_official_saliencymix_refuses_cached_maps(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    flags = [*TWO_EPOCHS, "--method", "saliencymix", "--saliency", "fine_grained_cached"]
    assert cli.main(["train", *flags, "--out", str(tmp_path / "run")]) == 2
    assert "saliencymix_per_sample" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------
# Self-CAM labels
# ------------------------------------------------------------------------------------------


def run_train(out: Path, *extra: str) -> int:
    return cli.main(["train", *TINY, "--out", str(out), *extra])


@pytest.mark.parametrize(
    "method, saliency", [("cutmix", "operator"), ("randsaliencymix", "cam"), ("guidedmixup", "fine_grained_cached")]
)
def test_self_cam_labels_in_training(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, method: str, saliency: str
) -> None:
    """--self-cam KAPPA: recorded in config and metrics, the labels read from the training forward
    (every step's targets come from a SelfCAMLabels step of the run's model), resumable; with any
    saliency source."""
    from randsaliencymix import selfcam

    steps = []
    real = selfcam.SelfCAMLabels.step

    def spy(self, *args: Any, **kwargs: Any):
        steps.append(self.kappa)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(selfcam.SelfCAMLabels, "step", spy)
    out = tmp_path / "run"
    flags = (
        "--method",
        method,
        "--saliency",
        saliency,
        "--self-cam",
        "0.5",
        "--model",
        "fast_resnet",
        "--image-size",
        "64",
    )
    assert run_train(out, *flags, "--epochs", "1") == 0
    assert json.loads((out / "config.json").read_text())["self_cam"] == 0.5
    assert json.loads((out / "metrics.json").read_text())["self_cam"] == 0.5
    assert steps and set(steps) == {0.5}
    # resumable with its own settings, refused with another kappa
    assert run_train(out, *flags, "--epochs", "2", "--resume", "--extend") == 0
    assert read_log(out)[-1]["epoch"] == 1
    assert run_train(out, "--method", method, "--saliency", saliency, "--self-cam", "0.2", "--model", "fast_resnet",
                     "--image-size", "64", "--epochs", "2", "--resume") == 2  # fmt: skip


@pytest.mark.parametrize("kappa", ["-0.1", "1.5"])
def test_self_cam_out_of_range_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture, kappa: str) -> None:
    assert run_train(tmp_path / "run", "--method", "cutmix", "--self-cam", kappa, "--epochs", "1") == 2
    assert "self_cam (kappa) must be in [0, 1]" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_self_cam_with_no_mixing_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert run_train(tmp_path / "run", "--method", "none", "--self-cam", "0.5", "--epochs", "1") == 2
    assert "--self-cam rewrites the labels of mixed samples, and method 'none' mixes none" in capsys.readouterr().err
