"""A plain training loop: mix each batch on the device, train on the soft targets.

    python examples/plain_loop.py --steps 30

The README's "Use in a training loop" snippet, made runnable on synthetic data (``common.py``).
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch.utils.data import DataLoader

from common import MEAN, NUM_CLASSES, STD, SyntheticImages, TinyNet, parse_args
from randsaliencymix import RandSaliencyMix, SoftTargetCrossEntropy


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(__doc__.splitlines()[0], argv)
    device = torch.device(args.device)
    torch.manual_seed(args.seed)
    model = TinyNet().to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    loader = DataLoader(
        SyntheticImages(), batch_size=args.batch_size, shuffle=True, drop_last=True,
        generator=torch.Generator().manual_seed(args.seed),
    )  # fmt: skip

    # The operator is told how the images were normalised, so its detector sees the real picture.
    mix = RandSaliencyMix(num_classes=NUM_CLASSES, mean=MEAN, std=STD)
    criterion = SoftTargetCrossEntropy()
    gen = torch.Generator(device=device).manual_seed(args.seed)  # on the images' device

    step = 0
    while step < args.steps:
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            x, y = mix(x, y, generator=gen)  # y: (B,) class indices -> (B, K) soft targets
            loss = criterion(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1
            if step % 10 == 0 or step == args.steps:
                print(f"step {step}: loss {loss.item():.4f}")
            if step == args.steps:
                break


if __name__ == "__main__":
    main()
