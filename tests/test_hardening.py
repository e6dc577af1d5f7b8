"""Issue 18's hostile pass over the harness and operators: each fault class it found, pinned.

Silent wrong results, valid input refused, tracebacks where one line belongs, bad values accepted.
Real tiny runs where a run is needed (``procedural`` data, ``fast_cnn``, one thread).
"""

from __future__ import annotations

import errno
import json
import pathlib
import sys
from pathlib import Path
from typing import Any, Dict, List

import pytest
import torch

import randsaliencymix.base as base_mod
import rsmix.data.args as args_mod
from randsaliencymix import CutMix, RandomChoiceMix, RandSaliencyMix, SaliencyMix
from rsmix import cli
from rsmix.compare import parse_method
from rsmix.models import check_model_takes
from rsmix.yamlio import load as yaml_load
from test_train import TINY, load_state

DATA = "procedural:300:100"


pytestmark = pytest.mark.usefixtures("isolated_harness")


def one_error_line(capsys: pytest.CaptureFixture, command: str) -> str:
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith(f"rsmix {command}: error: "), err
    return err[0]


def files_of(folder: Path) -> Dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run") / "run"
    threads = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RSMIX_CACHE", str(out.parent / "cache"))
        mp.delenv("WORLD_SIZE", raising=False)
        assert cli.main(["train", *TINY, "--method", "cutmix", "--epochs", "2", "--out", str(out)]) == 0
    torch.set_num_threads(threads)
    return out


# ------------------------------------------------------------------------------------------
# Valid input refused: numbers as a user writes them
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, value", [("1e-3", 1e-3), ("1E3", 1000.0), (".5", 0.5), ("5.", 5.0), ("-2.5e+4", -2.5e4)]
)
def test_numbers_parse_as_a_user_writes_them(text: str, value: float) -> None:
    assert yaml_load(text) == value and isinstance(yaml_load(text), float)
    assert yaml_load(f"alpha: {text}") == {"alpha": value}
    assert parse_method(f"m=mixup:alpha={text}")[2]["alpha"] == value if value > 0 else True


def test_other_scalars_are_yaml_as_before() -> None:
    assert yaml_load("1") == 1 and yaml_load("true") is True and yaml_load("abc") == "abc"
    assert yaml_load("[1e-3, .5]") == [1e-3, 0.5] and yaml_load("") is None


def test_mix_opt_and_config_accept_1e_3(tmp_path: Path) -> None:
    flags = [*TINY, "--method", "mixup", "--epochs", "1"]
    assert cli.main(["train", *flags, "--mix-opt", "alpha=1e-3", "--out", str(tmp_path / "a")]) == 0
    assert json.loads((tmp_path / "a" / "config.json").read_text())["mix"] == {"alpha": 0.001}
    config = tmp_path / "c.yaml"
    config.write_text("lr: 2E-1\nmix:\n  alpha: 1e-3\n")
    assert cli.main(["train", *flags, "--config", str(config), "--out", str(tmp_path / "b")]) == 0
    saved = json.loads((tmp_path / "b" / "config.json").read_text())
    assert saved["lr"] == 0.2 and saved["mix"] == {"alpha": 0.001}


