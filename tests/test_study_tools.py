"""Study 2's own tools (study/study2/imagenette/) against the faults of issue 28: occlusion.py's stale
"scored already" skip and its bad RUN arguments, mechanism.py below one batch of images, the lane
scripts main.sh and screen.sh (a run finished between a lane's check and its claim, a DEADLINE that is
not a number, the exit status after a failed run) and stage_finished.sh (only finished runs, the
screen's folders and reports, names with spaces).

The lane scripts run as copies in a made-up repository tree with a fake ``rsmix`` (``RSMIX``) that
records its calls and writes the run's metrics.json, claims in a temporary folder (``CLAIMS``) and
their runs under ``STUDY2_OUT``: no test touches the study's run folders."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List

import pytest
import torch

from conftest import load_script

ROOT = Path(__file__).resolve().parent.parent
STUDY = ROOT / "study" / "study2" / "imagenette"
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


# --- main.sh and screen.sh -----------------------------------------------------------------------

FAKE_RSMIX = r"""#!/usr/bin/env bash
# records its call; writes the run's metrics.json unless the method is in FAKE_FAIL
echo "$*" >>"$FAKE_LOG"
out= methods= seeds=
while [ $# -gt 0 ]; do
    case "$1" in
    --out) out=$2 ;;
    --methods) methods=$2 ;;
    --seeds) seeds=$2 ;;
    esac
    shift
done
name=${methods%%;*}
name=${name%%=*}
for f in ${FAKE_FAIL:-}; do [ "$f" = "$name" ] && exit 3; done
mkdir -p "$out/runs/${name}_s$seeds"
echo '{}' >"$out/runs/${name}_s$seeds/metrics.json"
"""

# flock as the other lane sees it: the run named in RACE finishes just before this lane's claim
FAKE_FLOCK = r"""#!/usr/bin/env bash
lock=
for a in "$@"; do case "$a" in *.lock) lock=$a && break ;; esac; done
case "$lock" in
*"/$RACE.lock")
    folder=${RACE%%-*}
    mkdir -p "$STUDY2_OUT/$folder/runs/${RACE#*-}"
    echo '{}' >"$STUDY2_OUT/$folder/runs/${RACE#*-}/metrics.json"
    ;;
