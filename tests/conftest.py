"""Shared test configuration, fixtures and helpers.

The tests are arranged by what they test, one file per module (or one tight group of modules),
named after it:

* ``tests/library/``: the library ``randsaliencymix`` (``src/randsaliencymix``): ``test_mixing.py``
  for ``mixing.py``, ``test_checks_inputs.py`` and ``test_checks_arguments.py`` for ``_checks.py``,
  ``test_integrations_timm.py`` for ``integrations/timm.py``, ``test_base.py`` for the ``Mixer`` base
  class, ``test_public_surface.py`` for what the package exports, ...;
* ``tests/rsmix/``: the training harness ``rsmix`` (``src/rsmix``), likewise (``test_train.py``,
  ``test_compare.py``, ``test_data*.py`` for ``rsmix/data/``, ...);
* ``tests/study/``: the study's scripts (``study/study2/``);
* ``tests/project/``: the repository as a whole (its structure, the package build, the examples,
  the benchmark scripts and ``benchmarks/gpu_check.py``).

Test modules never import each other: what several of them share is here, as fixtures
(``isolated_harness``, ``private_cache``, ``one_thread``, ``finished_run``) or as plain functions
and constants they import (``from conftest import TINY, load_state``: pytest puts ``tests/`` on
``sys.path`` for this file, and every test module's basename is unique): the harness's tiny runs and
their checks, fake data sources, images for the crops, ``no_host_reads``, the library's small
batches and operator tables, the argument and input checks' operators, the mixing operators'
invariant checks, and ``load_script``.

``isolated_harness``: what every test that trains or loads data through the harness runs under
(``pytestmark = pytest.mark.usefixtures("isolated_harness")``).

The tiers: SLOW_FILES below names the files (by their path under tests/) whose tests are all
``slow``; ``make test-fast`` runs the tests not marked ``slow``.

Under CI (``CI`` set) hypothesis runs derandomised, so a submission's CI result depends on the code
alone; locally it explores new examples on every run. Neither sets a deadline per example.
"""

import contextlib
import functools
import importlib.util
import json
import math
import os
import re
import sys
import tarfile
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Dict, Iterable, Iterator, List, Tuple, Type

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from randsaliencymix import (
    SALIENCY_ON,
    CutMix,
    MixParams,
    MixUp,
    NoMix,
    RandomChoiceMix,
    RandSaliencyMix,
    SaliencyMix,
    source_share,
)
from randsaliencymix.integrations.timm import Mixup

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"

# No deadline: a wall-clock limit per example fails a correct test on a loaded machine (a niced suite
# beside training lanes); speed is measured in benchmarks/, never in unit tests.
settings.register_profile("local", deadline=None)
settings.register_profile("ci", derandomize=True, print_blob=True, deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "local")


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


