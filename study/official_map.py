"""How informative is the official SaliencyMix's saliency map on CIFAR-10?

    .venv/bin/python study/official_map.py --out study/official_map.md

The authors' code gives OpenCV the normalised float tensor (channels last), not the uint8 image.
This script measures, on 1,000 CIFAR-10 training images, how that map relates to the map of the
same image computed correctly (uint8, RGB->grey), and how much of the correct map's saliency a
16x16 box (lam = 0.75) captures when it is centred on: the official peak, the correct peak, a
uniform random point. Needs the opencv extra.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from randsaliencymix.reference import opencv_saliency_hwc
from randsaliencymix.saliency import fine_grained
from rsmix.data import load_dataset
from rsmix.pipeline import CIFAR10_MEAN, CIFAR10_STD


def box_mass(maps: np.ndarray, rows: np.ndarray, cols: np.ndarray, side: int) -> np.ndarray:
    """Share of each map's mass inside the side x side box centred (and clipped) as the authors do."""
    n, h, w = maps.shape
    out = np.empty(n)
    for i in range(n):
        r1, r2 = np.clip(rows[i] - side // 2, 0, h), np.clip(rows[i] + side // 2, 0, h)
        c1, c2 = np.clip(cols[i] - side // 2, 0, w), np.clip(cols[i] + side // 2, 0, w)
        total = maps[i].sum()
        out[i] = maps[i, r1:r2, c1:c2].sum() / total if total > 0 else 0.0
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default="../shared/data/cifar10-jpeg.tar.gz")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--out", default="study/official_map.md")
    args = parser.parse_args()

    ds = load_dataset(args.data, "train")
    g = torch.Generator().manual_seed(0)
    index = torch.randperm(ds.images.shape[0], generator=g)[: args.n]
    images = ds.images[index]
    correct = fine_grained(images).numpy()  # (N, H, W) in [0, 1]
    mean = torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR10_STD).view(1, 3, 1, 1)
    normalised = ((images.float() / 255 - mean) / std).numpy().transpose(0, 2, 3, 1)
    official = np.stack([opencv_saliency_hwc(np.ascontiguousarray(x), "fine_grained") for x in normalised])

    def peaks(maps: np.ndarray):
        q = (maps * 255).astype(np.uint8).reshape(len(maps), -1).argmax(axis=1)
        return q // maps.shape[2], q % maps.shape[2]

    corr = []
    for a, b in zip(official, correct):
        if a.std() > 0 and b.std() > 0:
            corr.append(np.corrcoef(a.ravel(), b.ravel())[0, 1])
    h, w = correct.shape[1:]
    rng = np.random.default_rng(0)  # analysis only, not a training path
    rand_r, rand_c = rng.integers(0, h, args.n), rng.integers(0, w, args.n)
    off_r, off_c = peaks(official)
    cor_r, cor_c = peaks(correct)
    side = int(h * np.sqrt(1 - 0.75))
    dist_official = np.hypot(off_r - cor_r, off_c - cor_c)
    dist_random = np.hypot(rand_r - cor_r, rand_c - cor_c)
    rows = [
        ("Pearson correlation, official vs correct map (mean over images)", f"{np.mean(corr):.3f}"),
        ("images whose official map is constant (no peak)", f"{sum(a.std() == 0 for a in official)}"),
        ("distance official peak -> correct peak (px, mean)", f"{dist_official.mean():.1f}"),
        ("distance random point -> correct peak (px, mean)", f"{dist_random.mean():.1f}"),
        (
            f"correct saliency inside a {side}x{side} box at the correct peak",
            f"{box_mass(correct, cor_r, cor_c, side).mean():.3f}",
        ),
        (
            f"correct saliency inside a {side}x{side} box at the official peak",
            f"{box_mass(correct, off_r, off_c, side).mean():.3f}",
        ),
        (
            f"correct saliency inside a {side}x{side} box at a random point",
            f"{box_mass(correct, rand_r, rand_c, side).mean():.3f}",
        ),
    ]
    text = (
        "Command: `.venv/bin/python study/official_map.py --out study/official_map.md` "
        f"({args.n} CIFAR-10 training images, fixed sample)\n\n| quantity | value |\n|---|---:|\n"
        + "\n".join(f"| {k} | {v} |" for k, v in rows)
        + "\n"
    )
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
