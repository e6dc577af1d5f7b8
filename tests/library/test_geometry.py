"""Window geometry (``randsaliencymix.geometry``): the corner sampler, window masses, box sides and
the safe normalisation of saliency maps, each checked against an independent reference; and the
fast paths of issue 11: the tau = 1 window draw (:func:`draw_window_corners_linear`), which never
builds the grid of window masses, follows the law ``(score + eps)`` over the valid corners, and its
sums (:class:`WindowSums`) are the grid's."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.stats import chisquare

from conftest import gen
from randsaliencymix import window_mass
from randsaliencymix.geometry import (
    WindowSums,
    box_sides,
    categorical,
    draw_corner,
    draw_window_corner,
    draw_window_corners_linear,
    integral,
    normalised_maps,
    peak_of_quantised,
    valid_extent,
    window_masses,
)

GEO_SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
EPS = 1e-4


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


# ------------------------------------------------------------------------------------------------
# The window draws without the grid of window masses (issue 11)
# ------------------------------------------------------------------------------------------------


def sides(n: int, height: int, width: int, seed: int):
    g = gen(seed)
    return torch.randint(0, height + 1, (n,), generator=g), torch.randint(0, width + 1, (n,), generator=g)


def side(images: torch.Tensor, how: str):
    """The three ways to read the maps: in place (identity), by the inverse of a permutation, by gathering."""
    if how == "identity":
        return (None, None)
    if how == "inverse":
        return (images, torch.empty_like(images).index_copy_(0, images, torch.arange(len(images))))
    return (images, None)


@pytest.mark.parametrize(
    "hows", [("identity",), ("inverse",), ("gather",), ("inverse", "identity"), ("gather", "identity")]
)
@pytest.mark.parametrize("height,width", [(7, 9), (12, 5), (1, 6)])
def test_window_sums_are_the_grids(height, width, hows):
    n = 40
    maps = normalised_maps(torch.rand(n, height, width, generator=gen(0)) ** 4)
    table = integral(maps)
    h, w = sides(n, height, width, 1)
    images = []
    for k, how in enumerate(hows):
        if how == "identity":
            images.append(torch.arange(n))
        elif how == "inverse":
            images.append(torch.randperm(n, generator=gen(2 + k)))
        else:  # not a permutation: some maps read twice
            images.append(torch.randint(0, n, (n,), generator=gen(2 + k)))
    sums = WindowSums(maps, [side(im, how) for im, how in zip(images, hows)])
    rows_ok, cols_ok = valid_extent(height, h), valid_extent(width, w)
    rows = [
        (torch.rand(n, generator=gen(9 + k)) * (height - h + 1)).long().clamp(max=height - 1) for k in range(len(hows))
    ]
    all_totals, all_at_rows = sums.row_totals(h, w, cols_ok), sums.masses_at_rows(torch.stack(rows), h, w)
    assert all_totals.shape == (len(hows), n, height) and all_at_rows.shape == (len(hows), n, width)
    for k, (totals, at_rows) in enumerate(zip(all_totals, all_at_rows)):
        grid = window_masses(table, h, w, images[k])
        expected = (grid.double() * cols_ok[:, None, :]).sum(2)
        torch.testing.assert_close(totals[rows_ok], expected[rows_ok], atol=1e-6, rtol=1e-6)
        expected = grid.gather(1, rows[k][:, None, None].expand(n, 1, width)).squeeze(1)
        torch.testing.assert_close(at_rows[cols_ok], expected[cols_ok], atol=1e-6, rtol=0)


@pytest.mark.parametrize("anti", [False, True])
def test_tau1_window_draw_follows_its_law(anti):
    """Many draws of one configuration: counts match P(corner) ~ (score + eps) over the valid
    corners, score = M or max(1 - M, 0) (chi-square); never an invalid corner; the returned mass
    is the drawn window's."""
    n, height, width = 30000, 6, 7
    base = normalised_maps(torch.rand(1, height, width, generator=gen(4)) ** 6)
    maps = base.expand(n, height, width).contiguous()
    h = torch.full((n,), 3, dtype=torch.long)
    w = torch.full((n,), 2, dtype=torch.long)
    vr, vc = valid_extent(height, h), valid_extent(width, w)
    ((idx, drawn),) = draw_window_corners_linear(WindowSums(maps, [(None, None)]), h, w, vr, vc, EPS, gen(5), [anti])
    mass = window_masses(integral(base), h[:1], w[:1])[0].double()
    torch.testing.assert_close(drawn, mass.flatten()[idx], atol=1e-6, rtol=0)
    score = (1 - mass).clamp(min=0) if anti else mass
    valid = (vr[0][:, None] & vc[0][None, :]).flatten()
    prob = torch.where(valid, score.flatten() + EPS, torch.zeros(height * width, dtype=torch.float64))
    prob = prob / prob.sum()
    counts = torch.bincount(idx, minlength=height * width).double()
    assert counts[~valid].sum() == 0, "an invalid corner was drawn"
    stat = chisquare(counts[valid].numpy(), (prob[valid] * n).numpy())
    assert stat.pvalue > 1e-3, (stat, counts, prob * n)


@pytest.mark.parametrize("anti", [False, True])
def test_tau1_window_draw_matches_the_grid_draw(anti):
    """The same generator state draws the same corners as draw_corner on the full grid (the masses
    agree to rounding), and advances the generator the same."""
    n, height, width = 500, 11, 13
    maps = normalised_maps(torch.rand(n, height, width, generator=gen(6)) ** 3)
    h, w = sides(n, height, width, 7)
    images = torch.randperm(n, generator=gen(8))
    vr, vc = valid_extent(height, h), valid_extent(width, w)
    g1, g2 = gen(9), gen(9)
    # Two sides at once (sources by a permutation, targets in place) draw what two draws one after
    # the other on the full grid draw.
    both = WindowSums(maps, [side(images, "inverse"), (None, None)])
    (fast, _), (fast_dst, _) = draw_window_corners_linear(both, h, w, vr, vc, EPS, g1, [False, anti])
    grid, mass = draw_window_corner(integral(maps), images, h, w, vr, vc, "saliency", 1.0, EPS, g2)
    grid_dst, _ = draw_window_corner(integral(maps), torch.arange(n), h, w, vr, vc, "saliency", 1.0, EPS, g2, anti)
    assert float((fast_dst == grid_dst).double().mean()) > 0.99
    assert torch.equal(g1.get_state(), g2.get_state()), "the generator advanced differently"
    assert float((fast == grid).double().mean()) > 0.99
    assert mass is not None and mass.dtype == torch.float64


def test_uniform_window_draw_needs_no_map_and_matches_draw_corner():
    n, height, width = 64, 6, 7
    h, w = sides(n, height, width, 10)
    vr, vc = valid_extent(height, h), valid_extent(width, w)
    fast, mass = draw_window_corner(None, torch.arange(n), h, w, vr, vc, "uniform", 0.0, EPS, gen(11))
    grid = draw_corner(torch.rand(n, height, width), vr, vc, "uniform", 0.0, EPS, gen(11))
    assert torch.equal(fast, grid) and mass is None
    row = categorical(vr.double(), gen(12))
    assert bool((row < (height - h + 1).clamp(max=height)).all())


def test_normalised_maps_assume_clean_is_the_same_for_clean_maps():
    maps = torch.rand(5, 9, 11, generator=gen(20)) ** 3
    maps[1] = 0.0
    maps[2, 3, 4] = 3e38
    assert torch.equal(normalised_maps(maps, assume_clean=True), normalised_maps(maps))
    assert torch.equal(maps[1], torch.zeros_like(maps[1])), "input mutated"