@pytest.fixture()
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private data cache (``RSMIX_CACHE``), and its path: all that the data tests need of
    ``isolated_harness`` (``pytestmark = pytest.mark.usefixtures("private_cache")``)."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("RSMIX_CACHE", str(cache))
    return cache


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """One torch thread for a whole module (``pytestmark = pytest.mark.usefixtures("one_thread")``):
    batches of 1-16 images gain nothing from a second thread, and when other jobs share the cores,
    OpenMP barriers waiting on a descheduled thread made such tests 3x slower."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


# The test tiers (``make test`` runs every test, ``make test-fast`` those not marked ``slow``).
# Whole files marked ``slow`` (paths under tests/): they train models end to end through the
# harness, run ``rsmix`` commands, torchrun, the examples, wheel builds or the study's scripts, and
# take more than ~0.5 s a test (measured with ``pytest --durations``). Slow tests in the other files
# carry ``@pytest.mark.slow`` themselves; so does a test that uses one of SLOW_FIXTURES.
SLOW_FILES = frozenset(
    {
        "library/test_dataset_maps.py",  # dataset_maps computed and cached through the harness's cache
        "project/test_benchmarks.py",  # benchmark scripts: training steps
        "project/test_examples.py",  # the examples, torchrun
        "project/test_gpu_check.py",  # benchmarks/gpu_check.py dry mode, a pytest subprocess
        "project/test_package.py",  # sdist/wheel builds, a fresh venv
        "rsmix/test_checkpoint.py",  # killed, crashed and damaged runs resumed
        "rsmix/test_cli.py",  # rsmix train/compare/show on bad input
        "rsmix/test_compare.py",  # rsmix compare end to end, a killed compare
        "rsmix/test_config.py",  # rsmix train with YAML configs and flags
        "rsmix/test_evaluate.py",  # rsmix eval of trained runs
        "rsmix/test_files.py",  # runs on a full or read-only disk
        "rsmix/test_precision.py",  # bf16/fp32 training runs
        "rsmix/test_runs.py",  # run folders and compare folders: training runs
        "rsmix/test_train.py",  # every method trained end to end, torchrun
        "rsmix/test_train_saliency.py",  # runs with each saliency source and self-CAM labels
        "study/test_imagenette_diagnostics.py",  # occlusion.py and mechanism.py on a trained run
        "study/test_lanes.py",  # study 2's lanes (main.sh, screen.sh, regime_b.sh) and stage_finished.sh
        "study/test_imagenette_report.py",  # the study's report script over run folders
        "study/test_cifar_report.py",  # regime B's report over folders of made-up runs
        "study/test_confirm_report.py",  # stage 4's report over folders of made-up runs
    }
)
SLOW_FIXTURES = frozenset({"timm_mixup"})  # reads timm out of a wheel, pip-downloading it where it is missing


def pytest_collection_modifyitems(config: pytest.Config, items: list) -> None:
    """Mark ``cuda`` every test (or parameter) that is skipped without a CUDA device, so that a GPU
    machine runs exactly those with ``-m cuda`` (benchmarks/gpu_check.py); mark ``slow`` the tests
    of SLOW_FILES and those using SLOW_FIXTURES (``make test-fast`` runs ``-m "not slow"``)."""
    missing = sorted(name for name in SLOW_FILES if not (TESTS / name).is_file())
    if missing:  # a renamed file would otherwise join the fast tier unnoticed
        raise pytest.UsageError(f"tests/conftest.py SLOW_FILES names no such file: {', '.join(missing)}")
    for item in items:
        path = Path(item.path)
        relpath = path.relative_to(TESTS).as_posix() if path.is_relative_to(TESTS) else path.name
        if relpath in SLOW_FILES or SLOW_FIXTURES.intersection(getattr(item, "fixturenames", ())):
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


def public_library_modules() -> List[str]:
    """The library's public modules, sorted: those whose docstring has a "Public:" line (every module
    says "Public:" or "Internal:"; tests/library/test_public_surface.py checks it). Read from the
    sources, nothing imported."""
    import ast

    src = ROOT / "src"
    found = []
    for path in (src / "randsaliencymix").rglob("*.py"):
        parts = list(path.relative_to(src).with_suffix("").parts)
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
        if any(line.startswith("Public:") for line in doc.splitlines()):
            found.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return sorted(found)


# ------------------------------------------------------------------------------------------------
# Training runs through the harness (tests/rsmix/)
# ------------------------------------------------------------------------------------------------

RUN_DATA = "procedural:300:100"
# A tiny run: every method trains on it in seconds (``rsmix train``'s flags, less --epochs and --out).
TINY = [
    "--data",
    RUN_DATA,
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
# One epoch of the default model on the same data (``ONE_EPOCH[:-3]``: without --no-progress and
# --epochs, the flags ``rsmix compare`` shares).
ONE_EPOCH = ["--data", RUN_DATA, "--precision", "fp32", "--batch-size", "32", "--threads", "1", "--no-progress", "--epochs", "1"]  # fmt: skip


def train_one_epoch(out: Path, *flags: str) -> int:
    """``rsmix train`` with ONE_EPOCH and ``flags`` into ``out``: its exit code."""
    from rsmix import cli

    return cli.main(["train", *ONE_EPOCH, *flags, "--out", str(out)])


def _error_line(captured: Any, command: str) -> str:
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"rsmix {command}: error: "), captured.err
    return lines[0]


def one_error_line(capsys: pytest.CaptureFixture, command: str) -> str:
    """The one line ``rsmix COMMAND`` wrote to stderr for a user's mistake (asserted: one line)."""
    return _error_line(capsys.readouterr(), command)


