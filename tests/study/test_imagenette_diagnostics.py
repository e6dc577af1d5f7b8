"""Study 2's diagnostics scripts (study/study2/imagenette/occlusion.py and mechanism.py) against the
faults of issue 28: occlusion.py's stale "scored already" skip and its bad RUN arguments, and
mechanism.py below one batch of images."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import load_script

TINY = "procedural:300:60"


def _load(name: str):
    return load_script(f"study/study2/imagenette/{name}.py", f"study2_{name}")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-epoch fast_cnn run on procedural data (a few seconds): a checkpoint to score."""
    base = tmp_path_factory.mktemp("tiny")
    out = base / "none_s0"
    env = {**os.environ, "RSMIX_CACHE": str(base / "cache"), "OMP_NUM_THREADS": "1"}
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "RSMIX_PARENT_PID"):
        env.pop(name, None)
    subprocess.run(
        [sys.executable, "-m", "rsmix", "train", "--data", TINY, "--model", "fast_cnn", "--epochs", "1",
         "--batch-size", "32", "--threads", "1", "--no-progress", "--precision", "fp32", "--out", str(out)],
        check=True, env=env, capture_output=True, timeout=300,
    )  # fmt: skip
    return out


# --- occlusion.py --------------------------------------------------------------------------------


@pytest.fixture()
def occlusion(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isolated_harness: None):
    """occlusion.py writing its CSVs into a temporary folder."""
    module = _load("occlusion")
    monkeypatch.setattr(module, "CSV_DIR", tmp_path / "occlusion")
    return module


def _tick() -> None:
    """Past the file clock's tick (a few ms): a file written in the tick a scoring began counts as newer."""
    time.sleep(0.05)


def _copy_run(tiny_run: Path, where: Path, name: str = "none_s0") -> Path:
    run = where / "runs" / name
    shutil.copytree(tiny_run, run)
    _tick()
    return run


def _score(module, *runs: Path) -> int:
    return module.main([*map(str, runs), "--data", TINY, "--split", "test", "--sides", "8"])


def _rewrite(path: Path) -> None:
    """The file written again with the same bytes (as an epoch rewrites the checkpoint)."""
    path.write_bytes(path.read_bytes())
    _tick()


