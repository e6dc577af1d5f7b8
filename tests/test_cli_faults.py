"""Issue 28's faults in the harness's command line, each a test that failed before its fix: numbers
YAML 1.1 reads that nobody meant, compare's variant options split at commas, a run folder and a
compare folder taken for each other, values a run cannot use, and a figure format matplotlib lacks."""

from __future__ import annotations

from pathlib import Path

import pytest

import rsmix.data.args as args_mod
import rsmix.train as train_mod
from rsmix import cli, yamlio
from rsmix.compare import parse_method, split_methods

DATA = "procedural:200:50"
TINY = ["--data", DATA, "--precision", "fp32", "--epochs", "1", "--batch-size", "32", "--threads", "1"]

pytestmark = pytest.mark.usefixtures("isolated_harness")


def error_line(capsys: pytest.CaptureFixture, command: str) -> str:
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith(f"rsmix {command}: error: "), err
    return err[0]


@pytest.mark.parametrize("text", ["0x10", "1_000", "0b11", "0o17", "1:30", "1_0.5"])
def test_yaml_1_1_numbers_stay_strings(text: str) -> None:
    assert yamlio.load(text) == text


@pytest.mark.parametrize(
    "text, value", [("12", 12), ("-3", -3), ("+5", 5), ("1e3", 1000.0), (".5", 0.5), ("5e-1", 0.5), ("2.", 2.0)]
)
def test_decimal_numbers_still_load(text: str, value) -> None:
    assert yamlio.load(text) == value and type(yamlio.load(text)) is type(value)


def test_mix_opt_hex_is_refused_not_read_as_16(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    assert cli.main(["train", *TINY, "--method", "mixup", "--mix-opt", "alpha=0x10", "--out", str(out)]) == 2
    assert "alpha" in error_line(capsys, "train")
    assert not out.exists()


def test_variant_options_with_exponents_stay_in_their_variant() -> None:
    specs = split_methods("rsm=randsaliencymix:gamma=5e-1,tau_src=1,cutmix,cm=cutmix:alpha=0.5,p=1,mixup")
    assert specs == ["rsm=randsaliencymix:gamma=5e-1,tau_src=1", "cutmix", "cm=cutmix:alpha=0.5,p=1", "mixup"]
    assert parse_method(specs[0]) == ("rsm", "randsaliencymix", {"gamma": 0.5, "tau_src": 1})
    assert split_methods("a=cutmix,b=mixup") == ["a=cutmix", "b=mixup"]  # variants without options
    assert split_methods("a=cutmix:alpha=1;b=mixup:alpha=0.2") == ["a=cutmix:alpha=1", "b=mixup:alpha=0.2"]


@pytest.fixture(scope="module")
def run_and_study(tmp_path_factory: pytest.TempPathFactory):
    """One train run and one compare folder, made once (the tests only read them)."""
    import torch

    root = tmp_path_factory.mktemp("kinds")
    run, study = root / "run", root / "study"
    threads = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OMP_NUM_THREADS", "1")
        mp.setenv("RSMIX_CACHE", str(root / "cache"))
        mp.delenv("WORLD_SIZE", raising=False)
        assert cli.main(["train", *TINY, "--no-progress", "--out", str(run)]) == 0
        assert cli.main(["compare", *TINY, "--methods", "none", "--seeds", "0", "--out", str(study)]) == 0
    torch.set_num_threads(threads)
    return run, study


def test_compare_into_a_train_run_folder_is_refused(run_and_study, capsys) -> None:
    run, _ = run_and_study
    capsys.readouterr()
    assert cli.main(["compare", *TINY, "--methods", "none", "--seeds", "0", "--out", str(run)]) == 2
    assert "is one training run's folder" in error_line(capsys, "compare")


def test_train_into_a_compare_folder_is_refused(run_and_study, capsys) -> None:
    _, study = run_and_study
    capsys.readouterr()
    assert cli.main(["train", *TINY, "--no-progress", "--out", str(study)]) == 2
    assert "is an rsmix compare folder" in error_line(capsys, "train")
    assert not (study / "config.json").exists()


def test_eval_of_a_compare_folder_names_one_of_its_runs(run_and_study, capsys) -> None:
    _, study = run_and_study
    capsys.readouterr()
    assert cli.main(["eval", "--checkpoint", str(study), "--data", DATA]) == 2
    assert f"pass one of its runs, e.g. {study}/runs/none_s0" in error_line(capsys, "eval")


def test_eval_negative_robustness_images_is_refused(run_and_study, capsys) -> None:
    run, _ = run_and_study
    capsys.readouterr()
    assert (
        cli.main(["eval", "--checkpoint", str(run), "--data", DATA, "--robustness", "--robustness-images", "-1"]) == 2
    )
    assert "--robustness-images must be >= 0" in error_line(capsys, "eval")


def test_crop_padding_as_large_as_the_image_is_refused(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    assert cli.main(["train", *TINY, "--no-progress", "--crop-padding", "100", "--out", str(out)]) == 2
    assert "--crop-padding 100 is not smaller than the 32-px images" in error_line(capsys, "train")
    assert cli.main(["train", *TINY, "--no-progress", "--crop-padding", "31", "--out", str(out)]) == 0


def test_an_image_size_the_memory_cannot_hold_is_refused_before_decoding(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(args_mod, "available_memory", lambda: 2**30)  # 1 GiB free
    decoded = []
    monkeypatch.setattr(
        train_mod, "load_splits", lambda cfg: decoded.append(cfg) or (_ for _ in ()).throw(AssertionError)
    )
    out = tmp_path / "run"
    flags = ["--model", "fast_resnet", "--image-size", "512", "--batch-size", "256"]
    assert cli.main(["train", *TINY, "--no-progress", *flags, "--out", str(out)]) == 2
    line = error_line(capsys, "train")
    assert "a batch of 256 images at 512x512 and its mixed copy need 1.5 GiB" in line and "px fits" in line
    assert decoded == []


def test_show_with_an_unknown_figure_format_is_refused(tmp_path: Path, capsys) -> None:
    assert cli.main(["show", "--out", str(tmp_path / "x.bogus")]) == 2
    assert "expected a figure file ending in one of" in error_line(capsys, "show")
