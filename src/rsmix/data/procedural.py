"""The procedural dataset: a synthetic classification task built from a seed in seconds.

Each class is an object of a fixed shape, colour and texture placed at random on a cluttered
background (stripes, blobs, decoys one attribute away from a class), so where a patch is cut from
matters. Image ``i`` of a split depends only on the seed, the split and ``i``.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence, Tuple

import numpy as np
import torch

from ..errors import UsageError
from .args import check_int
from .container import ArrayDataset

__all__ = ["SPLIT_IDS", "procedural_dataset", "procedural_split"]

_SHAPES = ("disc", "square", "triangle", "ring", "cross", "star")
_COLOURS = ("red", "green", "blue", "yellow", "magenta", "cyan")
_TEXTURES = ("solid", "stripes", "checker", "gradient")
_PALETTE = torch.tensor(
    [
        [0.85, 0.15, 0.15],
        [0.15, 0.70, 0.20],
        [0.15, 0.30, 0.85],
        [0.90, 0.80, 0.15],
        [0.80, 0.20, 0.75],
        [0.15, 0.75, 0.80],
    ],
    dtype=torch.float32,
)
# The first ten classes by hand: every colour and texture is shared by two or three classes and
# most shapes by two, so no single attribute names a class; the rest follow in a fixed order.
_FIRST_CLASSES = (
    (0, 0, 0),
    (0, 2, 1),
    (1, 0, 2),
    (1, 1, 0),
    (2, 2, 3),
    (2, 3, 2),
    (3, 1, 1),
    (3, 3, 3),
    (4, 0, 1),
    (5, 1, 3),
)
# Difficulty, tuned so the task is learnt but far from solved: a 5-layer CNN (32-32-64-64-128
# channels, flips, one-cycle SGD) reaches 29% test accuracy after 1 epoch and 83.5% after 6 on
# 10,000 images (the same net on easier settings had 96% after 3 epochs).
_TINT_JITTER = 0.12
_MIN_OPACITY = 0.2
_DECOY_PROBABILITY = 0.7
_DECOY_COVERAGE = (0.06, 0.14)
_PIXEL_NOISE = 0.10
_CHUNK = 500  # images drawn per generator: sample i does not depend on how many are asked for
SPLIT_IDS = {"train": 0, "test": 1}


def _class_table(num_classes: int) -> torch.Tensor:
    """``(num_classes, 3)`` (shape, colour, texture) indices of each class."""
    rest = [
        (s, c, t)
        for s in range(len(_SHAPES))
        for c in range(len(_COLOURS))
        for t in range(len(_TEXTURES))
        if (s, c, t) not in _FIRST_CLASSES
    ]
    order = torch.randperm(len(rest), generator=torch.Generator().manual_seed(12345)).tolist()
    table = list(_FIRST_CLASSES) + [rest[i] for i in order]
    return torch.tensor(table[:num_classes], dtype=torch.int64)


_SQRT3 = math.sqrt(3.0)
# Each shape's inside test in object coordinates (u, v); every shape fits in the unit disc.
_SHAPE_TESTS = (
    lambda u, v: u * u + v * v <= 1.0,
    lambda u, v: torch.maximum(u.abs(), v.abs()) <= math.sqrt(0.5),
    lambda u, v: (v >= -0.5) & (_SQRT3 * u.abs() + v <= 1.0),
    lambda u, v: ((u * u + v * v) <= 1.0) & ((u * u + v * v) >= 0.55**2),
    lambda u, v: (torch.minimum(u.abs(), v.abs()) <= 0.3) & (torch.maximum(u.abs(), v.abs()) <= 0.9),
    lambda u, v: torch.hypot(u, v) <= 0.62 + 0.38 * torch.cos(5.0 * torch.atan2(v, u)),
)
# Share of the unit disc each shape covers, to scale objects to a chosen image coverage.
_SHAPE_AREA = torch.tensor(
    [
        1.0,
        2.0 / math.pi,
        3.0 * _SQRT3 / 4.0 / math.pi,
        1.0 - 0.55**2,
        (2 * 0.6 * 1.8 - 0.36) / math.pi,
        0.62**2 + 0.38**2 / 2.0,
    ],
    dtype=torch.float32,
)
# Each texture's darkening in [0, 1], in object coordinates so it turns with the object.
_TEXTURE_PATTERNS = (
    lambda u, v: torch.zeros_like(u),
    lambda u, v: (torch.sin(3.0 * math.pi * u) > 0).float(),
    lambda u, v: ((torch.sin(2.5 * math.pi * u) * torch.sin(2.5 * math.pi * v)) > 0).float(),
    lambda u, v: ((u + 1.0) / 2.0).clamp(0.0, 1.0),
)


def _chunk_seed(seed: int, split_id: int, chunk: int) -> int:
    state = np.random.SeedSequence([seed, split_id, chunk]).generate_state(2, np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


def _by_kind(
    kind: torch.Tensor,
    functions: Sequence[Callable[[torch.Tensor, torch.Tensor], torch.Tensor]],
    u: torch.Tensor,
    v: torch.Tensor,
    out: torch.Tensor,
) -> torch.Tensor:
    """``out[i] = functions[kind[i]](u[i], v[i])``, each function run only on its own samples."""
    for k, fn in enumerate(functions):
        rows = (kind == k).nonzero().squeeze(1)
        if rows.numel() > 0:
            out[rows] = fn(u[rows], v[rows]).to(out.dtype)
    return out


def _object_frame(
    shape: torch.Tensor, coverage: torch.Tensor, size: int, g: torch.Generator
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Object coordinates ``(u, v)`` of every pixel, ``(n, H, W)`` each, for objects of the given
    shapes covering ``coverage`` of the image, at a random place, angle and stretch, fully inside."""
    n = shape.shape[0]
    coords = torch.arange(size, dtype=torch.float32) + 0.5
    ys, xs = coords.view(1, size, 1), coords.view(1, 1, size)
    stretch = 0.85 + 0.3 * torch.rand(n, generator=g)
    reach = torch.maximum(stretch, 1.0 / stretch)  # furthest extent, in radii
    radius = torch.sqrt(coverage * size * size / (_SHAPE_AREA[shape] * math.pi))
    radius = torch.minimum(radius, (size / 2.0 - 0.5) / reach)
    margin = radius * reach
    cy = margin + (size - 2 * margin) * torch.rand(n, generator=g)
    cx = margin + (size - 2 * margin) * torch.rand(n, generator=g)
    turn = 2 * math.pi * torch.rand(n, generator=g)
    dy = (ys - cy.view(-1, 1, 1)) / radius.view(-1, 1, 1)
    dx = (xs - cx.view(-1, 1, 1)) / radius.view(-1, 1, 1)
    cos, sin = torch.cos(turn).view(-1, 1, 1), torch.sin(turn).view(-1, 1, 1)
    u = (cos * dx + sin * dy) / stretch.view(-1, 1, 1)
    v = (cos * dy - sin * dx) * stretch.view(-1, 1, 1)
    return u, v