def test_occlusion_scores_again_when_the_checkpoint_is_newer_than_its_scores(
    occlusion, tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    run = _copy_run(tiny_run, tmp_path)
    assert _score(occlusion, run) == 0
    target = occlusion.CSV_DIR / "none_s0.csv"
    scored = target.read_text()
    assert scored.startswith(",".join(occlusion.FIELDS) + "\nnone_s0,0,clean,0,none,")
    assert _score(occlusion, run) == 0
    assert "scored already" in capsys.readouterr().out  # current scores are kept
    _rewrite(run / "checkpoint.pt")  # the run trained on (or resumed) after it was scored
    assert _score(occlusion, run) == 0
    assert "scoring again: its checkpoint is newer than its scores" in capsys.readouterr().out
    assert _score(occlusion, run) == 0
    assert "scored already" in capsys.readouterr().out


def test_occlusion_scores_again_a_run_that_finished_after_it_was_scored(
    occlusion, tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    run = _copy_run(tiny_run, tmp_path)
    metrics = (run / "metrics.json").read_bytes()
    (run / "metrics.json").unlink()  # in flight
    _tick()
    assert _score(occlusion, run) == 0
    assert "not finished" in capsys.readouterr().out
    (run / "metrics.json").write_bytes(metrics)  # it finishes
    _tick()
    assert _score(occlusion, run) == 0
    assert "scoring again: the run has finished since it was scored" in capsys.readouterr().out


def test_occlusion_scores_again_a_checkpoint_written_while_it_scored(
    occlusion, tiny_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    run = _copy_run(tiny_run, tmp_path)
    score = occlusion.score

    def score_while_training(*args, **kwargs):
        rows = score(*args, **kwargs)
        _rewrite(run / "checkpoint.pt")  # the next epoch's checkpoint, after this one was read
        return rows

    monkeypatch.setattr(occlusion, "score", score_while_training)
    assert _score(occlusion, run) == 0
    monkeypatch.setattr(occlusion, "score", score)
    assert _score(occlusion, run) == 0
    assert "scoring again: its checkpoint is newer than its scores" in capsys.readouterr().out


def test_occlusion_takes_a_checkpoint_path_as_its_run_folder(occlusion, tiny_run: Path, tmp_path: Path) -> None:
    run = _copy_run(tiny_run, tmp_path)
    assert _score(occlusion, run / "checkpoint.pt") == 0
    rows = (occlusion.CSV_DIR / "none_s0.csv").read_text().splitlines()
    assert rows[1].startswith("none_s0,0,clean,0,none,") and not (occlusion.CSV_DIR / "checkpoint.csv").exists()


@pytest.mark.parametrize("bad", ["none", "none_sx", "none_s0_copy", "none_s01"])
def test_occlusion_refuses_a_run_without_a_seed_before_scoring_any(
    occlusion, tiny_run: Path, tmp_path: Path, bad: str
) -> None:
    good = _copy_run(tiny_run, tmp_path)
    wrong = _copy_run(tiny_run, tmp_path, bad)
    with pytest.raises(SystemExit) as exc:
        _score(occlusion, good, wrong)
    assert str(exc.value.code) == f"occlusion.py: {wrong}: the run folder's name does not end in _s<seed> (an integer)"
    assert not any(occlusion.CSV_DIR.glob("*.csv*")) if occlusion.CSV_DIR.exists() else True  # nothing scored


def test_occlusion_refuses_missing_runs_checkpoints_and_clashing_names(
    occlusion, tiny_run: Path, tmp_path: Path
) -> None:
    run = _copy_run(tiny_run, tmp_path)
    other = _copy_run(tiny_run, tmp_path / "elsewhere")
    cases = {
        (tmp_path / "runs" / "none_s7",): "no such run folder",
        (run, other): "would both be scored into none_s0.csv",
    }
    for runs, said in cases.items():
        with pytest.raises(SystemExit, match=said):
            _score(occlusion, *runs)
    (run / "checkpoint.pt").unlink()
    with pytest.raises(SystemExit, match=r"no checkpoint\.pt to score"):
        _score(occlusion, run)
    assert not occlusion.CSV_DIR.exists() or not any(occlusion.CSV_DIR.iterdir())


def test_occlusion_keeps_scores_it_cannot_redo(occlusion, tmp_path: Path) -> None:
    """A committed CSV of a run whose checkpoint is not kept (never committed) stays as it is."""
    run = tmp_path / "runs" / "none_s3"
    run.mkdir(parents=True)
    target = tmp_path / "none_s3.csv"
    target.write_text("scores\n")
    (run / "metrics.json").write_text("{}")  # newer than the scores
    assert occlusion.rescore_reason(run, target) is None
    assert occlusion.rescore_reason(run, tmp_path / "absent.csv") == "not scored yet"


# --- mechanism.py --------------------------------------------------------------------------------


def test_mechanism_refuses_fewer_images_than_a_batch(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    mechanism = _load("mechanism")
    with pytest.raises(SystemExit) as exc:
        mechanism.main([str(tmp_path / "no_run"), "--images", "255", "--out", str(tmp_path / "m.md")])
    assert exc.value.code == 2  # refused before the run is read
    err = capsys.readouterr().err
    assert "--images 255: at least one batch (256)" in err and "Traceback" not in err
    assert not (tmp_path / "m.md").exists()


def test_mechanism_refuses_a_split_smaller_than_a_batch(tiny_run: Path, tmp_path: Path, isolated_harness: None) -> None:
    mechanism = _load("mechanism")
    with pytest.raises(SystemExit, match="has 60 test images, fewer than one batch"):
        mechanism.main([str(tiny_run), "--data", TINY, "--split", "test", "--out", str(tmp_path / "m.md")])
    assert not (tmp_path / "m.md").exists()


def test_mechanism_score_over_no_patch_samples_is_nan_not_a_crash() -> None:
    from randsaliencymix import CutMix

    mechanism = _load("mechanism")
    x = torch.rand(100, 3, 16, 16)  # less than a batch: no draw at all
    cam = torch.full((100, 16, 16), 1 / 256, dtype=torch.float64)
    r = mechanism.score(CutMix(alpha=1.0, mode="sample"), x, None, cam)
    assert r["samples"] == 0 and all(r[k] != r[k] for k in ("area", "pasted", "covered", "gap"))
    assert mechanism.cells(r) == "0 | — | — | — | —"
    full = mechanism.score(CutMix(alpha=1.0, mode="sample"), torch.rand(256, 3, 16, 16), None,
                           torch.full((256, 16, 16), 1 / 256, dtype=torch.float64))  # fmt: skip
    assert full["samples"] == 256 and mechanism.cells(full).startswith("256 | 0.")
