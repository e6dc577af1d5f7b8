"""What the official SaliencyMix's map means at 128 px (study 2, issue 17): on Imagenette's test
images, how the authors' map relates to the same image's correctly computed map and to what a
trained classifier uses (its own CAM), and how much of that CAM a SaliencyMix box centred on each
map's peak covers.

    .venv/bin/python study/study2/imagenette/official_map.py study/study2/imagenette/main_operator/runs/none_s0

The authors' code gives OpenCV's fine-grained detector the normalised float32 tensor, channels
last (``SaliencyMix(variant="official")`` reproduces it); the correct map is the same detector on the
uint8 image (the batched ``fine_grained`` detector, OpenCV-exact). RUN is a finished no-mixing run
with its checkpoint: its mean and std normalise the images as the training loop did, and its CAM
(of the predicted class) stands for "what the classifier uses". A box of side ``H * sqrt(1 - lam)``
is centred on a peak and clipped at the borders as the authors' ``saliency_bbox`` does. Study 1's
32-px version: ``study/official_map.py``. A diagnostic on the test split: nothing is chosen with it.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import List, Tuple

import numpy as np
import torch

from randsaliencymix.geometry import box_area_share, box_mass, centred_boxes, integral, peak_of_quantised
from randsaliencymix.mixing import _official_peak
from randsaliencymix.reference import opencv_saliency_hwc
from rsmix.augment import normalize
from rsmix.data import load_dataset
from rsmix.evaluate import load_trained_model
from rsmix.occlusion import source_maps
from rsmix.precision import cpu_name

HERE = Path(__file__).resolve().parent
LAMS = (0.75, 0.5)


def peaks(maps: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Row and column of each map's first maximum after quantising to uint8, as the authors do."""
    r, c = peak_of_quantised(torch.from_numpy(maps))
    return r.numpy(), c.numpy()


