"""Lightning-style: mix in ``on_after_batch_transfer``, once the batch is on the device.

    python examples/lightning_style_hook.py --steps 30

NOTE: this file does NOT import Lightning. ``MixingClassifier`` is a plain ``nn.Module`` written
with the hook names and signatures of a ``LightningModule`` (``on_after_batch_transfer``,
``training_step``, ``configure_optimizers``), and ``fit`` below is a few-line stand-in for what
Lightning's ``Trainer`` does with them. With Lightning installed, subclass
``lightning.pytorch.LightningModule`` instead, drop ``fit``, and call ``Trainer(...).fit(model, loader)``;
there ``self.training`` is best read as ``self.trainer.training``.

Why this hook: it runs after the batch reaches the GPU (mixing there is cheap, and the DataLoader
workers stay simple) and before ``training_step``, so the step sees mixed images and soft targets.
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import torch
from torch import nn
from torch.utils.data import DataLoader

from common import MEAN, NUM_CLASSES, STD, SyntheticImages, TinyNet, parse_args
from randsaliencymix import RandSaliencyMix, soft_target_cross_entropy

Batch = Tuple[torch.Tensor, torch.Tensor]


class MixingClassifier(nn.Module):  # with Lightning: class MixingClassifier(LightningModule)
    def __init__(self, seed: int) -> None:
        super().__init__()
        self.net = TinyNet()
        self.mix = RandSaliencyMix(num_classes=NUM_CLASSES, mean=MEAN, std=STD)
        self.seed = seed
        self.mix_generator: Optional[torch.Generator] = None  # made on the batch's device

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def on_after_batch_transfer(self, batch: Batch, dataloader_idx: int) -> Batch:
        x, y = batch
        if not self.training:  # validation and prediction see the images as they are
            return x, y
        if self.mix_generator is None or self.mix_generator.device != x.device:
            # Under DDP add the rank (Lightning: self.global_rank) so each process draws its own.
            self.mix_generator = torch.Generator(device=x.device).manual_seed(self.seed)
        return self.mix(x, y, generator=self.mix_generator)

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        x, y = batch  # y: (B, K) soft targets
        return soft_target_cross_entropy(self(x), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.9)


def fit(module: MixingClassifier, loader: DataLoader, steps: int, device: torch.device) -> List[float]:
    """Stand-in for ``Trainer.fit``: the order in which Lightning calls the hooks above."""
    module.to(device).train()
    optimizer = module.configure_optimizers()
    losses: List[float] = []
    while len(losses) < steps:
        for batch_idx, batch in enumerate(loader):
            batch = tuple(t.to(device) for t in batch)  # Lightning: transfer_batch_to_device
            batch = module.on_after_batch_transfer(batch, 0)
            loss = module.training_step(batch, batch_idx)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            if len(losses) % 10 == 0 or len(losses) == steps:
                print(f"step {len(losses)}: loss {losses[-1]:.4f}")
            if len(losses) == steps:
                break
    return losses


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(__doc__.splitlines()[0], argv)
    torch.manual_seed(args.seed)
    loader = DataLoader(
        SyntheticImages(), batch_size=args.batch_size, shuffle=True, drop_last=True,
        generator=torch.Generator().manual_seed(args.seed),
    )  # fmt: skip
    fit(MixingClassifier(seed=args.seed), loader, args.steps, torch.device(args.device))


if __name__ == "__main__":
    main()
