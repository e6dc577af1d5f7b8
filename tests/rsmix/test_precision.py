"""``--precision`` (issue 16): bf16 autocast around the model only, on CPU.

Real tiny training runs, as in ``tests/rsmix/test_train.py``; where a test needs to see inside a run it wraps
a function of the loop with a spy that calls the real one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, List

import pytest
import torch

import rsmix.precision as precision_mod
import rsmix.train as train_mod
from conftest import TINY, assert_same_run, crash_at_checkpoint, harness_env, load_state, read_log
from rsmix import cli
from rsmix.config import TrainConfig
from rsmix.errors import UsageError
from rsmix.evaluate import evaluate_checkpoint, predict
from rsmix.models import build_model

pytestmark = pytest.mark.usefixtures("isolated_harness")


DATA = "procedural:300:100"
BF16 = [*TINY, "--method", "randsaliencymix", "--epochs", "3", "--seed", "1", "--precision", "bf16"]


@pytest.fixture(scope="module")
def bf16_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bf16") / "run"
    with harness_env(out.parent / "cache"):
        assert cli.main(["train", *BF16, "--test", "--out", str(out)]) == 0
    return out


def test_precision_is_in_the_config_and_the_checkpoint(bf16_run: Path) -> None:
    assert json.loads((bf16_run / "config.json").read_text())["precision"] == "bf16"
    assert load_state(bf16_run)["config"]["precision"] == "bf16"


def test_bf16_resume_is_bit_identical_to_the_uninterrupted_run(
    tmp_path: Path, bf16_run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "crashed"
    with crash_at_checkpoint(monkeypatch, epoch=2):
        cli.main(["train", *BF16, "--test", "--out", str(out)])
    assert load_state(out)["epoch"] == 1
    assert cli.main(["train", *BF16, "--test", "--out", str(out), "--resume"]) == 0
    assert_same_run(bf16_run, out)


def test_resume_with_another_precision_is_refused(bf16_run: Path, tmp_path: Path, capsys) -> None:
    before = {p.name: p.read_bytes() for p in bf16_run.iterdir()}
    capsys.readouterr()
    flags = [f if f != "bf16" else "fp32" for f in BF16]
    assert cli.main(["train", *flags, "--test", "--out", str(bf16_run), "--resume"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "precision" in err[0] and "--resume" in err[0], err
    assert {p.name: p.read_bytes() for p in bf16_run.iterdir()} == before  # nothing touched


def test_mixed_batches_are_bit_identical_in_fp32_and_bf16(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The operator (here RandSaliencyMix reading the detector's maps, and patch noise) runs outside
    autocast: every mixed batch and soft target of a bf16 run equals the fp32 run's, bit for bit,
    while the models (and so the losses) differ."""
    seen: List[List[torch.Tensor]] = []
    real_train_epoch = train_mod._train_epoch

    def spy(run: Any, epoch: int, bar: Any) -> Any:
        real_forward = run.mixer.forward

        def record(*args: Any, **kwargs: Any) -> Any:
            xm, y = real_forward(*args, **kwargs)
            assert not torch.is_autocast_enabled("cpu")
            seen[-1].extend([xm.clone(), y.clone()])
            return xm, y

        run.mixer.forward = record
        try:
            return real_train_epoch(run, epoch, bar)
        finally:
            del run.mixer.forward

    monkeypatch.setattr(train_mod, "_train_epoch", spy)
    losses = []
    for precision in ("fp32", "bf16"):
        seen.append([])
        out = tmp_path / precision
        flags = [*TINY, "--method", "randsaliencymix", "--epochs", "2", "--seed", "3", "--precision", precision]
        opts = [f"--mix-opt={kv}" for kv in ("p=1", "tau_src=1", "tau_dst=1", "gamma=0.5", "patch_noise=0.1")]
        assert cli.main(["train", *flags, *opts, "--saliency", "fine_grained", "--out", str(out)]) == 0
        losses.append([r["train_loss"] for r in read_log(out)])
    fp32, bf16 = seen
    assert len(fp32) == len(bf16) > 0
    for a, b in zip(fp32, bf16):
        assert a.dtype == b.dtype == torch.float32 and torch.equal(a, b)
    assert losses[0] != losses[1]  # the model did run in another precision


