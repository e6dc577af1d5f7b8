"""Study 2's report (study/study2/imagenette/report.py) over a folder of made-up runs: the merged
table, its paired differences and their noise marks, the CSV, and runs in flight left out."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import List

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import load_script


def _report():  # loaded once: the hypothesis test calls it per example
    return load_script("study/study2/imagenette/report.py", "study2_report")


def _run(root: Path, folder: str, name: str, seed: int, err: float, cpu: str = "Test CPU") -> None:
    run = root / folder / "runs" / f"{name}_s{seed}"
    run.mkdir(parents=True)
    metrics = {
        "method": name, "test_top1_err": err, "test_corruption_mean_top1_err": err + 10, "test_ece": 5.0,
        "test_nll": 0.5, "test_jpeg_top1_err": err + 1, "train_seconds": 600.0 + seed,
        "hardware": {"cpu": cpu}, "versions": {"torch": "x"},
    }  # fmt: skip
    (run / "metrics.json").write_text(json.dumps(metrics))
    (run / "config.json").write_text(json.dumps(CONFIG))


CONFIG = {"data": "../shared/data/imagenette2-224.tar", "image_size": 128, "model": "fast_resnet", "epochs": 80,
          "precision": "bf16", "seed": 0}  # fmt: skip


@pytest.fixture()
def report_root(tmp_path: Path) -> Path:
    for seed in range(3):
        _run(tmp_path, "main_operator", "none", seed, 16.0 + seed)
        _run(tmp_path, "main_operator", "cutmix", seed, 14.0 + seed)  # exactly 2 points better, every seed
        _run(tmp_path, "main_fg", "rsm_seed", seed, (14.5, 13.0, 17.0)[seed])  # scattered: noise vs cutmix
    (tmp_path / "main_sr" / "runs" / "guided_sr_s0").mkdir(parents=True)  # in flight: no metrics.json
    return tmp_path


def test_report_merges_the_folders_and_pairs_by_seed(report_root: Path) -> None:
    report = _report()
    assert report.main(["--root", str(report_root)]) == 0
    text = (report_root / "results.md").read_text()
    main = text.split("## Main table")[1].split("\n## ")[0]
    table = {line.split(" | ")[0].lstrip("| "): line for line in main.splitlines() if line.startswith("| ")}
    assert "| cutmix | 0,1,2 | 15.00 ± 1.00 | -2.00 ± 0.00 |" in table["cutmix"]
    assert "noise" in table["rsm_seed"].split(" | ")[4]  # − cutmix: -0.17, its interval spans 0
    assert "guided_sr" not in table  # a run in flight is not in the table
    with open(report_root / "results.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 9 and {r["cpu"] for r in rows} == {"Test CPU"} and "versions" not in rows[0]
    corruptions = text.split("Each corruption alone")[1].split("\n## ")[0]
    assert "| jpeg |" in corruptions and "| cutmix | " in corruptions
    assert "Total: 1.50 CPU-hours of training over 9 runs (10.0-10.0 minutes a run)." in text  # 600-602 s each


def test_report_pairs_cost_ratios_on_one_cpu_and_marks_the_rest(report_root: Path) -> None:
    report = _report()
    _run(report_root, "main_operator", "mixup", 0, 16.0, cpu="Other CPU")
    _run(report_root, "main_fg", "saliencymix_per_sample", 0, 15.0, cpu="")  # did not record its CPU
    _run(report_root, "main_fg", "saliencymix_per_sample", 1, 15.0)
    assert report.main(["--root", str(report_root)]) == 0
    cost = (report_root / "results.md").read_text().split("## Cost")[1].splitlines()
    row = {name: next(line for line in cost if line.startswith(f"| {name} |")) for name in ("mixup", "cutmix")}
    row["per_sample"] = next(line for line in cost if line.startswith("| saliencymix_per_sample |"))
    assert "× (1)*" in row["mixup"]  # no seed on one CPU: every shared seed, marked
    assert "× (3) |" in row["cutmix"] and "*" not in row["cutmix"]
    assert row["per_sample"].endswith("| 1.00× (1) | 1.00× (1) |")  # seed 1 only: equal seconds


def test_report_fills_only_its_blocks(report_root: Path) -> None:
    report = _report()
    doc = report_root / "doc.md"
    doc.write_text(
        "before\n<!-- BEGIN study2_main -->\nstale\n<!-- END study2_main -->\nmiddle\n"
        "<!-- BEGIN other -->\nkept\n<!-- END other -->\n"
    )
    assert report.main(["--root", str(report_root), "--fill", str(doc)]) == 0
    text = doc.read_text()
    assert "stale" not in text and "| cutmix | 0,1,2 | 15.00 ± 1.00 |" in text
    assert text.startswith("before\n") and "middle\n<!-- BEGIN other -->\nkept\n<!-- END other -->\n" in text


def test_report_fills_the_readme_headline_with_its_status(report_root: Path) -> None:
    report = _report()
    doc = report_root / "README.md"
    doc.write_text("<!-- BEGIN study2_headline -->\n<!-- END study2_headline -->\n")
    assert report.main(["--root", str(report_root), "--fill", str(doc)]) == 0
    text = doc.read_text()
    assert "**Interim: 9 of 35 runs finished**" in text
    cutmix = next(line for line in text.splitlines() if line.startswith("| CutMix |"))
    assert cutmix.startswith("| CutMix | 3 | 15.00 ± 1.00 | -2.00 ± 0.00 | — |")
    assert "GuidedMixup" not in text.split("|---|")[1]  # no finished run: no row


def test_report_plots_validation_curves_from_the_logs(report_root: Path) -> None:
    pytest.importorskip("matplotlib")
    report = _report()
    log = report_root / "main_operator" / "runs" / "cutmix_s0" / "log.jsonl"
    entries = [{"epoch": e, "train_loss": 1.0, "val_top1_err": 30.0 - e} for e in (7, 15)] + [{"epoch": 16}]
    log.write_text("".join(json.dumps(e) + "\n" for e in entries))
    assert report.main(["--root", str(report_root)]) == 0
    assert (report_root / "validation_curves.png").stat().st_size > 0
    assert "validation_curves.png" in (report_root / "results.md").read_text()


def test_report_tabulates_the_last_validation_errors_beside_the_curves(report_root: Path) -> None:
    report = _report()
    log = report_root / "main_operator" / "runs" / "cutmix_s0" / "log.jsonl"
    log.write_text("".join(json.dumps({"epoch": e, "val_top1_err": 30.0 - e}) + "\n" for e in (7, 15)))
    assert report.main(["--root", str(report_root)]) == 0
    section = (report_root / "results.md").read_text().split("## Validation curves")[1]
    assert "| method | epoch 8 | epoch 16 |" in section and "| cutmix | 23.00 | 15.00 |" in section


def test_report_says_what_differences_the_seeds_can_see(report_root: Path) -> None:
    report = _report()
    assert report.main(["--root", str(report_root)]) == 0
    section = (report_root / "results.md").read_text().split("## What differences these seeds can see")[1]
    section = section.split("\n## ")[0]
    rows = {line.split(" | ")[0].lstrip("| "): line for line in section.splitlines() if line.startswith("| ")}
    # rsm_seed − cutmix per seed: +0.5, -2, +1 (std √(31/12) = 1.607); t_0.975 and t_0.80 at 2 dof from a
    # printed table: 4.303 and 1.061; at 9 dof: 2.262 and 0.883
    sd = (31 / 12) ** 0.5
    expected = f"| cutmix | 3 | -0.17 | 1.61 | {4.303 * sd / 3**0.5:.2f} | {5.364 * sd / 3**0.5:.2f} "
    assert rows["cutmix"] == expected + f"| {3.145 * sd / 10**0.5:.2f} |"
    assert "mixup" not in rows and "rsm_seed" not in rows  # no shared seeds; not against itself
    # pairs: none-cutmix (std 0), none-rsm_seed and cutmix-rsm_seed (1.61 each)
    assert "Over all 3 pairs of methods the paired std has median 1.61 points (range 0.00-1.61)." in section


@given(sd=st.floats(0.01, 10.0), n=st.integers(2, 29))
def test_detectable_difference_grows_with_the_scatter_and_shrinks_with_seeds(sd: float, n: int) -> None:
    report = _report()
    assert report.detectable(2 * sd, n) == pytest.approx(2 * report.detectable(sd, n))
    assert report.detectable(sd, n + 1) < report.detectable(sd, n)
    from scipy import stats

    half = stats.t.ppf(0.975, n - 1) * sd / n**0.5
    assert report.detectable(sd, n) > half  # power 0.8 needs more than the interval's half-width


def test_detectable_difference_takes_the_confirmations_20_seeds_and_refuses_one() -> None:
    """Issue 28: report.py refused more than 10 seeds; the confirmation needs 20."""
    report = _report()
    assert 0 < report.detectable(1.0, 20) < report.detectable(1.0, 10)
    # the old table's values (one-sided 80% t quantiles) at 5 seeds: (2.776 + 0.941) / sqrt(5)
    assert report.detectable(1.0, 5) == pytest.approx((2.776 + 0.941) / 5**0.5, abs=2e-3)
    with pytest.raises(ValueError, match="Expected at least 2 seeds, but got 1 instead"):
        report.detectable(1.0, 1)


def _predictions(root: Path, folder: str, name: str, seed: int, wrong: List[int], labels: List[int]) -> None:
    lines = ["# label prediction"] + [f"{a} {(a + 1) % 3 if w else a}" for a, w in zip(labels, wrong)]
    (root / folder / "runs" / f"{name}_s{seed}" / "predictions_test.txt").write_text("\n".join(lines) + "\n")


def test_report_resamples_seeds_and_images_where_runs_saved_predictions(report_root: Path) -> None:
    report = _report()
    assert report.main(["--root", str(report_root)]) == 0
    section = (report_root / "results.md").read_text().split("## Seeds and test images resampled together")[1]
    assert "No paired runs with per-image test predictions yet" in section
    labels = [0, 1, 2, 0, 1, 2, 0, 1, 2, 0]
    for seed in range(3):
        _predictions(report_root, "main_fg", "rsm_seed", seed, [1, 0, 0, 0, 0, 0, 0, 0, 0, 0], labels)  # 10%
        _predictions(report_root, "main_operator", "cutmix", seed, [1, 1, 1, 0, 0, 0, 0, 0, 0, 0], labels)  # 30%
    assert report.main(["--root", str(report_root)]) == 0
    section = (report_root / "results.md").read_text().split("## Seeds and test images resampled together")[1]
    row = next(line for line in section.splitlines() if line.startswith("| cutmix |"))
    # −20 points on every seed: a zero-width t-interval; resampling the images gives a real spread
    assert row.startswith("| cutmix | 3 | -20.00 | [-20.00, -20.00] | [")
    lo, hi = (float(v) for v in row.split("| [")[2].rstrip(" |]").split(", "))
    assert lo < -20.0 < hi


def test_report_refuses_predictions_of_other_test_images(report_root: Path) -> None:
    report = _report()
    for seed in range(2):
        _predictions(report_root, "main_fg", "rsm_seed", seed, [0, 1], [0, 1])
        _predictions(report_root, "main_operator", "cutmix", seed, [0, 1], [1, 0])
    with pytest.raises(SystemExit, match="scored on different test images"):
        report.main(["--root", str(report_root)])


# Issue 28: the report refuses, in one line naming the run and what is wrong, whatever would put a
# number that is not the study's into its tables; and it writes nothing when it refuses.


def _refused(root: Path, *args: str) -> str:
    results = {p: p.read_bytes() for p in (root / "results.md", root / "results.csv") if p.exists()}
    with pytest.raises(SystemExit) as exc:
        _report().main(["--root", str(root), *args])
    assert {p: p.read_bytes() for p in results} == results  # nothing written over
    message = str(exc.value.code)
    assert "\n" not in message and "Traceback" not in message
    return message


@pytest.mark.parametrize(
    "key, value, said",
    [
        ("data", "../shared/data/imagewoof2-320.tar", "data '../shared/data/imagewoof2-320.tar'"),
        ("image_size", 64, "image_size 64"),
        ("model", "fast_cnn", "model 'fast_cnn'"),
        ("epochs", 8, "epochs 8"),
        ("precision", "fp32", "precision 'fp32'"),
        ("image_size", None, "image_size None"),  # an older config without the key
    ],
)
def test_report_refuses_a_run_of_another_regime(report_root: Path, key: str, value: object, said: str) -> None:
    assert _report().main(["--root", str(report_root)]) == 0
    config = report_root / "main_fg" / "runs" / "rsm_seed_s1" / "config.json"
    data = {**CONFIG, key: value}
    if value is None:
        del data[key]
    config.write_text(json.dumps(data))
    message = _refused(report_root)
    assert "rsm_seed_s1 is not a run of study 2's regime" in message and said in message


def test_report_refuses_a_run_without_its_config(report_root: Path) -> None:
    (report_root / "main_operator" / "runs" / "none_s2" / "config.json").unlink()
    message = _refused(report_root)
    assert "none_s2/config.json: not a readable config.json" in message


def test_report_refuses_a_method_and_seed_found_twice(report_root: Path) -> None:
    import shutil

    assert _report().main(["--root", str(report_root)]) == 0
    source = report_root / "main_operator" / "runs" / "cutmix_s1"
    shutil.copytree(source, report_root / "main_sr" / "runs" / "cutmix_s1")  # a copied run folder
    message = _refused(report_root)
    assert "cutmix seed 1 is there twice" in message
    assert str(source) in message and str(report_root / "main_sr" / "runs" / "cutmix_s1") in message


@pytest.mark.parametrize("value", ["NaN", "Infinity"])
def test_report_refuses_a_run_with_a_metric_that_is_not_a_number(report_root: Path, value: str) -> None:
    assert _report().main(["--root", str(report_root)]) == 0
    path = report_root / "main_operator" / "runs" / "none_s1" / "metrics.json"
    path.write_text(path.read_text().replace('"test_ece": 5.0', f'"test_ece": {value}'))
    message = _refused(report_root)
    assert str(path) in message and "test_ece is" in message and "not a finite number" in message


@pytest.mark.parametrize("folder", ["none_sx", "none_s", "none_s1a", "none_s01", "rsm_seed"])
def test_report_refuses_a_run_folder_without_an_integer_seed(report_root: Path, folder: str) -> None:
    _run(report_root, "main_operator", "placeholder", 9, 15.0)
    (report_root / "main_operator" / "runs" / "placeholder_s9").rename(report_root / "main_operator" / "runs" / folder)
    message = _refused(report_root)
    assert f"{folder}: the run folder's name does not end in _s<seed>" in message


@pytest.mark.parametrize("text", ['{"test_top1_err": 1', "", "[1, 2]"])
def test_report_refuses_a_truncated_metrics_file(report_root: Path, text: str) -> None:
    assert _report().main(["--root", str(report_root)]) == 0
    path = report_root / "main_fg" / "runs" / "rsm_seed_s2" / "metrics.json"
    path.write_text(text)
    assert f"{path}: not a readable metrics.json" in _refused(report_root)


def test_report_refuses_a_truncated_log_or_predictions_file(report_root: Path) -> None:
    log = report_root / "main_operator" / "runs" / "cutmix_s0" / "log.jsonl"
    log.write_text(json.dumps({"epoch": 7, "val_top1_err": 20.0}) + '\n{"epoch": 8, "val_')
    assert f"{log}: line 2 is not JSON" in _refused(report_root)
    log.unlink()
    for seed in range(2):
        _predictions(report_root, "main_fg", "rsm_seed", seed, [0, 1], [0, 1])
        _predictions(report_root, "main_operator", "cutmix", seed, [0, 1], [0, 1])
    path = report_root / "main_fg" / "runs" / "rsm_seed_s1" / "predictions_test.txt"
    path.write_text("# label prediction\n0 0\n1 x\n")
    assert f"{path} is not a predictions file" in _refused(report_root)


def test_report_refuses_a_missing_root_or_fill_file_in_one_line(
    report_root: Path, capsys: pytest.CaptureFixture
) -> None:
    for args in (["--root", str(report_root / "nowhere")], ["--root", str(report_root), "--fill", "nowhere.md"]):
        with pytest.raises(SystemExit) as exc:
            _report().main(args)
        assert exc.value.code == 2  # argparse's usage error
        err = capsys.readouterr().err
        assert "nowhere" in err.strip().splitlines()[-1] and "error:" in err and "Traceback" not in err
    assert not (report_root / "results.md").exists()  # nothing written before the refusal


def test_report_refuses_a_root_without_the_studys_folders(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    other = tmp_path / "screen"
    other.mkdir()
    (other / "results.md").write_text("another study's table\n")
    (other / "results.csv").write_text("name,seed\n")
    with pytest.raises(SystemExit) as exc:
        _report().main(["--root", str(other)])
    assert exc.value.code == 2
    assert "holds none of study 2's folders (main_operator, main_fg, main_sr)" in capsys.readouterr().err
    assert (other / "results.md").read_text() == "another study's table\n"
    assert (other / "results.csv").read_text() == "name,seed\n"
