"""The benchmark scripts run end to end on a tiny setting and write their tables (not their speed)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from conftest import ROOT, load_script


def _load(name: str):
    return load_script(f"benchmarks/{name}.py", f"bench_{name}")


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


def test_ops_benchmark_assembles_its_report_from_its_parts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """benchmarks/ops.py and its parts (benchmarks/opsbench/): every row in table order, and a --quick
    report written from stand-in timings (the timing itself is not run here) with every section."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))  # as `python benchmarks/ops.py` has it
    ops = _load("ops")
    rows = ops.all_rows()
    keys = [row.key for row in rows]
    assert len(set(keys)) == len(keys) and keys[:3] == ["clone", "copy", "fg_u8"] and keys[-1] == "k_mixup"
    assert {"cv_fg", "cv_sr", "timm_mixup", "rsm", "rsm_maps", "cam"} <= set(keys)

    def stand_in(batch, side, device, repeats, min_repeat_s, rows, log):
        res = {r.key: ops.Result(median_s=1e-3 * (i + 1), samples=[1e-3 * (i + 1)], peak_bytes=1000 * i)
               for i, r in enumerate(rows)}  # fmt: skip
        res["_batch"] = ops.Result(peak_bytes=batch * 3 * side * side * 4)
        res.update({"interleaved:" + k: res[k] for k in ops.INTERLEAVED})
        return res, "stand-in"

    monkeypatch.setattr(ops, "run_workload", stand_in)
    out = tmp_path / "bench.md"
    assert ops.main(["--quick", "--device", "cpu", "--out", str(out)]) == 0
    text = out.read_text(encoding="utf-8")
    for section in ("## Environment", "## Results", "## Targets", "## Spread", "## Interleaved (targets 1 and 3)",
                    "## Reading these numbers"):  # fmt: skip
        assert section in text
    for target in ("**1. MixUp", "**2. `spectral_residual`", "**3. `RandSaliencyMix", "**4. Peak extra memory",
                   "**Earlier target (issue 2)"):  # fmt: skip
        assert target in text
    assert "--quick smoke run" in text and all(f"| {row.label} |" in text for row in rows)


def test_ops_benchmark_reports_a_failed_interleaved_row_as_not_measured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A row that fails (e.g. timm's wheel missing) is left out of the interleaved timing; its targets
    read NOT MEASURED instead of the report crashing with a KeyError."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    ops = _load("ops")

    def stand_in(batch, side, device, repeats, min_repeat_s, rows, log):
        res = {r.key: ops.Result(median_s=1e-3 * (i + 1), samples=[1e-3 * (i + 1)], peak_bytes=1000 * i)
               for i, r in enumerate(rows)}  # fmt: skip
        res["timm_mixup"] = ops.Result(error="ImportError: no timm")
        res["_batch"] = ops.Result(peak_bytes=batch * 3 * side * side * 4)
        res.update({"interleaved:" + k: res[k] for k in ops.INTERLEAVED if k != "timm_mixup"})
        return res, "stand-in"

    monkeypatch.setattr(ops, "run_workload", stand_in)
    out = tmp_path / "bench.md"
    assert ops.main(["--quick", "--device", "cpu", "--out", str(out)]) == 0
    text = out.read_text(encoding="utf-8")
    assert "timm `elem`: **NOT MEASURED** (ok; not timed (its row failed" in text


def test_a_row_that_fails_only_when_timed_interleaved_is_reported_not_fatal(monkeypatch: pytest.MonkeyPatch) -> None:
    """time_interleaved: a function that raises after its warm-up (a row that passed the main table)
    leaves the rounds with its error; the others are timed."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    from opsbench.common import time_interleaved

    calls = {"n": 0}

    def flaky() -> None:
        calls["n"] += 1
        if calls["n"] > 2:
            raise RuntimeError("out of memory")

    res = time_interleaved({"ok": lambda: None, "flaky": flaky}, rounds=3, device=torch.device("cpu"), min_repeat_s=0)
    assert res["ok"].error is None and len(res["ok"].samples) == 3
    assert res["flaky"].error is not None and "out of memory" in res["flaky"].error and res["flaky"].median_s is None


def test_screen_step_benchmark_reads_the_candidates_from_the_lanes(tmp_path: Path) -> None:
    bench = _load("screen_step")
    candidates = bench.screen_candidates()
    names = [c[0] for c in candidates]
    assert names[:2] == ["rsm_uniform", "rsm_cam8"] and "cutmix_selfcam" in names and len(names) == 8
    cam8 = dict((c[0], c) for c in candidates)["rsm_cam8"]
    assert cam8[1] == "cam" and cam8[2] == 0.0 and "tau_src=8" in cam8[3] and cam8[3].startswith("randsaliencymix:")
    threads = torch.get_num_threads()
    out = tmp_path / "screen_step.md"
    try:
        code = bench.main(
            ["--setup", "fast_cnn@32", "--data", "procedural:64:8", "--batch-size", "16", "--steps", "1",
             "--precision", "fp32", "--only", "rsm_uniform,rsm_cam8_selfcam", "--out", str(out)]
        )  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    assert code == 0
    text = out.read_text()
    assert "| cutmix (part 1's reference) | operator | 0 |" in text and "| 1.00x |" in text
    assert "| rsm_cam8_selfcam | cam | 0.5 |" in text and "| rsm_cam16 |" not in text
    with pytest.raises(SystemExit, match="unknown candidates"):
        bench.main(["--only", "rsm_bogus", "--out", str(tmp_path / "x.md")])
