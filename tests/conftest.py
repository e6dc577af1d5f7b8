"""Shared test configuration.

``isolated_harness``: what every test that trains or loads data through the harness runs under
(``pytestmark = pytest.mark.usefixtures("isolated_harness")``).

Under CI (``CI`` set) hypothesis runs derandomised, so a submission's CI result depends on the code
alone; locally it explores new examples on every run.
"""

import functools
import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Iterator

import pytest
import torch
from hypothesis import settings

ROOT = Path(__file__).resolve().parent.parent

settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


@pytest.fixture()
def isolated_harness(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A private data cache, one thread per process (2 shared CPU cores), and no inherited DDP or
    ``rsmix compare`` environment."""
    monkeypatch.setenv("RSMIX_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "RSMIX_PARENT_PID"):
        monkeypatch.delenv(name, raising=False)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# The test tiers (``make test`` runs every test, ``make test-fast`` those not marked ``slow``).
# Whole files marked ``slow``: they train models end to end through the harness, run ``rsmix``
# commands, torchrun, the examples, wheel builds, Lightning or the study's scripts, and take more
# than ~0.5 s a test (measured with ``pytest --durations``). Slow tests in the other files carry
# ``@pytest.mark.slow`` themselves; so does a test that uses one of SLOW_FIXTURES.
SLOW_FILES = frozenset(
    {
        "test_benchmarks.py",  # benchmark scripts: training steps
        "test_cached_maps.py",  # trains on cached saliency maps
        "test_cli_faults.py",  # rsmix compare/train into a prepared study
        "test_compare_cli.py",  # rsmix compare end to end
        "test_examples.py",  # the examples, torchrun
        "test_gpu_check.py",  # benchmarks/gpu_check.py dry mode, a pytest subprocess
        "test_hardening.py",  # train/eval/resume through the harness
        "test_harness.py",  # training runs, resume, killed compare
        "test_lightning.py",  # Lightning training
        "test_package.py",  # sdist/wheel builds, a fresh venv
        "test_precision.py",  # bf16/fp32 training runs
        "test_study_report.py",  # the study's report script over run folders
        "test_study_tools.py",  # the study's lanes (screen.sh, main.sh) and occlusion scoring
        "test_train.py",  # every method trained end to end, torchrun, SIGKILL resume
    }
)
SLOW_FIXTURES = frozenset({"timm_mixup"})  # reads timm out of a wheel, pip-downloading it where it is missing


def pytest_collection_modifyitems(config: pytest.Config, items: list) -> None:
    """Mark ``cuda`` every test (or parameter) that is skipped without a CUDA device, so that a GPU
    machine runs exactly those with ``-m cuda`` (benchmarks/gpu_check.py); mark ``slow`` the tests
    of SLOW_FILES and those using SLOW_FIXTURES (``make test-fast`` runs ``-m "not slow"``)."""
    missing = sorted(name for name in SLOW_FILES if not (ROOT / "tests" / name).is_file())
    if missing:  # a renamed file would otherwise join the fast tier unnoticed
        raise pytest.UsageError(f"tests/conftest.py SLOW_FILES names no such file: {', '.join(missing)}")
    for item in items:
        if item.path.name in SLOW_FILES or SLOW_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
        for mark in item.iter_markers(name="skipif"):
            reason = str(mark.kwargs.get("reason", "")).lower()
            if ("cuda" in reason or "gpu" in reason) and "present" not in reason:  # not "skip where CUDA is present"
                item.add_marker(pytest.mark.cuda)
                break


@functools.cache
def load_script(relpath: str, name: str) -> ModuleType:
    """A script of the repository (``study/...``, ``benchmarks/...``) loaded as module ``name``,
    once per test session (registered in ``sys.modules`` so that its dataclasses and pickles work).
    Test files import it: ``from conftest import load_script``."""
    spec = importlib.util.spec_from_file_location(name, ROOT / relpath)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {relpath}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
