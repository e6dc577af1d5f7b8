"""study/study2/paired_design.py: a paired-seed design read as committed, with methods planned at
different numbers of seeds (stage 4's shape: two at 20 seeds, one at 10), rows made up in memory."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Dict, List

import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT / "study" / "study2"))
import paired_design

DESIGN = paired_design.Design(
    order=("cutmix", "tuned", "official"),
    seeds={"cutmix": tuple(range(20)), "tuned": tuple(range(20)), "official": tuple(range(10))},
    primary=("tuned", "cutmix"),
    secondary=(("tuned", "official"),),
)


def _rows(seeds: Dict[str, range]) -> List[Dict]:
    base = {"cutmix": 15.0, "tuned": 14.0, "official": 14.5}
    return [
        {"name": n, "folder": "runs_here", "seed": s, "test_top1_err": base[n] + 0.05 * s + (0.2 if s % 3 else -0.1)}
        for n, ss in seeds.items()
        for s in ss
    ]


def test_complete_needs_each_method_at_its_own_seeds() -> None:
    assert paired_design.complete(DESIGN, _rows({"cutmix": range(20), "tuned": range(20), "official": range(10)}))
    assert not paired_design.complete(DESIGN, _rows({"cutmix": range(20), "tuned": range(19), "official": range(10)}))
    assert not paired_design.complete(DESIGN, _rows({"cutmix": range(20), "tuned": range(20), "official": range(9)}))


def test_comparisons_pair_the_common_seeds_and_holm_the_secondary(tmp_path: Path) -> None:
    rows = _rows({"cutmix": range(20), "tuned": range(20), "official": range(10)})
    found = paired_design.comparisons(DESIGN, rows, tmp_path, "test")
    primary, secondary = found
    assert (primary["role"], len(primary["seeds"]), round(primary["mean"], 6)) == ("primary", 20, -1.0)
    assert primary["images"] is None and primary["p"] == 2 / 2**20 and "holm" not in primary
    assert (secondary["role"], len(secondary["seeds"]), secondary["holm"]) == ("secondary", 10, secondary["p"])
    lines = paired_design.comparison_lines(DESIGN, found, paired_design.complete(DESIGN, rows), "PROTOCOL")
    assert any(
        line.startswith("| tuned − cutmix | primary | 20 | -1.00 |") and "| detected |" in line for line in lines
    )
    assert any("(no predictions)" in line for line in lines)
    power = " ".join(paired_design.power_lines(DESIGN, found))
    assert "over 20 seeds" in power and "at 20 if the std stays" in power


def test_an_unfinished_design_reads_nothing(tmp_path: Path) -> None:
    rows = _rows({"cutmix": range(12), "tuned": range(12), "official": range(3)})
    found = paired_design.comparisons(DESIGN, rows, tmp_path, "test")
    lines = paired_design.comparison_lines(DESIGN, found, paired_design.complete(DESIGN, rows), "PROTOCOL")
    assert all("| interim: none |" in line for line in lines if line.startswith("| tuned"))
    assert any(line.startswith("**Interim**") for line in lines)
    table = paired_design.table_lines(DESIGN, rows, "err (%)")
    assert len(re.findall(r"\| s\d+ ", table[2])) == 20 and any(line.startswith("| official | 3 |") for line in table)


def test_fewer_than_two_common_seeds_is_no_comparison(tmp_path: Path) -> None:
    rows = _rows({"cutmix": range(1), "tuned": range(1)})
    assert paired_design.comparisons(DESIGN, rows, tmp_path, "test") == []
    assert paired_design.comparison_lines(DESIGN, [], False, "PROTOCOL") == [
        "No pair of methods has two common seeds yet."
    ]
    assert paired_design.power_lines(DESIGN, []) == []


def _predictions(root: Path, name: str, seed: int, wrong: List[int]) -> None:
    run = root / "runs_here" / "runs" / f"{name}_s{seed}"
    run.mkdir(parents=True)
    lines = ["# label prediction"] + [f"{i % 3} {(i + 1) % 3 if w else i % 3}" for i, w in enumerate(wrong)]
    (run / "predictions_test.txt").write_text("\n".join(lines) + "\n")


def test_the_seeds_and_images_interval_reads_the_seeds_with_predictions_and_says_how_many(tmp_path: Path) -> None:
    """Part 1's runs saved no predictions; stage 4's pairs them with new runs that did."""
    rows = _rows({"cutmix": range(20), "tuned": range(20), "official": range(10)})
    for seed in range(5, 20):  # seeds 0-4: runs older than the predictions file
        _predictions(tmp_path, "tuned", seed, [1, 0, 0, 0, 0, 0, 0, 0, 0, 0])  # 10% wrong
        _predictions(tmp_path, "cutmix", seed, [1, 1, 0, 0, 0, 0, 0, 0, 0, 0])  # 20% wrong
    primary, secondary = paired_design.comparisons(DESIGN, rows, tmp_path, "test")
    assert primary["image_seeds"] == list(range(5, 20)) and len(primary["seeds"]) == 20
    lo, hi = primary["images"]
    assert lo <= -10.0 <= hi  # the interval of the predictions' own difference, in points
    assert secondary["images"] is None and secondary["image_seeds"] == []  # official: no predictions
    lines = paired_design.comparison_lines(DESIGN, [primary, secondary], True, "PROTOCOL")
    assert any(line.startswith("| tuned − cutmix |") and "(15 seeds with predictions)" in line for line in lines)
    _predictions(tmp_path, "tuned", 0, [1] * 12)  # other images: 12, not 10
    _predictions(tmp_path, "cutmix", 0, [1] * 12)
    with pytest.raises(SystemExit, match="scored on different test images"):
        paired_design.comparisons(DESIGN, rows, tmp_path, "test")
