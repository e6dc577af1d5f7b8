"""MixCollate (``collate.py``): mixing in DataLoader workers, different across workers and epochs,
reproducible; its seeds, ranks and samples (NumPy images in either layout, issue 28).

The dataset repeats every 4 items and batches hold 4 items without shuffling, so every batch has
the same input: any difference between two batches' outputs comes from the mixing draws alone."""

from __future__ import annotations

import pickle
from typing import Any, List, Optional, Tuple

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from randsaliencymix import CutMix, MixCollate, MixUp, RandSaliencyMix
from randsaliencymix.collate import batch_seed
from randsaliencymix.integrations.lightning import BatchMixer

K = 4


class Periodic(Dataset):
    """Item ``i``: a 3x8x8 image of constant ``i % 4 + 1`` with label ``i % 4``."""

    def __init__(self, n: int = 16) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> Tuple[torch.Tensor, int]:
        return torch.full((3, 8, 8), float(i % K + 1)), i % K


class NaiveCollate:
    """The pitfall: a seeded generator held by the collate (copied into every worker)."""

    def __init__(self, seed: int) -> None:
        self.op = MixUp(num_classes=K, mode="sample")
        self.gen = torch.Generator().manual_seed(seed)

    def __call__(self, samples: List[Any]) -> Tuple[torch.Tensor, torch.Tensor]:
        x, y = torch.utils.data.default_collate(samples)
        return self.op(x, y, generator=self.gen)


def mixer() -> MixUp:
    return MixUp(num_classes=K, mode="sample")


def epochs_of(collate: Any, epochs: int = 2, workers: int = 2, persistent: bool = False, set_epoch: bool = True,
              context: Optional[str] = None) -> List[List[torch.Tensor]]:  # fmt: skip
    """Per epoch, per batch: the mixed images and targets, flattened into one tensor."""
    loader = DataLoader(Periodic(), batch_size=K, shuffle=False, num_workers=workers, collate_fn=collate,
                        persistent_workers=persistent, multiprocessing_context=context)  # fmt: skip
    out = []
    for epoch in range(epochs):
        if set_epoch:
            collate.set_epoch(epoch)
        out.append([torch.cat([x.flatten(), y.flatten()]) for x, y in loader])
    return out


def all_distinct(batches: List[torch.Tensor]) -> bool:
    return all(not torch.equal(a, b) for i, a in enumerate(batches) for b in batches[i + 1 :])


def same(a: List[List[torch.Tensor]], b: List[List[torch.Tensor]]) -> bool:
    return all(torch.equal(u, v) for ea, eb in zip(a, b) for u, v in zip(ea, eb))


@pytest.mark.slow
@pytest.mark.parametrize("persistent", [False, True])
def test_two_workers_two_epochs_differ_and_reproduce(persistent: bool) -> None:
    """2 workers x 2 epochs x 2 batches each: all 8 batches draw differently (across workers and
    across epochs); a rerun with the same seed reproduces every one; another seed does not."""
    first = epochs_of(MixCollate(mixer(), seed=7), persistent=persistent)
    assert all_distinct([b for epoch in first for b in epoch]) and len(first[0]) == 4
    assert same(first, epochs_of(MixCollate(mixer(), seed=7), persistent=persistent))
    other = epochs_of(MixCollate(mixer(), seed=8), persistent=persistent)
    assert all_distinct([*first[0], *other[0]])


@pytest.mark.slow
def test_persistent_and_fresh_workers_draw_the_same_with_set_epoch() -> None:
    """set_epoch reaches persistent workers (shared memory): with it the draws depend only on
    (seed, epoch, worker, batch), not on whether the workers persist."""
    assert same(epochs_of(MixCollate(mixer(), seed=3), persistent=True),
                epochs_of(MixCollate(mixer(), seed=3), persistent=False))  # fmt: skip


