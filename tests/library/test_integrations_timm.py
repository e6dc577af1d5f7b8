"""The timm drop-in (:class:`randsaliencymix.integrations.timm.Mixup`): its own invariants, its errors,
and its behaviour compared with timm's own ``timm/data/mixup.py``.

timm is never installed nor imported as a package: the comparison tests read ``timm/data/mixup.py``
out of a timm wheel (``RSMIX_TIMM_WHEEL=/path/to/timm-*.whl``, else ``pip download`` into the
pytest cache, once) and load that one file as a standalone module; it needs only numpy and torch.
Without a wheel they are skipped, saying why. None of timm's code is kept in this repository.

The comparisons are statistical. Both sides are seeded (NumPy's global RNG for timm, a
``torch.Generator`` here), so every run sees the same numbers; the bounds are still stated as tests
that would hold for any seed with overwhelming probability: two-sample Kolmogorov-Smirnov p-values
above ``P_MIN = 1e-3`` and rates within ``Z_MAX = 4.5`` binomial standard deviations. A control
shows the same test rejecting a real difference (MixUp's alpha 0.4 against timm's 0.8)."""

from __future__ import annotations

import dataclasses
import importlib.util
import inspect
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Dict, Iterator, Tuple

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from conftest import drop_in_mixup, gen, labels, small_images
from randsaliencymix import Mixer, MixParams, MixUp, RandSaliencyMix, SaliencyMix, SoftTargetCrossEntropy
from randsaliencymix.integrations.timm import CUTMIX_OPS, Mixup

TIMM_VERSION = "1.0.31"  # the timm release compared against (any wheel given by RSMIX_TIMM_WHEEL works)
P_MIN = 1e-3
Z_MAX = 4.5
H, W = 16, 20  # not square: a swapped height and width shows


# ---------------------------------------------------------------------------------------------
# timm's mixup.py, read from a wheel
# ---------------------------------------------------------------------------------------------


