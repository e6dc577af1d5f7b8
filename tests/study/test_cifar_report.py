"""Study 2's regime B report (study/study2/cifar/report.py) over folders of made-up runs: the
calibration rule, the table, the planned comparisons (sign-flip, Holm, the seeds-and-images
interval), interim against full readings, and every refusal before anything is written."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Dict, Optional

import pytest

from conftest import load_script

FOLDER = {"none": "main_operator", "cutmix": "main_operator", "rsm_uniform": "main_operator",
          "cutmix_selfcam": "main_operator", "rsm_seed": "main_fg", "guided_sr": "main_sr"}  # fmt: skip
BASE = {"none": 40.0, "cutmix": 36.0, "guided_sr": 36.5, "rsm_seed": 34.0, "rsm_uniform": 36.0, "cutmix_selfcam": 35.9}
CONFIG = {"data": "../shared/data/cifar10-jpeg.tar.gz", "model": "fast_cnn", "precision": "fp32",
          "train_fraction": 0.1, "val_fraction": 0.1, "split_seed": 0}  # fmt: skip
LABELS = [i % 10 for i in range(40)]


def _report():
    return load_script("study/study2/cifar/report.py", "study2_cifar_report")


def _run(run: Path, metrics: Dict, config: Optional[Dict] = None, predictions: Optional[list] = None) -> None:
    run.mkdir(parents=True)
    (run / "metrics.json").write_text(json.dumps(metrics))
    (run / "config.json").write_text(json.dumps(config))
    if predictions is not None:
        lines = ["# label prediction"] + [f"{label} {pred}" for label, pred in zip(LABELS, predictions)]
        (run / "predictions_test.txt").write_text("\n".join(lines) + "\n")


def _calibration(root: Path, err_60: float = 30.0, err_120: float = 28.5) -> None:
    for epochs, err in ((60, err_60), (120, err_120)):
        _run(root / f"calibration_{epochs}" / "runs" / "cutmix_s0", {"val_top1_err": err}, {**CONFIG, "epochs": epochs})


def _main(root: Path, seeds=range(10), epochs: int = 120, skip=()) -> None:
    for seed in seeds:
        for name, base in BASE.items():
            if (name, seed) in skip:
                continue
            err = base + (0.3 if seed % 2 else -0.3) + 0.1 * seed  # the seed moves every method alike
            wrong = int(err * len(LABELS) / 100)
            predictions = [(label + 1) % 10 if i < wrong else label for i, label in enumerate(LABELS)]
            metrics = {"test_top1_err": err, "val_top1_err": err, "train_seconds": 420.0 + seed,
                       "hardware": {"cpu": "Test CPU"}, "versions": {"torch": "x"}}  # fmt: skip
            _run(root / FOLDER[name] / "runs" / f"{name}_s{seed}", metrics, {**CONFIG, "epochs": epochs}, predictions)


def _comparisons(text: str) -> Dict[str, str]:
    section = text.split("### Comparisons")[1].split("\n### ")[0]
    return {
        line.split(" | ")[0].lstrip("| "): line
        for line in section.splitlines()
        if line.startswith("| ") and " − " in line.split(" | ")[0]
    }


def test_full_design_reads_the_planned_comparisons(tmp_path: Path) -> None:
    _calibration(tmp_path)
    _main(tmp_path)
    assert _report().main(["--root", str(tmp_path)]) == 0
    text = (tmp_path / "results.md").read_text()
    assert "60 of 60 main runs finished" in text and "**the schedule is 120 epochs**" in text
    rows = _comparisons(text)
    assert list(rows) == ["rsm_seed − cutmix", "rsm_uniform − cutmix", "cutmix_selfcam − cutmix",
                          "guided_sr − cutmix", "rsm_seed − rsm_uniform", "none − cutmix"]  # fmt: skip
    primary = rows["rsm_seed − cutmix"].split(" | ")
    assert primary[1:4] == ["primary", "10", "-2.00"] and primary[6] == "0.002" and primary[-1].startswith("detected")
    assert rows["rsm_uniform − cutmix"].split(" | ")[-1].startswith("not detected")  # a zero difference
    assert rows["none − cutmix"].split(" | ")[-1].startswith("detected")  # +4 every seed, Holm p 0.010
    assert "(no predictions)" not in text and "Interim" not in text
    assert "| 0 | Test CPU (no bf16 units) |" in text  # each seed's CPU kind: the name and its bf16 units
    assert "detects 4 times in 5: 0.00 points at 10 seeds" in text  # the power line (no scatter here)
    with open(tmp_path / "results.csv", newline="") as fh:
        got = list(csv.DictReader(fh))
    assert len(got) == 60 and {r["cpu"] for r in got} == {"Test CPU"}


def test_an_unfinished_design_reads_nothing(tmp_path: Path) -> None:
    _calibration(tmp_path)
    _main(tmp_path, seeds=range(4), skip={("cutmix_selfcam", 3)})
    assert _report().main(["--root", str(tmp_path)]) == 0
    text = (tmp_path / "results.md").read_text()
    assert "23 of 60 main runs finished" in text and "**Interim**" in text
    assert all(row.endswith("| interim: none |") for row in _comparisons(text).values())
    assert _comparisons(text)["cutmix_selfcam − cutmix"].split(" | ")[2] == "3"  # its common seeds only


@pytest.mark.parametrize("err_120, epochs", [(29.0, 120), (29.01, 60), (31.0, 60)])
def test_the_schedule_follows_the_calibration_rule(tmp_path: Path, err_120: float, epochs: int) -> None:
    _calibration(tmp_path, err_60=30.0, err_120=err_120)
    _main(tmp_path, seeds=range(2), epochs=epochs)
    assert _report().main(["--root", str(tmp_path)]) == 0
    assert f"**the schedule is {epochs} epochs**" in (tmp_path / "results.md").read_text()


def test_no_calibration_no_runs_yet(tmp_path: Path) -> None:
    assert _report().main(["--root", str(tmp_path)]) == 0
    text = (tmp_path / "results.md").read_text()
    assert "no run finished" in text and "No main run finished yet." in text


def test_fill_rewrites_its_block_only(tmp_path: Path) -> None:
    _calibration(tmp_path)
    _main(tmp_path, seeds=range(3))
    doc = tmp_path / "doc.md"
    doc.write_text("before\n<!-- BEGIN study2_regime_b -->\nold\n<!-- END study2_regime_b -->\nafter\n")
    assert _report().main(["--root", str(tmp_path), "--fill", str(doc)]) == 0
    text = doc.read_text()
    assert text.startswith("before\n") and text.endswith("after\n") and "18 of 60 main runs finished" in text


def _refused(root: Path, capsys: pytest.CaptureFixture, *message: str) -> None:
    with pytest.raises(SystemExit) as exc:
        _report().main(["--root", str(root)])
    assert all(m in str(exc.value) for m in message), str(exc.value)
    assert not (root / "results.md").exists() and not (root / "results.csv").exists()


def test_refuses_main_runs_at_another_schedule(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    _calibration(tmp_path)
    _main(tmp_path, seeds=range(1), epochs=60)
    _refused(tmp_path, capsys, "is not a run of regime B", "epochs 60 (the calibration chose 120)")


def test_refuses_main_runs_without_a_calibration(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    _main(tmp_path, seeds=range(1))
    _refused(tmp_path, capsys, "without a finished calibration")


def test_refuses_a_run_of_another_regime(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    _calibration(tmp_path)
    _main(tmp_path, seeds=range(1))
    config = tmp_path / "main_fg" / "runs" / "rsm_seed_s0" / "config.json"
    config.write_text(json.dumps({**CONFIG, "epochs": 120, "model": "resnet18", "precision": "bf16"}))
    _refused(tmp_path, capsys, "rsm_seed_s0 is not a run of regime B", "model 'resnet18'", "precision 'bf16'")


def test_refuses_a_run_without_the_test_split(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    _calibration(tmp_path)
    _main(tmp_path, seeds=range(1))
    metrics = tmp_path / "main_operator" / "runs" / "none_s0" / "metrics.json"
    metrics.write_text(json.dumps({"val_top1_err": 30.0}))
    _refused(tmp_path, capsys, "none_s0 has no test_top1_err")


def test_refuses_predictions_of_other_images(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    _calibration(tmp_path)
    _main(tmp_path, seeds=range(2))
    path = tmp_path / "main_operator" / "runs" / "cutmix_s1" / "predictions_test.txt"
    path.write_text("# label prediction\n" + "\n".join(f"{(i + 3) % 10} 0" for i in range(40)) + "\n")
    _refused(tmp_path, capsys, "scored on different test images")


def test_refuses_a_non_finite_metric(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    _calibration(tmp_path)
    _main(tmp_path, seeds=range(1))
    metrics = tmp_path / "main_sr" / "runs" / "guided_sr_s0" / "metrics.json"
    metrics.write_text(metrics.read_text().replace('"train_seconds": 420.0', '"train_seconds": NaN'))
    _refused(tmp_path, capsys, "train_seconds is nan")
