"""Mixing in DataLoader workers with MixCollate: new draws every epoch, the same draws on a rerun.

    python examples/dataloader_collate.py --steps 30

The collate runs in each worker process. ``collate.set_epoch(epoch)`` before each epoch reaches
the workers even when they persist (``persistent_workers=True``): the epoch lives in shared
memory. Each batch then draws from a generator seeded by (seed, epoch, worker, batch), so the
workers and the epochs differ, and a rerun with the same seed gives the same batches.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch.utils.data import DataLoader

from common import MEAN, NUM_CLASSES, STD, SyntheticImages, TinyNet, parse_args
from randsaliencymix import MixCollate, RandSaliencyMix, SoftTargetCrossEntropy


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(__doc__.splitlines()[0], argv)
    device = torch.device(args.device)
    torch.manual_seed(args.seed)
    model = TinyNet().to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)

    # Under DDP (torchrun) MixCollate folds the rank into its seeds by itself (rank= overrides it).
    collate = MixCollate(RandSaliencyMix(num_classes=NUM_CLASSES, mean=MEAN, std=STD), seed=args.seed)
    loader = DataLoader(
        SyntheticImages(), batch_size=args.batch_size, shuffle=True, drop_last=True,
        generator=torch.Generator().manual_seed(args.seed),  # the data order, reproducible too
        num_workers=2, persistent_workers=True, collate_fn=collate,
    )  # fmt: skip
    criterion = SoftTargetCrossEntropy()

    step, epoch = 0, 0
    while step < args.steps:
        collate.set_epoch(epoch)  # before iterating, as DistributedSampler.set_epoch
        for x, y in loader:  # already mixed: y is (B, K) soft targets
            loss = criterion(model(x.to(device)), y.to(device))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1
            if step % 10 == 0 or step == args.steps:
                print(f"epoch {epoch} step {step}: loss {loss.item():.4f}")
            if step == args.steps:
                break
        epoch += 1


if __name__ == "__main__":
    main()