def box_share(maps: torch.Tensor, rows: np.ndarray, cols: np.ndarray, side: int) -> Tuple[np.ndarray, np.ndarray]:
    """Share of each map's mass (maps summing to 1) inside the side x side box centred on (row, col)
    and clipped as the authors' ``saliency_bbox`` does, and the clipped box's area as a share of the
    unclipped one."""
    n, h, w = maps.shape
    sides = torch.full((n,), side)
    boxes = centred_boxes(torch.from_numpy(rows), torch.from_numpy(cols), sides, sides, h, w)
    r1, c1, r2, c2 = boxes.unbind(1)
    mass = box_mass(integral(maps), torch.arange(n), r1 * w + c1, r2 - r1, c2 - c1)
    area = box_area_share(boxes, h, w) * (h * w) / (2 * (side // 2)) ** 2
    return mass.numpy(), area.numpy()


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    rs = [np.corrcoef(x.ravel(), y.ravel())[0, 1] for x, y in zip(a, b) if x.std() > 0 and y.std() > 0]
    return float(np.mean(rs))


def ci(values: np.ndarray) -> str:
    half = 1.96 * values.std(ddof=1) / math.sqrt(len(values))
    return f"{values.mean():.3f} ± {half:.3f}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--data", default="../shared/data/imagenette2-224.tar")
    ap.add_argument("--split", default="val")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=HERE / "official_map.md")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    trained = load_trained_model(args.run, "cpu", channels=3)
    ds = load_dataset(args.data, args.split, size=trained.image_size or None)
    images = ds.images
    n, h, w = images.shape[0], images.shape[-2], images.shape[-1]
    maps = source_maps(trained.model, images, ("fine_grained", "cam"), trained.mean, trained.std,
                       device=torch.device("cpu"), precision=trained.precision)  # fmt: skip
    correct, cam = maps["fine_grained"].numpy(), maps["cam"].numpy()
    cam_mass = maps["cam"].double() / maps["cam"].double().sum((1, 2), keepdim=True).clamp_min(1e-12)
    normalised = normalize(images, trained.mean, trained.std)  # float32, what the training loop held
    official = np.stack([opencv_saliency_hwc(x.numpy().transpose(1, 2, 0), "fine_grained") for x in normalised])
    off_r, off_c = peaks(official)
    # The analysis reads the map the operator reads: its peak must be the operator's own.
    for i in range(0, n, max(1, n // 50)):
        if _official_peak(normalised[i]) != (int(off_r[i]), int(off_c[i])):
            raise RuntimeError(f"image {i}: the official peak differs from SaliencyMix(variant='official')'s")
    cor_r, cor_c = peaks(correct)
    cam_r, cam_c = peaks(cam)
    rng = np.random.default_rng(0)  # analysis only, not a training path
    rand_r, rand_c = rng.integers(0, h, n), rng.integers(0, w, n)
    mid_r, mid_c = np.full(n, h // 2), np.full(n, w // 2)
    centres = {
        "the CAM's own peak (the most it can cover)": (cam_r, cam_c),
        "the correct fine-grained map's peak (per-sample SaliencyMix)": (cor_r, cor_c),
        "the official map's peak (official SaliencyMix)": (off_r, off_c),
        "the image centre": (mid_r, mid_c),
        "a uniform random point (CutMix)": (rand_r, rand_c),
    }
    flat = official.reshape(n, -1)
    constant = int((flat.max(axis=1) == flat.min(axis=1)).sum())
    off_peak_share = np.bincount(off_r * w + off_c, minlength=h * w).max() / n
    lines = [
        "# What the official SaliencyMix's map means at 128 px",
        "",
        f"Command: `.venv/bin/python study/study2/imagenette/official_map.py {args.run}` "
        f"({n} images of Imagenette's `{args.split}/` at {h} px; {time.perf_counter() - start:.0f} s on "
        f"{cpu_name()}, torch {torch.__version__}).",
        "",
        "The authors' code hands OpenCV the normalised float32 image (channels last); the correct map is the",
        "same fine-grained detector on the uint8 image; the CAM (of the predicted class) of the no-mixing model",
        f"`{args.run.name}` stands for what the classifier uses. Means over images; ± is the half-width of the",
        "95% interval of the mean over images (one model).",
        "",
        "| quantity | value |",
        "|---|---:|",
        f"| Pearson r, official vs correct map | {pearson(official, correct):.3f} |",
        f"| Pearson r, official map vs CAM | {pearson(official, cam):.3f} |",
        f"| Pearson r, correct map vs CAM | {pearson(correct, cam):.3f} |",
        f"| images whose official map is constant | {constant} |",
        f"| share of images whose official peak is the most common official peak | {off_peak_share:.3f} |",
    ]
    for name, (r, c) in list(centres.items())[1:]:
        lines.append(f"| distance from {name} to the CAM's peak (px) | {np.hypot(r - cam_r, c - cam_c).mean():.1f} |")
    for name, (r, c) in list(centres.items())[:3]:
        border = np.minimum(np.minimum(r, h - 1 - r), np.minimum(c, w - 1 - c))
        lines.append(f"| distance from {name} to the nearest border (px; uniform point: {h / 6:.1f}) "
                     f"| {border.mean():.1f} |")  # fmt: skip
    for lam in LAMS:
        side = int(h * math.sqrt(1 - lam))
        lines += ["", f"Share of the CAM's mass inside a {side}×{side} box (lam = {lam}, {side * side / (h * w):.0%} "
                  "of the image) centred on each point and clipped at the borders, and the clipped box's area "
                  "as a share of the unclipped one:", "", "| box centre | CAM share | box area kept |",
                  "|---|---:|---:|"]  # fmt: skip
        shares: List[np.ndarray] = []
        for name, (r, c) in centres.items():
            mass, area = box_share(cam_mass, r, c, side)
            shares.append(mass)
            lines.append(f"| {name} | {ci(mass)} | {area.mean():.2f} |")
        official_minus_random = shares[2] - shares[4]
        official_minus_centre = shares[2] - shares[3]
        lines.append(f"| official − random (paired) | {ci(official_minus_random)} | |")
        lines.append(f"| official − centre (paired) | {ci(official_minus_centre)} | |")
    text = "\n".join(lines) + "\n"
    args.out.write_text(text)
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
