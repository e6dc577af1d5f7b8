"""Study 2's stage-4 report (study/study2/imagenette/confirm_report.py) over folders of made-up runs:
the design the screen's rules give, its plan, the reading only at the full design, part 1's runs
counted, and a run that did not read the test split refused by name."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict

import pytest

from conftest import load_script

cr = load_script("study/study2/imagenette/confirm_report.py", "study2_confirm_report")
CONFIG = {"epochs": 80, "model": "fast_resnet", "image_size": 128, "precision": "bf16", "val_fraction": 0.1,
          "split_seed": 0, "augment": "resized_crop", "batch_size": 256, "test": True, "test_split": "val",
          "robustness": True, "mix": {}}  # fmt: skip
SCREEN = {"rsm_uniform": "screen_operator", "rsm_selfcam": "screen_operator", "cutmix_selfcam": "screen_operator",
          "rsm_cam8": "screen_cam", "rsm_cam16": "screen_cam", "rsm_cam8_hard": "screen_cam",
          "rsm_cam8_seedrepo": "screen_cam", "rsm_cam8_selfcam": "screen_cam"}  # fmt: skip
PART1 = {"none": "main_operator", "cutmix": "main_operator", "saliencymix": "main_operator",
         "rsm_seed": "main_fg", "guided_sr": "main_sr"}  # fmt: skip


def _run(root: Path, folder: str, name: str, seed: int, err: float, **config) -> None:
    run = root / folder / "runs" / f"{name}_s{seed}"
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({**CONFIG, **config}))
    hardware = {"cpu": "Test CPU", "avx512_bf16": True}
    metrics = {"val_top1_err": err, "test_top1_err": err, "train_seconds": 3000.0, "hardware": hardware}
    (run / "metrics.json").write_text(json.dumps(metrics))


def _screen(root: Path, low: str) -> None:
    """Part 1 at seeds 0-4 and the screen at seeds 0-2, ``low`` the lowest."""
    for name, folder in {**PART1, **SCREEN}.items():
        for seed in range(5 if name in PART1 else 3):
            _run(root, folder, name, seed, 12.0 if name == low else 16.0 + 0.1 * seed)


def test_the_design_follows_the_screen_and_the_plan_is_seed_major(tmp_path: Path, capsys) -> None:
    _screen(tmp_path, "rsm_cam8")
    assert cr.main(["--root", str(tmp_path), "--plan"]) == 0
    plan = [tuple(line.split()) for line in capsys.readouterr().out.splitlines()]
    assert plan[:5] == [("rsm_cam8", "0"), ("cutmix", "0"), ("saliencymix", "0"), ("guided_sr", "0"), ("none", "0")]
    counts: Dict[str, int] = {}
    for name, _ in plan:
        counts[name] = counts.get(name, 0) + 1
    assert counts == {"rsm_cam8": 20, "cutmix": 20, "saliencymix": 10, "guided_sr": 5, "none": 5}
    assert [int(s) for _, s in plan] == sorted(int(s) for _, s in plan)
    d = cr.design("rsm_cam8", True)
    assert d.primary == ("rsm_cam8", "cutmix") and ("cutmix_selfcam", "cutmix") in d.secondary
    assert d.seeds["cutmix_selfcam"] == tuple(range(10))


def test_no_plan_and_no_report_before_the_screen_has_chosen(tmp_path: Path, capsys) -> None:
    _screen(tmp_path, "rsm_cam8")
    (tmp_path / "screen_cam" / "runs" / "rsm_cam16_s2" / "metrics.json").unlink()  # in flight
    with pytest.raises(SystemExit) as stop:
        cr.main(["--root", str(tmp_path), "--plan"])
    assert stop.value.code == 3 and "the screen has not finished" in capsys.readouterr().err


def test_the_report_reads_part_1_and_confirm_runs_and_decides_only_at_the_full_design(tmp_path: Path) -> None:
    _screen(tmp_path, "rsm_uniform")
    for seed in range(20):  # RSM-tuned (rsm_uniform): every seed new; CutMix from seed 5
        _run(tmp_path, "confirm_operator", "rsm_uniform", seed, 14.0 + 0.1 * (seed % 3))
        if seed >= 5:
            _run(tmp_path, "confirm_operator", "cutmix", seed, 15.0 + 0.1 * (seed % 4))
    assert cr.main(["--root", str(tmp_path)]) == 0
    text = (tmp_path / "confirm" / "results.md").read_text()
    assert "RSM-tuned is `rsm_uniform` (the screen's rule). 55 of 60 runs finished." in text
    assert "**Interim**" in text  # SaliencyMix has 5 of its 10 seeds
    for seed in range(5, 10):
        _run(tmp_path, "confirm_operator", "saliencymix", seed, 15.5)
    assert cr.main(["--root", str(tmp_path)]) == 0
    text = (tmp_path / "confirm" / "results.md").read_text()
    assert "60 of 60 runs finished" in text and "**Interim**" not in text
    primary = next(line for line in text.splitlines() if line.startswith("| rsm_uniform − cutmix |"))
    assert "| primary | 20 |" in primary and "| detected |" in primary
    assert "| 0 | Test CPU (avx512_bf16) |" in text
    rows = (tmp_path / "confirm" / "results.csv").read_text().splitlines()
    assert len(rows) == 61 and "screen_operator" not in "".join(rows)  # the screen's runs read no test split


def test_a_run_without_the_test_flags_is_refused_by_name(tmp_path: Path) -> None:
    _screen(tmp_path, "rsm_cam8")
    _run(tmp_path, "confirm_cam", "rsm_cam8", 7, 14.0, test_split="test")
    with pytest.raises(SystemExit, match=r"rsm_cam8_s7 is not a run of stage 4's regime: test_split 'test'"):
        cr.main(["--root", str(tmp_path)])


def test_a_run_found_in_part_1_and_in_a_confirm_folder_is_refused(tmp_path: Path) -> None:
    _screen(tmp_path, "rsm_cam8")
    _run(tmp_path, "confirm_operator", "cutmix", 3, 15.0)  # part 1 has cutmix_s3
    with pytest.raises(SystemExit, match=r"cutmix seed 3 is there twice"):
        cr.main(["--root", str(tmp_path)])
