"""Mixing in a Lightning ``LightningModule``, resumable and per rank: :class:`BatchMixer`.

Lightning is not imported here: :class:`BatchMixer` reads a few attributes of the ``trainer`` it
is handed (tested against Lightning 2.6). Use it from ``on_after_batch_transfer``, which runs once
the batch is on the device and before ``training_step``::

    class Classifier(LightningModule):
        def __init__(self):
            super().__init__()
            self.net = ...
            self.mixing = BatchMixer(RandSaliencyMix(num_classes=10), seed=0)

        def on_after_batch_transfer(self, batch, dataloader_idx):
            return self.mixing(batch, self.trainer)  # training batches mixed; others as they are

        def training_step(self, batch, batch_idx):
            x, y = batch  # y: (B, K) soft targets
            return soft_target_cross_entropy(self(x), y)

**Why not a generator kept across steps:** a resumed run must draw what the uninterrupted run
would, and under DDP each rank must draw its own mixes. A generator object carried along would
have to be saved per rank in the checkpoint. Instead the draws of a batch come from a fresh
generator seeded by ``(seed, rank, n)``, with ``n`` the number of training batches Lightning has
fetched before this one in the whole fit (its ``batch_progress``, which a Lightning checkpoint
restores, also mid-epoch) and ``rank`` the trainer's global rank: nothing to save, a resumed run
continues exactly, and ranks differ. An operator's learned state (``pairing="confusion"``) lives in
its buffers, which are the module's, so it is in the checkpoint too; call
``self.mixing.op.observe(logits, y)`` in ``training_step`` for it to learn.

**Mixing in DataLoader workers instead** (:class:`~randsaliencymix.MixCollate`): Lightning
creates the training iterator, and its workers collate the first batches, *before*
``on_train_epoch_start`` of a fit's first epoch (also when resuming), so a ``set_epoch`` there
comes too late and those batches reuse another epoch's draws. Set the epoch in
``train_dataloader()`` and have Lightning ask for the loader every epoch::

    def train_dataloader(self):
        self.collate.set_epoch(self.trainer.current_epoch)  # before the iterator starts its workers
        return DataLoader(..., collate_fn=self.collate, num_workers=2)

    Trainer(..., reload_dataloaders_every_n_epochs=1)

No draw then repeats an earlier epoch's, and without workers a resumed fit draws exactly what the
uninterrupted one drew. With workers it does not: after a fit's first epoch Lightning starts the
loader's iterator twice per epoch (the first one's batches are dropped), which a resumed fit does
not, so MixCollate counts a second pass and draws other (new) mixes. For exact resumes with
workers, load in the workers and mix with :class:`BatchMixer` (tested with ``num_workers=2``).

Public: :class:`BatchMixer`.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from ..base import Mixer
from ..collate import _INT64, _check_int, batch_seed

__all__ = ["BatchMixer"]


class BatchMixer(nn.Module):
    """Mixes a LightningModule's training batches: ``batch = self.mixing(batch, self.trainer)``.

    ``op``: any :class:`~randsaliencymix.Mixer`; ``seed``: the base seed of every draw. Called with
    a batch ``(x, y, *rest)`` and the trainer: while the trainer trains (``trainer.training``) it
    returns ``(x', y', *rest)`` mixed by ``op`` with the generator of this batch (see the module
    docstring), of the batch's own type (a tuple, a namedtuple with its first two fields mixed, or
    a list); otherwise (validation, testing, prediction, the sanity check) the batch as it is.
    """

    def __init__(self, op: Mixer, *, seed: int) -> None:
        super().__init__()
        if not isinstance(op, Mixer):
            raise TypeError(f"Expected op to be a randsaliencymix Mixer, but got {type(op).__name__} instead.")
        self.op = op
        self.seed = _check_int("seed", seed, _INT64[0])  # any integer (NumPy's too) that batch_seed packs

    def generator(self, device: torch.device, batch_number: int, rank: int) -> torch.Generator:
        """The generator of training batch ``batch_number`` (0-based, over the whole fit) on ``rank``."""
        return torch.Generator(device=device).manual_seed(batch_seed(self.seed, 0, 0, 0, batch_number, rank))

    def forward(self, batch: Any, trainer: Any) -> Any:
        if not getattr(trainer, "training", False) or getattr(trainer, "sanity_checking", False):
            return batch
        if not isinstance(batch, Sequence) or len(batch) < 2 or not isinstance(batch[0], torch.Tensor):
            raise TypeError(f"Expected a training batch (images, labels, ...), but got {type(batch).__name__} instead.")
        x, y = batch[0], batch[1]
        number = int(trainer.fit_loop.epoch_loop.batch_progress.total.ready)  # batches before this one
        generator = self.generator(x.device, number, int(getattr(trainer, "global_rank", 0)))
        xm, ym = self.op(x, y, generator=generator)
        items = [xm, ym, *batch[2:]]
        if not isinstance(batch, tuple):
            return items
        if type(batch) is tuple:
            return tuple(items)
        if hasattr(batch, "_fields"):  # a namedtuple: its own type, fields by position
            return type(batch)._make(items)  # type: ignore[attr-defined]
        return type(batch)(items)  # another tuple subclass, built from its items as tuple is

    def extra_repr(self) -> str:
        return f"seed={self.seed}"
