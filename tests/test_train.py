"""End-to-end tests of ``rsmix train`` and ``rsmix eval``: real, tiny training runs on the CPU.

Nothing of the training loop is mocked. Where a test needs to see inside a run it wraps a
function of ``rsmix.train`` (a spy that calls the real one) or injects a crash.
"""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, Dict, List

import pytest
import torch

import rsmix.checkpoint as checkpoint_mod
import rsmix.files as files_mod
import rsmix.train as train_mod
from randsaliencymix.mixing import MixUp
from rsmix import cli
from rsmix.provenance import read_predictions

DATA = "procedural:300:100"
TINY = [
    "--data",
    DATA,
    "--batch-size",
    "32",
    "--model",
    "fast_cnn",
    "--threads",
    "1",
    "--no-progress",
    "--precision",
    "fp32",
]
EPOCH_KEYS = {"epoch", "train_loss", "lr", "seconds", "val_top1_err", "val_top5_err", "val_nll", "val_ece"}
RUN_FILES = ["checkpoint.pt", "config.json", "log.jsonl", "metrics.json"]
FINISHED = sorted([*RUN_FILES, "predictions_val.txt"])  # a finished run without --test
METRICS = ("top1_err", "top5_err", "nll", "ece")


pytestmark = pytest.mark.usefixtures("isolated_harness")


def run_train(out: Path, *extra: str) -> int:
    return cli.main(["train", *TINY, "--out", str(out), *extra])


def read_log(run: Path) -> List[Dict[str, Any]]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines() if line.strip()]


def load_state(run: Path) -> Dict[str, Any]:
    return torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=False)


def assert_sane_metrics(values: Dict[str, Any], prefix: str) -> None:
    for name in METRICS:
        value = values[f"{prefix}_{name}"]
        assert isinstance(value, float) and math.isfinite(value), (prefix, name, value)
    assert 0.0 <= values[f"{prefix}_top5_err"] <= values[f"{prefix}_top1_err"] <= 100.0
    assert values[f"{prefix}_nll"] > 0.0
    assert 0.0 <= values[f"{prefix}_ece"] <= 100.0


# ------------------------------------------------------------------------------------------
# 1. rsmix train, every method
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


@pytest.mark.parametrize(
    "method, saliency", [("cutmix", "operator"), ("randsaliencymix", "cam"), ("guidedmixup", "fine_grained_cached")]
)
def test_self_cam_labels_in_training(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, method: str, saliency: str
) -> None:
    """--self-cam KAPPA: recorded in config and metrics, the labels read from the training forward
    (every step's targets come from a SelfCAMLabels step of the run's model), resumable; with any
    saliency source."""
    from randsaliencymix import selfcam

    steps = []
    real = selfcam.SelfCAMLabels.step

    def spy(self, *args: Any, **kwargs: Any):
        steps.append(self.kappa)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(selfcam.SelfCAMLabels, "step", spy)
    out = tmp_path / "run"
    flags = (
        "--method",
        method,
        "--saliency",
        saliency,
        "--self-cam",
        "0.5",
        "--model",
        "fast_resnet",
        "--image-size",
        "64",
    )
    assert run_train(out, *flags, "--epochs", "1") == 0
    assert json.loads((out / "config.json").read_text())["self_cam"] == 0.5
    assert json.loads((out / "metrics.json").read_text())["self_cam"] == 0.5
    assert steps and set(steps) == {0.5}
    # resumable with its own settings, refused with another kappa
    assert run_train(out, *flags, "--epochs", "2", "--resume", "--extend") == 0
    assert read_log(out)[-1]["epoch"] == 1
    assert run_train(out, "--method", method, "--saliency", saliency, "--self-cam", "0.2", "--model", "fast_resnet",
                     "--image-size", "64", "--epochs", "2", "--resume") == 2  # fmt: skip


@pytest.mark.parametrize("kappa", ["-0.1", "1.5"])
def test_self_cam_out_of_range_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture, kappa: str) -> None:
    assert run_train(tmp_path / "run", "--method", "cutmix", "--self-cam", kappa, "--epochs", "1") == 2
    assert "self_cam (kappa) must be in [0, 1]" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_self_cam_with_no_mixing_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert run_train(tmp_path / "run", "--method", "none", "--self-cam", "0.5", "--epochs", "1") == 2
    assert "--self-cam rewrites the labels of mixed samples, and method 'none' mixes none" in capsys.readouterr().err


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
# 2. Resume: a killed or crashed run continues to the result of an uninterrupted one
# ------------------------------------------------------------------------------------------