@pytest.mark.slow
def test_an_epoch_alone_reproduces_it_in_a_run() -> None:
    """A resumed run: set_epoch(1) on a fresh collate draws epoch 1 as the full run did."""
    full = epochs_of(MixCollate(mixer(), seed=5), epochs=2)
    collate = MixCollate(mixer(), seed=5)
    collate.set_epoch(1)
    loader = DataLoader(Periodic(), batch_size=K, num_workers=2, collate_fn=collate)
    assert same([full[1]], [[torch.cat([x.flatten(), y.flatten()]) for x, y in loader]])


@pytest.mark.slow
@pytest.mark.parametrize("persistent", [False, True])
def test_set_epoch_again_draws_that_epoch_again(persistent: bool) -> None:
    """set_epoch(e) restarts every worker, persistent or not, at the start of epoch e."""
    collate = MixCollate(mixer(), seed=6)
    loader = DataLoader(Periodic(), batch_size=K, num_workers=2, collate_fn=collate, persistent_workers=persistent)
    passes = []
    for _ in range(2):
        collate.set_epoch(4)
        passes.append([torch.cat([x.flatten(), y.flatten()]) for x, y in loader])
    assert same([passes[0]], [passes[1]]) and all_distinct(passes[0])


@pytest.mark.slow
@pytest.mark.parametrize("persistent", [False, True])
def test_passes_without_set_epoch_still_differ_and_reproduce(persistent: bool) -> None:
    """Iterating twice without set_epoch: a new pass (fresh workers) or the running count of a
    persistent worker still gives new draws, reproduced by a rerun."""
    first = epochs_of(MixCollate(mixer(), seed=11), persistent=persistent, set_epoch=False)
    assert all_distinct([b for epoch in first for b in epoch])
    assert same(first, epochs_of(MixCollate(mixer(), seed=11), persistent=persistent, set_epoch=False))


@pytest.mark.slow
def test_the_pitfall_it_avoids() -> None:
    """Control: a generator held by the collate repeats across workers and across epochs."""
    naive = epochs_of(NaiveCollate(seed=0), set_epoch=False)
    assert torch.equal(naive[0][0], naive[0][1])  # worker 0 and worker 1 drew the same
    assert same([naive[0]], [naive[1]])  # epoch 1 repeats epoch 0 exactly


@pytest.mark.slow
def test_main_process_draws_as_one_worker() -> None:
    """num_workers=0 draws what a single worker (id 0) draws."""
    assert same(epochs_of(MixCollate(mixer(), seed=2), workers=0),
                epochs_of(MixCollate(mixer(), seed=2), workers=1))  # fmt: skip


@pytest.mark.slow
def test_spawned_persistent_workers_see_set_epoch() -> None:
    """With the spawn start method the collate is pickled into the workers; the shared epoch
    still reaches them, and they draw as forked workers do."""
    spawned = epochs_of(MixCollate(mixer(), seed=9), persistent=True, context="spawn")
    assert same(spawned, epochs_of(MixCollate(mixer(), seed=9), persistent=False))


def test_output_is_the_operator_applied_with_the_batch_generator() -> None:
    """A call returns op(images, labels, generator=g) with g seeded by batch_seed(seed, epoch, 0, 0, n)."""
    op = RandSaliencyMix(num_classes=K, p=1.0)
    collate = MixCollate(op, seed=4)
    collate.set_epoch(2)
    samples = [Periodic()[i] for i in range(K)]
    x, y = torch.utils.data.default_collate(samples)
    for n in range(2):
        got = collate(samples)
        expected = op(x, y, generator=torch.Generator().manual_seed(batch_seed(4, 2, 0, 0, n)))
        assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])
    assert collate.epoch == 2 and "seed=4" in repr(collate)


def test_pickles_with_its_state() -> None:
    collate = MixCollate(mixer(), seed=1)
    collate.set_epoch(3)
    assert pickle.loads(pickle.dumps(collate)).epoch == 3


def test_batch_seed_separates_every_field() -> None:
    base = batch_seed(0, 0, 0, 0, 0)
    keys = [(1, 0, 0, 0, 0), (0, 1, 0, 0, 0), (0, 0, 1, 0, 0), (0, 0, 0, 1, 0), (0, 0, 0, 0, 1)]
    seeds = {batch_seed(*k) for k in keys} | {base}
    assert len(seeds) == 6 and all(0 <= s < 2**63 for s in seeds)


