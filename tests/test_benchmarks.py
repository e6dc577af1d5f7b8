"""The benchmark scripts run end to end on a tiny setting and write their tables (not their speed)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "benchmarks" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_train_step_benchmark_times_every_saliency_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RSMIX_CACHE", str(tmp_path / "cache"))
    threads = torch.get_num_threads()
    out = tmp_path / "train_step.md"
    try:
        code = _load("train_step").main(
            ["--data", "procedural:64:16", "--batch-size", "16", "--steps", "1", "--threads", "1",
             "--methods", "none,cutmix,randsaliencymix", "--sources", "operator,fine_grained_cached,cam",
             "--setups", "fast_cnn@32,fast_resnet@64:resized_crop", "--out", str(out)]
        )  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    assert code == 0
    text = out.read_text()
    for setup in ("fast_cnn@32 pad_crop", "fast_resnet@64 resized_crop"):
        for label in ("none", "cutmix", "randsaliencymix", "randsaliencymix (fine_grained_cached)",
                      "randsaliencymix (cam)"):  # fmt: skip
            assert f"| {setup} | {label} |" in text
        assert f"- {setup}, randsaliencymix (cam): step" in text
    assert "## Cached maps: the one-time cost" in text


def test_train_step_benchmark_puts_precisions_side_by_side(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RSMIX_CACHE", str(tmp_path / "cache"))
    threads = torch.get_num_threads()
    out = tmp_path / "train_step.md"
    try:
        code = _load("train_step").main(
            ["--data", "procedural:64:16", "--batch-size", "16", "--steps", "1", "--threads", "1",
             "--methods", "none,cutmix", "--setups", "fast_cnn@32", "--precisions", "fp32,bf16", "--out", str(out)]
        )  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    assert code == 0
    text = out.read_text()
    for label in ("none [fp32]", "none [bf16]", "cutmix [fp32]", "cutmix [bf16]"):
        assert f"| fast_cnn@32 pad_crop | {label} |" in text
    assert "## Precisions side by side (fp32, bf16)" in text and "amx_bf16" in text
    assert text.count("| fast_cnn@32 pad_crop | cutmix | ") == 1  # one line per method in that table


def test_train_step_benchmark_refuses_an_unknown_precision(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="expected --precisions"):
        _load("train_step").main(["--precisions", "fp8", "--out", str(tmp_path / "x.md")])


def test_train_step_benchmark_refuses_an_unknown_source(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="unknown sources"):
        _load("train_step").main(["--sources", "bogus", "--out", str(tmp_path / "x.md")])
