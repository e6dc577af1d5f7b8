"""The fixed corruptions of ``rsmix eval --robustness``: invariants of each, determinism, error
paths, and the train/eval integration on a tiny procedural run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rsmix import cli
from rsmix.robustness import (
    CORRUPTIONS,
    contrast,
    corrupt,
    corrupted_sets,
    gaussian_blur,
    gaussian_noise,
    jpeg,
    occlude,
)
from rsmix.train import TrainConfig, UsageError


def images(n: int = 6, c: int = 3, h: int = 32, w: int = 32, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, c, h, w), generator=g, dtype=torch.uint8)


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_every_corruption_keeps_shape_and_dtype_and_leaves_the_input_alone(name: str) -> None:
    x = images()
    before = x.clone()
    out = corrupt(x, name, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == torch.uint8
    assert torch.equal(x, before)
    assert not torch.equal(out, x)


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_corruptions_replay_from_the_seed(name: str) -> None:
    x = images()
    a = corrupt(x, name, torch.Generator().manual_seed(3))
    b = corrupt(x, name, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


@settings(max_examples=25, deadline=None)
@given(side=st.integers(1, 12), h=st.integers(12, 24), w=st.integers(12, 24), seed=st.integers(0, 2**31))
def test_occlusion_replaces_exactly_one_square_inside_the_image(side: int, h: int, w: int, seed: int) -> None:
    x = images(4, 3, h, w, seed) // 2  # values < 128, so every occluded pixel changes
    out = occlude(x, side, torch.Generator().manual_seed(seed), fill=200)
    changed = (out != x).any(dim=1)
    assert torch.all(changed.sum(dim=(1, 2)) == side * side)
    for mask in changed:  # the changed pixels form one side x side square
        rows = mask.any(dim=1).nonzero().flatten()
        cols = mask.any(dim=0).nonzero().flatten()
        assert rows.numel() == side and cols.numel() == side
        assert int(rows[-1] - rows[0]) == side - 1 and int(cols[-1] - cols[0]) == side - 1
    assert torch.all(out[changed[:, None].expand_as(out)] == 200)


def test_identity_settings_are_the_identity() -> None:
    x = images()
    assert torch.equal(contrast(x, 1.0), x)
    assert torch.equal(gaussian_noise(x, 0.0, torch.Generator().manual_seed(0)), x)


def test_zero_contrast_flattens_each_image_to_its_mean() -> None:
    x = images()
    out = contrast(x, 0.0)
    assert torch.all(out.amax(dim=(1, 2, 3)) == out.amin(dim=(1, 2, 3)))
    assert torch.allclose(out[:, 0, 0, 0].float(), x.float().mean(dim=(1, 2, 3)).round(), atol=1)


def test_blur_keeps_a_constant_image_and_smooths_noise() -> None:
    flat = torch.full((2, 3, 16, 16), 77, dtype=torch.uint8)
    assert torch.equal(gaussian_blur(flat, 1.0), flat)
    x = images()
    assert gaussian_blur(x, 1.0).float().std() < 0.5 * x.float().std()


def test_blur_matches_a_reflect_padded_convolution() -> None:
    import torch.nn.functional as F

    x = images(3, 3, 20, 27)
    radius = 3
    taps = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-0.5 * taps**2)
    kernel = kernel / kernel.sum()
    y = x.float().reshape(-1, 1, 20, 27)
    y = F.conv2d(F.pad(y, (radius, radius, 0, 0), mode="reflect"), kernel.view(1, 1, 1, -1))
    y = F.conv2d(F.pad(y, (0, 0, radius, radius), mode="reflect"), kernel.view(1, 1, -1, 1))
    expected = y.reshape(x.shape).round().clamp(0, 255)
    assert (gaussian_blur(x, 1.0).float() - expected).abs().max() <= 1  # float summation order


def test_noise_has_the_stated_standard_deviation_away_from_the_clip() -> None:
    x = torch.full((8, 3, 32, 32), 128, dtype=torch.uint8)
    out = gaussian_noise(x, 0.08, torch.Generator().manual_seed(0))
    assert abs(float((out.float() - 128).std()) - 0.08 * 255) < 0.5


def test_jpeg_round_trip_is_close_at_high_quality_and_handles_grey() -> None:
    pytest.importorskip("PIL")
    smooth = gaussian_blur(images(), 2.0)
    assert (jpeg(smooth, 95).float() - smooth.float()).abs().mean() < 3
    grey = smooth[:, :1]
    assert jpeg(grey, 40).shape == grey.shape


def test_corrupted_sets_do_not_depend_on_which_corruptions_were_asked_for() -> None:
    x = images()
    every = corrupted_sets(x, seed=5)
    assert set(every) == set(CORRUPTIONS)
    one = corrupted_sets(x, ["gaussian_noise"], seed=5)
    assert torch.equal(one["gaussian_noise"], every["gaussian_noise"])


def test_float_images_are_rejected() -> None:
    with pytest.raises(TypeError, match=r"Expected uint8 images, but got torch.float32 instead."):
        corrupt(images().float(), "contrast")


def test_unknown_corruption_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"Expected a corruption in .*, but got 'fog' instead."):
        corrupt(images(), "fog")
    with pytest.raises(ValueError, match=r"but got 'fog' instead."):
        corrupted_sets(images(), ["fog"])


def test_occluder_larger_than_the_image_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"Expected an occluder side in \[1, 32\], but got 33 instead."):
        occlude(images(), 33)


def test_robustness_without_test_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="robustness needs test"):
        TrainConfig(robustness=True).check()


TINY_DATA = "procedural:200:60"


def train_and_eval(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, *extra: str):
    """A one-epoch run with --test --robustness, then rsmix eval --robustness of its checkpoint
    with the same extra flags: (train's metrics.json, eval's printed metrics)."""
    monkeypatch.setenv("RSMIX_CACHE", str(tmp_path / "cache"))
    run = tmp_path / "run"
    assert (
        cli.main(
            [
                "train",
                "--data",
                TINY_DATA,
                "--epochs",
                "1",
                "--batch-size",
                "32",
                "--threads",
                "1",
                "--test",
                "--robustness",
                *extra,
                "--out",
                str(run),
                "--no-progress",
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert cli.main(["eval", "--checkpoint", str(run), "--data", TINY_DATA, "--robustness", *extra]) == 0
    return json.loads((run / "metrics.json").read_text()), json.loads(capsys.readouterr().out)


@pytest.mark.slow
def test_train_and_eval_report_the_same_corrupted_scores(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    metrics, evaluated = train_and_eval(tmp_path, monkeypatch, capsys)
    for name in list(CORRUPTIONS) + ["corruption_mean"]:
        assert 0 <= metrics[f"test_{name}_top1_err"] <= 100
    for name in CORRUPTIONS:
        assert evaluated[f"{name}_top1_err"] == pytest.approx(metrics[f"test_{name}_top1_err"], abs=1e-3)
        assert evaluated[f"{name}_ece"] == pytest.approx(metrics[f"test_{name}_ece"], abs=1e-3)


@pytest.mark.slow
def test_robustness_images_limits_the_scored_images(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    metrics, evaluated = train_and_eval(tmp_path, monkeypatch, capsys, "--robustness-images", "7")
    # On 7 images every error is a multiple of 100/7.
    for name in CORRUPTIONS:
        share = metrics[f"test_{name}_top1_err"] * 7 / 100
        assert share == pytest.approx(round(share))
    assert evaluated["jpeg_top1_err"] == pytest.approx(metrics["test_jpeg_top1_err"], abs=1e-3)
