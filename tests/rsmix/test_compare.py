"""End-to-end tests of ``rsmix compare`` (``compare.py``): real, tiny runs (each a child process),
tables and plots, resumability, method variants, a killed compare that takes its training child
with it, and bad input."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List

import pytest

from conftest import ONE_EPOCH, assert_refused, harness_env, one_error_line
from rsmix import cli
from rsmix.compare import parse_method, split_methods
from rsmix.errors import UsageError
from rsmix.runs import RunLock

pytestmark = pytest.mark.usefixtures("isolated_harness")


DATA = "procedural:300:100"
TINY = ["--data", DATA, "--epochs", "1", "--batch-size", "32", "--threads", "1", "--precision", "fp32"]
PNG = b"\x89PNG\r\n\x1a\n"


def compare(out: Path, *flags: str) -> int:
    return cli.main(["compare", *TINY, *flags, "--out", str(out)])


def metrics_mtimes(out: Path) -> Dict[str, int]:
    return {p.parent.name: p.stat().st_mtime_ns for p in sorted((out / "runs").glob("*/metrics.json"))}


def read_csv(out: Path) -> List[Dict[str, str]]:
    with open(out / "results.csv", newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory):
    """none and mixup x seeds 0 and 1, two runs at a time; (folder, what it printed)."""
    out = tmp_path_factory.mktemp("study") / "study"
    with harness_env(out.parent / "cache", OMP_NUM_THREADS="1"):
        import io
        from contextlib import redirect_stdout

        buffer = io.StringIO()
        with redirect_stdout(buffer):
            rc = compare(out, "--methods", "none,mixup", "--seeds", "0,1", "--jobs", "2")
    assert rc == 0, buffer.getvalue()
    return out, buffer.getvalue()


def test_compare_writes_runs_tables_and_plots(study) -> None:
    out, printed = study
    assert "0 runs finished, 4 to run" in printed
    names = ["mixup_s0", "mixup_s1", "none_s0", "none_s1"]
    assert sorted(p.name for p in (out / "runs").iterdir()) == names
    for name in names:
        run = out / "runs" / name
        assert {"config.json", "log.jsonl", "checkpoint.pt", "metrics.json"} <= {p.name for p in run.iterdir()}
        config = json.loads((run / "config.json").read_text())
        method, seed = name.rsplit("_s", 1)
        assert (config["method"], config["seed"], config["epochs"], config["data"]) == (method, int(seed), 1, DATA)

    rows = read_csv(out)
    assert len(rows) == 4
    assert sorted((r["name"], r["method"], r["seed"]) for r in rows) == [
        ("mixup", "mixup", "0"),
        ("mixup", "mixup", "1"),
        ("none", "none", "0"),
        ("none", "none", "1"),
    ]
    for r in rows:
        assert 0.0 <= float(r["val_top1_err"]) <= 100.0
    # The same validation split for every run.
    assert len({r["val_images"] for r in rows}) == 1

    md = (out / "results.md").read_text()
    assert "95% CI" in md and "Δ vs none (paired)" in md
    table = {line.split("|")[1].strip(): line for line in md.splitlines() if line.startswith("| ")}
    number = r"-?\d+\.\d+"
    for name in ("none", "mixup"):
        assert re.search(rf"\| {name} \| 2 \| {number} ± {number} \| \[{number}, {number}\] \|", table[name])
    assert re.search(r"\| [+-]\d+\.\d+( ± \d+\.\d+)? \|", table["mixup"])  # the paired difference
    assert "| — |" in table["none"]  # the reference has none
    assert md.strip().splitlines()[2] in printed  # the table is printed too

    for plot in ("final_error.png", "val_curves.png"):
        data = (out / plot).read_bytes()
        assert data[:8] == PNG and len(data) > 1000


def test_several_references_give_one_paired_column_each(study, tmp_path: Path) -> None:
    from rsmix.compare import summarise

    out = tmp_path / "copy"
    shutil.copytree(study[0], out)
    summary = summarise(out, ["none", "mixup"], [0, 1], ["none", "mixup"])
    md = (out / "results.md").read_text()
    assert "Δ vs none (paired)" in md and "Δ vs mixup (paired)" in md
    table = {line.split("|")[1].strip(): line.split("|") for line in md.splitlines() if line.startswith("| ")}
    rows = {r["seed"]: r for r in read_csv(out) if r["name"] == "none"}
    mixup_rows = {r["seed"]: r for r in read_csv(out) if r["name"] == "mixup"}
    diff = sum(float(rows[s]["val_top1_err"]) - float(mixup_rows[s]["val_top1_err"]) for s in ("0", "1")) / 2
    # none vs mixup is the negative of mixup vs none; each method's own column is a dash.
    assert summary["methods"]["none"]["paired"]["mixup"]["diff"] == pytest.approx(diff)
    assert summary["methods"]["mixup"]["paired"]["none"]["diff"] == pytest.approx(-diff)
    assert table["none"][8].strip() == "—" and table["mixup"][9].strip() == "—"


def test_compare_again_skips_finished_runs_and_reruns_only_missing_ones(study, capsys: pytest.CaptureFixture) -> None:
    out, _ = study
    before = metrics_mtimes(out)
    assert len(before) == 4
    rows_before = read_csv(out)
    capsys.readouterr()
    assert compare(out, "--methods", "none,mixup", "--seeds", "0,1") == 0
    assert "4 runs finished, 0 to run" in capsys.readouterr().out
    assert metrics_mtimes(out) == before

    old = json.loads((out / "runs" / "mixup_s1" / "metrics.json").read_text())
    (out / "runs" / "mixup_s1" / "metrics.json").unlink()
    assert compare(out, "--methods", "none,mixup", "--seeds", "0,1") == 0
    printed = capsys.readouterr().out
    assert "3 runs finished, 1 to run" in printed and "mixup_s1: done" in printed
    after = metrics_mtimes(out)
    assert after.keys() == before.keys()
    assert [k for k in before if after[k] != before[k]] == ["mixup_s1"]
    new = json.loads((out / "runs" / "mixup_s1" / "metrics.json").read_text())
    for key in ("val_top1_err", "val_nll", "val_ece", "train_loss"):
        assert new[key] == old[key]  # resumed from its final checkpoint: the same numbers
    assert read_csv(out) == rows_before


def test_compare_method_variants_land_in_the_run_config(study, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "variants"
    (out / "runs").mkdir(parents=True)
    shutil.copytree(study[0] / "runs" / "none_s0", out / "runs" / "none_s0")  # finished: skipped
    capsys.readouterr()
    assert (
        compare(
            out,
            "--methods",
            "none;rsm=randsaliencymix:gamma=0,tau_src=2",
            "--seeds",
            "0",
            "--mix-opt",
            "alpha=0.5",
            "--mix-opt",
            "gamma=1",
        )
        == 0
    )
    assert "1 runs finished, 1 to run" in capsys.readouterr().out
    config = json.loads((out / "runs" / "rsm_s0" / "config.json").read_text())
    # --mix-opt goes to every mixing method; the variant's own options win.
    assert config["method"] == "randsaliencymix"
    assert config["mix"] == {"alpha": 0.5, "gamma": 0, "tau_src": 2}
    rows = read_csv(out)
    assert [(r["name"], r["method"]) for r in rows] == [("none", "none"), ("rsm", "randsaliencymix")]
    assert "| rsm | 1 |" in (out / "results.md").read_text()


BAD_COMPARE = {
    "unknown method": (["--methods", "none,foo"], ["'foo'", "randsaliencymix"]),
    "unknown model": (["--methods", "none", "--model", "foo"], ["'foo'", "fast_cnn"]),
    "unknown schedule": (["--methods", "none", "--schedule", "foo"], ["'foo'", "cosine"]),
    "bad variant option": (["--methods", "none;r=randsaliencymix:gamma=5"], ["gamma", "[0, 1]"]),
    "unknown variant option": (["--methods", "none;r=randsaliencymix:bogus=1"], ["'bogus'", "tau_src"]),
    "negative alpha": (["--methods", "none,mixup", "--mix-opt", "alpha=-1"], ["'mixup'", "alpha", "> 0"]),
    "shared option unknown to a method": (
        ["--methods", "none,mixup", "--mix-opt", "tau_src=2"],
        ["'tau_src'", "'mixup'", "alpha"],
    ),
    "missing data": (["--methods", "none", "--data", "{tmp}/missing"], ["missing", "procedural"]),
    "empty data folder": (["--methods", "none", "--data", "{tmp}/empty"], ["empty", ".png"]),
    "batch larger than the training set": (["--methods", "none", "--batch-size", "1000"], ["1000", "training images"]),
    "amp, replaced by precision": (["--methods", "none", "--amp"], ["--amp", "--precision", "fp16", "bf16"]),
    "fp16 on cpu": (["--methods", "none", "--precision", "fp16"], ["fp16", "CUDA", "bf16"]),
    "unknown precision": (["--methods", "none", "--precision", "int8"], ["int8", "fp32", "bf16"]),
    "unknown yaml key": (["--methods", "none", "--config", "{tmp}/unknown.yaml"], ["'epoch'", "'epochs'"]),
    "bad seeds": (["--methods", "none", "--seeds", "0,x"], ["--seeds", "integers"]),
    "duplicate names": (["--methods", "none,none"], ["unique"]),
    "unknown reference": (["--methods", "none", "--reference", "mixup"], ["'mixup'", "none"]),
    "unknown second reference": (["--methods", "none", "--reference", "none,cutmix"], ["'cutmix'", "none"]),
}


@pytest.mark.parametrize("case", sorted(BAD_COMPARE))
def test_bad_compare_input_is_one_line_exit_2_and_writes_nothing(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "unknown.yaml").write_text("epoch: 3\n")
    flags, expected = BAD_COMPARE[case]
    flags = [f.format(tmp=tmp_path) for f in flags]
    out = tmp_path / "out"
    before = set(tmp_path.iterdir())
    rc = compare(out, "--seeds", "0", *flags)
    assert_refused(capsys, rc, "compare", expected)
    assert not out.exists()
    assert set(tmp_path.iterdir()) == before


@pytest.mark.parametrize(
    "flags, named",
    [
        (["--epochs", "2"], "epochs 1 there, 2 asked"),
        (["--precision", "bf16"], "precision 'fp32' there, 'bf16' asked"),
        (["--label-smoothing", "0.1"], "label_smoothing 0.0 there, 0.1 asked"),
        (["--self-cam", "0.5"], "self_cam 0.0 there, 0.5 asked"),
    ],
)
def test_a_finished_run_made_with_other_settings_is_refused_not_reported(
    study, tmp_path: Path, capsys: pytest.CaptureFixture, flags: List[str], named: str
) -> None:
    """Issue 28: compare over finished runs of other settings exited 0 and reported them as asked."""
    import shutil

    out, _ = study
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    before = metrics_mtimes(copy)
    capsys.readouterr()
    assert cli.main(["compare", *TINY, *flags, "--methods", "mixup", "--seeds", "0", "--out", str(copy)]) == 2
    err = capsys.readouterr().err
    assert "mixup_s0 holds a finished run made with other settings" in err and named in err
    assert metrics_mtimes(copy) == before  # nothing trained, nothing rewritten


def test_a_variants_changed_options_under_the_same_name_are_refused(study, tmp_path: Path, capsys) -> None:
    import shutil

    out, _ = study
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    capsys.readouterr()
    assert cli.main(["compare", *TINY, "--methods", "mixup=mixup:alpha=0.4;", "--seeds", "0", "--out", str(copy)]) == 2
    assert "mix {} there, {'alpha': 0.4} asked" in capsys.readouterr().err


def test_a_finished_run_without_a_readable_config_is_an_error(study, tmp_path: Path, capsys) -> None:
    import shutil

    out, _ = study
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    (copy / "runs" / "none_s1" / "config.json").write_text("{trunc")
    assert cli.main(["compare", *TINY, "--methods", "none", "--seeds", "1", "--out", str(copy)]) == 2
    assert "none_s1 has metrics.json but no readable config.json" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------
# Variant options split at commas (issue 28)
# ------------------------------------------------------------------------------------------------


def test_variant_options_with_exponents_stay_in_their_variant() -> None:
    specs = split_methods("rsm=randsaliencymix:gamma=5e-1,tau_src=1,cutmix,cm=cutmix:alpha=0.5,p=1,mixup")
    assert specs == ["rsm=randsaliencymix:gamma=5e-1,tau_src=1", "cutmix", "cm=cutmix:alpha=0.5,p=1", "mixup"]
    assert parse_method(specs[0]) == ("rsm", "randsaliencymix", {"gamma": 0.5, "tau_src": 1})
    assert split_methods("a=cutmix,b=mixup") == ["a=cutmix", "b=mixup"]  # variants without options
    assert split_methods("a=cutmix:alpha=1;b=mixup:alpha=0.2") == ["a=cutmix:alpha=1", "b=mixup:alpha=0.2"]


# ------------------------------------------------------------------------------------------------
# A killed compare takes its training child with it
# ------------------------------------------------------------------------------------------------


def test_killed_compare_takes_its_training_child_with_it(tmp_path: Path) -> None:
    out = tmp_path / "study"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "rsmix", "compare", "--data", "procedural:2000:10", "--epochs", "50",
           "--batch-size", "32", "--threads", "1", "--methods", "none", "--seeds", "0", "--out", str(out)]  # fmt: skip
    parent = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run = out / "runs" / "none_s0"
    try:
        deadline = time.monotonic() + 120
        while not (run / "config.json").exists():  # the child has started training
            assert time.monotonic() < deadline and parent.poll() is None
            time.sleep(0.2)
        children = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and _ppid(p) == parent.pid]
        assert children
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 30
        while any(_alive(c) for c in children):
            assert time.monotonic() < deadline, "the training child outlived its compare"
            time.sleep(0.2)
    finally:
        if parent.poll() is None:
            parent.kill()
    # Its folder is free again (once the kernel has closed the dead child's files): a rerun can resume it.
    deadline = time.monotonic() + 30
    while True:
        try:
            with RunLock(run):
                break
        except UsageError:
            assert time.monotonic() < deadline, "the dead child's lock was never released"
            time.sleep(0.2)


def _ppid(proc: Path) -> int:
    try:
        for line in (proc / "status").read_text().splitlines():
            if line.startswith("PPid:"):
                return int(line.split()[1])
    except OSError:
        pass
    return -1


def _alive(pid: int) -> bool:
    try:
        state = next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("State:"))
    except (OSError, StopIteration):
        return False
    return "Z" not in state  # a zombie has stopped running


# ------------------------------------------------------------------------------------------------
# Bad seeds, names, jobs and flags: refused, nothing written
# ------------------------------------------------------------------------------------------------

BAD_COMPARE_ARGS = {
    "zero seeds": (["--n-seeds", "0"], ["--n-seeds", ">= 1"]),
    "empty seed list": (["--seeds", ","], ["no seeds"]),
    "repeated seeds": (["--seeds", "1,1"], ["unique"]),
    "empty method list": (["--methods", ",", "--seeds", "0"], ["no methods"]),
    "name escaping the folder": (["--methods", "../x=mixup", "--seeds", "0"], ["'../x'", "folder name"]),
    "hidden name": (["--methods", ".x=mixup", "--seeds", "0"], ["'.x'"]),
    "unknown variant option": (["--methods", "m=mixup:bogus=1", "--seeds", "0"], ["'bogus'", "alpha"]),
    "seed in the config": (["--config", "{tmp}/seed.yaml", "--seeds", "0"], ["seed", "--seeds"]),
    "zero jobs": (["--jobs", "0", "--seeds", "0"], ["--jobs"]),
}


@pytest.mark.parametrize("case", sorted(BAD_COMPARE_ARGS))
def test_bad_compare_input_is_refused_and_writes_nothing(case: str, tmp_path: Path, capsys) -> None:
    (tmp_path / "seed.yaml").write_text("seed: 3\n")
    flags, fragments = BAD_COMPARE_ARGS[case]
    before = set(tmp_path.iterdir())
    rc = cli.main(["compare", *ONE_EPOCH[:-3], *[f.format(tmp=tmp_path) for f in flags], "--out", str(tmp_path / "o")])
    assert rc == 2
    line = one_error_line(capsys, "compare")
    for fragment in fragments:
        assert fragment in line, (fragment, line)
    assert set(tmp_path.iterdir()) == before
    assert not (tmp_path.parent / "x").exists()


@pytest.mark.parametrize("flag", ["--seed", "--method"])
def test_compare_has_no_flag_it_would_ignore(tmp_path: Path, flag: str) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["compare", *ONE_EPOCH[:-3], flag, "1", "--out", str(tmp_path / "o")])
    assert exc.value.code == 2