RESUME = [*TINY, "--method", "randsaliencymix", "--epochs", "3", "--seed", "1"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("uninterrupted") / "run"
    threads = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RSMIX_CACHE", str(out.parent / "cache"))
        mp.delenv("WORLD_SIZE", raising=False)
        assert cli.main(["train", *RESUME, "--out", str(out)]) == 0
    torch.set_num_threads(threads)
    return out


def assert_same_run(a: Path, b: Path) -> None:
    sa, sb = load_state(a), load_state(b)
    assert sa["epoch"] == sb["epoch"] == 3
    assert sa["model"].keys() == sb["model"].keys()
    for key in sa["model"]:
        assert torch.equal(sa["model"][key], sb["model"][key]), key
    oa, ob = sa["optimizer"], sb["optimizer"]
    assert oa["param_groups"] == ob["param_groups"]
    assert oa["state"].keys() == ob["state"].keys()
    for key in oa["state"]:
        for name, value in oa["state"][key].items():
            assert (
                torch.equal(value, ob["state"][key][name])
                if torch.is_tensor(value)
                else value == ob["state"][key][name]
            )
    for key in ("data_gen", "mix_gen", "torch_rng"):
        assert torch.equal(sa[key], sb[key]), key
    assert sa["config"] == sb["config"]

    def without_time(records: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
        return [{k: v for k, v in r.items() if k != "seconds"} for r in records]

    assert len(read_log(a)) == 3
    assert without_time(read_log(a)) == without_time(read_log(b))
    ma, mb = (json.loads((run / "metrics.json").read_text()) for run in (a, b))
    ma.pop("train_seconds"), mb.pop("train_seconds")
    assert ma == mb


def test_resume_after_sigkill_matches_uninterrupted_run(tmp_path: Path, uninterrupted: Path) -> None:
    out = tmp_path / "killed"
    checkpoint = out / "checkpoint.pt"
    proc = subprocess.Popen(
        [sys.executable, "-m", "rsmix", "train", *RESUME, "--out", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=os.environ.copy(),
    )
    try:
        deadline = time.monotonic() + 180
        while not checkpoint.exists():  # written after the first epoch, by a rename
            if proc.poll() is not None:
                pytest.fail(
                    f"training exited ({proc.returncode}) before its first checkpoint: "
                    f"{proc.stderr.read().decode()[-2000:]}"
                )
            if time.monotonic() > deadline:
                pytest.fail("no checkpoint within 180 s")
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL

    # A complete checkpoint of an unfinished run. A kill during the next atomic write may leave its
    # temporary file (never a partial checkpoint.pt); resuming removes it (checked below).
    names = sorted(p.name for p in out.iterdir() if not p.name.startswith(".checkpoint.pt."))
    assert names == ["checkpoint.pt", "config.json", "log.jsonl"]
    state = load_state(out)
    assert state["epoch"] in (1, 2)
    assert len(read_log(out)) >= state["epoch"]

    assert cli.main(["train", *RESUME, "--out", str(out), "--resume"]) == 0
    assert sorted(p.name for p in out.iterdir()) == FINISHED
    assert_same_run(uninterrupted, out)


class _Crash(Exception):
    pass


def test_resume_after_crash_between_log_line_and_checkpoint(
    tmp_path: Path, uninterrupted: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Deterministic twin of the kill test: the run dies after logging its second epoch but before
    that epoch's checkpoint, a kill cut a third log line short and left an atomic write's temp file."""
    out = tmp_path / "crashed"
    real_save = checkpoint_mod.atomic_save

    def crash_at_second_checkpoint(obj: Any, path: Path) -> None:
        if obj["epoch"] == 2:
            raise _Crash
        real_save(obj, path)

    monkeypatch.setattr(checkpoint_mod, "atomic_save", crash_at_second_checkpoint)
    with pytest.raises(_Crash):
        cli.main(["train", *RESUME, "--out", str(out)])
    monkeypatch.setattr(checkpoint_mod, "atomic_save", real_save)

    assert load_state(out)["epoch"] == 1
    assert [r["epoch"] for r in read_log(out)] == [0, 1]  # one line past the checkpoint
    with open(out / "log.jsonl", "a") as fh:
        fh.write('{"epoch": 2, "train_lo')
    (out / ".checkpoint.pt.k1ll3d").write_bytes(b"half a checkpoint")

    assert cli.main(["train", *RESUME, "--out", str(out), "--resume"]) == 0
    assert sorted(p.name for p in out.iterdir()) == FINISHED
    assert_same_run(uninterrupted, out)

    # Resuming a finished run trains nothing and gives the same numbers again.
    before = load_state(out)["model"]
    assert cli.main(["train", *RESUME, "--out", str(out), "--resume"]) == 0
    assert all(torch.equal(v, load_state(out)["model"][k]) for k, v in before.items())
    assert_same_run(uninterrupted, out)


def test_atomic_write_keeps_the_old_file_when_interrupted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "checkpoint.pt"
    files_mod.atomic_save({"epoch": 1}, path)

    def interrupted(src: str, dst: str) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(files_mod.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        files_mod.atomic_save({"epoch": 2}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=False) == {"epoch": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


# ------------------------------------------------------------------------------------------
# 3. Two CPU processes with torchrun (gloo)
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
# 4. rsmix eval
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def eval_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("eval") / "run"
    threads = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("WORLD_SIZE", raising=False)
        assert cli.main(["train", *TINY, "--method", "none", "--epochs", "1", "--test", "--out", str(out)]) == 0
    torch.set_num_threads(threads)
    return out


@pytest.mark.parametrize("target", ["folder", "file"])
def test_eval_prints_metrics(eval_run: Path, capsys: pytest.CaptureFixture, target: str) -> None:
    capsys.readouterr()
    where = eval_run if target == "folder" else eval_run / "checkpoint.pt"
    assert cli.main(["eval", "--checkpoint", str(where), "--data", DATA, "--split", "test"]) == 0
    captured = capsys.readouterr()
    printed = json.loads(captured.out)
    assert sorted(printed) == sorted(METRICS)
    trained = json.loads((eval_run / "metrics.json").read_text())
    for name in METRICS:  # the same numbers as the run's own test evaluation
        assert printed[name] == pytest.approx(trained[f"test_{name}"], abs=1e-4)


def _image_folder(root: Path, classes: int) -> Path:
    from PIL import Image

    g = torch.Generator().manual_seed(0)
    for c in range(classes):
        folder = root / "test" / f"class{c}"
        folder.mkdir(parents=True)
        for i in range(2):
            pixels = torch.randint(0, 256, (32, 32, 3), generator=g, dtype=torch.uint8).numpy()
            Image.fromarray(pixels).save(folder / f"{i}.png")
    return root


def test_eval_on_a_different_class_count_is_a_usage_error(
    eval_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    data = _image_folder(tmp_path / "three", 3)
    capsys.readouterr()
    rc = cli.main(["eval", "--checkpoint", str(eval_run), "--data", str(data), "--split", "test"])
    err = capsys.readouterr().err
    assert rc == 2
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert err.startswith("rsmix eval: error:") and "3 classes" in err


BAD_EVAL = {
    "no checkpoint": (["--checkpoint", "{tmp}/nothing"], ["no checkpoint", "nothing"]),
    "not a checkpoint": (["--checkpoint", "{tmp}/garbage.pt"], ["cannot read", "garbage.pt"]),
    "unknown split": (["--split", "val"], ["'val'", "'train' or 'test'"]),
    "unknown device": (["--device", "foo"], ["'foo'", "cpu"]),
    "missing data": (["--data", "{tmp}/missing"], ["missing", "procedural"]),
}


@pytest.mark.parametrize("case", sorted(BAD_EVAL))
def test_bad_eval_input_is_one_line_exit_2(
    case: str, eval_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint")
    flags, expected = BAD_EVAL[case]
    argv = ["eval", "--checkpoint", str(eval_run), "--data", DATA, *[f.format(tmp=tmp_path) for f in flags]]
    capsys.readouterr()
    rc = cli.main(argv)
    captured = capsys.readouterr()
    assert rc == 2 and captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rsmix eval: error: "), captured.err
    for fragment in expected:
        assert fragment in lines[0], (fragment, lines[0])


# ------------------------------------------------------------------------------------------
# 6. Bad input: exit 2, one line naming the problem and the accepted values, nothing written
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
    captured = capsys.readouterr()
    assert rc == 2
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rsmix train: error: "), captured.err
    for fragment in expected:
        assert fragment in lines[0], (fragment, lines[0])
    assert not out.exists()
    assert set(tmp_path.iterdir()) == before
