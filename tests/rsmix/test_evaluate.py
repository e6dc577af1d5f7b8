"""``rsmix eval`` (``evaluate.py``): a checkpoint's metrics on any split or folder, and its refusals
(another class count or class list, images of another size than the run trained on, bad input in
one line). Real, tiny runs on the CPU."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import TINY, assert_refused, load_state, one_error_line, train_one_epoch
from rsmix import cli
from rsmix.errors import UsageError

pytestmark = pytest.mark.usefixtures("isolated_harness")


DATA = "procedural:300:100"
METRICS = ("top1_err", "top5_err", "nll", "ece")


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
    assert_refused(capsys, rc, "eval", expected)


# ------------------------------------------------------------------------------------------
# Data the run was not trained on
# ------------------------------------------------------------------------------------------


def test_eval_against_another_class_list_is_refused(tmp_path: Path, capsys) -> None:
    from PIL import Image

    out = tmp_path / "run"
    assert train_one_epoch(out) == 0
    root = tmp_path / "folder"
    for k in range(10):
        (root / "test" / f"other{k}").mkdir(parents=True)
        Image.new("RGB", (32, 32), (k * 20, 0, 0)).save(root / "test" / f"other{k}" / "a.png")
        (root / "train" / f"other{k}").mkdir(parents=True)
        Image.new("RGB", (32, 32), (k * 20, 0, 0)).save(root / "train" / f"other{k}" / "a.png")
    capsys.readouterr()
    assert cli.main(["eval", "--checkpoint", str(out), "--data", str(root)]) == 2
    assert "wrong classes" in one_error_line(capsys, "eval")


def test_eval_refuses_images_of_another_size_than_the_run_trained_on(finished_run: Path, capsys) -> None:
    assert load_state(finished_run)["image_shape"] == [32, 32]
    capsys.readouterr()
    assert cli.main(["eval", "--checkpoint", str(finished_run), "--data", DATA]) == 0
    capsys.readouterr()
    from rsmix.evaluate import evaluate_checkpoint

    with pytest.MonkeyPatch.context() as mp:  # the same data at 64 px ("64-px copies of its data")
        import rsmix.evaluate as evaluate_mod

        real = evaluate_mod.load_dataset
        mp.setattr(evaluate_mod, "load_dataset", lambda *a, **k: real(*a, **{**k, "size": 64}))
        with pytest.raises(UsageError, match=r"trained on 32x32 images, but test of .* holds 64x64"):
            evaluate_checkpoint(finished_run, DATA, "test")