def _objects(
    combo: torch.Tensor, coverage: torch.Tensor, size: int, g: torch.Generator
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Masks ``(m, H, W)``, colours ``(m, 3, H, W)`` and alpha ``(m, 1, H, W)`` of objects
    ``combo[i]`` = (shape, colour, texture); alpha is the object's opacity inside its mask."""
    m = combo.shape[0]
    shape, colour, texture = combo.unbind(1)
    u, v = _object_frame(shape, coverage, size, g)
    mask = _by_kind(shape, _SHAPE_TESTS, u, v, torch.zeros(m, size, size, dtype=torch.bool))
    darken = _by_kind(texture, _TEXTURE_PATTERNS, u, v, torch.zeros(m, size, size))
    # Colour jitter per object, so a palette colour is a region of colours, not one value.
    tint = _PALETTE[colour] + _TINT_JITTER * torch.randn(m, 3, generator=g)
    tint = tint * (0.8 + 0.3 * torch.rand(m, 1, generator=g))
    rgb = tint.clamp(0, 1).view(m, 3, 1, 1) * (1.0 - 0.55 * darken.unsqueeze(1))
    # Partly see-through objects: the background shows through, so contrast varies per image.
    opacity = _MIN_OPACITY + (1.0 - _MIN_OPACITY) * torch.rand(m, 1, 1, generator=g)
    return mask, rgb, (mask * opacity).unsqueeze(1)


def _near_misses(classes: torch.Tensor) -> torch.Tensor:
    """Combinations one attribute away from some class that are no class themselves (decoys)."""
    every = _class_table(len(_SHAPES) * len(_COLOURS) * len(_TEXTURES))
    differences = (every[:, None, :] != classes[None, :, :]).sum(dim=2)  # (combos, classes)
    near = differences.min(dim=1).values == 1
    if not bool(near.any()):
        near = differences.min(dim=1).values > 0
    return every[near]


def _render_chunk(
    n: int, classes: torch.Tensor, decoys: torch.Tensor, size: int, g: torch.Generator
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``n`` images (uint8), labels and object masks, all drawn from ``g``.

    ``decoys`` are (shape, colour, texture) combinations that are no class: up to two of them,
    smaller, are drawn behind the object, so a class is only told apart by the conjunction of its
    three attributes on the right object.
    """
    k = classes.shape[0]
    labels = (torch.arange(n) % k)[torch.randperm(n, generator=g)]
    combo = classes[labels]
    coords = torch.arange(size, dtype=torch.float32) + 0.5
    ys, xs = coords.view(1, size, 1), coords.view(1, 1, size)

    def rand(*dims: int) -> torch.Tensor:
        return torch.rand(*dims, generator=g)

    def col(t: torch.Tensor) -> torch.Tensor:  # (n,) -> (n, 1, 1) for broadcasting over pixels
        return t.view(-1, 1, 1)

    # Background: a muted base colour with faint stripes of another colour at a random angle.
    base = 0.25 + 0.45 * rand(n, 3)
    angle = math.pi * rand(n)
    freq = 0.3 + 0.9 * rand(n)
    phase = 2 * math.pi * rand(n)
    stripe_colour = rand(n, 3)
    stripe_strength = 0.35 * rand(n)
    along = col(torch.cos(angle) * freq) * xs + col(torch.sin(angle) * freq) * ys + col(phase)
    stripes = (torch.sin(along) > 0).float() * col(stripe_strength)
    img = torch.lerp(base.view(n, 3, 1, 1), stripe_colour.view(n, 3, 1, 1), stripes.unsqueeze(1))

    # Clutter: up to five ellipses in palette colours other than the object's. Only the index of
    # the topmost blob is kept per pixel, and colours are looked up once at the end.
    n_blobs = 5
    blob = torch.zeros(n, size, size, dtype=torch.int64)
    blob_colours = torch.zeros(n, n_blobs + 1, 3)
    for j in range(1, n_blobs + 1):
        present = rand(n) < 0.75
        cy, cx = size * rand(n), size * rand(n)
        ry = size * (0.06 + 0.16 * rand(n))
        rx = size * (0.06 + 0.16 * rand(n))
        other = (combo[:, 1] + 1 + torch.randint(0, len(_COLOURS) - 1, (n,), generator=g)) % len(_COLOURS)
        blob_colours[:, j] = (_PALETTE[other] * (0.7 + 0.3 * rand(n, 1))).clamp(0, 1)
        # Rows and columns apart, then one broadcast sum: a single full-size pass per blob.
        inside = ((ys - col(cy)) / col(ry)).square_() + ((xs - col(cx)) / col(rx)).square_() <= 1.0
        blob.masked_fill_(inside & col(present), j)
    painted = blob_colours.transpose(1, 2).gather(2, blob.view(n, 1, -1).expand(n, 3, -1))
    img = torch.where((blob > 0).unsqueeze(1), painted.view(n, 3, size, size), img)

    # Two decoys, then the object on top, all drawn in one batch of 3n objects. Decoys are smaller
    # and their attribute combination is no class but one attribute away from one, so only the
    # whole conjunction, on the right object, tells the class. The object covers 12-28% of the
    # image and is always whole.
    lo, hi = _DECOY_COVERAGE
    n_decoys = 2 if decoys.shape[0] > 0 else 0
    picks = [decoys[torch.randint(0, decoys.shape[0], (n,), generator=g)] for _ in range(n_decoys)]
    coverage = [lo + (hi - lo) * rand(n) for _ in range(n_decoys)] + [0.12 + 0.16 * rand(n)]
    shown = [rand(n) < _DECOY_PROBABILITY for _ in range(n_decoys)] + [torch.ones(n, dtype=torch.bool)]
    masks, colours, alphas = _objects(torch.cat(picks + [combo]), torch.cat(coverage), size, g)
    for j in range(n_decoys + 1):
        rows = slice(j * n, (j + 1) * n)
        img = torch.lerp(img, colours[rows], alphas[rows] * col(shown[j]).unsqueeze(1))
    mask = masks[n_decoys * n :]
    img += _PIXEL_NOISE * torch.randn(n, 3, size, size, generator=g)
    pixels = img.clamp_(0, 1).mul_(255.0).round_().to(torch.uint8)
    return pixels, labels, mask


def procedural_split(
    n: int,
    seed: int = 0,
    split: str = "train",
    num_classes: int = 10,
    size: int = 32,
    return_masks: bool = False,
) -> ArrayDataset:
    """``n`` procedural images of one split (``"train"`` or ``"test"``); see :func:`procedural_dataset`."""
    n = check_int("n", n, 1)
    seed = check_int("seed", seed, 0)
    num_classes = check_int("num_classes", num_classes, 2)
    size = check_int("size", size, 8)
    combos = len(_SHAPES) * len(_COLOURS) * len(_TEXTURES)
    if num_classes > combos:
        raise UsageError(f"Expected num_classes <= {combos}, but got {num_classes} instead.")
    if split not in SPLIT_IDS:
        raise UsageError(f"Expected split 'train' or 'test', but got {split!r} instead.")
    classes = _class_table(num_classes)
    decoys = _near_misses(classes)
    parts = []
    for chunk in range((n + _CHUNK - 1) // _CHUNK):
        g = torch.Generator().manual_seed(_chunk_seed(seed, SPLIT_IDS[split], chunk))
        # Always a whole chunk, cut afterwards: the draws, hence the images, never depend on n.
        parts.append(_render_chunk(_CHUNK, classes, decoys, size, g))
    images, labels, masks = (torch.cat(t)[:n] for t in zip(*parts))
    names = [f"{_COLOURS[c]} {_TEXTURES[t]} {_SHAPES[s]}" for s, c, t in classes.tolist()]
    return ArrayDataset(images, labels, names, masks if return_masks else None)


def procedural_dataset(
    n_train: int,
    n_test: int,
    seed: int = 0,
    num_classes: int = 10,
    size: int = 32,
    return_masks: bool = False,
) -> Tuple[ArrayDataset, ArrayDataset]:
    """A synthetic classification dataset, deterministic from ``seed``, made in seconds.

    Class ``k`` is an object of a fixed shape, colour and texture (``classes[k]`` names them),
    covering 12-28% of the image at a random place, angle and stretch, with jittered colour and
    an opacity of 0.2-1, over a background of faint stripes, up to five blobs in other palette
    colours and up to two smaller decoys (attribute combinations one attribute away from a class),
    plus pixel noise. Six shapes, six colours and four textures give up to 144 classes; the
    first ten share attributes so that no single one names a class. Classes are balanced within
    each block of 500 images. Train and test come from separate
    random streams, and image ``i`` does not depend on how many are asked for, so ``n_test`` never
    changes the training set. ``return_masks`` keeps each object's mask in ``dataset.masks``.
    """
    return (
        procedural_split(n_train, seed, "train", num_classes, size, return_masks),
        procedural_split(n_test, seed, "test", num_classes, size, return_masks),
    )
