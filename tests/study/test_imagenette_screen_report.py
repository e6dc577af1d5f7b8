"""Study 2's screen report (study/study2/imagenette/screen_report.py) over made-up runs: the table,
SCREEN.md's selection rule (lowest mean; within 0.1 points the cheaper cost class), runs in flight
left out, and a run of another regime refused by name."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict

import pytest

from conftest import load_script

sr = load_script("study/study2/imagenette/screen_report.py", "screen_report")
CONFIG = {"epochs": 80, "model": "fast_resnet", "image_size": 128, "precision": "bf16", "val_fraction": 0.1,
          "split_seed": 0, "augment": "resized_crop", "batch_size": 256, "mix": {}}  # fmt: skip


def _run(root: Path, folder: str, name: str, seed: int, err: float, **config) -> None:
    run = root / folder / "runs" / f"{name}_s{seed}"
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({**CONFIG, **config}))
    metrics = {"val_top1_err": err, "train_seconds": 100.0 * (2 if folder == "screen_cam" else 1),
               "hardware": {"cpu": "Test CPU"}}  # fmt: skip
    (run / "metrics.json").write_text(json.dumps(metrics))


def _all(root: Path, means: Dict[str, float]) -> None:
    for name, folder, _ in sr.CANDIDATES:
        for seed in sr.SEEDS:
            _run(root, folder, name, seed, means.get(name, 16.0) + (seed - 1) * 0.5)


def test_the_lowest_mean_wins_when_alone(tmp_path: Path) -> None:
    _all(tmp_path, {"rsm_cam8": 14.0, "rsm_uniform": 14.5})
    assert sr.main(["--root", str(tmp_path)]) == 0
    text = (tmp_path / "screen" / "results.md").read_text()
    assert "**RSM-tuned = `rsm_cam8`** (mean 14.00%)" in text
    assert "| rsm_cam8 | candidate | 3 | 13.50 | 14.00 | 14.50 | 14.00 ± 0.50 | 2.00x (3) |" in text
    assert (tmp_path / "screen" / "results.csv").read_text().count("\n") == 1 + 8 * 3


def test_within_a_tenth_the_cheaper_class_wins(tmp_path: Path) -> None:
    _all(tmp_path, {"rsm_cam8": 14.0, "rsm_seed": 14.05, "rsm_uniform": 14.1})
    assert sr.main(["--root", str(tmp_path)]) == 0
    assert "**RSM-tuned = `rsm_uniform`**" in (tmp_path / "screen" / "results.md").read_text()


def test_no_selection_while_a_candidate_misses_a_seed_and_runs_in_flight_are_left_out(tmp_path: Path) -> None:
    _all(tmp_path, {})
    run = tmp_path / "screen_cam" / "runs" / "rsm_cam16_s2"
    (run / "metrics.json").unlink()  # in flight
    assert sr.main(["--root", str(tmp_path)]) == 0
    text = (tmp_path / "screen" / "results.md").read_text()
    assert "Not yet selected: 1 candidate(s) without all three seeds (rsm_cam16)." in text
    assert "| rsm_cam16 | candidate | 3 | 15.50 | 16.00 |  |" in text


@pytest.mark.parametrize("key, value", [("epochs", 2), ("precision", "fp32"), ("image_size", 64)])
def test_a_run_of_another_regime_is_refused_by_name(tmp_path: Path, key: str, value) -> None:
    _run(tmp_path, "screen_operator", "rsm_uniform", 0, 14.0, **{key: value})
    with pytest.raises(SystemExit, match=rf"rsm_uniform_s0 is not a run of the screen's regime: {key}"):
        sr.main(["--root", str(tmp_path)])


def test_unreadable_metrics_and_a_missing_fill_file_are_errors(tmp_path: Path) -> None:
    _run(tmp_path, "screen_operator", "rsm_uniform", 0, 14.0)
    (tmp_path / "screen_operator" / "runs" / "rsm_uniform_s0" / "metrics.json").write_text("{")
    with pytest.raises(SystemExit, match=r"not a readable metrics\.json"):
        sr.main(["--root", str(tmp_path)])
    with pytest.raises(SystemExit, match=r"--fill .*: no such file"):
        sr.main(["--root", str(tmp_path), "--fill", str(tmp_path / "missing.md")])


def test_costs_compare_runs_on_one_cpu_kind_only(tmp_path: Path) -> None:
    """Two Xeons of one name, with and without AMX, are two kinds: no cost ratio across them."""
    _all(tmp_path, {})
    for name, folder, _ in sr.CANDIDATES:
        for seed in sr.SEEDS:
            path = tmp_path / folder / "runs" / f"{name}_s{seed}" / "metrics.json"
            metrics = json.loads(path.read_text())
            amx = name != "rsm_uniform" and seed == 0  # seed 0's candidates ran on the AMX machine
            metrics["hardware"] = {"cpu": "Intel Xeon", "amx_bf16": amx, "avx512_bf16": True}
            path.write_text(json.dumps(metrics))
    assert sr.main(["--root", str(tmp_path)]) == 0
    text = (tmp_path / "screen" / "results.md").read_text()
    assert "| rsm_cam8 | candidate | 3 | 15.50 | 16.00 | 16.50 | 16.00 ± 0.50 | 2.00x (2) |" in text


def test_cutmix_selfcam_joins_stage_4_only_below_every_randsaliencymix_candidate(tmp_path: Path) -> None:
    _all(tmp_path, {"rsm_cam8": 14.0})
    for seed in sr.SEEDS:
        _run(tmp_path, "screen_operator", "cutmix_selfcam", seed, 14.1)
    assert sr.selection(tmp_path) == ("rsm_cam8", False)
    assert "`cutmix_selfcam` (mean 14.10%) does not join stage 4" in sr.table(sr.collect(tmp_path))[-2]
    for seed in sr.SEEDS:
        path = tmp_path / "screen_operator" / "runs" / f"cutmix_selfcam_s{seed}" / "metrics.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), "val_top1_err": 13.9}))
    assert sr.selection(tmp_path) == ("rsm_cam8", True)
    (tmp_path / "screen_cam" / "runs" / "rsm_cam16_s1" / "metrics.json").unlink()  # in flight: no choice yet
    assert sr.selection(tmp_path) == (None, None)
