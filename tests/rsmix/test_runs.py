"""A run folder's life (``runs.py``): a new run never overwrites an existing one, ``--overwrite``
and ``--resume`` exclude each other, ``--extend`` trains a finished run longer, a locked folder is
refused, a path that is a file is refused; and a run folder and a compare folder are never taken
for each other (issue 28). Real, tiny runs on the CPU."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict

import pytest
import torch

from conftest import ONE_EPOCH, harness_env, one_error_line, train_one_epoch
from rsmix import cli
from rsmix.runs import RunLock

pytestmark = pytest.mark.usefixtures("isolated_harness")


def mtimes(folder: Path) -> Dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in sorted(folder.iterdir())}


# ------------------------------------------------------------------------------------------
# Lost work: existing folders, locks, extension
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("state", ["finished", "partial"])
def test_a_new_run_never_overwrites_an_existing_one(tmp_path: Path, capsys, state: str) -> None:
    out = tmp_path / "run"
    assert train_one_epoch(out) == 0
    if state == "partial":
        (out / "metrics.json").unlink()
    before = mtimes(out)
    capsys.readouterr()
    assert train_one_epoch(out, "--method", "mixup") == 2
    line = one_error_line(capsys, "train")
    assert f"holds a {state} run" in line and "--resume" in line and "--overwrite" in line
    assert mtimes(out) == before


def test_overwrite_replaces_the_run(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert train_one_epoch(out) == 0
    assert train_one_epoch(out, "--method", "mixup", "--overwrite") == 0
    assert json.loads((out / "config.json").read_text())["method"] == "mixup"
    assert json.loads((out / "metrics.json").read_text())["method"] == "mixup"


def test_resume_and_overwrite_exclude_each_other(tmp_path: Path, capsys) -> None:
    assert train_one_epoch(tmp_path / "run", "--resume", "--overwrite") == 2
    assert "exclude" in one_error_line(capsys, "train")


def test_extend_trains_a_finished_run_for_longer(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    assert train_one_epoch(out) == 0
    capsys.readouterr()
    # More epochs without --extend is refused with a hint; --extend without --resume too.
    assert train_one_epoch(out, "--resume", "--epochs", "2") == 2
    assert "--extend" in one_error_line(capsys, "train")
    assert train_one_epoch(out, "--extend", "--epochs", "2") == 2
    assert "--resume" in one_error_line(capsys, "train")
    first = json.loads((out / "log.jsonl").read_text().splitlines()[0])
    assert train_one_epoch(out, "--resume", "--extend", "--epochs", "2") == 0
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [0, 1] and log[0] == first
    assert json.loads((out / "metrics.json").read_text())["epochs"] == 2
    assert torch.load(out / "checkpoint.pt", weights_only=False)["epoch"] == 2
    # Shrinking is not extending.
    capsys.readouterr()
    assert train_one_epoch(out, "--resume", "--extend", "--epochs", "1") == 2
    assert "already trained 2" in one_error_line(capsys, "train")


def test_a_locked_run_folder_is_refused(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    with RunLock(out):
        assert train_one_epoch(out, "--resume") == 2
        assert "in use" in one_error_line(capsys, "train")
    assert train_one_epoch(out, "--resume") == 0  # the lock went with its holder


def test_an_output_path_that_is_a_file_is_refused(tmp_path: Path, capsys) -> None:
    path = tmp_path / "file"
    path.write_text("keep me")
    assert train_one_epoch(path) == 2
    assert "is a file" in one_error_line(capsys, "train")
    assert cli.main(["compare", *ONE_EPOCH[:-3], "--methods", "none", "--out", str(path)]) == 2
    assert "is a file" in one_error_line(capsys, "compare")
    assert path.read_text() == "keep me"


# ------------------------------------------------------------------------------------------
# A run folder and a compare folder taken for each other (issue 28)
# ------------------------------------------------------------------------------------------

SMALL_DATA = "procedural:200:50"
SMALL = ["--data", SMALL_DATA, "--precision", "fp32", "--epochs", "1", "--batch-size", "32", "--threads", "1"]


@pytest.fixture(scope="module")
def run_and_study(tmp_path_factory: pytest.TempPathFactory):
    """One train run and one compare folder, made once (the tests only read them)."""

    root = tmp_path_factory.mktemp("kinds")
    run, study = root / "run", root / "study"
    with harness_env(root / "cache", OMP_NUM_THREADS="1"):
        assert cli.main(["train", *SMALL, "--no-progress", "--out", str(run)]) == 0
        assert cli.main(["compare", *SMALL, "--methods", "none", "--seeds", "0", "--out", str(study)]) == 0
    return run, study


def test_compare_into_a_train_run_folder_is_refused(run_and_study, capsys) -> None:
    run, _ = run_and_study
    capsys.readouterr()
    assert cli.main(["compare", *SMALL, "--methods", "none", "--seeds", "0", "--out", str(run)]) == 2
    assert "is one training run's folder" in one_error_line(capsys, "compare")


def test_train_into_a_compare_folder_is_refused(run_and_study, capsys) -> None:
    _, study = run_and_study
    capsys.readouterr()
    assert cli.main(["train", *SMALL, "--no-progress", "--out", str(study)]) == 2
    assert "is an rsmix compare folder" in one_error_line(capsys, "train")
    assert not (study / "config.json").exists()


def test_eval_of_a_compare_folder_names_one_of_its_runs(run_and_study, capsys) -> None:
    _, study = run_and_study
    capsys.readouterr()
    assert cli.main(["eval", "--checkpoint", str(study), "--data", SMALL_DATA]) == 2
    assert f"pass one of its runs, e.g. {study}/runs/none_s0" in one_error_line(capsys, "eval")


def test_eval_negative_robustness_images_is_refused(run_and_study, capsys) -> None:
    run, _ = run_and_study
    capsys.readouterr()
    assert (
        cli.main(["eval", "--checkpoint", str(run), "--data", SMALL_DATA, "--robustness", "--robustness-images", "-1"])
        == 2
    )
    assert "--robustness-images must be >= 0" in one_error_line(capsys, "eval")
