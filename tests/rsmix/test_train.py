"""End-to-end tests of ``rsmix train`` (``train.py``): real, tiny training runs on the CPU. Every
method, its options and config, one data path (the loader's batches), normalisation from the data,
a diverged run, torchrun, and bad input.

Nothing of the training loop is mocked. Where a test needs to see inside a run it wraps a function
of ``rsmix.train`` (a spy that calls the real one) or injects a crash."""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, Dict, List

import pytest
import torch

import rsmix.train as train_mod
from conftest import TINY, assert_refused, load_state, one_error_line, read_log, train_one_epoch
from randsaliencymix.mixing import MixUp, NoMix
from rsmix import cli
from rsmix.data import load_dataset, train_val_split
from rsmix.pipeline import DeviceLoader
from rsmix.provenance import read_predictions

pytestmark = pytest.mark.usefixtures("isolated_harness")


DATA = "procedural:300:100"
EPOCH_KEYS = {"epoch", "train_loss", "lr", "seconds", "val_top1_err", "val_top5_err", "val_nll", "val_ece"}
RUN_FILES = ["checkpoint.pt", "config.json", "log.jsonl", "metrics.json"]
FINISHED = sorted([*RUN_FILES, "predictions_val.txt"])  # a finished run without --test
METRICS = ("top1_err", "top5_err", "nll", "ece")


def run_train(out: Path, *extra: str) -> int:
    return cli.main(["train", *TINY, "--out", str(out), *extra])


def assert_sane_metrics(values: Dict[str, Any], prefix: str) -> None:
    for name in METRICS:
        value = values[f"{prefix}_{name}"]
        assert isinstance(value, float) and math.isfinite(value), (prefix, name, value)
    assert 0.0 <= values[f"{prefix}_top5_err"] <= values[f"{prefix}_top1_err"] <= 100.0
    assert values[f"{prefix}_nll"] > 0.0
    assert 0.0 <= values[f"{prefix}_ece"] <= 100.0


