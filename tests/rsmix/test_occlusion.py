"""The occlusion diagnostic (study 2): windows of most and least saliency, occlusion, scores."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rsmix.models import build_model
from rsmix.occlusion import occlude, occlusion_errors, random_windows, salient_windows, source_maps


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), b=st.integers(1, 4), h=st.integers(3, 12), w=st.integers(3, 12), data=st.data())
def test_the_window_is_the_one_of_extreme_summed_saliency(seed, b, h, w, data):
    side = data.draw(st.integers(1, min(h, w)))
    maps = torch.rand(b, h, w, generator=torch.Generator().manual_seed(seed))
    for kind, pick in (("most", max), ("least", min)):
        boxes = salient_windows(maps, side, kind)
        assert boxes.shape == (b, 4) and bool(((boxes[:, 2] - boxes[:, 0]) == side).all())
        for i in range(b):
            sums = [
                float(maps[i, r : r + side, c : c + side].sum())
                for r in range(h - side + 1)
                for c in range(w - side + 1)
            ]
            r1, c1 = int(boxes[i, 0]), int(boxes[i, 1])
            assert float(maps[i, r1 : r1 + side, c1 : c1 + side].sum()) == pytest.approx(pick(sums), rel=1e-5)


def test_a_bright_square_is_found_and_occluded_with_the_mean_colour():
    maps = torch.zeros(1, 16, 16)
    maps[0, 4:8, 9:13] = 1.0
    assert salient_windows(maps, 4, "most").tolist() == [[4, 9, 8, 13]]
    images = torch.full((1, 3, 16, 16), 200, dtype=torch.uint8)
    out = occlude(images, torch.tensor([[4, 9, 8, 13]]), (0.5, 0.25, 0.0))
    assert out[0, :, 4:8, 9:13].reshape(3, -1).tolist() == [[128] * 16, [64] * 16, [0] * 16]
    assert int((out != images).sum()) == 3 * 16 and int(images.unique().numel()) == 1  # the input is untouched
    windows = random_windows(50, 16, 16, 5, torch.Generator().manual_seed(0))
    assert bool((windows[:, :2] >= 0).all()) and bool((windows[:, 2:] <= 16).all())


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: salient_windows(torch.rand(2, 8, 8), 9), "window side"),
        (lambda: salient_windows(torch.rand(2, 8, 8), 2, "middle"), "kind"),
        (lambda: salient_windows(torch.rand(8, 8), 2), "maps of shape"),
        (lambda: random_windows(2, 8, 8, 0, torch.Generator()), "window side"),
    ],
)
def test_bad_windows_are_refused(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_occlusion_errors_on_a_small_model():
    torch.manual_seed(0)
    model = build_model("fast_resnet", 4).eval()
    g = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (12, 3, 32, 32), dtype=torch.uint8, generator=g)
    labels = torch.arange(12) % 4
    mean, std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
    dev = torch.device("cpu")
    maps = source_maps(model, images, ["fine_grained", "cam"], mean, std, device=dev, batch_size=5)
    assert set(maps) == {"fine_grained", "cam"} and all(m.shape == (12, 32, 32) for m in maps.values())
    scores = occlusion_errors(model, images, labels, maps, [8, 16], mean, std, device=dev)
    assert ("clean", 0, "none") in scores
    for source in maps:
        for side in (8, 16):
            for kind in ("most", "least", "random", "centre"):
                assert 0.0 <= scores[(source, side, kind)] <= 100.0
    assert scores[("cam", 8, "random")] == scores[("fine_grained", 8, "random")]  # the same random windows
    assert scores[("cam", 16, "centre")] == scores[("fine_grained", 16, "centre")]  # and the same centre


def test_the_centre_window_is_the_centre_one_for_every_image() -> None:
    model = build_model("fast_cnn", 2).eval()
    images = torch.full((3, 3, 12, 10), 200, dtype=torch.uint8)
    maps = {"fine_grained": torch.rand(3, 12, 10)}
    seen = []

    def spy(images_u8, boxes, fill):
        seen.append(boxes.clone())
        return occlude(images_u8, boxes, fill)

    import rsmix.occlusion as occlusion_mod

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(occlusion_mod, "occlude", spy)
        occlusion_errors(
            model, images, torch.tensor([0, 1, 0]), maps, [4], (0.5,) * 3, (0.25,) * 3, device=torch.device("cpu")
        )
    assert any(b.tolist() == [[4, 3, 8, 7]] * 3 for b in seen)  # rows (12 - 4) // 2, cols (10 - 4) // 2
