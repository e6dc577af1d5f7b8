"""Lightning: mix in ``on_after_batch_transfer``, once the batch is on the device.

    pip install 'randsaliencymix[lightning]'
    python examples/lightning_module.py --steps 30

A real ``lightning.pytorch.LightningModule`` trained by Lightning's ``Trainer``. The mixing goes
through :class:`~randsaliencymix.integrations.lightning.BatchMixer`: each training batch is mixed
with a generator seeded by (seed, rank, batch number), so a run resumed from a Lightning
checkpoint draws exactly what the uninterrupted run would and DDP ranks draw differently, with
nothing extra to save. The DataLoader workers only load; mixing on the device is cheap.
"""

from __future__ import annotations

import warnings
from typing import Any, Optional, Sequence

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader

from common import MEAN, NUM_CLASSES, STD, SyntheticImages, TinyNet, parse_args
from randsaliencymix import RandSaliencyMix, soft_target_cross_entropy
from randsaliencymix.integrations.lightning import BatchMixer


class MixingClassifier(pl.LightningModule):
    def __init__(self, seed: int) -> None:
        super().__init__()
        self.net = TinyNet()
        # Its operator's buffers (e.g. a confusion matrix) are the module's: in every checkpoint.
        self.mixing = BatchMixer(RandSaliencyMix(num_classes=NUM_CLASSES, mean=MEAN, std=STD), seed=seed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        return self.mixing(batch, self.trainer)  # training batches mixed; validation ones as they are

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch  # y: (B, K) soft targets
        loss = soft_target_cross_entropy(self(x), y)
        step = self.global_step + 1
        if step % 10 == 0 or step == self.trainer.max_steps:
            print(f"step {step}: loss {loss.item():.4f}", flush=True)
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.9)


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(__doc__.splitlines()[0], argv)
    pl.seed_everything(args.seed, verbose=False)
    loader = DataLoader(
        SyntheticImages(), batch_size=args.batch_size, shuffle=True, drop_last=True,
        generator=torch.Generator().manual_seed(args.seed),
    )  # fmt: skip
    trainer = pl.Trainer(
        accelerator="gpu" if args.device.startswith("cuda") else "cpu", devices=1, max_steps=args.steps,
        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Lightning's advice on DataLoader workers
        trainer.fit(MixingClassifier(seed=args.seed), loader)


if __name__ == "__main__":
    main()