esac
exec "$REAL_FLOCK" "$@"
"""


@pytest.fixture()
def lanes(tmp_path: Path) -> Dict[str, object]:
    """A made-up repository with copies of the lane scripts (each cds to its root), a fake rsmix and
    the environment that points them at temporary folders."""
    repo = tmp_path / "repo"
    (repo / "study" / "study2" / "imagenette").mkdir(parents=True)
    for script in ("main.sh", "screen.sh"):
        shutil.copy2(STUDY / script, repo / "study" / "study2" / "imagenette" / script)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("rsmix", FAKE_RSMIX), ("flock", FAKE_FLOCK)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    real_flock = shutil.which("flock")
    if real_flock is None:
        pytest.skip("no flock on this machine")
    env = {
        "PATH": os.environ["PATH"], "HOME": str(tmp_path), "RSMIX": str(bin_dir / "rsmix"),
        "CLAIMS": str(tmp_path / "claims"), "STUDY2_OUT": str(tmp_path / "out"), "FAKE_LOG": str(tmp_path / "calls"),
        "REAL_FLOCK": real_flock,
    }  # fmt: skip
    return {"repo": repo, "bin": bin_dir, "env": env, "out": tmp_path / "out", "calls": tmp_path / "calls"}


def _lane(lanes: Dict, script: str, *args: str, flock: bool = False, **env: str) -> subprocess.CompletedProcess:
    environ = {**lanes["env"], **env}
    if flock:
        environ["PATH"] = f"{lanes['bin']}{os.pathsep}{environ['PATH']}"
    path = lanes["repo"] / "study" / "study2" / "imagenette" / script
    return subprocess.run(["bash", str(path), *args], env=environ, capture_output=True, text=True, timeout=120)


def _calls(lanes: Dict) -> List[str]:
    calls = lanes["calls"]
    return calls.read_text().splitlines() if calls.exists() else []


def _finished(lanes: Dict) -> List[str]:
    return sorted(p.parent.relative_to(lanes["out"]).as_posix() for p in lanes["out"].glob("*/runs/*/metrics.json"))


LANE_ARGS = {"main.sh": ("0", "80"), "screen.sh": ("0",)}
RUN_COUNT = {"main.sh": 35, "screen.sh": 24}
RACED = {"main.sh": "main_operator-cutmix_s0", "screen.sh": "screen_cam-rsm_cam8_s0"}
FAILING = {"main.sh": "cutmix", "screen.sh": "rsm_cam8"}


@pytest.mark.parametrize("script", ["main.sh", "screen.sh"])
def test_lane_runs_every_run_once_under_its_out_folder(lanes: Dict, script: str) -> None:
    done = _lane(lanes, script, *LANE_ARGS[script])
    assert done.returncode == 0, done.stderr
    assert len(_calls(lanes)) == RUN_COUNT[script] == len(_finished(lanes))
    assert all(f"--out {lanes['out']}/" in call for call in _calls(lanes))
    again = _lane(lanes, script, *LANE_ARGS[script])  # every run finished: nothing to do
    assert again.returncode == 0 and len(_calls(lanes)) == RUN_COUNT[script]


@pytest.mark.parametrize("script", ["main.sh", "screen.sh"])
def test_lane_starts_no_run_that_finished_between_its_check_and_its_claim(lanes: Dict, script: str) -> None:
    done = _lane(lanes, script, *LANE_ARGS[script], flock=True, RACE=RACED[script])
    assert done.returncode == 0, done.stderr
    folder, run = RACED[script].split("-", 1)
    name, seed = run.rsplit("_s", 1)
    started = [c for c in _calls(lanes) if f"--out {lanes['out']}/{folder}" in c and f"--seeds {seed}" in c]
    assert not [c for c in started if f"--methods {name}=" in c or f"--methods {name};" in c]
    assert len(_calls(lanes)) == RUN_COUNT[script] - 1


@pytest.mark.parametrize("script", ["main.sh", "screen.sh"])
@pytest.mark.parametrize("deadline", ["tomorrow", "+175", "1e9", " "])
def test_lane_refuses_a_deadline_that_is_not_a_number(lanes: Dict, script: str, deadline: str) -> None:
    done = _lane(lanes, script, *LANE_ARGS[script], DEADLINE=deadline)
    assert done.returncode == 2 and "DEADLINE must be unix seconds" in done.stderr
    assert _calls(lanes) == []


@pytest.mark.parametrize("script", ["main.sh", "screen.sh"])
def test_lane_starts_nothing_past_its_deadline(lanes: Dict, script: str) -> None:
    done = _lane(lanes, script, *LANE_ARGS[script], DEADLINE="1000")
    assert done.returncode == 0 and "deadline: not starting" in done.stdout and _calls(lanes) == []


@pytest.mark.parametrize("script", ["main.sh", "screen.sh"])
def test_lane_exits_1_after_a_failed_run_and_finishes_the_others(lanes: Dict, script: str) -> None:
    done = _lane(lanes, script, *LANE_ARGS[script], FAKE_FAIL=FAILING[script])
    assert done.returncode == 1 and "FAILED" in done.stdout
    seeds = 5 if script == "main.sh" else 3
    assert len(_finished(lanes)) == RUN_COUNT[script] - seeds  # every other run went on
    assert not [r for r in _finished(lanes) if r.rpartition("/")[2].rpartition("_s")[0] == FAILING[script]]


def test_main_refuses_run_minutes_that_are_not_a_number(lanes: Dict) -> None:
    done = _lane(lanes, "main.sh", "0", "80", RUN_MINUTES="an hour", DEADLINE="99999999999")
    assert done.returncode == 2 and "RUN_MINUTES must be a whole number" in done.stderr and _calls(lanes) == []


def test_lane_scripts_default_to_the_study_folder() -> None:
    for script in ("main.sh", "screen.sh"):
        assert "OUT=${STUDY2_OUT:-study/study2/imagenette}" in (STUDY / script).read_text()


# --- stage_finished.sh ---------------------------------------------------------------------------


def _git(repo: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    done = subprocess.run(["git", *args], cwd=repo, env=env, capture_output=True, text=True, check=True)
    return done.stdout


def _write(path: Path, text: str = "x\n") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_stage_finished_stages_finished_runs_of_every_folder_and_nothing_in_flight(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    here = repo / "study" / "study2" / "imagenette"
    here.mkdir(parents=True)
    _git(repo, "init", "-q")
    shutil.copy2(STUDY / "stage_finished.sh", here / "stage_finished.sh")
    finished = [
        "main_operator/runs/none_s0", "main_operator/runs/none copy_s1", "main_fg/runs/rsm_seed_s0",
        "main_sr/runs/guided [sr]*_s0", "screen_operator/runs/rsm_uniform_s0", "screen_cam/runs/rsm_cam8_s0",
    ]  # fmt: skip
    in_flight = [
        "main_operator/runs/none copy_s2", "main_sr/runs/guided sr_s0", "main_sr/runs/guided [sr]x_s0",
        "screen_operator/runs/rsm_selfcam_s0", "screen_cam/runs/rsm_cam16_s0",
    ]  # fmt: skip
    for run in finished:
        _write(here / run / "metrics.json", "{}\n")
        _write(here / run / "predictions_val.txt", "# label prediction\n0 0\n")
    for run in in_flight:
        _write(here / run / "log.jsonl")
    reports = ["screen/results.csv", "screen/results.md", "results.csv", "results.md", "occlusion/none_s0.csv"]
    for f in reports:
        _write(here / f)
    for f in ["occlusion/none_s1.csv.tmp", "screen_operator/results.md", "main_fg/results.csv", "screen/notes.txt"]:
        _write(here / f)  # being written, or a folder's own summary: not staged
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    done = subprocess.run(["bash", str(here / "stage_finished.sh")], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    staged = set(_git(repo, "diff", "--cached", "--name-only", "-z").split("\0")) - {""}
    prefix = "study/study2/imagenette/"
    expected = {f"{prefix}{run}/{f}" for run in finished for f in ("metrics.json", "predictions_val.txt")}
    assert staged == expected | {prefix + f for f in reports}
    for run in in_flight:
        assert f"in flight, not staged: {run}/" in done.stdout
