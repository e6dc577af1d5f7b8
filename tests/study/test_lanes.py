"""Study 2's lane scripts (study/study2/imagenette/main.sh, screen.sh, study/study2/cifar/regime_b.sh,
all on study/study2/lanes.sh) and study/study2/stage_finished.sh: a run finished between a lane's
check and its claim, a DEADLINE or RUN_MINUTES that is not a number, the exit status after a failed
run; regime B's schedule rule, its wait for the other lane's calibration run, its seeds kept on one
CPU kind; only finished runs staged, every study folder, names with spaces.

The lane scripts run as copies in a made-up repository tree with a fake ``rsmix`` (``RSMIX``) that
records its calls and writes the run's metrics.json, claims in a temporary folder (``CLAIMS``) and
their runs under ``STUDY2_OUT`` (regime B's under ``STUDY2_CIFAR_OUT``, the same folder): no test
touches the study's run folders."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List

import pytest

from conftest import ROOT

STUDY2 = ROOT / "study" / "study2"
SCRIPTS = {"main.sh": "imagenette", "screen.sh": "imagenette", "regime_b.sh": "cifar"}
PATHS = {**SCRIPTS, "confirm.sh": "imagenette"}
HERE_KIND = "Fake CPU (no bf16 units)"


# --- main.sh, screen.sh and regime_b.sh ----------------------------------------------------------

FAKE_RSMIX = r"""#!/usr/bin/env bash
# records its call; writes the run's metrics.json (validation error FAKE_ERR, or FAKE_ERR_120 for a
# 120-epoch run; this machine's CPU kind) unless the method is in FAKE_FAIL
echo "$*" >>"$FAKE_LOG"
out= methods= seeds= epochs=
while [ $# -gt 0 ]; do
    case "$1" in
    --out) out=$2 ;;
    --methods) methods=$2 ;;
    --seeds) seeds=$2 ;;
    --epochs) epochs=$2 ;;
    esac
    shift
done
name=${methods%%;*}
name=${name%%=*}
for f in ${FAKE_FAIL:-}; do [ "$f" = "$name" ] && exit 3; done
err=${FAKE_ERR:-20}
[ "$epochs" = 120 ] && err=${FAKE_ERR_120:-$err}
mkdir -p "$out/runs/${name}_s$seeds"
printf '{"val_top1_err": %s, "hardware": {"cpu": "Fake CPU", "amx_bf16": false, "avx512_bf16": false}}\n' \
    "$err" >"$out/runs/${name}_s$seeds/metrics.json"
