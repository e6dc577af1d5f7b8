"""A run's checkpoint and ``--resume`` (``checkpoint.py``): a run killed by SIGKILL or crashed between
its log line and its checkpoint continues to the result of an uninterrupted run, bit for bit; a
damaged checkpoint is one line and overwrites nothing; a run without config.json resumes from its
checkpoint, and one whose checkpoint is gone is refused (issue 18). Real, tiny runs on the CPU."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict

import pytest
import torch

from conftest import TINY, assert_same_run, crash_at_checkpoint, harness_env, load_state, one_error_line, read_log
from rsmix import cli

pytestmark = pytest.mark.usefixtures("isolated_harness")


# ------------------------------------------------------------------------------------------
# A killed or crashed run continues to the result of an uninterrupted one
# ------------------------------------------------------------------------------------------

RUN_FILES = ["checkpoint.pt", "config.json", "log.jsonl", "metrics.json"]
FINISHED = sorted([*RUN_FILES, "predictions_val.txt"])  # a finished run without --test


RESUME = [*TINY, "--method", "randsaliencymix", "--epochs", "3", "--seed", "1"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("uninterrupted") / "run"
    with harness_env(out.parent / "cache"):
        assert cli.main(["train", *RESUME, "--out", str(out)]) == 0
    return out


def test_resume_after_sigkill_matches_uninterrupted_run(tmp_path: Path, uninterrupted: Path) -> None:
    out = tmp_path / "killed"
    checkpoint = out / "checkpoint.pt"
    proc = subprocess.Popen(
        [sys.executable, "-m", "rsmix", "train", *RESUME, "--out", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=os.environ.copy(),
    )
    try:
        deadline = time.monotonic() + 180
        while not checkpoint.exists():  # written after the first epoch, by a rename
            if proc.poll() is not None:
                pytest.fail(
                    f"training exited ({proc.returncode}) before its first checkpoint: "
                    f"{proc.stderr.read().decode()[-2000:]}"
                )
            if time.monotonic() > deadline:
                pytest.fail("no checkpoint within 180 s")
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL

    # A complete checkpoint of an unfinished run. A kill during the next atomic write may leave its
    # temporary file (never a partial checkpoint.pt); resuming removes it (checked below).
    names = sorted(p.name for p in out.iterdir() if not p.name.startswith(".checkpoint.pt."))
    assert names == ["checkpoint.pt", "config.json", "log.jsonl"]
    state = load_state(out)
    assert state["epoch"] in (1, 2)
    assert len(read_log(out)) >= state["epoch"]

    assert cli.main(["train", *RESUME, "--out", str(out), "--resume"]) == 0
    assert sorted(p.name for p in out.iterdir()) == FINISHED
    assert_same_run(uninterrupted, out)


def test_resume_after_crash_between_log_line_and_checkpoint(
    tmp_path: Path, uninterrupted: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Deterministic twin of the kill test: the run dies after logging its second epoch but before
    that epoch's checkpoint, a kill cut a third log line short and left an atomic write's temp file."""
    out = tmp_path / "crashed"
    with crash_at_checkpoint(monkeypatch, epoch=2):
        cli.main(["train", *RESUME, "--out", str(out)])

    assert load_state(out)["epoch"] == 1
    assert [r["epoch"] for r in read_log(out)] == [0, 1]  # one line past the checkpoint
    with open(out / "log.jsonl", "a") as fh:
        fh.write('{"epoch": 2, "train_lo')
    (out / ".checkpoint.pt.k1ll3d").write_bytes(b"half a checkpoint")

    assert cli.main(["train", *RESUME, "--out", str(out), "--resume"]) == 0
    assert sorted(p.name for p in out.iterdir()) == FINISHED
    assert_same_run(uninterrupted, out)

    # Resuming a finished run trains nothing and gives the same numbers again.
    before = load_state(out)["model"]
    assert cli.main(["train", *RESUME, "--out", str(out), "--resume"]) == 0
    assert all(torch.equal(v, load_state(out)["model"][k]) for k, v in before.items())
    assert_same_run(uninterrupted, out)


# ------------------------------------------------------------------------------------------
# A damaged or missing checkpoint, a missing config.json: one line, nothing overwritten
# ------------------------------------------------------------------------------------------


def files_of(folder: Path) -> Dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


def _damage(state: Dict[str, Any], how: str) -> None:
    if how == "no optimizer":
        del state["optimizer"]
    elif how == "weights of other shapes":
        key = next(k for k, v in state["model"].items() if v.ndim == 4)
        state["model"][key] = torch.zeros(3, 3, 1, 1)
    elif how == "non-integer epoch":
        state["epoch"] = 1.5
    elif how == "config not a mapping":
        state["config"] = ["epochs", 2]
    elif how == "bad generator state":
        state["mix_gen"] = torch.zeros(7, dtype=torch.uint8)
    elif how == "generator state not a tensor":
        state["data_gen"] = "seed 0"
    elif how == "optimizer of another model":
        state["optimizer"]["param_groups"] = state["optimizer"]["param_groups"][:1]


@pytest.mark.parametrize(
    "how, fragment",
    [
        ("no optimizer", "no 'optimizer'"),
        ("weights of other shapes", "its model does not fit"),
        ("non-integer epoch", "'epoch' must be a whole number"),
        ("config not a mapping", "'config' is list"),
        ("bad generator state", "its mix_gen does not fit"),
        ("generator state not a tensor", "'data_gen' is not a generator state"),
        ("optimizer of another model", "its optimizer does not fit"),
    ],
)
def test_resume_from_a_damaged_checkpoint_is_one_line(
    how: str, fragment: str, finished_run: Path, tmp_path: Path, capsys
) -> None:
    run = tmp_path / "run"
    run.mkdir()
    for name, data in files_of(finished_run).items():
        (run / name).write_bytes(data)
    (run / "metrics.json").unlink()  # unfinished: --resume would train
    state = load_state(run)
    _damage(state, how)
    torch.save(state, run / "checkpoint.pt")
    before = files_of(run)
    capsys.readouterr()
    assert cli.main(["train", *TINY, "--method", "cutmix", "--epochs", "2", "--out", str(run), "--resume"]) == 2
    line = one_error_line(capsys, "train")
    assert str(run / "checkpoint.pt") in line and fragment in line, line
    assert files_of(run) == before


def test_resume_without_config_json_continues_from_the_checkpoint(finished_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    for name, data in files_of(finished_run).items():
        (run / name).write_bytes(data)
    (run / "config.json").unlink()
    assert cli.main(["train", *TINY, "--method", "cutmix", "--epochs", "2", "--out", str(run), "--resume"]) == 0
    assert json.loads((run / "config.json").read_text())["method"] == "cutmix"  # written again
    (run / "config.json").write_text("{ not json")
    assert cli.main(["train", *TINY, "--method", "cutmix", "--epochs", "2", "--out", str(run), "--resume"]) == 0
    assert json.loads((run / "config.json").read_text())["epochs"] == 2


def test_resume_of_a_run_whose_checkpoint_is_gone_is_refused(finished_run: Path, tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    run.mkdir()
    for name, data in files_of(finished_run).items():
        if name != "checkpoint.pt":
            (run / name).write_bytes(data)
    before = files_of(run)
    capsys.readouterr()
    assert cli.main(["train", *TINY, "--method", "cutmix", "--epochs", "2", "--out", str(run), "--resume"]) == 2
    assert "no checkpoint.pt to resume from" in one_error_line(capsys, "train")
    assert files_of(run) == before  # the finished run's numbers are kept
