"""The Lightning integration (``integrations/lightning.py``): mixing under real Lightning (``Trainer``
on CPU), :class:`BatchMixer` in ``on_after_batch_transfer`` and :class:`MixCollate` in DataLoader
workers, both resumed from a Lightning checkpoint without repeating or changing a draw, in float32
and in ``bf16-mixed``; and BatchMixer's seeds and batches (issue 28)."""

from __future__ import annotations

import warnings
from collections import namedtuple
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from conftest import K5, labels, small_images
from randsaliencymix import CutMix, MixCollate, RandSaliencyMix, soft_target_cross_entropy
from randsaliencymix.integrations.lightning import BatchMixer

pl = pytest.importorskip(
    "lightning.pytorch", reason="Lightning is not installed (pip install 'randsaliencymix[lightning]')"
)

K = 4
BATCHES = 3  # per epoch


def dataset() -> TensorDataset:
    g = torch.Generator().manual_seed(0)
    return TensorDataset(torch.rand(BATCHES * 8, 3, 16, 16, generator=g), torch.arange(BATCHES * 8) % K)


class Classifier(pl.LightningModule):
    """A tiny net; records every training batch as the step sees it (mixed), by epoch."""

    def __init__(self, route: str, workers: int = 0) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, K))
        self.route, self.workers = route, workers
        self.mixing = BatchMixer(RandSaliencyMix(num_classes=K, p=1.0, tau_src=1.0), seed=3)
        self.collate = MixCollate(CutMix(num_classes=K, mode="sample"), seed=3)
        self.seen: List[Tuple[int, torch.Tensor]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def train_dataloader(self) -> DataLoader:
        if self.route == "collate":
            self.collate.set_epoch(self.trainer.current_epoch)  # before the iterator starts its workers
            return DataLoader(dataset(), batch_size=8, collate_fn=self.collate, num_workers=self.workers)
        return DataLoader(dataset(), batch_size=8, num_workers=self.workers)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        if self.route == "module":
            batch = self.mixing(batch, self.trainer)
        return batch

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        self.seen.append((self.current_epoch, torch.cat([x.detach().float().flatten(), y.float().flatten()])))
        return soft_target_cross_entropy(self(x).float(), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def fit(model: Classifier, root: Path, epochs: int, ckpt: Optional[Path] = None, **kw: Any) -> Any:
    trainer = pl.Trainer(
        accelerator="cpu", devices=1, max_epochs=epochs, limit_train_batches=BATCHES, logger=False,
        enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False, default_root_dir=root,
        reload_dataloaders_every_n_epochs=1, **kw,
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Lightning's advice on workers and logging
        trainer.fit(model, ckpt_path=str(ckpt) if ckpt else None)
    return trainer


def by_epoch(model: Classifier) -> Dict[int, List[torch.Tensor]]:
    out: Dict[int, List[torch.Tensor]] = {}
    for epoch, batch in model.seen:
        out.setdefault(epoch, []).append(batch)
    return out


def same(a: List[torch.Tensor], b: List[torch.Tensor]) -> bool:
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))


@pytest.mark.slow
@pytest.mark.parametrize("route, workers", [("module", 0), ("module", 2), ("collate", 0), ("collate", 2)])
def test_resume_from_a_lightning_checkpoint_draws_what_the_uninterrupted_run_drew(
    route: str, workers: int, tmp_path: Path
) -> None:
    """BatchMixer (any workers) and MixCollate without workers resume exactly. MixCollate in
    workers never repeats a draw, but Lightning starts a second iterator of the loader in every
    epoch after a fit's first (with ``reload_dataloaders_every_n_epochs``), which a resumed fit does
    not: the resumed epoch draws new mixes, not the uninterrupted run's (documented)."""
    whole = Classifier(route, workers)
    fit(whole, tmp_path / "whole", 3)
    full = by_epoch(whole)
    assert sorted(full) == [0, 1, 2] and all(len(v) == BATCHES for v in full.values())
    # Every epoch draws anew (the data repeats: only the mixing differs), and so does every batch.
    for a in range(3):
        for b in range(a):
            assert not any(torch.equal(x, y) for x in full[a] for y in full[b]), (a, b)

    first = Classifier(route, workers)
    trainer = fit(first, tmp_path / "part", 1)
    ckpt = tmp_path / "epoch0.ckpt"
    trainer.save_checkpoint(ckpt)
    resumed = Classifier(route, workers)
    fit(resumed, tmp_path / "part", 3, ckpt=ckpt)
    again = by_epoch(resumed)
    assert sorted(again) == [1, 2]
    assert same(by_epoch(first)[0], full[0])
    if route == "collate" and workers > 0:
        every = [x for e in (0, 1, 2) for x in full[e]] + [x for e in (1, 2) for x in again[e]]
        resumed_epochs = [x for e in (1, 2) for x in again[e]]
        assert not any(torch.equal(x, y) for x in resumed_epochs for y in full[0])  # epoch 0 is not repeated
        assert len({tuple(x.tolist()) for x in every}) >= len(every) - 2 * BATCHES  # only possible overlaps: 1-2
        return
    for epoch in (1, 2):
        assert same(again[epoch], full[epoch]), f"epoch {epoch} after the resume differs from the uninterrupted run"


@pytest.mark.slow
def test_bf16_mixed_precision_trains_with_the_same_mixed_batches(tmp_path: Path) -> None:
    plain = Classifier("module")
    fit(plain, tmp_path / "fp32", 2)
    mixed = Classifier("module")
    fit(mixed, tmp_path / "bf16", 2, precision="bf16-mixed")
    # The operator runs outside autocast: the same mixed batches in both precisions (the weights
    # differ after the first step, but the mixing draws do not depend on them).
    a, b = by_epoch(plain), by_epoch(mixed)
    assert all(same(a[e], b[e]) for e in (0, 1))


@pytest.mark.slow
def test_batch_mixer_leaves_other_stages_alone_and_checks_its_arguments() -> None:
    mixing = BatchMixer(CutMix(num_classes=K), seed=0)

    class NotTraining:
        training = False

    batch = (torch.rand(2, 3, 8, 8), torch.tensor([0, 1]))
    assert mixing(batch, NotTraining()) is batch
    with pytest.raises(TypeError, match="Expected op to be a randsaliencymix Mixer"):
        BatchMixer(nn.Identity(), seed=0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Expected seed to be an int"):
        BatchMixer(CutMix(num_classes=K), seed=1.5)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------
# BatchMixer's seeds and batches (issue 28)
# ------------------------------------------------------------------------------------------------


def training_trainer(ready: int = 5) -> Any:
    progress = SimpleNamespace(total=SimpleNamespace(ready=ready))
    fit_loop = SimpleNamespace(epoch_loop=SimpleNamespace(batch_progress=progress))
    return SimpleNamespace(training=True, sanity_checking=False, global_rank=0, fit_loop=fit_loop)


def test_batch_mixer_takes_numpy_integer_seeds() -> None:
    batch = (small_images(4), labels(4))
    a = BatchMixer(CutMix(num_classes=K5), seed=np.int64(3))  # type: ignore[arg-type]
    b = BatchMixer(CutMix(num_classes=K5), seed=3)
    xa, ya = a(batch, training_trainer())
    xb, yb = b(batch, training_trainer())
    assert torch.equal(xa, xb) and torch.equal(ya, yb)
    with pytest.raises(TypeError, match=r"^Expected seed to be an int, but got bool instead\.$"):
        BatchMixer(CutMix(num_classes=K5), seed=True)


Batch = namedtuple("Batch", ["image", "label", "index"])


def test_batch_mixer_gives_a_namedtuple_batch_back_as_its_own_type() -> None:
    x, y, index = small_images(4), labels(4), torch.arange(4)
    mixing = BatchMixer(CutMix(num_classes=K5), seed=0)
    mixed = mixing(Batch(x, y, index), training_trainer())
    plain = mixing((x, y, index), training_trainer())
    assert type(mixed) is Batch and type(plain) is tuple
    assert torch.equal(mixed.image, plain[0]) and torch.equal(mixed.label, plain[1])
    assert mixed.label.shape == (4, K5) and mixed.index is index
