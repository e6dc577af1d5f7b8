"""Window geometry (``randsaliencymix.geometry``): the corner sampler, window masses, box sides and
the safe normalisation of saliency maps, each checked against an independent reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.stats import chisquare

from randsaliencymix import window_mass
from randsaliencymix.geometry import box_sides, draw_corner, normalised_maps, peak_of_quantised

GEO_SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
EPS = 1e-4


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed))


def extents(n: int, rows: int, cols: int, height: int, width: int):
    """Valid rows 0..rows-1 and columns 0..cols-1 of an (height, width) grid, for n samples."""
    vr = (torch.arange(height) < rows).expand(n, height).clone()
    vc = (torch.arange(width) < cols).expand(n, width).clone()
    return vr, vc


def grid_scores(n: int, height: int = 6, width: int = 7, seed: int = 99) -> torch.Tensor:
    base = 0.2 + 0.8 * torch.rand(height, width, generator=gen(seed))
    return base.expand(n, height, width).clone()


def law(base: torch.Tensor, rows: int, cols: int, mode: str, tau: float) -> torch.Tensor:
    """Reference probabilities of every corner (flat), float64, 0 outside the valid rectangle."""
    valid = torch.zeros(base.shape, dtype=torch.bool)
    valid[:rows, :cols] = True
    w = torch.ones_like(base, dtype=torch.float64) if mode == "uniform" else (base.double() + EPS) ** tau
    w = torch.where(valid, w, torch.zeros_like(w)).flatten()
    return w / w.sum()


@pytest.mark.parametrize(
    "mode,tau", [("saliency", 0.0), ("saliency", 1.0), ("saliency", 4.0), ("uniform", 0.0), ("uniform", 4.0)]
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_draw_corner_follows_its_law(mode, tau, dtype):
    """Many draws: counts match P(corner) ~ (score + eps) ** tau over the valid rectangle (chi-square);
    tau = 0 and mode "uniform" are uniform; no invalid corner is ever drawn."""
    n, rows, cols = 20000, 4, 5
    score = grid_scores(n).to(dtype)
    base = score[0].clone()
    vr, vc = extents(n, rows, cols, 6, 7)
    idx = draw_corner(score, vr, vc, mode, tau, EPS, gen(5))
    assert idx.shape == (n,) and idx.dtype == torch.long
    counts = torch.bincount(idx, minlength=42).double()
    prob = law(base, rows, cols, mode, tau)
    assert counts[prob == 0].sum() == 0, "an invalid corner was drawn"
    stat = chisquare(counts[prob > 0].numpy(), (prob[prob > 0] * n).numpy())
    assert stat.pvalue > 1e-3, (stat, counts, prob * n)


def test_draw_corner_never_draws_invalid_corners_even_when_they_dominate():
    """Invalid corners with the largest scores and a huge tau: the valid weights must not all
    underflow (which would push the draw onto the last, invalid, index)."""
    n, h, w = 4000, 9, 11
    g = gen(3)
    rows = torch.randint(1, h + 1, (n,), generator=g)
    cols = torch.randint(1, w + 1, (n,), generator=g)
    vr = torch.arange(h)[None, :] < rows[:, None]
    vc = torch.arange(w)[None, :] < cols[:, None]
    valid = vr[:, :, None] & vc[:, None, :]
    score = torch.where(valid, 0.01 * torch.rand(n, h, w, generator=g), torch.ones(n, h, w))
    for mode, tau in (("saliency", 1.0), ("saliency", 3.0), ("saliency", 500.0), ("uniform", 0.0), ("peak", 1.0)):
        idx = draw_corner(score.clone(), vr, vc, mode, tau, EPS, gen(4))
        assert bool(((idx // w) < rows).all()) and bool(((idx % w) < cols).all()), mode


def test_draw_corner_peak_takes_the_first_maximum():
    n, h, w = 3, 5, 6
    score = torch.zeros(n, h, w)
    score[0, 1, 4] = score[0, 3, 2] = 0.7  # tie: row-major first is (1, 4)
    score[1, 2, 2] = score[1, 2, 1] = 0.5  # tie in one row: (2, 1)
    score[1, 4, 5] = 0.9  # larger, but invalid
    # sample 2: all zero: the first valid corner, (0, 0)
    vr, vc = extents(n, 3, 5, h, w)
    idx = draw_corner(score, vr, vc, "peak", 1.0, EPS, gen(0))
    assert idx.tolist() == [1 * w + 4, 2 * w + 1, 0]


def test_draw_corner_sharp_tau_concentrates_on_the_peak():
    n = 500
    score = grid_scores(n)
    vr, vc = extents(n, 4, 5, 6, 7)
    base = score[0, :4, :5]
    best_r, best_c = divmod(int(base.argmax()), 5)
    idx = draw_corner(score, vr, vc, "saliency", 200.0, EPS, gen(0))
    assert float((idx == best_r * 7 + best_c).double().mean()) > 0.5


def test_draw_corner_advances_the_generator_the_same_in_every_drawing_mode():
    """Two uniforms per sample in every drawing mode: the draws after it do not depend on the mode."""
    n = 64
    vr, vc = extents(n, 4, 5, 6, 7)
    states = []
    for mode, tau in (("saliency", 1.0), ("saliency", 3.0), ("saliency", 0.0), ("uniform", 0.0)):
        g = gen(11)
        draw_corner(grid_scores(n), vr, vc, mode, tau, EPS, g)
        states.append(g.get_state())
    assert all(torch.equal(s, states[0]) for s in states)


@GEO_SETTINGS
@given(b=st.integers(1, 4), h=st.integers(2, 12), w=st.integers(2, 12), seed=st.integers(0, 2**31 - 1), data=st.data())
def test_window_mass_brute_force(b, h, w, seed, data):
    maps = torch.rand(b, h, w, generator=gen(seed))
    maps = maps / maps.sum((1, 2), keepdim=True)
    hs = torch.tensor(data.draw(st.lists(st.integers(0, h), min_size=b, max_size=b)))
    ws = torch.tensor(data.draw(st.lists(st.integers(0, w), min_size=b, max_size=b)))
    out = window_mass(maps, hs, ws)
    assert out.shape == (b, h, w)
    md = maps.double()
    for i in range(b):
        hi, wi = int(hs[i]), int(ws[i])
        for r in range(h):
            for c in range(w):
                v = float(out[i, r, c])
                if r > h - hi or c > w - wi:
                    assert math.isnan(v), (i, r, c)
                else:
                    assert v == pytest.approx(float(md[i, r : r + hi, c : c + wi].sum()), abs=2e-6), (i, r, c)


def test_box_sides_match_numpy_for_lam_near_zero():
    """torch.sqrt rounds sqrt(1 - 7e-17) up to 1.0; NumPy (the authors' code) does not."""
    lams = [7.022014369095704e-17, 1e-16, 3e-16, 0.0, 1e-12, 0.5, 1.0]
    h, w = box_sides(torch.tensor(lams, dtype=torch.float64), 8, 224)
    assert h.tolist() == [int(8 * np.sqrt(1.0 - v)) for v in lams]
    assert w.tolist() == [int(224 * np.sqrt(1.0 - v)) for v in lams]


def test_normalised_maps_are_safe_for_any_values():
    """NaN and negatives count as 0, +inf pixels share the mass, huge values do not overflow, an
    all-zero (or all-NaN) map becomes uniform: every map sums to 1 and holds no NaN."""
    m = torch.rand(6, 5, 4, generator=gen(1))
    m[0, 1, 1] = math.nan
    m[1, 2, 3] = -7.0
    m[2, 0, 0] = m[2, 4, 3] = math.inf
    m[3] = 3e38
    m[4] = math.nan
    m[5] = 0.0
    m0 = m.clone()
    out = normalised_maps(m)
    assert torch.equal(m.nan_to_num(), m0.nan_to_num()), "input mutated"
    assert not bool(torch.isnan(out).any()) and bool((out >= 0).all())
    torch.testing.assert_close(out.double().sum((1, 2)), torch.ones(6, dtype=torch.float64), atol=1e-5, rtol=0)
    assert float(out[0, 1, 1]) == 0.0 and float(out[1, 2, 3]) == 0.0
    assert float(out[2, 0, 0]) == pytest.approx(0.5, abs=1e-6) and float(out[2, 4, 3]) == pytest.approx(0.5, abs=1e-6)
    for i in (3, 4, 5):
        torch.testing.assert_close(out[i], torch.full((5, 4), 1 / 20))
    # A map in the usual range is just divided by its sum.
    ref = m0[0].nan_to_num().clamp(min=0)
    torch.testing.assert_close(out[0], (ref / ref.sum()).float(), atol=1e-6, rtol=1e-5)


def test_peak_of_quantised_reads_maps_clipped_to_unit_range():
    m = torch.full((4, 3, 5), 0.25)
    m[0, 2, 1] = math.nan  # NaN is 0: the peak stays the first 0.25
    m[1, 1, 3] = math.inf  # +inf is 1: the peak
    m[2, 0, 0] = -5.0  # negative is 0
    m[2, 2, 4] = 0.9
    m[3, 1, 1] = 7.0  # above 1 reads as 1: ties with the 1.0 after it, the first wins
    m[3, 2, 2] = 1.0
    r, c = peak_of_quantised(m)
    assert list(zip(r.tolist(), c.tolist())) == [(0, 0), (1, 3), (2, 4), (1, 1)]


def test_normalised_maps_in_place_gives_the_same_maps_and_only_then_writes_its_input() -> None:
    g = torch.Generator().manual_seed(0)
    maps = torch.rand(5, 9, 11, generator=g)
    maps[2] = 0.0  # no saliency: uniform
    kept = maps.clone()
    expected = normalised_maps(maps, assume_clean=True)
    assert torch.equal(maps, kept)  # not in place by default
    assert torch.equal(normalised_maps(maps, assume_clean=False), expected)
    result = normalised_maps(maps, assume_clean=True, inplace=True)
    assert torch.equal(result, expected) and result.data_ptr() == maps.data_ptr()
    half = kept.half()
    assert torch.equal(normalised_maps(half, assume_clean=True, inplace=True), normalised_maps(half, assume_clean=True))
    assert torch.equal(half, kept.half())  # another dtype is converted, never written