"""

# flock as the other lane sees it: the run named in RACE ([cifar-]FOLDER-RUN) finishes just before
# this lane's claim
FAKE_FLOCK = r"""#!/usr/bin/env bash
lock=
for a in "$@"; do case "$a" in *.lock) lock=$a && break ;; esac; done
case "$lock" in
*"/$RACE.lock")
    race=${RACE#cifar-}
    folder=${race%%-*}
    mkdir -p "$STUDY2_OUT/$folder/runs/${race#*-}"
    echo '{"val_top1_err": 20}' >"$STUDY2_OUT/$folder/runs/${race#*-}/metrics.json"
    ;;
esac
exec "$REAL_FLOCK" "$@"
"""


@pytest.fixture()
def lanes(tmp_path: Path) -> Dict[str, object]:
    """A made-up repository with copies of the lane scripts (each cds to its root), a fake rsmix and
    the environment that points them at temporary folders."""
    repo = tmp_path / "repo"
    # the study's scripts and modules (lanes.sh, regime_a.sh, cpu_kind.py, the reports confirm.sh asks
    # for its plan, and what they import), none of its runs
    for path in [ROOT / "study" / "blocks.py", *STUDY2.rglob("*.sh"), *STUDY2.rglob("*.py")]:
        (repo / path.relative_to(ROOT)).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, repo / path.relative_to(ROOT))
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
        "REAL_FLOCK": real_flock, "STUDY2_CIFAR_OUT": str(tmp_path / "out"), "PY": sys.executable,
        "CPU_KIND": HERE_KIND,
    }  # fmt: skip
    return {"repo": repo, "bin": bin_dir, "env": env, "out": tmp_path / "out", "calls": tmp_path / "calls"}


def _lane(lanes: Dict, script: str, *args: str, flock: bool = False, **env: str) -> subprocess.CompletedProcess:
    environ = {**lanes["env"], **env}
    if flock:
        environ["PATH"] = f"{lanes['bin']}{os.pathsep}{environ['PATH']}"
    path = lanes["repo"] / "study" / "study2" / PATHS[script] / script
    return subprocess.run(["bash", str(path), *args], env=environ, capture_output=True, text=True, timeout=120)


def _calls(lanes: Dict) -> List[str]:
    calls = lanes["calls"]
    return calls.read_text().splitlines() if calls.exists() else []


def _finished(lanes: Dict) -> List[str]:
    return sorted(p.parent.relative_to(lanes["out"]).as_posix() for p in lanes["out"].glob("*/runs/*/metrics.json"))


def _write_run(run: Path, cpu: str = "Fake CPU", err: float = 20.0) -> None:
    run.mkdir(parents=True, exist_ok=True)
    hardware = {"cpu": cpu, "amx_bf16": False, "avx512_bf16": False}
    (run / "metrics.json").write_text(json.dumps({"val_top1_err": err, "hardware": hardware}))


LANE_ARGS = {"main.sh": ("0", "80"), "screen.sh": ("0",), "regime_b.sh": ("0",)}
RUN_COUNT = {"main.sh": 35, "screen.sh": 24, "regime_b.sh": 62}
RACED = {
    "main.sh": "main_operator-cutmix_s0",
    "screen.sh": "screen_cam-rsm_cam8_s0",
    "regime_b.sh": "cifar-main_fg-rsm_seed_s1",
}
FAILING = {"main.sh": ("cutmix", 5), "screen.sh": ("rsm_cam8", 3), "regime_b.sh": ("rsm_seed", 10)}  # method, its runs


@pytest.mark.parametrize("script", list(SCRIPTS))
def test_lane_runs_every_run_once_under_its_out_folder(lanes: Dict, script: str) -> None:
    done = _lane(lanes, script, *LANE_ARGS[script])
    assert done.returncode == 0, done.stderr
    assert len(_calls(lanes)) == RUN_COUNT[script] == len(_finished(lanes))
    assert all(f"--out {lanes['out']}/" in call for call in _calls(lanes))
    again = _lane(lanes, script, *LANE_ARGS[script])  # every run finished: nothing to do
    assert again.returncode == 0 and len(_calls(lanes)) == RUN_COUNT[script]


@pytest.mark.parametrize("script", list(SCRIPTS))
def test_lane_starts_no_run_that_finished_between_its_check_and_its_claim(lanes: Dict, script: str) -> None:
    done = _lane(lanes, script, *LANE_ARGS[script], flock=True, RACE=RACED[script])
    assert done.returncode == 0, done.stderr
    folder, run = RACED[script].removeprefix("cifar-").split("-", 1)
    name, seed = run.rsplit("_s", 1)
    started = [c for c in _calls(lanes) if f"--out {lanes['out']}/{folder}" in c and f"--seeds {seed}" in c]
    assert not [c for c in started if f"--methods {name}=" in c or f"--methods {name};" in c]
    assert len(_calls(lanes)) == RUN_COUNT[script] - 1


@pytest.mark.parametrize("script", list(SCRIPTS))
@pytest.mark.parametrize("deadline", ["tomorrow", "+175", "1e9", " "])
def test_lane_refuses_a_deadline_that_is_not_a_number(lanes: Dict, script: str, deadline: str) -> None:
    done = _lane(lanes, script, *LANE_ARGS[script], DEADLINE=deadline)
    assert done.returncode == 2 and "DEADLINE must be unix seconds" in done.stderr
    assert _calls(lanes) == []


@pytest.mark.parametrize("script", list(SCRIPTS))
def test_lane_starts_nothing_past_its_deadline(lanes: Dict, script: str) -> None:
    done = _lane(lanes, script, *LANE_ARGS[script], DEADLINE="1000")
    assert done.returncode == 0 and "deadline: not starting" in done.stdout and _calls(lanes) == []


@pytest.mark.parametrize("script", list(SCRIPTS))
def test_lane_exits_1_after_a_failed_run_and_finishes_the_others(lanes: Dict, script: str) -> None:
    method, runs = FAILING[script]
    done = _lane(lanes, script, *LANE_ARGS[script], FAKE_FAIL=method)
    assert done.returncode == 1 and "FAILED" in done.stdout
    assert len(_finished(lanes)) == RUN_COUNT[script] - runs  # every other run went on
    assert not [r for r in _finished(lanes) if r.rpartition("/")[2].rpartition("_s")[0] == method]


@pytest.mark.parametrize("script", list(SCRIPTS))
@pytest.mark.parametrize("minutes", ["an hour", "-5", "1.5"])
def test_lane_refuses_run_minutes_that_are_not_a_number(lanes: Dict, script: str, minutes: str) -> None:
    done = _lane(lanes, script, *LANE_ARGS[script], RUN_MINUTES=minutes, DEADLINE="99999999999")
    assert done.returncode == 2 and "RUN_MINUTES must be a whole number" in done.stderr and _calls(lanes) == []


@pytest.mark.parametrize("script", list(SCRIPTS))
@pytest.mark.parametrize("lane", ["2", "a"])
def test_lane_refuses_a_lane_other_than_0_or_1(lanes: Dict, script: str, lane: str) -> None:
    done = _lane(lanes, script, lane, *LANE_ARGS[script][1:])
    assert done.returncode == 2 and "LANE must be 0 or 1" in done.stderr and _calls(lanes) == []


def test_lane_scripts_default_to_the_study_folders() -> None:
    for script in ("main.sh", "screen.sh", "confirm.sh"):
        assert "OUT=${STUDY2_OUT:-study/study2/imagenette}" in (STUDY2 / "imagenette" / script).read_text()
    assert "OUT=${STUDY2_CIFAR_OUT:-study/study2/cifar}" in (STUDY2 / "cifar" / "regime_b.sh").read_text()


# --- regime_b.sh: the schedule, the wait, one CPU kind a seed -------------------------------------


def _epochs_of_main_runs(lanes: Dict) -> set:
    return {re.search(r"--epochs (\d+)", c).group(1) for c in _calls(lanes) if "/main_" in c}  # type: ignore[union-attr]


@pytest.mark.parametrize("err_120, epochs", [("18.9", "120"), ("19", "120"), ("19.1", "60"), ("21", "60")])
def test_regime_b_schedule_follows_the_calibration_rule(lanes: Dict, err_120: str, epochs: str) -> None:
    done = _lane(lanes, "regime_b.sh", "0", FAKE_ERR="20", FAKE_ERR_120=err_120)
    assert done.returncode == 0, done.stderr
    assert f"schedule: {epochs} epochs" in done.stdout and _epochs_of_main_runs(lanes) == {epochs}
    calibration = [c for c in _calls(lanes) if "/calibration_" in c]
    assert len(calibration) == 2 and not [c for c in calibration if "--test" in c]
    main = [c for c in _calls(lanes) if "/main_" in c]
    assert len(main) == 60 and all("--test" in c and f"--eval-every {int(epochs) // 10}" in c for c in main)
    assert sum("--self-cam 0.5" in c for c in main) == 10


def test_regime_b_waits_for_the_other_lanes_calibration_run(lanes: Dict) -> None:
    claims = Path(lanes["env"]["CLAIMS"])
    claims.mkdir(parents=True)
    run = lanes["out"] / "calibration_60" / "runs" / "cutmix_s0"
    writer = (
        "import json, pathlib, sys, time; time.sleep(2); run = pathlib.Path(sys.argv[1]); "
        "run.mkdir(parents=True); (run / 'metrics.json').write_text(json.dumps({'val_top1_err': 25}))"
    )
    other = subprocess.Popen(
        ["flock", str(claims / "cifar-calibration_60-cutmix_s0.lock"), sys.executable, "-c", writer, str(run)]
    )
    try:
        time.sleep(0.5)  # the other lane holds its claim
        done = _lane(lanes, "regime_b.sh", "1", FAKE_ERR="20")
    finally:
        other.wait(timeout=30)
    assert done.returncode == 0, done.stderr
    assert not [c for c in _calls(lanes) if "/calibration_60" in c]  # the other lane's run
    assert "schedule: 120 epochs" in done.stdout and _epochs_of_main_runs(lanes) == {"120"}  # 25 - 20 >= 1


def test_regime_b_starts_no_main_run_without_its_calibration(lanes: Dict) -> None:
    done = _lane(lanes, "regime_b.sh", "0", FAKE_FAIL="cutmix")
    assert done.returncode == 1 and "the calibration is unfinished" in done.stdout
    assert not [c for c in _calls(lanes) if "/main_" in c]


def test_regime_b_keeps_each_seed_on_one_cpu_kind(lanes: Dict) -> None:
    for epochs in (60, 120):
        _write_run(lanes["out"] / f"calibration_{epochs}" / "runs" / "cutmix_s0")
    _write_run(lanes["out"] / "main_operator" / "runs" / "none_s3", cpu="Other CPU")  # begun elsewhere
    _write_run(lanes["out"] / "main_operator" / "runs" / "none_s4")  # begun here: carried on
    done = _lane(lanes, "regime_b.sh", "0")
    assert done.returncode == 0, done.stderr
    assert "seed 3 began on Other CPU (no bf16 units); this CPU is Fake CPU" in done.stdout
    seeds = [re.search(r"--seeds (\d+)", c).group(1) for c in _calls(lanes)]  # type: ignore[union-attr]
    assert "3" not in seeds and seeds.count("4") == 5 and seeds.count("5") == 6


# --- confirm.sh: stage 4's runs from the screen's choice -----------------------------------------

REGIME_A_CONFIG = {"epochs": 80, "model": "fast_resnet", "image_size": 128, "precision": "bf16",
                   "val_fraction": 0.1, "split_seed": 0, "augment": "resized_crop", "batch_size": 256,
                   "test": True, "test_split": "val", "robustness": True, "mix": {}}  # fmt: skip
SCREENED = {  # name: its screen folder
    "rsm_uniform": "screen_operator", "rsm_selfcam": "screen_operator", "cutmix_selfcam": "screen_operator",
    "rsm_cam8": "screen_cam", "rsm_cam16": "screen_cam", "rsm_cam8_hard": "screen_cam",
    "rsm_cam8_seedrepo": "screen_cam", "rsm_cam8_selfcam": "screen_cam",
}  # fmt: skip
PART1 = {"none": "main_operator", "cutmix": "main_operator", "saliencymix": "main_operator",
         "rsm_seed": "main_fg", "guided_sr": "main_sr"}  # fmt: skip


def _regime_a_run(run: Path, err: float) -> None:
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps(REGIME_A_CONFIG))
    (run / "metrics.json").write_text(json.dumps({"val_top1_err": err, "test_top1_err": err}))


def _screen_and_part1(out: Path, low: str, screen_seeds: int = 3) -> None:
    """Part 1's runs at seeds 0-4 and the screen's at seeds 0-2 (up to ``screen_seeds``), ``low`` lowest."""
    for name, folder in PART1.items():
        for seed in range(5):
            _regime_a_run(out / folder / "runs" / f"{name}_s{seed}", 12.0 if name == low else 16.0)
    for name, folder in SCREENED.items():
        for seed in range(screen_seeds):
            _regime_a_run(out / folder / "runs" / f"{name}_s{seed}", 12.0 if name == low else 16.0)
    (out / "CONFIRMATION.md").write_text("stage 4's protocol\n")


def _trained(lanes: Dict) -> List[str]:
    out = []
    for call in _calls(lanes):
        methods = re.search(r"--methods (\S+?)[=;]", call).group(1)  # type: ignore[union-attr]
        seed = re.search(r"--seeds (\d+)", call).group(1)  # type: ignore[union-attr]
        folder = re.search(r"--out \S+/(\S+)", call).group(1)  # type: ignore[union-attr]
        out.append(f"{folder}/{methods}_s{seed}")
    return out


def test_confirm_trains_the_plans_runs_part_1_has_not_in_confirm_folders_seed_major(lanes: Dict) -> None:
    _screen_and_part1(lanes["out"], "rsm_cam8")
    done = _lane(lanes, "confirm.sh", "0")
    assert done.returncode == 0, done.stderr
    trained = _trained(lanes)
    expected = [f"confirm_cam/rsm_cam8_s{s}" for s in range(20)] + [
        f"confirm_operator/cutmix_s{s}" for s in range(5, 20)
    ]
    expected += [f"confirm_operator/saliencymix_s{s}" for s in range(5, 10)]
    assert sorted(trained) == sorted(expected)  # CutMix and SaliencyMix at 0-4, GuidedMixup, none: part 1's
    seeds = [int(t.rpartition("_s")[2]) for t in trained]
    assert seeds == sorted(seeds)  # seed-major: a stop leaves whole seeds
    cam = [c for c in _calls(lanes) if "rsm_cam8=" in c]
    assert all("--saliency cam" in c and "--test --test-split val --robustness" in c for c in cam)
    assert all("tau_src=8,tau_dst=8,gamma=0.5;" in c and "--self-cam" not in c for c in cam)
    again = _lane(lanes, "confirm.sh", "1")
    assert again.returncode == 0 and len(_calls(lanes)) == len(expected)


def test_confirm_counts_part_1s_rsm_seed_and_runs_cutmix_selfcam_where_it_joins(lanes: Dict) -> None:
    _screen_and_part1(lanes["out"], "rsm_seed")
    assert _lane(lanes, "confirm.sh", "0").returncode == 0
    assert [t for t in _trained(lanes) if "rsm_seed" in t] == [f"confirm_fg/rsm_seed_s{s}" for s in range(5, 20)]
    _calls(lanes) and lanes["calls"].unlink()
    joined = lanes["out"] / "joined"
    _screen_and_part1(joined, "cutmix_selfcam")  # lower than every RandSaliencyMix candidate: joins
    assert _lane(lanes, "confirm.sh", "0", STUDY2_OUT=str(joined)).returncode == 0
    selfcam = [c for c in _calls(lanes) if "--methods cutmix_selfcam=" in c]
    assert len(selfcam) == 10 and all("--self-cam 0.5" in c and "/confirm_operator" in c for c in selfcam)


def test_confirm_refuses_to_start_before_its_protocol_and_the_screens_choice(lanes: Dict) -> None:
    done = _lane(lanes, "confirm.sh", "0")
    assert done.returncode == 2 and "CONFIRMATION.md is missing" in done.stderr and _calls(lanes) == []
    _screen_and_part1(lanes["out"], "rsm_cam8", screen_seeds=2)  # the screen has not finished
    done = _lane(lanes, "confirm.sh", "0")
    assert done.returncode == 2 and "the screen has not finished" in done.stderr and _calls(lanes) == []


def test_confirm_starts_nothing_past_its_deadline(lanes: Dict) -> None:
    _screen_and_part1(lanes["out"], "rsm_cam8")
    done = _lane(lanes, "confirm.sh", "0", DEADLINE="1000")
    assert "deadline: not starting confirm_cam rsm_cam8 seed 0" in done.stdout
    assert done.returncode == 0 and _calls(lanes) == []
    # 70 minutes left: a 60-minute run starts, a CAM run (taken to last 1.3 x 60 = 78 minutes) does not
    done = _lane(lanes, "confirm.sh", "0", RUN_MINUTES="60", DEADLINE=str(int(time.time()) + 70 * 60))
    assert done.returncode == 0 and "not starting confirm_cam rsm_cam8 seed 5" in done.stdout
    assert _trained(lanes) and all(t.startswith("confirm_operator/") for t in _trained(lanes))


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
    here = repo / "study" / "study2"
    here.mkdir(parents=True)
    _git(repo, "init", "-q")
    shutil.copy2(STUDY2 / "stage_finished.sh", here / "stage_finished.sh")
    finished = [
        "imagenette/main_operator/runs/none_s0", "imagenette/main_operator/runs/none copy_s1",
        "imagenette/main_fg/runs/rsm_seed_s0", "imagenette/main_sr/runs/guided [sr]*_s0",
        "imagenette/screen_operator/runs/rsm_uniform_s0", "imagenette/screen_cam/runs/rsm_cam8_s0",
        "cifar/calibration_60/runs/cutmix_s0", "cifar/calibration_120/runs/cutmix_s0",
        "cifar/main_operator/runs/none_s0", "cifar/main_fg/runs/rsm_seed_s0", "cifar/main_sr/runs/guided_sr_s0",
    ]  # fmt: skip
    in_flight = [
        "imagenette/main_operator/runs/none copy_s2", "imagenette/main_sr/runs/guided sr_s0",
        "imagenette/main_sr/runs/guided [sr]x_s0", "imagenette/screen_operator/runs/rsm_selfcam_s0",
        "imagenette/screen_cam/runs/rsm_cam16_s0", "cifar/main_operator/runs/cutmix_s0",
    ]  # fmt: skip
    for run in finished:
        _write(here / run / "metrics.json", "{}\n")
        _write(here / run / "predictions_val.txt", "# label prediction\n0 0\n")
    for run in in_flight:
        _write(here / run / "log.jsonl")
    reports = [
        "imagenette/screen/results.csv", "imagenette/screen/results.md", "imagenette/results.csv",
        "imagenette/results.md", "imagenette/occlusion/none_s0.csv", "cifar/results.csv", "cifar/results.md",
    ]  # fmt: skip
    for f in reports:
        _write(here / f)
    being_written = [
        "imagenette/occlusion/none_s1.csv.tmp", "imagenette/screen_operator/results.md",
        "imagenette/main_fg/results.csv", "imagenette/screen/notes.txt", "cifar/main_operator/results.md",
        "cifar/calibration_60/results.csv",
    ]  # fmt: skip
    for f in being_written:
        _write(here / f)  # being written, or a folder's own summary: not staged
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    done = subprocess.run(["bash", str(here / "stage_finished.sh")], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    staged = set(_git(repo, "diff", "--cached", "--name-only", "-z").split("\0")) - {""}
    prefix = "study/study2/"
    expected = {f"{prefix}{run}/{f}" for run in finished for f in ("metrics.json", "predictions_val.txt")}
    assert staged == expected | {prefix + f for f in reports}
    for run in in_flight:
        assert f"in flight, not staged: {run}/" in done.stdout
