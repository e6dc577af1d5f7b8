"""The new operators and saliency sources never read a tensor's values on the host (which on an
accelerator is a host synchronisation): every Python-level way to do so (``item``, ``tolist``,
``bool``/``int``/``float`` of a tensor, ``nonzero``, ``cpu``, ``numpy``) is made to raise while
they run, on CPU with ``validate=False`` (value checks are the documented exception)."""

from __future__ import annotations

import contextlib
from typing import Iterator

import pytest
import torch

from randsaliencymix import CutMix, GuidedMixup, RandomChoiceMix, RandSaliencyMix, cam_and_logits
from rsmix.models import build_model

K = 5
_READS = ("item", "tolist", "__bool__", "__int__", "__float__", "__index__", "nonzero", "cpu", "numpy")


@contextlib.contextmanager
def no_host_reads() -> Iterator[None]:
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


def test_the_tripwire_fires():
    with no_host_reads(), pytest.raises(AssertionError, match=r"Tensor\.item"):
        torch.ones(1).item()
    assert torch.ones(1).item() == 1.0


OPS = {
    "guided-complementary": lambda: GuidedMixup(num_classes=K, p=0.7, validate=False),
    "guided-random": lambda: GuidedMixup(num_classes=K, pairing="random", validate=False),
    "rsm-noise-complementary": lambda: RandSaliencyMix(
        num_classes=K, patch_noise=0.4, pairing="complementary", tau_src=1.0, gamma=0.5, validate=False
    ),
    "rsm-confusion": lambda: RandSaliencyMix(num_classes=K, pairing="confusion", validate=False),
    "rsm-confusion-sequential": lambda: RandSaliencyMix(
        num_classes=K, pairing="confusion", confusion_update="sequential", validate=False
    ),
    "choice": lambda: RandomChoiceMix(
        [
            GuidedMixup(p=1.0, pairing="random", validate=False),
            CutMix(mode="sample", validate=False),
            RandSaliencyMix(patch_noise=0.1, validate=False),
        ],
        mode="sample",
        num_classes=K,
        validate=False,
    ),
}


@pytest.mark.parametrize("name", list(OPS))
@pytest.mark.parametrize("given_maps", [False, True], ids=["detector", "maps"])
def test_operators_do_not_read_values_on_the_host(name, given_maps):
    op = OPS[name]()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 3, 16, 16, generator=g)
    y = torch.randint(0, K, (6,), generator=g)
    maps = torch.rand(6, 16, 16, generator=g) if given_maps else None
    logits = torch.randn(6, K, generator=g)
    op(x, y, generator=g, saliency=maps)  # warm caches (kernel weights, reflect indices)
    with no_host_reads():
        params = op.sample_params(x, y, generator=g, saliency=maps)
        op.apply_params(x, y, params)
        op(x, y, generator=g, saliency=maps)
        op.observe(logits, y)


def test_cam_does_not_read_values_on_the_host():
    model = build_model("fast_resnet", K).train()
    x = torch.randn(2, 3, 32, 32)
    cam_and_logits(model, x, torch.tensor([0, 1]), validate=False)
    with no_host_reads():
        cam_and_logits(model, x, torch.tensor([0, 1]), validate=False)
        cam_and_logits(model, x, "predicted", validate=False)