# Errors: one test per path ----------------------------------------------------------------


def test_op_must_be_a_mixer() -> None:
    with pytest.raises(TypeError, match=r"Expected op to be a randsaliencymix Mixer, but got function instead."):
        MixCollate(lambda x, y: (x, y), seed=0)  # type: ignore[arg-type]


def test_collate_fn_must_be_callable() -> None:
    with pytest.raises(TypeError, match=r"Expected collate_fn to be callable, but got int instead."):
        MixCollate(mixer(), seed=0, collate_fn=3)  # type: ignore[arg-type]


def test_seed_must_be_an_int() -> None:
    with pytest.raises(TypeError, match=r"Expected seed to be an int, but got float instead."):
        MixCollate(mixer(), seed=1.0)  # type: ignore[arg-type]


def test_seed_must_fit_64_bits() -> None:
    with pytest.raises(
        ValueError,
        match=r"Expected seed in \[-9223372036854775808, 2\*\*63 - 1\], but got 1180591620717411303424 instead.",
    ):
        MixCollate(mixer(), seed=2**70)


def test_epoch_must_be_a_non_negative_int() -> None:
    collate = MixCollate(mixer(), seed=0)
    with pytest.raises(ValueError, match=r"Expected epoch in \[0, 2\*\*63 - 1\], but got -1 instead."):
        collate.set_epoch(-1)
    with pytest.raises(TypeError, match=r"Expected epoch to be an int, but got bool instead."):
        collate.set_epoch(True)


def test_samples_must_collate_to_images_and_labels() -> None:
    collate = MixCollate(mixer(), seed=0)
    with pytest.raises(
        TypeError, match="Expected samples that collate to \\(images, labels\\) tensors, but got a Tensor"
    ):
        collate([torch.zeros(3, 8, 8), torch.zeros(3, 8, 8)])


def test_too_many_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    class Info:
        id, seed = 5000, 0

    monkeypatch.setattr("randsaliencymix.collate.get_worker_info", lambda: Info())
    with pytest.raises(ValueError, match=r"Expected at most 1024 DataLoader workers, but got worker id 5000 instead."):
        MixCollate(mixer(), seed=0)([Periodic()[i] for i in range(K)])


# ------------------------------------------------------------------------------------------
# Issue 18: sample layouts, operators that learn from the model, ranks
# ------------------------------------------------------------------------------------------


def _coloured(i: int, h: int = 6, w: int = 7) -> torch.Tensor:
    """Image i: every pixel the colour (10 i + 1, 10 i + 2, 10 i + 3), uint8 (3, H, W)."""
    return torch.tensor([10 * i + 1, 10 * i + 2, 10 * i + 3], dtype=torch.uint8).view(3, 1, 1).expand(3, h, w).clone()


def _as_layout(image: torch.Tensor, layout: str) -> Any:
    if layout == "tensor CHW":
        return image
    hwc = image.permute(1, 2, 0).numpy().copy()
    if layout == "numpy HWC":
        return hwc
    if layout == "numpy HWC float":
        return hwc.astype("float32")
    from PIL import Image

    return Image.fromarray(hwc)


@pytest.mark.parametrize("layout", ["tensor CHW", "numpy HWC", "numpy HWC float", "PIL"])
def test_every_output_pixel_comes_from_one_source_image_in_every_layout(layout: str) -> None:
    from randsaliencymix import CutMix

    images = [_coloured(i) for i in range(6)]
    samples = [(_as_layout(img, layout), i % K) for i, img in enumerate(images)]
    collate = MixCollate(CutMix(num_classes=K, mode="sample"), seed=0)
    for _ in range(5):
        x, y = collate(samples)
        assert x.shape == (6, 3, 6, 7) and y.shape == (6, K)
        colours = {tuple(float(v) for v in img[:, 0, 0]) for img in images}
        for pixel in x.permute(0, 2, 3, 1).reshape(-1, 3):
            assert tuple(float(v) for v in pixel) in colours  # all three channels of one image