def test_eval_uses_the_runs_precision_and_fp32_scores_it_closely(bf16_run: Path) -> None:
    trained = json.loads((bf16_run / "metrics.json").read_text())
    own = evaluate_checkpoint(bf16_run, DATA, "test")
    for name in ("top1_err", "nll", "ece"):  # the run's own test scores: they were computed in bf16
        assert own[name] == pytest.approx(trained[f"test_{name}"], abs=1e-6)
    full = evaluate_checkpoint(bf16_run, DATA, "test", precision="fp32")
    assert full["nll"] == pytest.approx(own["nll"], rel=0.02)
    assert abs(full["top1_err"] - own["top1_err"]) <= 3.0  # 100 test images: at most 3 flip


def test_eval_cli_precision_flag(bf16_run: Path, capsys) -> None:
    capsys.readouterr()
    assert cli.main(["eval", "--checkpoint", str(bf16_run), "--data", DATA, "--precision", "fp32"]) == 0
    assert set(json.loads(capsys.readouterr().out)) == {"top1_err", "top5_err", "nll", "ece"}
    assert cli.main(["eval", "--checkpoint", str(bf16_run), "--data", DATA, "--precision", "fp16"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "fp16" in err[0] and "CUDA" in err[0], err


def test_predict_in_bf16_returns_float32_close_to_fp32() -> None:
    torch.manual_seed(0)
    model = build_model("fast_cnn", 10)
    images = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
    kw = {"device": torch.device("cpu"), "mean": (0.5,) * 3, "std": (0.25,) * 3}
    a = predict(model, images, **kw)
    b = predict(model, images, precision="bf16", **kw)
    assert b.dtype == torch.float32 and b.shape == a.shape
    assert torch.allclose(a, b, atol=0.1 * a.abs().max().item() + 1e-3)


def test_bf16_without_native_support_warns_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setattr(precision_mod, "native_bf16", lambda: False)
    capsys.readouterr()
    flags = [*TINY, "--method", "none", "--epochs", "1", "--precision", "bf16"]
    assert cli.main(["train", *flags, "--out", str(tmp_path / "run")]) == 0
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and "bfloat16" in err[0] and "emulated" in err[0], err
    # how much slower, and the way out (issue 28)
    assert "about 10x slower than fp32" in err[0] and "--precision fp32" in err[0], err
    # fp32 says nothing, and neither does bf16 where the CPU has it
    monkeypatch.setattr(precision_mod, "native_bf16", lambda: True)
    assert cli.main(["train", *flags, "--out", str(tmp_path / "run2")]) == 0
    assert capsys.readouterr().err.strip() == ""


def test_the_cpu_flags_are_read() -> None:
    flags = precision_mod.cpu_bf16_flags()
    assert set(flags) == {"amx_bf16", "avx512_bf16"} and all(isinstance(v, bool) for v in flags.values())


@pytest.mark.parametrize(
    "values, expected",
    [
        ({"amp": False}, "fp32"),
        ({"amp": False, "precision": "bf16"}, "bf16"),
    ],
)
def test_old_configs_with_amp_still_load(values: dict, expected: str) -> None:
    assert TrainConfig.from_dict(values).precision == expected


@pytest.mark.parametrize(
    "values, fragments",
    [
        ({"amp": True}, ["fp16", "CUDA"]),  # amp was CUDA float16: still refused on CPU
        ({"amp": "yes"}, ["amp", "true or false"]),
        ({"amp": True, "precision": "bf16"}, ["amp", "bf16", "disagree"]),
        ({"precision": "fp8"}, ["'fp8'", "fp32, bf16, fp16"]),
    ],
)
def test_bad_precision_configs_are_usage_errors(values: dict, fragments: List[str]) -> None:
    with pytest.raises(UsageError) as info:
        TrainConfig.from_dict(values)
    for fragment in fragments:
        assert fragment in str(info.value), (fragment, str(info.value))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_fp16_on_cuda_trains_with_a_scaler(tmp_path: Path) -> None:  # pragma: no cover - no GPU here
    flags = [*TINY, "--method", "cutmix", "--epochs", "1", "--precision", "fp16", "--device", "cuda"]
    assert cli.main(["train", *flags, "--out", str(tmp_path / "run")]) == 0
    assert "scaler" in load_state(tmp_path / "run")


def test_metrics_name_the_hardware_they_were_measured_on(bf16_run: Path) -> None:
    hardware = json.loads((bf16_run / "metrics.json").read_text())["hardware"]
    assert hardware["cpu"] == precision_mod.cpu_name() and hardware["cpu"]
    assert hardware["device"] == "cpu" and isinstance(hardware["threads"], int) and hardware["threads"] >= 1
    assert {k: hardware[k] for k in ("amx_bf16", "avx512_bf16")} == precision_mod.cpu_bf16_flags()


def test_the_cpu_name_falls_back_without_cpuinfo(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_file(*args: Any, **kwargs: Any) -> Any:
        raise OSError("no /proc here")

    monkeypatch.setattr("builtins.open", no_file)
    assert isinstance(precision_mod.cpu_name(), str) and precision_mod.cpu_name()


AUTO = [a for a in TINY if a not in ("--precision", "fp32")]  # TINY pins fp32; these runs ask for auto


@pytest.mark.parametrize("native, chosen", [(True, "bf16"), (False, "fp32")])
def test_auto_is_the_default_and_records_what_it_chose(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys, native: bool, chosen: str
) -> None:
    monkeypatch.setattr(precision_mod, "native_bf16", lambda: native)
    assert TrainConfig().precision == "auto"
    capsys.readouterr()
    out = tmp_path / "run"
    assert cli.main(["train", *AUTO, "--method", "cutmix", "--epochs", "1", "--out", str(out)]) == 0
    assert json.loads((out / "config.json").read_text())["precision"] == chosen
    assert load_state(out)["config"]["precision"] == chosen
    err = capsys.readouterr().err
    assert f"--precision auto: {chosen}" in err


def test_resume_keeps_the_runs_recorded_precision(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 28: --resume --extend of a bf16 run without repeating --precision was refused."""
    out = tmp_path / "run"
    assert (
        cli.main(["train", *AUTO, "--method", "cutmix", "--epochs", "1", "--precision", "bf16", "--out", str(out)]) == 0
    )
    monkeypatch.setattr(precision_mod, "native_bf16", lambda: False)  # auto would choose fp32 here
    assert (
        cli.main(["train", *AUTO, "--method", "cutmix", "--epochs", "2", "--resume", "--extend", "--out", str(out)])
        == 0
    )
    assert json.loads((out / "config.json").read_text())["precision"] == "bf16"
    assert [r["epoch"] for r in read_log(out)] == [0, 1]


def test_auto_in_compare_accepts_the_precision_a_finished_run_chose(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    flags = ["compare", *[a for a in AUTO if a != "--no-progress"], "--methods", "cutmix", "--seeds", "0"]
    monkeypatch.setattr(precision_mod, "native_bf16", lambda: True)
    out = tmp_path / "study"
    assert cli.main([*flags, "--epochs", "1", "--precision", "bf16", "--out", str(out)]) == 0
    capsys.readouterr()
    monkeypatch.setattr(precision_mod, "native_bf16", lambda: False)
    assert cli.main([*flags, "--epochs", "1", "--out", str(out)]) == 0  # auto: the run's bf16 stands
    assert "1 runs finished, 0 to run" in capsys.readouterr().out
    assert cli.main([*flags, "--epochs", "1", "--precision", "fp32", "--out", str(out)]) == 2  # an explicit other one


def test_old_saved_configs_mean_fp32_not_auto() -> None:
    assert TrainConfig.from_saved({"method": "cutmix"}).precision == "fp32"
    assert TrainConfig.from_saved({"method": "cutmix", "amp": False}).precision == "fp32"
    assert TrainConfig.from_saved({"method": "cutmix", "precision": "bf16"}).precision == "bf16"
