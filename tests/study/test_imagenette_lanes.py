"""Study 2's lane scripts (study/study2/imagenette/main.sh and screen.sh) and stage_finished.sh
against the faults of issue 28: a run finished between a lane's check and its claim, a DEADLINE that
is not a number, the exit status after a failed run; only finished runs staged, the screen's
folders and reports, names with spaces.

The lane scripts run as copies in a made-up repository tree with a fake ``rsmix`` (``RSMIX``) that
records its calls and writes the run's metrics.json, claims in a temporary folder (``CLAIMS``) and
their runs under ``STUDY2_OUT``: no test touches the study's run folders."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Dict, List

import pytest

from conftest import ROOT

STUDY = ROOT / "study" / "study2" / "imagenette"


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
