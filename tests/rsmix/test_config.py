"""A run's configuration (``config.py``, ``yamlio.py``): numbers read as a user writes them in a YAML
``--config``, ``--mix-opt`` and compare's variant options (``1e-3`` a float, ``0x10`` a string:
issues 18 and 28), and the values a run cannot use refused in one line before anything is written."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List

import pytest

from conftest import TINY, one_error_line, train_one_epoch
from rsmix import cli, yamlio
from rsmix.compare import parse_method
from rsmix.yamlio import load as yaml_load

pytestmark = pytest.mark.usefixtures("isolated_harness")


# ------------------------------------------------------------------------------------------
# Numbers as a user writes them (issue 18)
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, value", [("1e-3", 1e-3), ("1E3", 1000.0), (".5", 0.5), ("5.", 5.0), ("-2.5e+4", -2.5e4)]
)
def test_numbers_parse_as_a_user_writes_them(text: str, value: float) -> None:
    assert yaml_load(text) == value and isinstance(yaml_load(text), float)
    assert yaml_load(f"alpha: {text}") == {"alpha": value}
    assert parse_method(f"m=mixup:alpha={text}")[2]["alpha"] == value if value > 0 else True


def test_other_scalars_are_yaml_as_before() -> None:
    assert yaml_load("1") == 1 and yaml_load("true") is True and yaml_load("abc") == "abc"
    assert yaml_load("[1e-3, .5]") == [1e-3, 0.5] and yaml_load("") is None


def test_mix_opt_and_config_accept_1e_3(tmp_path: Path) -> None:
    flags = [*TINY, "--method", "mixup", "--epochs", "1"]
    assert cli.main(["train", *flags, "--mix-opt", "alpha=1e-3", "--out", str(tmp_path / "a")]) == 0
    assert json.loads((tmp_path / "a" / "config.json").read_text())["mix"] == {"alpha": 0.001}
    config = tmp_path / "c.yaml"
    config.write_text("lr: 2E-1\nmix:\n  alpha: 1e-3\n")
    assert cli.main(["train", *flags, "--config", str(config), "--out", str(tmp_path / "b")]) == 0
    saved = json.loads((tmp_path / "b" / "config.json").read_text())
    assert saved["lr"] == 0.2 and saved["mix"] == {"alpha": 0.001}


# ------------------------------------------------------------------------------------------
# Numbers nobody meant: YAML 1.1's hex, octal, binary, underscores and sexagesimal (issue 28)
# ------------------------------------------------------------------------------------------

SMALL_DATA = "procedural:200:50"
SMALL = ["--data", SMALL_DATA, "--precision", "fp32", "--epochs", "1", "--batch-size", "32", "--threads", "1"]


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
    assert cli.main(["train", *SMALL, "--method", "mixup", "--mix-opt", "alpha=0x10", "--out", str(out)]) == 2
    assert "alpha" in one_error_line(capsys, "train")
    assert not out.exists()


# ------------------------------------------------------------------------------------------
# Values a run cannot use
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "flags, fragment",
    [
        (["--lr", "nan"], "lr"),
        (["--lr", "inf"], "lr"),
        (["--lr", "0"], "lr"),
        (["--weight-decay", "nan"], "weight_decay"),
        (["--label-smoothing", "1.5"], "label_smoothing"),
        (["--warmup-epochs", "-1"], "warmup_epochs"),
        (["--crop-padding", "-1"], "crop_padding"),
        (["--std", "0,1,1", "--mean", "0,0,0"], "std"),
        (["--mean", "0,0,0"], "mean and std"),
    ],
)
def test_bad_numbers_are_usage_errors_and_write_nothing(tmp_path: Path, capsys, flags: List[str], fragment: str):
    assert train_one_epoch(tmp_path / "run", *flags) == 2
    assert fragment in one_error_line(capsys, "train")
    assert not (tmp_path / "run").exists()


def test_crop_padding_as_large_as_the_image_is_refused(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    assert cli.main(["train", *SMALL, "--no-progress", "--crop-padding", "100", "--out", str(out)]) == 2
    assert "--crop-padding 100 is not smaller than the 32-px images" in one_error_line(capsys, "train")
    assert cli.main(["train", *SMALL, "--no-progress", "--crop-padding", "31", "--out", str(out)]) == 0
