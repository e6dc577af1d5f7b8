"""The harness's safety: one data path, normalisation from the data, no lost run, no silent
error, and exit code 2 only for the user's mistakes (``rsmix train``/``eval``/``compare``)."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

import pytest
import torch

import rsmix.files as files_mod
import rsmix.train as train_mod
from randsaliencymix.mixing import NoMix
from rsmix import cli
from rsmix.data import load_dataset, train_val_split
from rsmix.errors import UsageError
from rsmix.methods import METHOD_NAMES, METHODS, build_mixer, get_method
from rsmix.pipeline import DeviceLoader
from rsmix.runs import RunLock

DATA = "procedural:300:100"
TINY = ["--data", DATA, "--precision", "fp32", "--batch-size", "32", "--threads", "1", "--no-progress", "--epochs", "1"]


pytestmark = pytest.mark.usefixtures("isolated_harness")


def train(out: Path, *flags: str) -> int:
    return cli.main(["train", *TINY, *flags, "--out", str(out)])


def one_error_line(capsys: pytest.CaptureFixture, command: str) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"rsmix {command}: error: "), captured.err
    return lines[0]


def mtimes(folder: Path) -> Dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in sorted(folder.iterdir())}


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
    assert train(tmp_path / "run", "--seed", "3") == 0
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    train_ds, _ = train_val_split(load_dataset(DATA, "train"), 0.1, seed=0)
    gen = torch.Generator().manual_seed(3 * 1_000_003 + 1)
    loader = DeviceLoader.from_dataset(train_ds, 32, gen, mean=cfg["mean"], std=cfg["std"], drop_last=True)
    expected = [x for x, _ in loader]
    assert len(seen) == len(expected) == len(loader)
    for a, b in zip(seen, expected):
        assert torch.equal(a, b)


def test_same_generator_same_batches_and_shards_partition_the_global_batch() -> None:
    ds = load_dataset("procedural:200:10", "train")
    batches = {}
    for rank in (0, 1):
        loader = DeviceLoader.from_dataset(
            ds, 16, torch.Generator().manual_seed(5), rank=rank, world_size=2, crop_padding=0, flip=False
        )
        batches[rank] = [y for _, y in loader]
        again = [y for _, y in DeviceLoader.from_dataset(
            ds, 16, torch.Generator().manual_seed(5), rank=rank, world_size=2, crop_padding=0, flip=False)]  # fmt: skip
        assert all(torch.equal(a, b) for a, b in zip(batches[rank], again))
    assert len(batches[0]) == len(batches[1]) == 200 // 32
    order = torch.randperm(200, generator=torch.Generator().manual_seed(5))
    for b, (y0, y1) in enumerate(zip(batches[0], batches[1])):
        assert torch.equal(torch.cat([y0, y1]), ds.labels[order[b * 32 : (b + 1) * 32]])


@pytest.mark.parametrize("kw", [{"rank": 2, "world_size": 2}, {"world_size": 0}, {"world_size": 2, "train": False}])
def test_loader_rejects_bad_sharding(kw: Dict[str, Any]) -> None:
    ds = load_dataset("procedural:40:10", "train")
    with pytest.raises(ValueError, match="Expected"):
        DeviceLoader.from_dataset(ds, 8, torch.Generator(), **kw)


# ------------------------------------------------------------------------------------------
# Normalisation belongs to the dataset
# ------------------------------------------------------------------------------------------


def test_normalisation_comes_from_the_training_split_and_is_saved(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert train(out) == 0
    train_ds, _ = train_val_split(load_dataset(DATA, "train"), 0.1, seed=0)
    mean, std = train_ds.channel_stats()
    config = json.loads((out / "config.json").read_text())
    assert config["mean"] == pytest.approx(list(mean), abs=1e-6)
    assert config["std"] == pytest.approx(list(std), abs=1e-6)
    state = torch.load(out / "checkpoint.pt", weights_only=False)
    assert state["config"]["mean"] == config["mean"] and state["classes"] == train_ds.classes


def test_given_normalisation_is_used(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert train(out, "--mean", "0.5,0.5,0.5", "--std", "0.25,0.25,0.25") == 0
    config = json.loads((out / "config.json").read_text())
    assert (config["mean"], config["std"]) == ([0.5] * 3, [0.25] * 3)


def test_normalisation_of_the_wrong_channel_count_is_a_usage_error(tmp_path: Path, capsys) -> None:
    assert train(tmp_path / "run", "--mean", "0.5", "--std", "0.2") == 2
    assert "3 channels" in one_error_line(capsys, "train")
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------------------------------------
# Lost work: existing folders, locks, extension
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("state", ["finished", "partial"])
def test_a_new_run_never_overwrites_an_existing_one(tmp_path: Path, capsys, state: str) -> None:
    out = tmp_path / "run"
    assert train(out) == 0
    if state == "partial":
        (out / "metrics.json").unlink()
    before = mtimes(out)
    capsys.readouterr()
    assert train(out, "--method", "mixup") == 2
    line = one_error_line(capsys, "train")
    assert f"holds a {state} run" in line and "--resume" in line and "--overwrite" in line
    assert mtimes(out) == before


def test_overwrite_replaces_the_run(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert train(out) == 0
    assert train(out, "--method", "mixup", "--overwrite") == 0
    assert json.loads((out / "config.json").read_text())["method"] == "mixup"
    assert json.loads((out / "metrics.json").read_text())["method"] == "mixup"


def test_resume_and_overwrite_exclude_each_other(tmp_path: Path, capsys) -> None:
    assert train(tmp_path / "run", "--resume", "--overwrite") == 2
    assert "exclude" in one_error_line(capsys, "train")


def test_extend_trains_a_finished_run_for_longer(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    assert train(out) == 0
    capsys.readouterr()
    # More epochs without --extend is refused with a hint; --extend without --resume too.
    assert train(out, "--resume", "--epochs", "2") == 2
    assert "--extend" in one_error_line(capsys, "train")
    assert train(out, "--extend", "--epochs", "2") == 2
    assert "--resume" in one_error_line(capsys, "train")
    first = json.loads((out / "log.jsonl").read_text().splitlines()[0])
    assert train(out, "--resume", "--extend", "--epochs", "2") == 0
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [0, 1] and log[0] == first
    assert json.loads((out / "metrics.json").read_text())["epochs"] == 2
    assert torch.load(out / "checkpoint.pt", weights_only=False)["epoch"] == 2
    # Shrinking is not extending.
    capsys.readouterr()
    assert train(out, "--resume", "--extend", "--epochs", "1") == 2
    assert "already trained 2" in one_error_line(capsys, "train")


def test_a_locked_run_folder_is_refused(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    with RunLock(out):
        assert train(out, "--resume") == 2
        assert "in use" in one_error_line(capsys, "train")
    assert train(out, "--resume") == 0  # the lock went with its holder


def test_killed_compare_takes_its_training_child_with_it(tmp_path: Path) -> None:
    out = tmp_path / "study"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "rsmix", "compare", "--data", "procedural:2000:10", "--epochs", "50",
           "--batch-size", "32", "--threads", "1", "--methods", "none", "--seeds", "0", "--out", str(out)]  # fmt: skip
    parent = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run = out / "runs" / "none_s0"
    try:
        deadline = time.monotonic() + 120
        while not (run / "config.json").exists():  # the child has started training
            assert time.monotonic() < deadline and parent.poll() is None
            time.sleep(0.2)
        children = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and _ppid(p) == parent.pid]
        assert children
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 30
        while any(_alive(c) for c in children):
            assert time.monotonic() < deadline, "the training child outlived its compare"
            time.sleep(0.2)
    finally:
        if parent.poll() is None:
            parent.kill()
    # Its folder is free again (once the kernel has closed the dead child's files): a rerun can resume it.
    deadline = time.monotonic() + 30
    while True:
        try:
            with RunLock(run):
                break
        except UsageError:
            assert time.monotonic() < deadline, "the dead child's lock was never released"
            time.sleep(0.2)


def _ppid(proc: Path) -> int:
    try:
        for line in (proc / "status").read_text().splitlines():
            if line.startswith("PPid:"):
                return int(line.split()[1])
    except OSError:
        pass
    return -1


def _alive(pid: int) -> bool:
    try:
        state = next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("State:"))
    except (OSError, StopIteration):
        return False
    return "Z" not in state  # a zombie has stopped running


# ------------------------------------------------------------------------------------------
# Silent wrong results and clear errors
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "flags, fragment",
    [
        (["--lr", "nan"], "lr"),
        (["--lr", "inf"], "lr"),
        (["--lr", "0"], "lr"),
        (["--weight-decay", "nan"], "weight_decay"),
        (["--label-smoothing", "1.5"], "label_smoothing"),
        (["--warmup-epochs", "-1"], "warmup_epochs"),
        (["--crop-padding", "-1"], "crop_padding"),
        (["--std", "0,1,1", "--mean", "0,0,0"], "std"),
        (["--mean", "0,0,0"], "mean and std"),
    ],
)
def test_bad_numbers_are_usage_errors_and_write_nothing(tmp_path: Path, capsys, flags: List[str], fragment: str):
    assert train(tmp_path / "run", *flags) == 2
    assert fragment in one_error_line(capsys, "train")
    assert not (tmp_path / "run").exists()


def test_diverged_training_is_a_clear_error_not_nan_in_json(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setattr(train_mod, "soft_target_cross_entropy", lambda logits, y: logits.sum() * float("nan"))
    assert train(tmp_path / "run") == 2
    assert "diverged" in one_error_line(capsys, "train")
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_an_output_path_that_is_a_file_is_refused(tmp_path: Path, capsys) -> None:
    path = tmp_path / "file"
    path.write_text("keep me")
    assert train(path) == 2
    assert "is a file" in one_error_line(capsys, "train")
    assert cli.main(["compare", *TINY[:-3], "--methods", "none", "--out", str(path)]) == 2
    assert "is a file" in one_error_line(capsys, "compare")
    assert path.read_text() == "keep me"


@pytest.mark.parametrize(
    "code, reason", [(errno.ENOSPC, "No space left on device"), (errno.EROFS, "Read-only file system")]
)
def test_a_full_or_read_only_disk_is_a_usage_error(tmp_path: Path, capsys, monkeypatch, code: int, reason: str):
    def refuse(src: str, dst: str) -> None:
        raise OSError(code, reason)

    monkeypatch.setattr(files_mod.os, "replace", refuse)
    assert train(tmp_path / "run") == 2
    line = one_error_line(capsys, "train")
    assert reason in line and "cannot write" in line
    assert not list((tmp_path / "run").glob(".*.tmp"))


def test_a_library_bug_surfaces_with_its_traceback(tmp_path: Path, monkeypatch) -> None:
    def bug(*args: Any, **kwargs: Any) -> None:
        raise ValueError("Expected a bug, but got one instead.")

    monkeypatch.setattr(train_mod, "_train_epoch", bug)
    with pytest.raises(ValueError, match="a bug"):
        train(tmp_path / "run")


BAD_COMPARE = {
    "zero seeds": (["--n-seeds", "0"], ["--n-seeds", ">= 1"]),
    "empty seed list": (["--seeds", ","], ["no seeds"]),
    "repeated seeds": (["--seeds", "1,1"], ["unique"]),
    "empty method list": (["--methods", ",", "--seeds", "0"], ["no methods"]),
    "name escaping the folder": (["--methods", "../x=mixup", "--seeds", "0"], ["'../x'", "folder name"]),
    "hidden name": (["--methods", ".x=mixup", "--seeds", "0"], ["'.x'"]),
    "unknown variant option": (["--methods", "m=mixup:bogus=1", "--seeds", "0"], ["'bogus'", "alpha"]),
    "seed in the config": (["--config", "{tmp}/seed.yaml", "--seeds", "0"], ["seed", "--seeds"]),
    "zero jobs": (["--jobs", "0", "--seeds", "0"], ["--jobs"]),
}


@pytest.mark.parametrize("case", sorted(BAD_COMPARE))
def test_bad_compare_input_is_refused_and_writes_nothing(case: str, tmp_path: Path, capsys) -> None:
    (tmp_path / "seed.yaml").write_text("seed: 3\n")
    flags, fragments = BAD_COMPARE[case]
    before = set(tmp_path.iterdir())
    rc = cli.main(["compare", *TINY[:-3], *[f.format(tmp=tmp_path) for f in flags], "--out", str(tmp_path / "o")])
    assert rc == 2
    line = one_error_line(capsys, "compare")
    for fragment in fragments:
        assert fragment in line, (fragment, line)
    assert set(tmp_path.iterdir()) == before
    assert not (tmp_path.parent / "x").exists()


@pytest.mark.parametrize("flag", ["--seed", "--method"])
def test_compare_has_no_flag_it_would_ignore(tmp_path: Path, flag: str) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["compare", *TINY[:-3], flag, "1", "--out", str(tmp_path / "o")])
    assert exc.value.code == 2


def test_eval_against_another_class_list_is_refused(tmp_path: Path, capsys) -> None:
    from PIL import Image

    out = tmp_path / "run"
    assert train(out) == 0
    root = tmp_path / "folder"
    for k in range(10):
        (root / "test" / f"other{k}").mkdir(parents=True)
        Image.new("RGB", (32, 32), (k * 20, 0, 0)).save(root / "test" / f"other{k}" / "a.png")
        (root / "train" / f"other{k}").mkdir(parents=True)
        Image.new("RGB", (32, 32), (k * 20, 0, 0)).save(root / "train" / f"other{k}" / "a.png")
    capsys.readouterr()
    assert cli.main(["eval", "--checkpoint", str(out), "--data", str(root)]) == 2
    assert "wrong classes" in one_error_line(capsys, "eval")


# ------------------------------------------------------------------------------------------
# The method registry
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_every_registered_method_builds_with_its_defaults(name: str) -> None:
    method = get_method(name)
    op = build_mixer(name, 10, mean=(0.5, 0.5, 0.5), std=(0.2, 0.2, 0.2))
    assert isinstance(op, method.operator)
    for key, value in method.fixed.items():
        assert getattr(op, key) == value
    for key, value in method.defaults().items():
        if key in ("mean", "std"):  # the run's, not options
            continue
        assert getattr(op, key, value) == value


def test_registry_rejects_unknown_methods_and_options() -> None:
    with pytest.raises(UsageError, match="accepted: none, mixup"):
        get_method("bogus")
    with pytest.raises(UsageError, match="'bogus'"):
        build_mixer("cutmix", 10, {"bogus": 1})
    with pytest.raises(UsageError, match="alpha"):
        build_mixer("mixup", 10, {"alpha": -1.0})
    assert "variant" not in METHODS["saliencymix"].option_names()
    assert "mean" not in METHODS["randsaliencymix"].option_names()


# ------------------------------------------------------------------------------------------
# Saliency sources and operator state in the loop
# ------------------------------------------------------------------------------------------


def test_saliency_source_from_the_run_equals_the_operators_own_detector(tmp_path: Path) -> None:
    """--saliency spectral gives every saliency operator the spectral maps of the clean batch: the
    same run as the operator computing them itself with detector=spectral."""
    common = ["--method", "saliencymix_per_sample", "--epochs", "2"]
    assert train(tmp_path / "own", *common, "--mix-opt", "detector=spectral") == 0
    assert train(tmp_path / "run", *common, "--saliency", "spectral") == 0
    a = torch.load(tmp_path / "own" / "checkpoint.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert 0 < metrics["saliency_share"] < 1


def test_cam_source_and_confusion_pairing_resume_exactly(tmp_path: Path, monkeypatch) -> None:
    import rsmix.checkpoint as checkpoint_mod

    flags = ["--method", "randsaliencymix", "--epochs", "3", "--saliency", "cam", "--mix-opt", "tau_src=1",
             "--mix-opt", "pairing=confusion"]  # fmt: skip
    assert train(tmp_path / "whole", *flags) == 0
    real = checkpoint_mod.atomic_save

    def crash_at_second(obj: Any, path: Path) -> None:
        if obj["epoch"] == 2:
            raise KeyboardInterrupt
        real(obj, path)

    monkeypatch.setattr(checkpoint_mod, "atomic_save", crash_at_second)
    with pytest.raises(KeyboardInterrupt):
        train(tmp_path / "cut", *flags)
    monkeypatch.setattr(checkpoint_mod, "atomic_save", real)
    assert train(tmp_path / "cut", *flags, "--resume") == 0
    a = torch.load(tmp_path / "whole" / "checkpoint.pt", weights_only=False)
    b = torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=False)
    assert torch.equal(a["mixer"]["confusion"], b["mixer"]["confusion"])
    assert not torch.allclose(a["mixer"]["confusion"], torch.full_like(a["mixer"]["confusion"], 0.1))
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])


def test_cam_source_needs_a_pooling_linear_head_and_official_saliencymix_refuses_a_source(tmp_path, capsys):
    assert train(tmp_path / "run", "--method", "saliencymix", "--saliency", "cam") == 2
    assert "saliencymix_per_sample" in one_error_line(capsys, "train")
    assert train(tmp_path / "run", "--saliency", "bogus") == 2
    assert "'bogus'" in one_error_line(capsys, "train")