def test_greyscale_samples_get_one_channel() -> None:
    import numpy as np
    from PIL import Image

    from randsaliencymix import CutMix

    collate = MixCollate(CutMix(num_classes=K), seed=0)
    for image in (np.zeros((5, 5), dtype=np.uint8), Image.new("L", (5, 5)), torch.zeros(5, 5, dtype=torch.uint8)):
        x, _ = collate([(image, 0), (image, 1)])
        assert x.shape == (2, 1, 5, 5)


def test_samples_that_are_not_images_are_one_clear_error() -> None:
    import numpy as np

    collate = MixCollate(MixUp(num_classes=K), seed=0)
    with pytest.raises(ValueError, match=r"Expected a NumPy image of shape \(H, W, C\)"):
        collate([(np.zeros((2, 3, 4, 5)), 0), (np.zeros((2, 3, 4, 5)), 1)])
    with pytest.raises(ValueError, match=r"collate to \(B, C, H, W\) images"):
        collate([(torch.zeros(8), 0), (torch.zeros(8), 1)])


@pytest.mark.parametrize(
    "op",
    [
        lambda: RandSaliencyMix(num_classes=K, pairing="confusion"),
        lambda: __import__("randsaliencymix").RandomChoiceMix(
            [MixUp(), RandSaliencyMix(pairing="confusion", num_classes=K)], num_classes=K
        ),
    ],
)
def test_an_operator_that_learns_from_the_model_is_refused_in_workers(op) -> None:
    with pytest.raises(ValueError, match=r"learns from observe.*mix in the training loop"):
        MixCollate(op(), seed=0)
    assert not RandSaliencyMix(num_classes=K, pairing="complementary").learns_from_model
    MixCollate(RandSaliencyMix(num_classes=K), seed=0)  # random pairing: accepted


def test_ranks_draw_differently_and_rank_0_draws_what_one_process_draws(monkeypatch) -> None:
    monkeypatch.delenv("RANK", raising=False)
    samples = [(torch.full((3, 8, 8), float(i + 1)), i % K) for i in range(4)]

    def draws(collate: MixCollate) -> List[torch.Tensor]:
        return [torch.cat([t.flatten() for t in collate(samples)]) for _ in range(3)]

    single = draws(MixCollate(mixer(), seed=3))
    assert MixCollate(mixer(), seed=3).rank == 0
    assert all(torch.equal(a, b) for a, b in zip(single, draws(MixCollate(mixer(), seed=3, rank=0))))
    assert batch_seed(3, 0, 0, 0, 0) == batch_seed(3, 0, 0, 0, 0, 0)  # the seeds of before ranks
    rank1 = draws(MixCollate(mixer(), seed=3, rank=1))
    assert not any(torch.equal(a, b) for a, b in zip(single, rank1))
    monkeypatch.setenv("RANK", "1")  # what torchrun sets: the default reads it
    from_env = MixCollate(mixer(), seed=3)
    assert from_env.rank == 1 and all(torch.equal(a, b) for a, b in zip(rank1, draws(from_env)))
    with pytest.raises(ValueError, match="Expected rank"):
        MixCollate(mixer(), seed=3, rank=-1)


# ------------------------------------------------------------------------------------------
# Seeds and ranks (issue 28)
# ------------------------------------------------------------------------------------------

K5 = 5


@pytest.mark.parametrize(
    "make", [lambda s: MixCollate(CutMix(num_classes=K5), seed=s), lambda s: BatchMixer(CutMix(num_classes=K5), seed=s)]
)
@pytest.mark.parametrize("seed", [2**63, 2**64, -(2**63) - 1])
def test_seeds_that_a_batch_seed_cannot_hold_are_refused_at_construction(make: Any, seed: int) -> None:
    with pytest.raises(ValueError, match=r"^Expected seed in \["):
        make(seed)


