"""benchmarks/gpu_check.py in its dry mode on this CPU: every step runs (tests collected, the
benchmarks at their smallest on CPU) and the summary names each; without CUDA the real mode refuses."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from conftest import ROOT, load_script


def _load():
    return load_script("benchmarks/gpu_check.py", "gpu_check")


def test_the_real_steps_are_the_issues_settings(tmp_path: Path) -> None:
    steps = {name: cmd for name, cmd, _ in _load().steps(tmp_path, dry=False)}
    assert ["-m", "cuda"] == steps["cuda_tests"][
        steps["cuda_tests"].index("-m", 2) : steps["cuda_tests"].index("-m", 2) + 2
    ]
    ops = " ".join(steps["ops"])
    assert "--device cuda --sync-debug --workloads 256x32,64x224" in ops
    train = " ".join(steps["train_step"])
    assert "--precisions bf16" in train and "fast_resnet@128:resized_crop,resnet18_imagenet@128:resized_crop" in train
    assert sum(limit for _, _, limit in _load().steps(tmp_path, dry=False)) <= 8 * 60


def test_cuda_tests_are_marked(pytestconfig: pytest.Config) -> None:
    """conftest marks every test skipped without CUDA; the check selects them with -m cuda."""
    import subprocess

    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-m", "cuda", "--collect-only", "-q",
         "tests/library/test_selfcam.py", "tests/library/test_dataset_maps.py"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert "test_selfcam.py::test_cuda_matches_cpu" in out
    assert "test_dataset_maps.py" not in out  # its CUDA-related skip is "where CUDA is present": a CPU test


@pytest.mark.skipif(torch.cuda.is_available(), reason="the dry mode is for a machine without CUDA")
def test_dry_mode_runs_every_step_and_writes_the_summary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    check = _load()
    real = check.steps
    # the test selection is collected as in the dry mode, but only one small file, to keep this test short
    monkeypatch.setattr(
        check,
        "steps",
        lambda out, dry: [
            (n, [*c[:-1], "tests/library/test_selfcam.py"] if n == "cuda_tests" else c, t) for n, c, t in real(out, dry)
        ],
    )
    monkeypatch.setenv("RSMIX_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert check.main([str(tmp_path / "out"), "--dry"]) == 0
    summary = (tmp_path / "out" / "summary.md").read_text()
    for step in ("cuda_tests", "ops", "train_step"):
        assert f"| {step} | ok |" in summary
    assert (tmp_path / "out" / "ops_cuda.md").exists() and (tmp_path / "out" / "train_step_cuda.md").exists()
    with pytest.raises(SystemExit):
        check.main([str(tmp_path / "real")])  # no CUDA: refused, with the way to the dry mode
