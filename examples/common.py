"""What every example shares: a tiny synthetic dataset, a tiny network and the command line.

The dataset is made up so that the examples run anywhere in seconds, with nothing to download:
image ``i`` of class ``c`` is noise plus a bright square whose colour and place depend on ``c``,
normalised with ``MEAN`` and ``STD`` like a real training set would be.
"""

from __future__ import annotations

import argparse
from typing import Optional, Sequence, Tuple

import torch
from torch import nn
from torch.utils.data import Dataset

NUM_CLASSES = 10
SIZE = 32
MEAN = (0.5, 0.5, 0.5)
STD = (0.25, 0.25, 0.25)


class SyntheticImages(Dataset):
    """``n`` images ``(3, 32, 32)``, normalised floats, with their class index; item ``i`` is the
    same every time it is read (drawn from a generator seeded by ``seed`` and ``i``)."""

    def __init__(self, n: int = 512, seed: int = 0) -> None:
        self.n, self.seed = n, seed

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> Tuple[torch.Tensor, int]:
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + i)
        label = i % NUM_CLASSES
        image = torch.rand(3, SIZE, SIZE, generator=gen) * 0.4
        row, col = 4 + 2 * (label % 5), 4 + 10 * (label // 5)
        image[label % 3, row : row + 12, col : col + 12] += 0.6
        mean, std = torch.tensor(MEAN)[:, None, None], torch.tensor(STD)[:, None, None]
        return (image - mean) / std, label


class TinyNet(nn.Module):
    """Two convolutions and a linear head: enough to see the loss fall, fast on a CPU."""

    def __init__(self, num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
        )
        self.head = nn.Linear(32, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))


def parse_args(description: str, argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--steps", type=int, default=30, help="optimisation steps (default: 30)")
    parser.add_argument("--batch-size", type=int, default=32, help="batch size (default: 32)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data order and of the mixing")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.batch_size < 2:
        parser.error("--steps must be >= 1 and --batch-size >= 2")
    return args