def assert_refused(capsys: pytest.CaptureFixture, rc: int, command: str, fragments: Iterable[str]) -> None:
    """``rsmix COMMAND`` refused a user's mistake: exit code ``rc`` 2, nothing on stdout, and one
    line on stderr that names every one of ``fragments``."""
    captured = capsys.readouterr()
    assert rc == 2
    assert captured.out == ""
    line = _error_line(captured, command)
    for fragment in fragments:
        assert fragment in line, (fragment, line)


def read_log(run: Path) -> List[Dict[str, Any]]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines() if line.strip()]


def load_state(run: Path) -> Dict[str, Any]:
    return torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=False)


def assert_same_run(a: Path, b: Path) -> None:
    """Two three-epoch runs are the same run: model, optimiser, generators, config, log and metrics
    (all but the times)."""
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


@contextlib.contextmanager
def harness_env(cache: Path, **env: str) -> Iterator[None]:
    """For a fixture wider than one test, which ``isolated_harness`` does not reach: inside, the
    harness's data cache is ``cache``, no WORLD_SIZE is inherited and the variables ``env`` are set;
    afterwards torch's thread count is what it was."""
    threads = torch.get_num_threads()
    try:
        with pytest.MonkeyPatch.context() as mp:
            for name, value in env.items():
                mp.setenv(name, value)
            mp.setenv("RSMIX_CACHE", str(cache))
            mp.delenv("WORLD_SIZE", raising=False)
            yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished two-epoch CutMix run of TINY, made once (the tests copy it or only read it)."""
    from rsmix import cli

    out = tmp_path_factory.mktemp("run") / "run"
    with harness_env(out.parent / "cache"):
        assert cli.main(["train", *TINY, "--method", "cutmix", "--epochs", "2", "--out", str(out)]) == 0
    return out


class Crash(Exception):
    """What ``crash_at_checkpoint`` raises unless told another exception."""


@contextlib.contextmanager
def crash_at_checkpoint(
    monkeypatch: pytest.MonkeyPatch, epoch: int = 2, exc: Type[BaseException] = Crash
) -> Iterator[None]:
    """The run inside dies (asserted) by ``exc`` when it would write epoch ``epoch``'s checkpoint:
    after logging that epoch, before its checkpoint. Afterwards the real writer is back."""
    import rsmix.checkpoint as checkpoint_mod

    real_save = checkpoint_mod.atomic_save

    def crash(obj: Any, path: Path) -> None:
        if obj["epoch"] == epoch:
            raise exc
        real_save(obj, path)

    monkeypatch.setattr(checkpoint_mod, "atomic_save", crash)
    with pytest.raises(exc):
        yield
    monkeypatch.setattr(checkpoint_mod, "atomic_save", real_save)


# ------------------------------------------------------------------------------------------------
# Fake data sources (tests/rsmix/test_data*.py)
# ------------------------------------------------------------------------------------------------


def tar_folder(src: Path, archive: Path, arcname: str) -> Path:
    mode = "w:gz" if archive.name.endswith(".gz") else "w"
    with tarfile.open(archive, mode) as tar:
        tar.add(src, arcname=arcname)
    return archive


def make_image_tree(
    root: Path,
    fmt: str = "png",
    splits=("train", "test"),
    per_class: int = 3,
    size: Tuple[int, int] = (12, 10),
    seed: int = 0,
) -> Dict[str, Dict[str, List[np.ndarray]]]:
    """``root/<split>/<class>/NN.<fmt>`` with random pixels; returns them by split and class."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    out: Dict[str, Dict[str, List[np.ndarray]]] = {}
    for split in splits:
        out[split] = {}
        for cls in ("dog", "cat", "bird"):  # written unsorted: classes must come out sorted
            folder = root / split / cls if split else root / cls
            folder.mkdir(parents=True)
            out[split][cls] = []
            for i in range(per_class):
                pixels = rng.integers(0, 256, size=size + (3,), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{i:02d}.{fmt}")
                out[split][cls].append(pixels)
    return out


# ------------------------------------------------------------------------------------------------
# Images for the crops (tests/rsmix/test_augment.py, test_pipeline.py)
# ------------------------------------------------------------------------------------------------


def distinct_images(n: int, size: int = 8) -> torch.Tensor:
    """Images whose pixels are all nonzero and differ, so a crop identifies its offset and flip."""
    g = torch.Generator().manual_seed(0)
    return torch.randint(1, 256, (n, 3, size, size), generator=g, dtype=torch.uint8)


# ------------------------------------------------------------------------------------------------
# No host reads (an accelerator's synchronisation)
# ------------------------------------------------------------------------------------------------

_READS = ("item", "tolist", "__bool__", "__int__", "__float__", "__index__", "nonzero", "cpu", "numpy")


@contextlib.contextmanager
def no_host_reads() -> Iterator[None]:
    """Every Python-level way to read a tensor's values on the host (``item``, ``tolist``,
    ``bool``/``int``/``float`` of a tensor, ``nonzero``, ``cpu``, ``numpy``) raises inside."""
    saved = {name: getattr(torch.Tensor, name) for name in _READS}

    def tripwire(name: str):
        def raise_(*args, **kwargs):
            raise AssertionError(f"host read of a tensor: Tensor.{name}")

        return raise_

    try:
        for name in _READS:
            setattr(torch.Tensor, name, tripwire(name))
        yield
    finally:
        for name, fn in saved.items():
            setattr(torch.Tensor, name, fn)


# ------------------------------------------------------------------------------------------------
# The library's small batches (tests/library/): a seeded generator, ``images`` and ``labels`` for
# K5 classes, ``small_images`` of SMALL_H x SMALL_W, timm's drop-in, and ``exact`` messages
# ------------------------------------------------------------------------------------------------

K5 = 5
SMALL_H, SMALL_W = 12, 10


def gen(seed: int) -> torch.Generator:
    """A CPU generator seeded with ``seed``."""
    return torch.Generator().manual_seed(int(seed))


def images(b: int = 6, h: int = 16, w: int = 16, seed: int = 0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``b`` RGB images of ``h`` x ``w``, standard normal."""
    return torch.randn(b, 3, h, w, generator=gen(seed)).to(dtype)


def labels(b: int = 6) -> torch.Tensor:
    """``b`` class indices 0, 1, ..., K5 - 1, 0, 1, ..."""
    return torch.arange(b) % K5


def small_images(b: int = 6, seed: int = 0) -> torch.Tensor:
    """``b`` RGB images of SMALL_H x SMALL_W, uniform in [0, 1)."""
    return torch.rand(b, 3, SMALL_H, SMALL_W, generator=gen(seed))


def drop_in_mixup(**kw: Any) -> Mixup:
    """timm's drop-in ``Mixup`` for K5 classes, CutMix per element unless ``kw`` says otherwise."""
    return Mixup(**{"num_classes": K5, "mixup_alpha": 0.0, "cutmix_alpha": 1.0, "mode": "elem", **kw})


def exact(msg: str) -> str:
    """A ``match=`` pattern for exactly ``msg``."""
    return re.escape(msg)


# Every operator for K5 classes (RandSaliencyMix with its saliency on, blending, and as it comes),
# built with the options given (``OPS5[name](validate=True)``): tests/library/test_apply.py,
# test_checks_inputs.py and test_params.py.
OPS5: Dict[str, Callable[..., Any]] = {
    "MixUp": lambda **kw: MixUp(num_classes=K5, **kw),
    "CutMix": lambda **kw: CutMix(num_classes=K5, mode="sample", **kw),
    "SaliencyMix-official": lambda **kw: SaliencyMix(num_classes=K5, variant="official", **kw),
    "SaliencyMix-per_sample": lambda **kw: SaliencyMix(num_classes=K5, variant="per_sample", **kw),
    "RandSaliencyMix-on": lambda **kw: RandSaliencyMix(num_classes=K5, **{**SALIENCY_ON, **kw}),
    "RandSaliencyMix-blend": lambda **kw: RandSaliencyMix(
        num_classes=K5, **{**SALIENCY_ON, "eta": "beta", "mixup_prob": 0.3, **kw}
    ),
    "RandSaliencyMix-default": lambda **kw: RandSaliencyMix(num_classes=K5, **kw),
    "RandomChoiceMix": lambda **kw: RandomChoiceMix(
        [MixUp(mode="sample"), RandSaliencyMix(**SALIENCY_ON)], mode="sample", num_classes=K5, **kw
    ),
    "NoMix": lambda **kw: NoMix(num_classes=K5, **kw),
}

# Huge but finite pixels (tests/library/test_apply.py, test_saliency.py): dtype and magnitude by
# case, and the images ``huge_images`` makes of them (whole images at +big and -big, half and half,
# every other row).
HUGE = {
    "float32-1e38": (torch.float32, 1e38),
    "float32-max": (torch.float32, torch.finfo(torch.float32).max),
    "float16-6e4": (torch.float16, 6e4),
    "float16-max": (torch.float16, 65504.0),
    "bfloat16-1e38": (torch.bfloat16, 1e38),
}


def huge_images(dtype: torch.dtype, big: float) -> torch.Tensor:
    x = images(6, 16, 16, seed=9)
    x[0] = big
    x[1] = -big
    x[2, :, :, :8] = big
    x[2, :, :, 8:] = -big
    x[3, :, ::2] = big
    return x.to(dtype)


# ------------------------------------------------------------------------------------------------
# The argument and input checks (tests/library/test_checks_arguments.py, test_checks_inputs.py):
# valid batches of B images of C x H x W and K classes, and every operator in its defaults built
# with num_classes=K unless overridden (``CHECKS_OPS[name](alpha=0)``)
# ------------------------------------------------------------------------------------------------

B, C, H, W, K = 4, 3, 8, 8, 10


def valid_x(b: int = B, c: int = C, h: int = H, w: int = W, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(b, c, h, w, generator=g)
    return (x * 255).to(torch.uint8) if dtype == torch.uint8 else x.to(dtype)


def valid_y(b: int = B) -> torch.Tensor:
    return torch.arange(b) % K


CHECKS_OPS: Dict[str, Callable[..., Any]] = {
    "MixUp": lambda **kw: MixUp(**{"num_classes": K, **kw}),
    "CutMix": lambda **kw: CutMix(**{"num_classes": K, **kw}),
    "SaliencyMix-official": lambda **kw: SaliencyMix(**{"num_classes": K, "variant": "official", **kw}),
    "SaliencyMix-per_sample": lambda **kw: SaliencyMix(**{"num_classes": K, "variant": "per_sample", **kw}),
    "RandSaliencyMix": lambda **kw: RandSaliencyMix(**{"num_classes": K, **kw}),
    "RandomChoiceMix": lambda **kw: RandomChoiceMix([MixUp(), CutMix()], **{"num_classes": K, **kw}),
    "NoMix": lambda **kw: NoMix(**{"num_classes": K, **kw}),
}
CHECKS_OP_NAMES = list(CHECKS_OPS)


# ------------------------------------------------------------------------------------------------
# The mixing operators' invariants (tests/library/test_mixing.py, test_randsaliency.py): every
# check computed independently of ``src``, for MIX_K classes
# ------------------------------------------------------------------------------------------------

MIX_K = 7
MIX_SETTINGS = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
DTYPES = [torch.uint8, torch.float16, torch.bfloat16, torch.float32]
# Relative tolerance of a blended pixel, times |x_t| + |x_src| (float32 lerp, then rounding).
BLEND_RTOL = {torch.float32: 2e-6, torch.float64: 1e-12, torch.float16: 1e-3, torch.bfloat16: 8e-3}


def mix_images(
    seed: int, b: int, c: int, h: int, w: int, dtype: torch.dtype = torch.float32, channels_last: bool = False
) -> torch.Tensor:
    g = gen(seed)
    if dtype == torch.uint8:
        x = torch.randint(0, 256, (b, c, h, w), generator=g, dtype=torch.uint8)
    else:
        x = torch.randn(b, c, h, w, generator=g).to(dtype)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def mix_labels(seed: int, b: int, kind: str) -> torch.Tensor:
    g = gen(seed + 7)
    if kind == "index":
        return torch.randint(0, MIX_K, (b,), generator=g)
    logits = torch.randn(b, MIX_K, generator=g, dtype=torch.float64) * 2
    probs = torch.softmax(logits, dim=1)
    return probs.float() if kind == "prob32" else probs


def mix_maps(seed: int, b: int, h: int, w: int) -> torch.Tensor:
    """Peaky random saliency maps in [0, 1], float32."""
    g = gen(seed + 13)
    return torch.rand(b, h, w, generator=g) ** 3


def ref_soft(y: torch.Tensor, label_smoothing: float) -> torch.Tensor:
    soft = F.one_hot(y.long(), MIX_K).double() if y.ndim == 1 else y.double()
    if label_smoothing > 0:
        soft = soft * (1 - label_smoothing) + label_smoothing / MIX_K
    return soft


def ref_share(params: MixParams, h: int, w: int) -> torch.Tensor:
    """Source share (B, 1, H, W) built from the params fields by hand, float64 (a per-pixel
    operator's drawn share map, where it has one)."""
    b = params.batch_size
    s = torch.zeros(b, 1, h, w, dtype=torch.float64)
    for i in range(b):
        if not bool(params.applied[i]):
            continue
        if params.share_map is not None:
            s[i] = params.share_map[i].double()
            continue
        if bool(params.mixup[i]):
            s[i] = 1.0 - float(params.lam[i])
            continue
        r1, c1, r2, c2 = [int(v) for v in params.dst_boxes[i]]
        s[i, :, r1:r2, c1:c2] = float(params.eta[i])
    return s


def ref_sources(x: torch.Tensor, params: MixParams) -> torch.Tensor:
    """The source pixel of every target pixel that receives one (float64, NaN elsewhere)."""
    b, c, h, w = x.shape
    xd = x.double()
    out = torch.full((b, c, h, w), float("nan"), dtype=torch.float64)
    for i in range(b):
        j = int(params.perm[i])
        if not bool(params.applied[i]):
            continue
        if bool(params.mixup[i]) or (params.share_map is not None and not bool(params.dst_boxes[i].any())):
            out[i] = xd[j]  # MixUp, or a per-pixel blend (no box): the whole source, unshifted
            continue
        sr1, sc1, sr2, sc2 = [int(v) for v in params.src_boxes[i]]
        dr1, dc1, dr2, dc2 = [int(v) for v in params.dst_boxes[i]]
        assert (sr2 - sr1, sc2 - sc1) == (dr2 - dr1, dc2 - dc1), "source and target boxes differ in size"
        out[i, :, dr1:dr2, dc1:dc2] = xd[j, :, sr1:sr2, sc1:sc2]
    return out


def check_boxes_inside(params: MixParams, h: int, w: int) -> None:
    for boxes in (params.src_boxes, params.dst_boxes):
        assert boxes.dtype == torch.long and tuple(boxes.shape) == (params.batch_size, 4)
        r1, c1, r2, c2 = boxes.unbind(1)
        assert bool(((0 <= r1) & (r1 <= r2) & (r2 <= h)).all()), boxes
        assert bool(((0 <= c1) & (c1 <= c2) & (c2 <= w)).all()), boxes
    src, dst = params.src_boxes, params.dst_boxes
    assert torch.equal(src[:, 2] - src[:, 0], dst[:, 2] - dst[:, 0])
    assert torch.equal(src[:, 3] - src[:, 1], dst[:, 3] - dst[:, 1])


def check_mix(
    x: torch.Tensor,
    y: torch.Tensor,
    xm: torch.Tensor,
    ym: torch.Tensor,
    params: MixParams,
    label_smoothing: float = 0.0,
    area_labels: bool = True,
) -> None:
    """Every invariant of one mixing step (see the module docstring of ``mixing``)."""
    b, c, h, w = x.shape
    # Params well-formed.
    assert params.batch_size == b
    assert params.image_size == (h, w)
    assert tuple(params.perm.shape) == (b,) and bool(((params.perm >= 0) & (params.perm < b)).all())
    for name in ("lam", "eta", "source_weight"):
        t = getattr(params, name)
        assert tuple(t.shape) == (b,) and t.is_floating_point()
        assert bool(((t >= 0) & (t <= 1)).all()), (name, t)
    check_boxes_inside(params, h, w)
    assert bool((params.source_weight[~params.applied] == 0).all())

    # Output images: shape, dtype, layout.
    assert xm.shape == x.shape and xm.dtype == x.dtype
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        assert xm.is_contiguous(memory_format=torch.channels_last)

    # Per-pixel share: source_share agrees with the fields.
    share_ref = ref_share(params, h, w)
    share = source_share(params, h, w)
    assert share.shape == (b, 1, h, w)
    torch.testing.assert_close(share.double(), share_ref, atol=1e-6, rtol=0)

    # Pixels: target where s == 0, shifted source where s == 1, the stated blend in between.
    s = share_ref.expand(b, c, h, w)
    xt = x.double()
    xs = ref_sources(x, params)
    out = xm.double()
    assert not bool(torch.isnan(out).any())
    keep = s == 0
    assert torch.equal(out[keep], xt[keep]), "unmixed pixels changed"
    full = s == 1
    assert not bool(torch.isnan(xs[full]).any())
    assert torch.equal(out[full], xs[full]), "hard-pasted pixels are not the source's"
    part = ~keep & ~full
    if bool(part.any()):
        expected = (1 - s[part]) * xt[part] + s[part] * xs[part]
        if x.dtype == torch.uint8:
            assert bool(((out[part] - expected).abs() <= 0.5 + 1e-3).all()), "uint8 blend not rounded"
            assert bool((out[part] == out[part].round()).all())
        else:
            tol = BLEND_RTOL[x.dtype] * (xt[part].abs() + xs[part].abs()) + 1e-30
            assert bool(((out[part] - expected).abs() <= tol).all()), "blend differs from (1-s) x_t + s x_src"

    # Targets.
    soft = ref_soft(y, label_smoothing)
    assert ym.shape == (b, MIX_K) and ym.is_floating_point()
    torch.testing.assert_close(ym.double().sum(1), torch.ones(b, dtype=torch.float64), atol=1e-5, rtol=0)
    wt = params.source_weight.double()[:, None]
    torch.testing.assert_close(ym.double(), (1 - wt) * soft + wt * soft[params.perm], atol=1e-6, rtol=0)

    # Label weight = the applied mask's mean (area labels).
    if area_labels:
        torch.testing.assert_close(params.source_weight.double(), share_ref.mean((1, 2, 3)), atol=1e-6, rtol=0)


def run_and_check(op, x, y, maps=None, seed=0, label_smoothing=0.0, area_labels=True):
    """Sample, apply, check invariants, non-mutation and replay. Returns (xm, ym, params)."""
    x0, y0 = x.clone(), y.clone()
    maps0 = None if maps is None else maps.clone()
    params = op.sample_params(x, generator=gen(seed), saliency=maps)
    xm, ym = op.apply_params(x, y, params)
    assert torch.equal(x, x0) and torch.equal(y, y0), "inputs mutated"
    if maps is not None:
        assert torch.equal(maps, maps0), "saliency maps mutated"
    check_mix(x, y, xm, ym, params, label_smoothing, area_labels)
    # Replay: the same params give the same output; forward(params=) is apply.
    xm2, ym2 = op(x, y, params=params)
    assert torch.equal(xm, xm2) and torch.equal(ym, ym2)
    # forward(generator=) with the same seed is sample_params + apply.
    xm3, ym3 = op(x, y, generator=gen(seed), saliency=maps)
    assert torch.equal(xm, xm3) and torch.equal(ym, ym3)
    assert torch.equal(x, x0) and torch.equal(y, y0), "inputs mutated"
    return xm, ym, params


@st.composite
def mix_batches(draw, min_side: int = 8, max_side: int = 20):
    b = draw(st.sampled_from([1, 2, 3, 5, 8]))
    c = draw(st.sampled_from([1, 3]))
    h = draw(st.integers(min_side, max_side))
    w = draw(st.integers(min_side, max_side))
    dtype = draw(st.sampled_from(DTYPES))
    channels_last = draw(st.booleans())
    kind = draw(st.sampled_from(["index", "prob32", "prob64"]))
    smoothing = draw(st.sampled_from([0.0, 0.1]))
    seed = draw(st.integers(0, 2**31 - 1))
    x = mix_images(seed, b, c, h, w, dtype, channels_last)
    y = mix_labels(seed, b, kind)
    return dict(x=x, y=y, seed=seed, smoothing=smoothing, maps=mix_maps(seed, b, h, w))


alphas = st.sampled_from([0.2, 1.0, 3.0])


def rsm_box_sides(lam: float, h: int, w: int):
    cut = math.sqrt(1.0 - lam)
    return int(h * cut), int(w * cut)


# SALIENCY_ON (the defaults before the study chose the library's): every saliency idea switched
# on, a hard paste applied to every sample, so that tests of the saliency geometry and labels see
# every sample patched.
def design_rsm(**options) -> RandSaliencyMix:
    return RandSaliencyMix(**{"num_classes": MIX_K, **SALIENCY_ON, **options})