# ------------------------------------------------------------------------------------------
# A missing optional dependency: one line naming the extra
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "module, argv, extra",
    [
        ("yaml", ["train", *TINY, "--epochs", "1"], "train"),
        ("skimage", ["show"], "viz"),
    ],
)
def test_a_missing_extra_is_named_in_one_line(
    module: str, argv: List[str], extra: str, tmp_path: Path, monkeypatch, capsys
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # import of it now raises ModuleNotFoundError
    assert cli.main([*argv, "--out", str(tmp_path / "out")]) == 2
    line = one_error_line(capsys, argv[0])
    assert f"randsaliencymix[{extra}]" in line and repr(module) in line
    assert not (tmp_path / "out").exists()


def test_a_library_import_error_is_not_disguised(monkeypatch, tmp_path: Path) -> None:
    def broken(*args: Any, **kwargs: Any) -> None:
        raise ModuleNotFoundError("No module named 'randsaliencymix._gone'", name="randsaliencymix._gone")

    import rsmix.train as train_mod

    monkeypatch.setattr(train_mod, "train", broken)
    with pytest.raises(ModuleNotFoundError):
        cli.main(["train", *TINY, "--out", str(tmp_path / "x")])


# ------------------------------------------------------------------------------------------
# --image-size: checked before decoding
# ------------------------------------------------------------------------------------------


def test_an_image_size_the_model_cannot_take_is_one_line(tmp_path: Path, capsys) -> None:
    assert cli.main(["train", *TINY, "--image-size", "8", "--epochs", "1", "--out", str(tmp_path / "r")]) == 2
    line = one_error_line(capsys, "train")
    assert "'fast_cnn'" in line and "8x8" in line and "at least 9x9" in line
    assert not (tmp_path / "r").exists() and not (tmp_path / "cache").exists()  # nothing decoded
    check_model_takes("fast_resnet", 32)  # takes it: no error


@pytest.mark.parametrize("size", [4096, 100_000])
def test_an_image_size_that_cannot_fit_in_memory_is_one_line(size: int, tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setattr(args_mod, "available_memory", lambda: 8 * 2**30)  # 8 GiB, whatever this machine has
    flags = [*TINY, "--model", "resnet18", "--image-size", str(size), "--epochs", "1"]
    assert cli.main(["train", *flags, "--out", str(tmp_path / "r")]) == 2
    line = one_error_line(capsys, "train")
    assert f"{size}x{size}" in line and "GiB" in line and "8.0 GiB available" in line and "px fits" in line
    assert not (tmp_path / "r").exists()


def test_decoding_a_folder_checks_the_memory_before_decoding(tmp_path: Path, monkeypatch) -> None:
    from rsmix.data.decode import decode_all
    from rsmix.errors import UsageError

    monkeypatch.setattr(args_mod, "available_memory", lambda: 2**20)
    with pytest.raises(UsageError, match="2 images at 1024x1024 need"):
        decode_all([("a.png", b"not even an image"), ("b.png", b"")], (1024, 1024))


# ------------------------------------------------------------------------------------------
# --resume from a damaged checkpoint, or without one: one line, nothing overwritten
# ------------------------------------------------------------------------------------------


def _damage(state: Dict[str, Any], how: str) -> None:
    if how == "no optimizer":
        del state["optimizer"]
    elif how == "weights of other shapes":
        key = next(k for k, v in state["model"].items() if v.ndim == 4)
        state["model"][key] = torch.zeros(3, 3, 1, 1)
    elif how == "non-integer epoch":
        state["epoch"] = 1.5
    elif how == "config not a mapping":
        state["config"] = ["epochs", 2]
    elif how == "bad generator state":
        state["mix_gen"] = torch.zeros(7, dtype=torch.uint8)
    elif how == "generator state not a tensor":
        state["data_gen"] = "seed 0"
    elif how == "optimizer of another model":
        state["optimizer"]["param_groups"] = state["optimizer"]["param_groups"][:1]


@pytest.mark.parametrize(
    "how, fragment",
    [
        ("no optimizer", "no 'optimizer'"),
        ("weights of other shapes", "its model does not fit"),
        ("non-integer epoch", "'epoch' must be a whole number"),
        ("config not a mapping", "'config' is list"),
        ("bad generator state", "its mix_gen does not fit"),
        ("generator state not a tensor", "'data_gen' is not a generator state"),
        ("optimizer of another model", "its optimizer does not fit"),
    ],
)
def test_resume_from_a_damaged_checkpoint_is_one_line(
    how: str, fragment: str, finished_run: Path, tmp_path: Path, capsys
) -> None:
    run = tmp_path / "run"
    run.mkdir()
    for name, data in files_of(finished_run).items():
        (run / name).write_bytes(data)
    (run / "metrics.json").unlink()  # unfinished: --resume would train
    state = load_state(run)
    _damage(state, how)
    torch.save(state, run / "checkpoint.pt")
    before = files_of(run)
    capsys.readouterr()
    assert cli.main(["train", *TINY, "--method", "cutmix", "--epochs", "2", "--out", str(run), "--resume"]) == 2
    line = one_error_line(capsys, "train")
    assert str(run / "checkpoint.pt") in line and fragment in line, line
    assert files_of(run) == before


def test_resume_without_config_json_continues_from_the_checkpoint(finished_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    for name, data in files_of(finished_run).items():
        (run / name).write_bytes(data)
    (run / "config.json").unlink()
    assert cli.main(["train", *TINY, "--method", "cutmix", "--epochs", "2", "--out", str(run), "--resume"]) == 0
    assert json.loads((run / "config.json").read_text())["method"] == "cutmix"  # written again
    (run / "config.json").write_text("{ not json")
    assert cli.main(["train", *TINY, "--method", "cutmix", "--epochs", "2", "--out", str(run), "--resume"]) == 0
    assert json.loads((run / "config.json").read_text())["epochs"] == 2


def test_resume_of_a_run_whose_checkpoint_is_gone_is_refused(finished_run: Path, tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    run.mkdir()
    for name, data in files_of(finished_run).items():
        if name != "checkpoint.pt":
            (run / name).write_bytes(data)
    before = files_of(run)
    capsys.readouterr()
    assert cli.main(["train", *TINY, "--method", "cutmix", "--epochs", "2", "--out", str(run), "--resume"]) == 2
    assert "no checkpoint.pt to resume from" in one_error_line(capsys, "train")
    assert files_of(run) == before  # the finished run's numbers are kept


# ------------------------------------------------------------------------------------------
# rsmix show's arguments, and read-only output folders
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "flags, fragment",
    [
        (["--limit", "0"], "--limit must be >= 2"),
        (["--limit", "-1"], "--limit must be >= 2"),
        (["--size", "-5"], "--size must be from 8 to 2048"),
        (["--size", "0"], "--size must be from 8 to 2048"),
        (["--size", "1"], "--size must be from 8 to 2048"),
        (["--size", "100000"], "--size must be from 8 to 2048"),
    ],
)
def test_bad_show_arguments_are_one_line(flags: List[str], fragment: str, tmp_path: Path, capsys) -> None:
    assert cli.main(["show", *flags, "--out", str(tmp_path / "g.png")]) == 2
    assert fragment in one_error_line(capsys, "show")
    assert not (tmp_path / "g.png").exists()


def _read_only_under(monkeypatch: pytest.MonkeyPatch, root: Path) -> None:
    """Every write under ``root`` fails as on a read-only file system (root ignores chmod)."""
    real_mkdir, real_mkstemp = pathlib.Path.mkdir, __import__("tempfile").mkstemp

    def mkdir(self: Path, *args: Any, **kwargs: Any) -> None:
        if str(self).startswith(str(root)):
            raise OSError(errno.EROFS, "Read-only file system", str(self))
        real_mkdir(self, *args, **kwargs)

    def mkstemp(*args: Any, **kwargs: Any) -> Any:
        if str(kwargs.get("dir", "")).startswith(str(root)):
            raise OSError(errno.EROFS, "Read-only file system")
        return real_mkstemp(*args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "mkdir", mkdir)
    monkeypatch.setattr("rsmix.files.tempfile.mkstemp", mkstemp)


def test_a_read_only_out_is_one_line_for_compare_and_show(tmp_path: Path, monkeypatch, capsys) -> None:
    ro = tmp_path / "ro"
    _read_only_under(monkeypatch, ro)
    flags = ["--data", DATA, "--batch-size", "32", "--epochs", "1", "--threads", "1", "--methods", "none"]
    assert cli.main(["compare", *flags, "--out", str(ro / "study")]) == 2
    assert "Read-only file system" in one_error_line(capsys, "compare")
    images = tmp_path / "images"
    images.mkdir()
    from PIL import Image

    for i in range(2):
        Image.new("RGB", (16, 16), (40 * i, 90, 200)).save(images / f"{i}.png")
    assert cli.main(["show", "--images", str(images), "--size", "16", "--out", str(ro / "g.png")]) == 2
    assert "Read-only file system" in one_error_line(capsys, "show")


# ------------------------------------------------------------------------------------------
# Bad values accepted
# ------------------------------------------------------------------------------------------


def test_official_saliencymix_refuses_given_maps() -> None:
    x, y = torch.rand(4, 3, 16, 16), torch.arange(4)
    maps = torch.rand(4, 16, 16)
    with pytest.raises(ValueError, match=r"variant='official'.*variant='per_sample'"):
        SaliencyMix(variant="official", num_classes=4)(x, y, saliency=maps)
    SaliencyMix(variant="per_sample", num_classes=4)(x, y, saliency=maps)  # reads them
    SaliencyMix(variant="official", num_classes=4)(x, y)  # its own map


def test_eval_refuses_images_of_another_size_than_the_run_trained_on(finished_run: Path, capsys) -> None:
    assert load_state(finished_run)["image_shape"] == [32, 32]
    capsys.readouterr()
    assert cli.main(["eval", "--checkpoint", str(finished_run), "--data", DATA]) == 0
    capsys.readouterr()
    from rsmix.errors import UsageError
    from rsmix.evaluate import evaluate_checkpoint

    with pytest.MonkeyPatch.context() as mp:  # the same data at 64 px ("64-px copies of its data")
        import rsmix.evaluate as evaluate_mod

        real = evaluate_mod.load_dataset
        mp.setattr(evaluate_mod, "load_dataset", lambda *a, **k: real(*a, **{**k, "size": 64}))
        with pytest.raises(UsageError, match=r"trained on 32x32 images, but test of .* holds 64x64"):
            evaluate_checkpoint(finished_run, DATA, "test")


def test_random_choice_validate_governs_its_sub_operators(monkeypatch) -> None:
    seen: List[Any] = []
    real = base_mod.check_params

    def spy(params: Any, x: torch.Tensor, validate: Any) -> Any:
        seen.append(validate)
        return real(params, x, validate)

    monkeypatch.setattr(base_mod, "check_params", spy)
    x, y = torch.rand(4, 3, 16, 16), torch.arange(4)
    subs = [CutMix(validate=True), RandSaliencyMix(validate=True, tau_src=1.0)]
    RandomChoiceMix(subs, validate=False, num_classes=4)(x, y, generator=torch.Generator().manual_seed(0))
    assert seen and all(v is False for v in seen), seen
    seen.clear()
    subs[0](x, torch.nn.functional.one_hot(y, 4).float())  # alone, the operator's own setting holds
    assert seen and all(v is True for v in seen), seen