def test_a_rank_environment_variable_out_of_range_is_refused_at_construction(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANK", str(2**64))
    with pytest.raises(ValueError, match=r"^Expected the RANK environment variable in \[0, 2\*\*63 - 1\]"):
        MixCollate(CutMix(num_classes=K5), seed=0)


def test_mixcollate_reads_the_rank_at_the_first_batch_not_when_built(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under Lightning's strategy="ddp" the collate is built in LightningModule.__init__, before the
    launcher sets the process's rank: every rank then drew rank 0's mixes."""
    from randsaliencymix import CutMix, MixCollate

    for name in ("RANK", "LOCAL_RANK", "NODE_RANK"):
        monkeypatch.delenv(name, raising=False)
    samples = [(torch.rand(3, 8, 8, generator=torch.Generator().manual_seed(i)), i % 3) for i in range(6)]

    def first_batch(collate: MixCollate) -> torch.Tensor:
        return collate(samples)[0]

    early = MixCollate(CutMix(num_classes=3, mode="sample"), seed=0)  # built before the rank is known
    assert "rank=unresolved" in repr(early)
    monkeypatch.setenv("LOCAL_RANK", "1")  # what Lightning's launcher sets in rank 1's process
    monkeypatch.setenv("NODE_RANK", "0")
    got = first_batch(early)
    assert early.rank == 1
    assert torch.equal(got, first_batch(MixCollate(CutMix(num_classes=3, mode="sample"), seed=0, rank=1)))
    assert not torch.equal(got, first_batch(MixCollate(CutMix(num_classes=3, mode="sample"), seed=0, rank=0)))
    monkeypatch.setenv("RANK", "3")  # torchrun's global rank wins over Lightning's local one
    assert MixCollate(CutMix(num_classes=3), seed=0).rank == 3


# ------------------------------------------------------------------------------------------
# NumPy samples laid out (C, H, W), and an operator switched to learn from the model (issue 28)
# ------------------------------------------------------------------------------------------

H, W = 12, 10


def _samples(layout: str, dtype: Any = np.float32) -> Any:
    chw = [np.random.default_rng(i).random((3, H, W)).astype(dtype) for i in range(6)]
    if layout == "tensor":
        return [(torch.from_numpy(c), i % K5) for i, c in enumerate(chw)]
    if layout == "CHW":
        return [(c, i % K5) for i, c in enumerate(chw)]
    return [(c.transpose(1, 2, 0).copy(), i % K5) for i, c in enumerate(chw)]  # HWC


@pytest.mark.parametrize("layout", ["CHW", "HWC"])
def test_numpy_samples_are_read_in_the_layout_their_shape_tells(layout: str) -> None:
    expected = MixCollate(CutMix(num_classes=K5, mode="sample"), seed=0)(_samples("tensor"))
    got = MixCollate(CutMix(num_classes=K5, mode="sample"), seed=0)(_samples(layout))
    assert got[0].shape == (6, 3, H, W)
    assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])


@pytest.mark.parametrize(("shape", "reads"), [((3, 8, 3), "both ways"), ((8, 8, 8), "neither way")])
def test_numpy_samples_whose_layout_is_ambiguous_are_refused(shape: Any, reads: str) -> None:
    collate = MixCollate(MixUp(num_classes=K5), seed=0)
    samples = [(np.zeros(shape, dtype=np.float32), 0), (np.zeros(shape, dtype=np.float32), 1)]
    with pytest.raises(ValueError, match=rf"^Expected a NumPy image whose shape tells its layout.*reads {reads}"):
        collate(samples)


def test_numpy_rgba_hwc_images_keep_working() -> None:
    hwc = [np.full((H, W, 4), i, dtype=np.uint8) for i in range(4)]
    x, _ = MixCollate(CutMix(num_classes=K5), seed=0)([(a, i) for i, a in enumerate(hwc)])
    assert x.shape == (4, 4, H, W) and x.dtype == torch.uint8


def test_mix_collate_refuses_an_operator_switched_to_learn_from_the_model() -> None:
    op = RandSaliencyMix(num_classes=K5)
    collate = MixCollate(op, seed=0)
    collate(_samples("tensor"))
    op.pairing = "confusion"
    with pytest.raises(ValueError, match=r"^Expected an operator without state that follows the model"):
        collate(_samples("tensor"))