# ------------------------------------------------------------------------------------------
# rsmix train, every method
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "method, with_test",
    [
        ("none", True),
        ("mixup", False),
        ("cutmix", True),
        ("saliencymix", False),
        ("saliencymix_per_sample", True),
        ("randsaliencymix", False),
    ],
)
def test_train_every_method_end_to_end(
    tmp_path: Path, capsys: pytest.CaptureFixture, method: str, with_test: bool
) -> None:
    out = tmp_path / "run"
    assert run_train(out, "--method", method, "--epochs", "2", *(["--test"] if with_test else [])) == 0

    predictions = ["predictions_test.txt", "predictions_val.txt"] if with_test else ["predictions_val.txt"]
    assert sorted(p.name for p in out.iterdir()) == sorted(RUN_FILES + predictions)  # and no temporaries
    config = json.loads((out / "config.json").read_text())
    assert (config["method"], config["epochs"], config["batch_size"], config["data"]) == (method, 2, 32, DATA)
    assert config["model"] == "fast_cnn" and config["test"] is with_test and config["mix"] == {}

    log = read_log(out)
    assert [r["epoch"] for r in log] == [0, 1]  # one JSON line per epoch
    for record in log:
        assert EPOCH_KEYS <= set(record)
        assert math.isfinite(record["train_loss"]) and record["train_loss"] > 0
        assert record["seconds"] > 0
        assert_sane_metrics(record, "val")

    metrics = json.loads((out / "metrics.json").read_text())
    assert_sane_metrics(metrics, "val")
    assert metrics["val_top1_err"] == log[-1]["val_top1_err"]
    assert (metrics["method"], metrics["epochs"], metrics["model"]) == (method, 2, "fast_cnn")
    assert metrics["train_images"] + metrics["val_images"] == 300
    has_test = {k for k in metrics if k.startswith("test_")}
    if with_test:
        assert_sane_metrics(metrics, "test")
        assert metrics["test_images"] == 100
    else:
        assert has_test == set()
    # per-image predictions of every split scored, agreeing with the split's top-1 error
    for split in ("val", "test") if with_test else ("val",):
        rows = read_predictions(out / f"predictions_{split}.txt")
        assert rows.shape == (metrics[f"{split}_images"], 2)
        wrong = (rows[:, 0] != rows[:, 1]).double().mean().item() * 100
        assert wrong == pytest.approx(metrics[f"{split}_top1_err"], abs=1e-9)
    assert set(metrics["code_version"]) == {"commit", "dirty"}  # this checkout is a git repository
    assert isinstance(metrics["code_version"]["commit"], str) and len(metrics["code_version"]["commit"]) == 40

    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["method"] == method and ("test_top1_err" in printed) is with_test

    state = load_state(out)
    assert state["epoch"] == 2 and state["config"] == config
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_mix_opt_reaches_the_operator(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    made = []
    real = train_mod.build_mixer

    def spy(*args: Any, **kwargs: Any):
        mixer = real(*args, **kwargs)
        made.append(mixer)
        return mixer

    monkeypatch.setattr(train_mod, "build_mixer", spy)
    out = tmp_path / "run"
    assert (
        run_train(out, "--method", "mixup", "--epochs", "1", "--mix-opt", "alpha=0.5", "--mix-opt", "mode=sample") == 0
    )
    mixer = made[-1]  # the operator the training loop used
    assert isinstance(mixer, MixUp)
    assert (mixer.alpha, mixer.mode, mixer.num_classes) == (0.5, "sample", 10)
    assert json.loads((out / "config.json").read_text())["mix"] == {"alpha": 0.5, "mode": "sample"}


def test_yaml_config_and_flags_override_it(tmp_path: Path) -> None:
    config = tmp_path / "run.yaml"
    config.write_text(
        textwrap.dedent(f"""\
        data: "{DATA}"
        method: cutmix
        epochs: 5
        batch_size: 64
        seed: 3
        schedule: multistep
        mix:
          alpha: 0.3
        """)
    )
    out = tmp_path / "run"
    rc = cli.main(
        [
            "train",
            "--config",
            str(config),
            "--epochs",
            "1",
            "--batch-size",
            "32",
            "--threads",
            "1",
            "--mix-opt",
            "p=0.5",
            "--no-progress",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    resolved = json.loads((out / "config.json").read_text())
    assert resolved["method"] == "cutmix" and resolved["seed"] == 3 and resolved["schedule"] == "multistep"
    assert resolved["epochs"] == 1 and resolved["batch_size"] == 32  # flags win
    assert resolved["mix"] == {"alpha": 0.3, "p": 0.5}  # --mix-opt adds to the file's options
    assert len(read_log(out)) == 1
    assert json.loads((out / "metrics.json").read_text())["seed"] == 3


# ------------------------------------------------------------------------------------------
# Two CPU processes with torchrun (gloo)
# ------------------------------------------------------------------------------------------

_DDP_DRIVER = '''\
"""`python -m rsmix ARGS` under torchrun, keeping each rank's model to compare ranks."""
import os, runpy, sys
import torch
import torch.distributed as dist
import rsmix.train as T

made = []
real = T.build_model
def keep(*args, **kwargs):
    made.append(real(*args, **kwargs))
    return made[-1]
T.build_model = keep

sys.argv = ["rsmix"] + sys.argv[1:]
result_dir = __import__("pathlib").Path(os.environ["RSMIX_TEST_RESULTS"])
try:
    runpy.run_module("rsmix", run_name="__main__", alter_sys=True)
    code = 0
except SystemExit as exc:
    code = exc.code
torch.save({"model": made[-1].state_dict(), "code": code, "rank": dist.get_rank(),
            "world": dist.get_world_size()}, result_dir / f"rank{dist.get_rank()}.pt")
dist.destroy_process_group()
sys.exit(code)
'''


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_torchrun_two_cpu_processes(tmp_path: Path) -> None:
    driver = tmp_path / "ddp_driver.py"
    driver.write_text(_DDP_DRIVER)
    results = tmp_path / "ranks"
    results.mkdir()
    out = tmp_path / "ddp"
    env = dict(os.environ, RSMIX_BACKEND="gloo", OMP_NUM_THREADS="1", RSMIX_TEST_RESULTS=str(results))
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(_free_port()),
        str(driver),
        "train",
        *TINY,
        "--method",
        "cutmix",
        "--epochs",
        "2",
        "--out",
        str(out),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    assert sorted(p.name for p in out.iterdir()) == FINISHED
    log = read_log(out)
    assert [r["epoch"] for r in log] == [0, 1]
    for record in log:
        assert EPOCH_KEYS <= set(record) and math.isfinite(record["train_loss"])
        assert_sane_metrics(record, "val")
    metrics = json.loads((out / "metrics.json").read_text())
    assert_sane_metrics(metrics, "val")
    assert proc.stdout.count('"train_images"') == 1  # only rank 0 reports

    state = load_state(out)
    # Every rank saved its own mixing generator, seeded differently: their states differ.
    assert isinstance(state["mix_gen"], list) and len(state["mix_gen"]) == 2
    assert not torch.equal(state["mix_gen"][0], state["mix_gen"][1])
    # DDP keeps the weights identical on both ranks (BN running statistics are per rank
    # between the broadcasts at each forward, so only parameters are compared).
    ranks = [torch.load(results / f"rank{r}.pt", weights_only=False) for r in (0, 1)]
    assert [(r["rank"], r["world"], r["code"]) for r in ranks] == [(0, 2, 0), (1, 2, 0)]
    from rsmix.models import build_model

    params = [name for name, _ in build_model("fast_cnn", 10).named_parameters()]
    assert params
    for name in params:
        assert torch.equal(ranks[0]["model"][name], ranks[1]["model"][name]), name
        assert torch.equal(ranks[0]["model"][name], state["model"][name]), name


# ------------------------------------------------------------------------------------------
# Bad input: exit 2, one line naming the problem and the accepted values, nothing written
# ------------------------------------------------------------------------------------------

BAD_TRAIN = {
    "unknown method": (["--method", "foo"], ["'foo'", "none, mixup, cutmix", "randsaliencymix"]),
    "unknown model": (["--model", "foo"], ["'foo'", "fast_cnn", "resnet18"]),
    "unknown schedule": (["--schedule", "foo"], ["'foo'", "cosine", "multistep"]),
    "negative alpha": (["--method", "mixup", "--mix-opt", "alpha=-1"], ["alpha", "> 0", "-1"]),
    "unknown mix option": (["--method", "cutmix", "--mix-opt", "bogus=1"], ["'bogus'", "alpha"]),
    "mix option without value": (["--method", "mixup", "--mix-opt", "alpha"], ["'alpha'", "KEY=VALUE"]),
    "options for none": (["--method", "none", "--mix-opt", "alpha=1"], ["none", "alpha"]),
    "missing data": (["--data", "{tmp}/missing"], ["missing", "procedural", "cifar10"]),
    "empty data folder": (["--data", "{tmp}/empty"], ["empty", ".png"]),
    "amp, replaced by precision": (["--amp"], ["--amp", "--precision", "fp16", "bf16"]),
    "fp16 on cpu": (["--precision", "fp16"], ["fp16", "CUDA", "bf16"]),
    "unknown precision": (["--precision", "int8"], ["int8", "fp32", "bf16"]),
    "unknown device": (["--device", "foo"], ["'foo'", "cpu"]),
    "batch larger than the training set": (["--batch-size", "1000"], ["1000", "training images"]),
    "zero epochs": (["--epochs", "0"], ["epochs", ">= 1"]),
    "unknown yaml key": (["--config", "{tmp}/unknown.yaml"], ["'epoch'", "'epochs'"]),
    "yaml value of the wrong type": (["--config", "{tmp}/badtype.yaml"], ["'lr'", "number"]),
    "invalid yaml": (["--config", "{tmp}/broken.yaml"], ["broken.yaml", "YAML"]),
    "missing yaml": (["--config", "{tmp}/absent.yaml"], ["absent.yaml", "does not exist"]),
}


@pytest.mark.parametrize("case", sorted(BAD_TRAIN))
def test_bad_train_input_is_one_line_exit_2_and_writes_nothing(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "unknown.yaml").write_text("epoch: 3\n")
    (tmp_path / "badtype.yaml").write_text("lr: fast\n")
    (tmp_path / "broken.yaml").write_text("epochs: [1,\n")
    flags, expected = BAD_TRAIN[case]
    flags = [f.format(tmp=tmp_path) for f in flags]
    out = tmp_path / "out"
    before = set(tmp_path.iterdir())
    rc = cli.main(["train", *TINY, "--epochs", "1", *flags, "--out", str(out)])
    assert_refused(capsys, rc, "train", expected)
    assert not out.exists()
    assert set(tmp_path.iterdir()) == before


# ------------------------------------------------------------------------------------------
# One data path
# ------------------------------------------------------------------------------------------


def test_training_batches_are_the_loaders_batches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """train() takes its batches from DeviceLoader: with the run's data generator, the loader
    yields exactly what the operator received, batch for batch."""
    seen: List[torch.Tensor] = []

    class Recorder(NoMix):
        def forward(self, x, y, **kw):  # type: ignore[override]
            seen.append(x.clone())
            return super().forward(x, y, **kw)

    monkeypatch.setattr(train_mod, "build_mixer", lambda *a, **k: Recorder(num_classes=10))
    assert train_one_epoch(tmp_path / "run", "--seed", "3") == 0
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    train_ds, _ = train_val_split(load_dataset(DATA, "train"), 0.1, seed=0)
    gen = torch.Generator().manual_seed(3 * 1_000_003 + 1)
    loader = DeviceLoader.from_dataset(train_ds, 32, gen, mean=cfg["mean"], std=cfg["std"], drop_last=True)
    expected = [x for x, _ in loader]
    assert len(seen) == len(expected) == len(loader)
    for a, b in zip(seen, expected):
        assert torch.equal(a, b)


# ------------------------------------------------------------------------------------------
# Normalisation from the data
# ------------------------------------------------------------------------------------------


def test_normalisation_comes_from_the_training_split_and_is_saved(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert train_one_epoch(out) == 0
    train_ds, _ = train_val_split(load_dataset(DATA, "train"), 0.1, seed=0)
    mean, std = train_ds.channel_stats()
    config = json.loads((out / "config.json").read_text())
    assert config["mean"] == pytest.approx(list(mean), abs=1e-6)
    assert config["std"] == pytest.approx(list(std), abs=1e-6)
    state = torch.load(out / "checkpoint.pt", weights_only=False)
    assert state["config"]["mean"] == config["mean"] and state["classes"] == train_ds.classes


def test_given_normalisation_is_used(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert train_one_epoch(out, "--mean", "0.5,0.5,0.5", "--std", "0.25,0.25,0.25") == 0
    config = json.loads((out / "config.json").read_text())
    assert (config["mean"], config["std"]) == ([0.5] * 3, [0.25] * 3)


def test_normalisation_of_the_wrong_channel_count_is_a_usage_error(tmp_path: Path, capsys) -> None:
    assert train_one_epoch(tmp_path / "run", "--mean", "0.5", "--std", "0.2") == 2
    assert "3 channels" in one_error_line(capsys, "train")
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------------------------------------
# Silent wrong results and clear errors
# ------------------------------------------------------------------------------------------


def test_diverged_training_is_a_clear_error_not_nan_in_json(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setattr(train_mod, "soft_target_cross_entropy", lambda logits, y: logits.sum() * float("nan"))
    assert train_one_epoch(tmp_path / "run") == 2
    assert "diverged" in one_error_line(capsys, "train")
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_a_library_bug_surfaces_with_its_traceback(tmp_path: Path, monkeypatch) -> None:
    def bug(*args: Any, **kwargs: Any) -> None:
        raise ValueError("Expected a bug, but got one instead.")

    monkeypatch.setattr(train_mod, "_train_epoch", bug)
    with pytest.raises(ValueError, match="a bug"):
        train_one_epoch(tmp_path / "run")