def _timm_wheel(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> Path:
    given_wheel = os.environ.get("RSMIX_TIMM_WHEEL")
    if given_wheel:
        if not Path(given_wheel).is_file():
            pytest.fail(f"RSMIX_TIMM_WHEEL={given_wheel} is not a file")
        return Path(given_wheel)
    plugin = getattr(pytestconfig, "cache", None)  # absent under -p no:cacheprovider
    cache = plugin.mkdir("timm_wheel") if plugin else tmp_path_factory.mktemp("timm_wheel")
    found = sorted(cache.glob(f"timm-{TIMM_VERSION}-*.whl"))
    if found:
        return found[0]
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check"]
    cmd += ["--timeout", "20", "--retries", "1", "-q", "-d", str(cache), f"timm=={TIMM_VERSION}"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    except subprocess.TimeoutExpired:
        pytest.skip(f"comparison with timm skipped: pip download timm=={TIMM_VERSION} timed out (set RSMIX_TIMM_WHEEL)")
    found = sorted(cache.glob(f"timm-{TIMM_VERSION}-*.whl"))
    if proc.returncode != 0 or not found:
        why = (proc.stderr.strip().splitlines() or ["no wheel"])[-1]
        pytest.skip(
            f"comparison with timm skipped: pip could not download timm=={TIMM_VERSION} ({why}); "
            "set RSMIX_TIMM_WHEEL to a timm wheel to run it"
        )
    return found[0]


@pytest.fixture(scope="session")
def timm_mixup(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> ModuleType:
    """timm's ``timm/data/mixup.py`` as a standalone module (its only imports: numpy, torch)."""
    with zipfile.ZipFile(_timm_wheel(pytestconfig, tmp_path_factory)) as wheel:
        source = wheel.read("timm/data/mixup.py")
    path = tmp_path_factory.mktemp("timm_reference") / "timm_reference_mixup.py"
    path.write_bytes(source)
    spec = importlib.util.spec_from_file_location("timm_reference_mixup", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def numpy_seed() -> Iterator[Callable[[int], None]]:
    """Seed NumPy's global RNG (timm's source of randomness) and restore it afterwards."""
    state = np.random.get_state()
    yield np.random.seed
    np.random.set_state(state)


# ---------------------------------------------------------------------------------------------
# Black-box observation of one call, the same for timm and for the drop-in
# ---------------------------------------------------------------------------------------------


def probe(batch: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Image ``i`` is the constant ``i + 1`` and has label ``i``: every output pixel and target tells
    where it came from."""
    x = torch.arange(1, batch + 1, dtype=torch.float32).view(batch, 1, 1, 1).expand(batch, 1, H, W).contiguous()
    return x, torch.arange(batch)


def observe(x: torch.Tensor, out: torch.Tensor, target: torch.Tensor) -> Dict[str, np.ndarray]:
    """Per sample, with partner ``j = B - 1 - i``: whether it changed, whether it is a cut (every
    pixel its own or its partner's, some its partner's), the partner's pixel share, the partner's
    label weight ``w``, and the patch's top, left, height and width."""
    b = x.shape[0]
    own, other = out == x, out == x.flip(0)
    rows, cols = other[:, 0].any(dim=2), other[:, 0].any(dim=1)
    changed = ~own.flatten(1).all(dim=1)
    cut = (own | other).flatten(1).all(dim=1) & other.flatten(1).any(dim=1) & changed
    i = torch.arange(b)
    return {
        "changed": changed.numpy(),
        "cut": cut.numpy(),
        "area": other.flatten(1).double().mean(dim=1).numpy(),
        "w": target[i, b - 1 - i].double().numpy(),
        "top": rows.double().argmax(dim=1).numpy(),
        "left": cols.double().argmax(dim=1).numpy(),
        "height": rows.sum(dim=1).numpy(),
        "width": cols.sum(dim=1).numpy(),
    }


def run_many(call: Callable[[torch.Tensor, torch.Tensor], Tuple[torch.Tensor, torch.Tensor]], batch: int,
             calls: int, units: slice) -> Dict[str, np.ndarray]:  # fmt: skip
    """Observations of ``calls`` calls on the probe, keeping the samples ``units`` of each (the
    independent draws: one per batch, one per pair or every element)."""
    x, y = probe(batch)
    rows = []
    for _ in range(calls):
        out, target = call(x.clone(), y)  # timm mixes in place: hand it a copy
        rows.append({k: v[units] for k, v in observe(x, out, target).items()})
    return {k: np.concatenate([r[k] for r in rows]) for k in rows[0]}


def both(timm_mixup: ModuleType, numpy_seed: Callable[[int], None], *, batch: int, calls: int, units: slice,
         ours_extra: Dict[str, Any] | None = None, **kwargs: Any) -> Tuple[Dict[str, np.ndarray], Dict[str, np.ndarray]]:  # fmt: skip
    """The same observations of timm's Mixup and of the drop-in with the same arguments."""
    numpy_seed(12345)
    reference = timm_mixup.Mixup(num_classes=batch, label_smoothing=0.0, **kwargs)
    theirs = run_many(reference, batch, calls, units)
    gen = torch.Generator().manual_seed(54321)
    ours_kwargs = {**kwargs, **(ours_extra or {})}
    mine = Mixup(num_classes=batch, label_smoothing=0.0, generator=gen, **ours_kwargs)
    return theirs, run_many(mine, batch, calls, units)


def same_distribution(a: np.ndarray, b: np.ndarray) -> float:
    assert len(a) > 100 and len(b) > 100, (len(a), len(b))
    return float(stats.ks_2samp(a, b).pvalue)


def within_binomial(rate_n: Tuple[float, int], p: float) -> bool:
    rate, n = rate_n
    return abs(rate - p) <= Z_MAX * np.sqrt(max(p * (1 - p), 1e-12) / n)


def rate(mask: np.ndarray) -> Tuple[float, int]:
    return float(mask.mean()), int(mask.size)


# ---------------------------------------------------------------------------------------------
# The comparison with timm
# ---------------------------------------------------------------------------------------------

# (mode, batch size, calls, the independent samples of a call)
MODES = [("batch", 2, 700, slice(0, 1)), ("pair", 8, 300, slice(0, 4)), ("elem", 16, 150, slice(None))]


@pytest.mark.parametrize(("mode", "batch", "calls", "units"), MODES)
def test_mixup_cutmix_switch_matches_timm(timm_mixup, numpy_seed, mode, batch, calls, units) -> None:
    """DeiT's setting (MixUp 0.8, CutMix 1.0) with prob 0.8 and switch 0.6: the rates of mixing and
    of CutMix, lam, the box's area and position have timm's distributions in every mode."""
    kwargs: Dict[str, Any] = dict(mixup_alpha=0.8, cutmix_alpha=1.0, prob=0.8, switch_prob=0.6, mode=mode)
    theirs, mine = both(timm_mixup, numpy_seed, batch=batch, calls=calls, units=units, **kwargs)
    for obs in (theirs, mine):
        mixed = obs["changed"] | (obs["w"] > 0)
        assert within_binomial(rate(mixed), 0.8)
        assert within_binomial(rate(obs["cut"][mixed]), 0.6)
        # correct_lam: a cut's label weight is exactly the share of pixels it took.
        assert np.allclose(obs["w"][obs["cut"]], obs["area"][obs["cut"]], atol=1e-6)
        # MixUp: w = 1 - lam with lam ~ Beta(0.8, 0.8).
        mix = mixed & ~obs["cut"]
        assert stats.kstest(obs["w"][mix], stats.beta(0.8, 0.8).cdf).pvalue > P_MIN
    mix_t = (theirs["changed"] | (theirs["w"] > 0)) & ~theirs["cut"]
    mix_o = (mine["changed"] | (mine["w"] > 0)) & ~mine["cut"]
    assert same_distribution(theirs["w"][mix_t], mine["w"][mix_o]) > P_MIN
    for key in ("area", "top", "left", "height", "width"):
        assert same_distribution(theirs[key][theirs["cut"]], mine[key][mine["cut"]]) > P_MIN, key


def test_the_comparison_detects_a_real_difference(timm_mixup, numpy_seed) -> None:
    """Control: the same test rejects MixUp with alpha 0.4 against timm's 0.8."""
    theirs, mine = both(timm_mixup, numpy_seed, batch=16, calls=100, units=slice(None), mode="elem",
                        mixup_alpha=0.8, ours_extra={"mixup_alpha": 0.4})  # fmt: skip
    assert same_distribution(theirs["w"], mine["w"]) < 1e-6


@pytest.mark.parametrize(("mode", "batch", "calls", "units"), MODES)
def test_draws_are_shared_as_timm_shares_them(timm_mixup, numpy_seed, mode, batch, calls, units) -> None:
    """batch: one draw for the whole batch; pair: ``i`` and ``B - 1 - i`` share lam and the box;
    elem: samples differ within a batch. The same structure in timm's output and in ours."""
    kwargs: Dict[str, Any] = dict(mixup_alpha=1.0, cutmix_alpha=1.0, mode=mode)
    theirs, mine = both(timm_mixup, numpy_seed, batch=batch, calls=20, units=slice(None), **kwargs)
    for obs in (theirs, mine):
        w = obs["w"].reshape(20, batch)
        shape = np.stack([obs[k].reshape(20, batch) for k in ("top", "left", "height", "width")])
        if mode == "batch":
            assert (w == w[:, :1]).all() and (shape == shape[:, :, :1]).all()
        elif mode == "pair":
            assert np.allclose(w, w[:, ::-1]) and (shape == shape[:, :, ::-1]).all()
        else:
            assert (w != w[:, :1]).any()


def test_correct_lam_false_matches_timm(timm_mixup, numpy_seed) -> None:
    """Without correct_lam a cut's label keeps lam as drawn (uniform for alpha 1) although the box
    was clipped, as in timm."""
    kwargs: Dict[str, Any] = dict(mixup_alpha=0.0, cutmix_alpha=1.0, correct_lam=False, mode="elem")
    theirs, mine = both(timm_mixup, numpy_seed, batch=16, calls=100, units=slice(None), **kwargs)
    for obs in (theirs, mine):
        cut = obs["cut"]
        assert stats.kstest(obs["w"][cut], stats.uniform.cdf).pvalue > P_MIN
        assert (np.abs(obs["w"][cut] - obs["area"][cut]) > 1e-3).mean() > 0.3  # clipped boxes
    assert same_distribution(theirs["w"][theirs["cut"]], mine["w"][mine["cut"]]) > P_MIN
    assert same_distribution(theirs["area"][theirs["cut"]], mine["area"][mine["cut"]]) > P_MIN


@pytest.mark.parametrize(("mode", "batch", "calls", "units"), [MODES[0], MODES[2]])
def test_cutmix_minmax_matches_timm(timm_mixup, numpy_seed, mode, batch, calls, units) -> None:
    """cutmix_minmax: sides uniform in [int(H lo), int(H hi)), boxes never clipped, labels from the
    area even with correct_lam=False: the same support and distributions as timm."""
    kwargs: Dict[str, Any] = dict(
        mixup_alpha=0.0, cutmix_alpha=0.0, cutmix_minmax=(0.25, 0.75), correct_lam=False, mode=mode
    )
    theirs, mine = both(timm_mixup, numpy_seed, batch=batch, calls=calls, units=units, **kwargs)
    for obs in (theirs, mine):
        assert obs["cut"].all()
        cut = obs["cut"]
        assert set(obs["height"][cut]) == set(range(4, 12)) and set(obs["width"][cut]) == set(range(5, 15))
        assert np.allclose(obs["w"][cut], obs["area"][cut], atol=1e-6)
    for key in ("area", "top", "left", "height", "width"):
        assert same_distribution(theirs[key][theirs["cut"]], mine[key][mine["cut"]]) > P_MIN, key


@pytest.mark.parametrize("mode", ["batch", "pair", "elem"])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_no_mixing_gives_timm_targets(timm_mixup, mode, smoothing) -> None:
    """prob=0, or mixup_enabled=False: the images are untouched and the targets are timm's smoothed
    one-hot (off = s / K, on = 1 - s + off) within one float32 ulp."""
    x = torch.randn(6, 3, H, W)
    y = torch.tensor([3, 0, 9, 3, 1, 5])
    reference = timm_mixup.Mixup(mixup_alpha=1.0, cutmix_alpha=1.0, prob=0.0, mode=mode, label_smoothing=smoothing,
                                 num_classes=10)  # fmt: skip
    _, expected = reference(x.clone(), y)
    for prob in (0.0, 1.0):
        ours = Mixup(mixup_alpha=1.0, cutmix_alpha=1.0, mode=mode, label_smoothing=smoothing, num_classes=10, prob=prob)
        if prob == 1.0:
            ours.mixup_enabled = False  # what timm's train.py does at --mixup-off-epoch
        out, target = ours(x, y, generator=torch.Generator().manual_seed(0))
        assert torch.equal(out, x)
        torch.testing.assert_close(target, expected, rtol=0, atol=float(np.spacing(np.float32(1))))


def test_label_smoothing_and_mixed_targets_follow_timm_convention(timm_mixup, numpy_seed) -> None:
    """Mixed targets are ``(1 - w) * y1[i] + w * y1[B - 1 - i]`` with y1 smoothed as timm does, in
    timm's output and in ours."""
    s, k = 0.1, 8
    off, on = s / k, 1 - s + s / k
    x, y = probe(k)
    numpy_seed(7)
    reference = timm_mixup.Mixup(mixup_alpha=0.8, cutmix_alpha=1.0, mode="elem", label_smoothing=s, num_classes=k)
    ours = Mixup(mixup_alpha=0.8, cutmix_alpha=1.0, mode="elem", label_smoothing=s, num_classes=k,
                 generator=torch.Generator().manual_seed(7))  # fmt: skip
    y1 = torch.full((k, k), off).scatter_(1, y[:, None], on).double()
    for call in (reference, ours):
        for _ in range(10):
            _, target = call(x.clone(), y)
            i = torch.arange(k)
            w = (target[i, k - 1 - i].double() - off) / (on - off)
            expected = (1 - w)[:, None] * y1 + w[:, None] * y1.flip(0)
            torch.testing.assert_close(target.double(), expected, rtol=0, atol=1e-6)


def test_constructor_accepts_what_timm_train_py_passes(timm_mixup) -> None:
    """Every argument of timm's Mixup but multi_label exists here with timm's default (num_classes is
    required here); train.py's mixup_args and mixup_enabled work unchanged."""
    theirs = inspect.signature(timm_mixup.Mixup).parameters
    ours = inspect.signature(Mixup).parameters
    for name, param in theirs.items():
        if name in ("self", "multi_label"):
            continue
        assert name in ours, name
        if name != "num_classes":
            assert ours[name].default == param.default, name
    assert ours["num_classes"].default is inspect.Parameter.empty
    mixup_args: Dict[str, Any] = dict(mixup_alpha=0.8, cutmix_alpha=1.0, cutmix_minmax=None, prob=1.0, switch_prob=0.5,
                      mode="batch", label_smoothing=0.1, num_classes=10)  # fmt: skip
    mixup_fn = Mixup(**mixup_args)
    x, y = torch.randn(4, 3, H, W), torch.randint(0, 10, (4,))
    out, target = mixup_fn(x, y)
    assert out.shape == x.shape and target.shape == (4, 10) and target.dtype == torch.float32
    mixup_fn.mixup_enabled = False
    assert torch.equal(mixup_fn(x, y)[0], x)


# ---------------------------------------------------------------------------------------------
# The drop-in's own invariants
# ---------------------------------------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(
    batch=st.integers(1, 9),
    mode=st.sampled_from(["batch", "pair", "elem"]),
    cutmix_op=st.sampled_from(sorted(CUTMIX_OPS)),
    pairing=st.sampled_from(["flip", "random"]),
    minmax=st.sampled_from([None, (0.2, 0.8)]),
    mixup_alpha=st.sampled_from([0.0, 0.8]),
    seed=st.integers(0, 2**31),
)
def test_any_batch_any_mode_invariants(batch, mode, cutmix_op, pairing, minmax, mixup_alpha, seed) -> None:
    """Any batch size: rows sum to 1, the pairing is an involution (flip: ``B - 1 - i``), an odd
    batch's self-paired sample is untouched, pairs share their draws, the input is not modified,
    and apply replays forward."""
    x = torch.rand(batch, 3, H, W)
    y = torch.randint(0, 5, (batch,))
    x_before = x.clone()
    op = Mixup(mixup_alpha=mixup_alpha, cutmix_alpha=1.0, cutmix_minmax=minmax, mode=mode, num_classes=5,
               cutmix_op=cutmix_op, pairing=pairing, label_smoothing=0.1)  # fmt: skip
    params = op.sample_params(x, generator=torch.Generator().manual_seed(seed))
    out, target = op.apply_params(x, y, params)
    assert torch.equal(x, x_before)
    torch.testing.assert_close(target.sum(dim=1), torch.ones(batch))
    i = torch.arange(batch)
    assert torch.equal(params.perm[params.perm], i)
    if pairing == "flip":
        assert torch.equal(params.perm, batch - 1 - i)
    alone = params.perm == i
    assert not params.applied[alone].any() and torch.equal(out[alone], x[alone])
    if mode in ("batch", "pair"):
        partner = params.perm
        assert torch.equal(params.applied, params.applied[partner])
        assert torch.equal(params.mixup, params.mixup[partner])
        assert torch.equal(params.lam, params.lam[partner])
    if mode == "batch":
        paired = ~alone
        assert params.applied[paired].unique().numel() <= 1 and params.lam.unique().numel() == 1
    out2, target2 = op(x, y, generator=torch.Generator().manual_seed(seed))
    assert torch.equal(out, out2) and torch.equal(target, target2)


def test_cutmix_pair_swaps_the_same_box() -> None:
    """pair mode, timm's CutMix: ``i`` and ``B - 1 - i`` exchange the same box."""
    op = Mixup(mixup_alpha=0.0, cutmix_alpha=1.0, mode="pair", num_classes=4)
    params = op.sample_params(torch.rand(8, 3, H, W), generator=torch.Generator().manual_seed(3))
    assert torch.equal(params.dst_boxes, params.dst_boxes.flip(0)) and torch.equal(params.src_boxes, params.dst_boxes)


def test_saliencymix_cut_centres_on_the_source_peak() -> None:
    """cutmix_op='saliencymix': the box is centred on the partner's saliency peak (given maps)."""
    b = 6
    maps = torch.zeros(b, H, W)
    peaks = [(3, 4), (10, 15), (8, 8), (0, 19), (15, 0), (7, 12)]
    for k, (r, c) in enumerate(peaks):
        maps[k, r, c] = 1.0
    op = Mixup(mixup_alpha=0.0, cutmix_alpha=1.0, mode="elem", num_classes=3, cutmix_op="saliencymix")
    params = op.sample_params(torch.rand(b, 3, H, W), generator=torch.Generator().manual_seed(0), saliency=maps)
    for i in range(b):
        box = params.dst_boxes[i].tolist()
        if box[2] > box[0] and box[3] > box[1]:
            r, c = peaks[b - 1 - i]
            assert box[0] <= r <= box[2] and box[1] <= c <= box[3]
            assert params.source_weight[i] == pytest.approx((box[2] - box[0]) * (box[3] - box[1]) / (H * W))


def test_randsaliencymix_cut_follows_its_options() -> None:
    """cutmix_op='randsaliencymix' with peak crop, same-place paste and a hard paste: the patch is
    the window of the source holding its salient pixel, and gamma=1 weighs labels by saliency."""
    b = 4
    maps = torch.zeros(b, H, W)
    maps[:, 5, 6] = 1.0
    op = Mixup(mixup_alpha=0.0, cutmix_alpha=1.0, mode="elem", num_classes=3, cutmix_op="randsaliencymix",
               cutmix_options={"source": "peak", "paste": "same", "eta": 1.0, "gamma": 1.0})  # fmt: skip
    params = op.sample_params(torch.rand(b, 3, H, W), generator=torch.Generator().manual_seed(1), saliency=maps)
    for i in range(b):
        r1, c1, r2, c2 = params.src_boxes[i].tolist()
        if r2 > r1:
            assert r1 <= 5 < r2 and c1 <= 6 < c2
            # The source's whole saliency moves in and covers the target's: w_s = 1 / (1 + 0).
            assert params.source_weight[i] == pytest.approx(1.0)
    assert torch.equal(params.src_boxes, params.dst_boxes)


def test_generator_reproduces_and_its_device_is_checked() -> None:
    x, y = torch.rand(8, 3, H, W), torch.randint(0, 10, (8,))
    make = lambda: Mixup(mixup_alpha=0.8, cutmix_alpha=1.0, mode="elem", num_classes=10,  # noqa: E731
                         generator=torch.Generator().manual_seed(5))  # fmt: skip
    a, b = make(), make()
    for _ in range(3):
        (xa, ya), (xb, yb) = a(x, y), b(x, y)
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert not torch.equal(a(x, y)[1], a(x, y)[1])  # the stream advances


def test_is_a_mixer_and_trains() -> None:
    """It is a Mixer (sample_params/apply) and its targets train with SoftTargetCrossEntropy."""
    op = Mixup(mixup_alpha=0.8, cutmix_alpha=1.0, num_classes=10, cutmix_op="randsaliencymix")
    assert isinstance(op, Mixer)
    x, y = torch.rand(4, 3, H, W, requires_grad=True), torch.randint(0, 10, (4,))
    out, target = op(x, y, generator=torch.Generator().manual_seed(0))
    SoftTargetCrossEntropy()(out.flatten(1)[:, :10], target).backward()
    assert x.grad is not None
    assert isinstance(op.sample_params(x.detach()), MixParams)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("cutmix_op", sorted(CUTMIX_OPS))
def test_no_host_synchronisation_on_cuda(cutmix_op) -> None:
    x = torch.rand(8, 3, H, W, device="cuda")
    y = torch.randint(0, 10, (8,), device="cuda")
    op = Mixup(mixup_alpha=0.8, cutmix_alpha=1.0, mode="elem", num_classes=10, cutmix_op=cutmix_op,
               generator=torch.Generator(device="cuda").manual_seed(0), validate=False)  # fmt: skip
    op(x, y)  # warm-up (lazy CUDA initialisation may synchronise)
    torch.cuda.set_sync_debug_mode("error")
    try:
        out, target = op(x, y)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert out.device == x.device and target.shape == (8, 10)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_generator_on_another_device() -> None:
    op = Mixup(num_classes=10, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match=r"Expected a generator on the images' device \(cuda\), but got one on cpu"):
        op(torch.rand(2, 3, H, W, device="cuda"), torch.tensor([0, 1], device="cuda"))


# ---------------------------------------------------------------------------------------------
# Errors: one test per path
# ---------------------------------------------------------------------------------------------

BAD_ARGUMENTS = [
    ({"prob": 1.5}, ValueError, r"Expected prob in \[0, 1\], but got 1.5 instead"),
    ({"mixup_alpha": -1.0}, ValueError, r"Expected mixup_alpha >= 0 and finite, but got -1.0 instead"),
    ({"cutmix_alpha": -1.0}, ValueError, r"Expected cutmix_alpha >= 0 and finite, but got -1.0 instead"),
    ({"mixup_alpha": 0.0}, ValueError, r"Expected mixup_alpha > 0, cutmix_alpha > 0 or cutmix_minmax"),
    ({"cutmix_minmax": 0.5}, ValueError, r"Expected cutmix_minmax as None or \(min, max\), but got 0.5 instead"),
    ({"cutmix_minmax": (0.2, 1.5)}, ValueError, r"Expected cutmix_minmax\[1\] in \[0, 1\], but got 1.5 instead"),
    ({"cutmix_minmax": (0.8, 0.2)}, ValueError, r"Expected cutmix_minmax with min < max, but got \(0.8, 0.2\)"),
    ({"switch_prob": -0.1}, ValueError, r"Expected switch_prob in \[0, 1\], but got -0.1 instead"),
    ({"mode": "half"}, ValueError, r"Expected mode to be one of 'batch', 'pair', 'elem', but got 'half' instead"),
    ({"correct_lam": 1}, TypeError, r"Expected correct_lam to be a bool, but got int instead"),
    ({"label_smoothing": 2.0}, ValueError, r"Expected label_smoothing in \[0, 1\], but got 2.0 instead"),
    ({"num_classes": 0}, ValueError, r"Expected num_classes >= 1, but got 0 instead"),
    ({"cutmix_op": "fmix"}, ValueError, r"Expected cutmix_op to be one of 'cutmix', .*, but got 'fmix' instead"),
    (
        {"cutmix_options": {"tau_src": 1.0}},
        ValueError,
        r"Expected cutmix_options for cutmix_op='cutmix' among \(none\)",
    ),
    ({"cutmix_op": "randsaliencymix", "cutmix_options": {"alpha": 2.0}}, ValueError, r"among \(source, .*\['alpha'\]"),
    ({"cutmix_op": "randsaliencymix", "cutmix_options": {"tau_src": -1.0}}, ValueError, r"Expected tau_src >= 0"),
    ({"pairing": "roll"}, ValueError, r"Expected pairing to be one of 'flip', 'random', but got 'roll' instead"),
    ({"generator": 0}, TypeError, r"Expected generator to be a torch.Generator, but got int instead"),
]


@pytest.mark.parametrize(("kwargs", "error", "match"), BAD_ARGUMENTS)
def test_bad_arguments(kwargs, error, match) -> None:
    with pytest.raises(error, match=match):
        Mixup(**{"num_classes": 10, **kwargs})


def test_bad_mix_prob() -> None:
    op = Mixup(num_classes=10)
    with pytest.raises(ValueError, match=r"Expected mix_prob in \[0, 1\], but got -1 instead"):
        op.mix_prob = -1
    op.mix_prob = 0.25
    assert op.p == 0.25


def test_perm_in_pair_mode_is_refused() -> None:
    op = Mixup(mode="pair", num_classes=10)
    with pytest.raises(ValueError, match=r"Expected perm=None in mode='pair'.*but got a perm instead"):
        op.sample_params(torch.rand(4, 3, H, W), perm=torch.tensor([1, 0, 3, 2]))


def test_perm_fixes_the_pairing_in_elem_mode() -> None:
    op = Mixup(mode="elem", num_classes=10)
    perm = torch.tensor([2, 0, 1, 3])
    assert torch.equal(op.sample_params(torch.rand(4, 3, H, W), perm=perm).perm, perm)


def test_cutmix_minmax_too_narrow_for_the_images() -> None:
    op = Mixup(mixup_alpha=0.0, cutmix_minmax=(0.5, 0.55), num_classes=10)
    with pytest.raises(ValueError, match=r"Expected cutmix_minmax to allow at least one patch side on 4x4 images"):
        op(torch.rand(2, 3, 4, 4), torch.tensor([0, 1]))


# ------------------------------------------------------------------------------------------
# Issue 18: options assigned after construction, odd batches
# ------------------------------------------------------------------------------------------

AFTER = {
    "label_smoothing": (2.0, ValueError, "label_smoothing"),
    "mixup_alpha": (-1.0, ValueError, "mixup_alpha"),
    "cutmix_alpha": (float("inf"), ValueError, "cutmix_alpha"),
    "cutmix_minmax": ((0.8, 0.2), ValueError, "min < max"),
    "p": (1.5, ValueError, "Expected p in"),
    "mix_prob": (-0.1, ValueError, "mix_prob"),
    "switch_prob": (2, ValueError, "switch_prob"),
    "mode": ("pairs", ValueError, "mode"),
    "pairing": ("shuffle", ValueError, "pairing"),
    "correct_lam": ("yes", TypeError, "correct_lam to be a bool"),
    "mixup_enabled": (0, TypeError, "mixup_enabled to be a bool"),
}


@pytest.mark.parametrize("name", sorted(AFTER))
def test_timm_options_assigned_after_construction_are_checked(name):
    from randsaliencymix.integrations.timm import Mixup as DropIn

    value, error, message = AFTER[name]
    mix = DropIn(mixup_alpha=0.8, cutmix_alpha=1.0, num_classes=5)
    with pytest.raises(error, match=re.escape(message)):
        setattr(mix, name, value)


def test_good_assignments_take_effect_and_timm_switches_mixing_off():
    from randsaliencymix.integrations.timm import Mixup as DropIn

    mix = DropIn(mixup_alpha=0.8, cutmix_alpha=1.0, num_classes=5)
    x, y = torch.rand(4, 3, 8, 8), torch.arange(4) % 5
    mix.label_smoothing = 0.2
    mix.mixup_enabled = False  # what timm's train.py does at --mixup-off-epoch
    xm, ym = mix(x, y, generator=torch.Generator().manual_seed(0))
    assert torch.equal(xm, x)
    torch.testing.assert_close(ym.max(1).values, torch.full((4,), 0.8 + 0.2 / 5))
    assert float(ym.min()) >= 0.0


@pytest.mark.parametrize("mode", ["batch", "pair", "elem"])
@pytest.mark.parametrize("b", [1, 3, 7])
def test_timm_drop_in_takes_odd_batches(mode, b):
    from randsaliencymix.integrations.timm import Mixup as DropIn

    mix = DropIn(mixup_alpha=0.8, cutmix_alpha=1.0, mode=mode, num_classes=5, label_smoothing=0.0)
    x, y = torch.rand(b, 3, 8, 8), torch.arange(b) % 5
    xm, ym = mix(x, y, generator=torch.Generator().manual_seed(1))
    assert xm.shape == x.shape and torch.allclose(ym.sum(1), torch.ones(b))
    middle = b // 2  # its own partner under the flip: stays as it was
    if b % 2:
        assert torch.equal(xm[middle], x[middle])


# ---------------------------------------------------------------------------------------------
# The drop-in's options assigned after construction (issue 28)
# ---------------------------------------------------------------------------------------------

K = 5


@pytest.mark.parametrize(
    ("first", "then", "options"),
    [
        ("cutmix", "saliencymix", None),
        ("saliencymix", "randsaliencymix", {"detector": "spectral"}),
        ("randsaliencymix", "saliencymix", {"detector": "spectral"}),
        ("saliencymix", "cutmix", None),
    ],
)
def test_cutmix_op_assigned_after_construction_draws_as_if_constructed_with_it(
    first: str, then: str, options: Any
) -> None:
    assigned = drop_in_mixup(cutmix_op=first, cutmix_options=options)
    assigned.cutmix_op = then
    built = drop_in_mixup(cutmix_op=then, cutmix_options=options)
    assert repr(assigned) == repr(built)
    x = small_images(8)
    a = assigned.sample_params(x, generator=gen(3))
    b = built.sample_params(x, generator=gen(3))
    for f in dataclasses.fields(MixParams):
        va, vb = getattr(a, f.name), getattr(b, f.name)
        assert torch.equal(va, vb) if isinstance(va, torch.Tensor) else va == vb, f.name
    xa, ya = assigned(x, labels(8), generator=gen(4))
    xb, yb = built(x, labels(8), generator=gen(4))
    assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_an_unknown_cutmix_op_assigned_is_refused_and_changes_nothing() -> None:
    op = drop_in_mixup(cutmix_op="saliencymix")
    before = repr(op)
    with pytest.raises(
        ValueError, match=r"^Expected cutmix_op to be one of 'cutmix', 'saliencymix', 'randsaliencymix'"
    ):
        op.cutmix_op = "gridmix"
    assert repr(op) == before and op.cutmix_op == "saliencymix" and isinstance(op.cut_op, SaliencyMix)


def test_a_cutmix_op_that_refuses_the_stored_options_is_refused_and_changes_nothing() -> None:
    op = drop_in_mixup(cutmix_op="randsaliencymix", cutmix_options={"tau_src": 1.0})
    with pytest.raises(ValueError, match=r"^Expected cutmix_options for cutmix_op='cutmix' among \(none\)"):
        op.cutmix_op = "cutmix"
    assert op.cutmix_op == "randsaliencymix" and isinstance(op.cut_op, RandSaliencyMix)
    assert op.cut_op.tau_src == 1.0 and op.cutmix_options == {"tau_src": 1.0}


def test_validate_is_checked_at_construction_and_when_assigned() -> None:
    message = r"^Expected validate as None, True or False, but got 'yes' instead\.$"
    with pytest.raises(TypeError, match=message):
        MixUp(num_classes=K, validate="yes")  # type: ignore[arg-type]
    op = drop_in_mixup(cutmix_op="saliencymix")
    with pytest.raises(TypeError, match=message):
        op.validate = "yes"  # type: ignore[assignment]
    assert op.validate is None
    op.validate = True  # reaches the cut-and-paste operator, whose checks read it
    assert op.cut_op is not None and op.cut_op.validate is True


def test_num_classes_zero_assigned_is_refused() -> None:
    op = drop_in_mixup()
    with pytest.raises(ValueError, match=r"^Expected num_classes >= 1, but got 0 instead\.$"):
        op.num_classes = 0
    assert op.num_classes == K
