"""Study 2's one run reader (study/study2/run_folders.py) over made-up run folders: the CPU kind (the
one formula the lanes and the reports share), the columns a regime check adds, and the refusals."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, Optional

import pytest

from conftest import load_script

rf = load_script("study/study2/run_folders.py", "study2_run_folders")


def _run(root: Path, name: str, metrics: Dict, config: Optional[Dict] = None) -> Path:
    run = root / "folder" / "runs" / name
    run.mkdir(parents=True)
    (run / "metrics.json").write_text(json.dumps(metrics))
    (run / "config.json").write_text(json.dumps(config or {"mix": {"alpha": 1}}))
    return run


@pytest.mark.parametrize(
    "hardware, kind",
    [
        ({"cpu": "Intel Xeon", "amx_bf16": True, "avx512_bf16": True}, "Intel Xeon (amx_bf16, avx512_bf16)"),
        ({"cpu": "AMD EPYC", "amx_bf16": False, "avx512_bf16": True}, "AMD EPYC (avx512_bf16)"),
        ({"cpu": "AMD EPYC"}, "AMD EPYC (no bf16 units)"),
        ({"cpu": ""}, ""),
        ({}, ""),
        (None, ""),
        ("not a record", ""),
    ],
)
def test_the_cpu_kind_is_the_name_and_its_bf16_units(hardware: object, kind: str) -> None:
    assert rf.cpu_kind(hardware) == kind


def test_the_cpu_kind_script_prints_the_runs_kinds_with_the_same_formula(tmp_path: Path, capsys) -> None:
    ck = load_script("study/study2/cifar/cpu_kind.py", "study2_cpu_kind")
    a = _run(tmp_path, "a_s0", {"hardware": {"cpu": "AMD EPYC", "avx512_bf16": True}})
    b = _run(tmp_path, "b_s0", {"hardware": {"cpu": "AMD EPYC", "avx512_bf16": False}})
    assert ck.main([str(a), str(b), str(tmp_path / "in_flight")]) == 0
    assert capsys.readouterr().out.splitlines() == ["AMD EPYC (avx512_bf16)", "AMD EPYC (no bf16 units)"]


def test_a_row_carries_the_cpu_kind_and_the_columns_the_regime_check_returns(tmp_path: Path) -> None:
    hardware = {"cpu": "Intel Xeon", "amx_bf16": True}
    _run(tmp_path, "cutmix_s3", {"val_top1_err": 14.5, "hardware": hardware, "versions": {"torch": "x"}})
    rows = rf.read_runs(tmp_path, ["folder"], lambda run, config: {"mix": json.dumps(config["mix"])}, "prog")
    assert rows == [
        {"name": "cutmix", "folder": "folder", "val_top1_err": 14.5, "seed": 3, "cpu": "Intel Xeon",
         "cpu_kind": "Intel Xeon (amx_bf16)", "mix": '{"alpha": 1}'}
    ]  # fmt: skip
    assert (
        rf.read_runs(tmp_path, ["folder"], lambda run, config: None, "prog")[0]["cpu_kind"] == "Intel Xeon (amx_bf16)"
    )


def test_a_run_the_regime_check_refuses_stops_the_reading(tmp_path: Path) -> None:
    _run(tmp_path, "cutmix_s0", {"val_top1_err": 14.5})

    def refuse(run: Path, config: Dict) -> None:
        raise SystemExit(f"prog: {run} is not of the regime")

    with pytest.raises(SystemExit, match=r"cutmix_s0 is not of the regime"):
        rf.read_runs(tmp_path, ["folder"], refuse, "prog")


@pytest.mark.parametrize(
    "name, metrics, message",
    [
        ("cutmix_seed0", {"val_top1_err": 1.0}, r"does not end in _s<seed>"),
        ("cutmix_s0", {"val_top1_err": float("nan")}, r"val_top1_err is nan, not a finite number"),
        ("cutmix_s0", [1.0], r"not a readable metrics\.json \(a JSON list, not an object\)"),
    ],
)
def test_a_run_that_cannot_count_is_refused_by_name(tmp_path: Path, name: str, metrics, message: str) -> None:
    _run(tmp_path, name, metrics)
    with pytest.raises(SystemExit, match=rf"^prog: .*{message}"):
        rf.read_runs(tmp_path, ["folder"], lambda run, config: None, "prog")
