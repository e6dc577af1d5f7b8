"""Pictures of what each operator does: saliency maps and mixed images with their label weights.

Given a trained model (``rsmix show --checkpoint RUN``), the gallery also shows each image's class
activation map for the model's predicted class (the ``cam`` saliency source) and the operators that
read it: RandSaliencyMix and GuidedMixup with CAM maps. Without one it shows none: an untrained
network's CAM is noise."""

from __future__ import annotations

from pathlib import Path
from typing import Any, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from randsaliencymix import SALIENCY_ON, class_activation_maps
from randsaliencymix.saliency import fine_grained, spectral_residual

from .augment import normalize
from .files import atomic_write
from .methods import build_mixer

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


def _square(img: np.ndarray, size: int) -> torch.Tensor:
    """HWC uint8 -> CHW uint8 of size x size: centre crop to a square, antialiased resize."""
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    img = img[..., :3]
    h, w = img.shape[:2]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    t = torch.from_numpy(np.array(img[top : top + s, left : left + s])).permute(2, 0, 1).float()
    t = F.interpolate(t[None], size=(size, size), mode="bilinear", antialias=True, align_corners=False)[0]
    return t.round().clamp(0, 255).to(torch.uint8)


def sample_images(size: int = 128) -> List[torch.Tensor]:
    """Real photographs bundled with scikit-image (no download)."""
    from skimage import data  # optional dependency (extra "viz")

    return [_square(getattr(data, name)(), size) for name in ("astronaut", "chelsea", "coffee", "rocket")]


def folder_images(directory: Path, size: int = 128, limit: int = 6) -> List[torch.Tensor]:
    from PIL import Image

    files = sorted(p for p in Path(directory).rglob("*") if p.suffix.lower() in _IMAGE_SUFFIXES)
    if len(files) < 2:
        raise ValueError(f"Expected at least 2 images in {directory}, but got {len(files)} instead.")
    out = []
    for path in files[:limit]:
        try:
            with Image.open(path) as im:
                out.append(_square(np.asarray(im.convert("RGB")), size))
        except OSError as exc:
            raise ValueError(f"Cannot read image {path}: {exc}") from exc
    return out


def default_operators(num_classes: int) -> List[tuple]:
    """(title, operator) of every registered method but ``none``, built by the method registry,
    plus RandSaliencyMix with its saliency ideas on (the library's defaults, chosen by the CIFAR-10
    study, use no saliency, so the picture shows what the ideas do), a blended, spectral variant and
    one with patch noise (the seed's sigma 0.4). Every operator mixes every sample (``p = 1``)."""
    mean, std = IMAGENET_MEAN, IMAGENET_STD
    titles = {
        "mixup": "MixUp",
        "cutmix": "CutMix",
        "saliencymix": "SaliencyMix official",
        "saliencymix_per_sample": "SaliencyMix per-sample",
    }
    ops: List[tuple] = [(title, build_mixer(name, num_classes, mean=mean, std=std)) for name, title in titles.items()]
    ops.append(("RandSaliencyMix", build_mixer("randsaliencymix", num_classes, SALIENCY_ON, mean=mean, std=std)))
    blend = {**SALIENCY_ON, "eta": "beta", "beta_blend": 2.0, "detector": "spectral"}
    ops.append(("RSM blend+spectral", build_mixer("randsaliencymix", num_classes, blend, mean=mean, std=std)))
    noisy = {**SALIENCY_ON, "patch_noise": 0.4}
    ops.append(("RSM patch noise 0.4", build_mixer("randsaliencymix", num_classes, noisy, mean=mean, std=std)))
    ops.append(("GuidedMixup SR", build_mixer("guidedmixup", num_classes, {"p": 1.0}, mean=mean, std=std)))
    return ops


class CamModel(NamedTuple):
    """A trained classifier for the gallery's CAM columns and the normalisation it was trained with."""

    model: torch.nn.Module
    mean: Tuple[float, ...]
    std: Tuple[float, ...]


def cam_operators(num_classes: int) -> List[tuple]:
    """(title, operator) of the operators the gallery shows with CAM maps."""
    mean, std = IMAGENET_MEAN, IMAGENET_STD
    return [
        ("RandSaliencyMix CAM", build_mixer("randsaliencymix", num_classes, SALIENCY_ON, mean=mean, std=std)),
        ("GuidedMixup CAM", build_mixer("guidedmixup", num_classes, {"p": 1.0}, mean=mean, std=std)),
    ]


def draw_gallery(
    images: Sequence[torch.Tensor],
    out: Path,
    seed: int = 0,
    operators: Optional[List[tuple]] = None,
    cam: Optional[CamModel] = None,
) -> Path:
    """One row per (target, source) pair: both images, their maps, and every operator's output;
    with ``cam``, also both images' class activation maps and the operators that read them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    x8 = torch.stack(list(images))
    n = x8.shape[0]
    mean = torch.tensor(IMAGENET_MEAN).reshape(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).reshape(1, 3, 1, 1)
    # The operators see what a training loop holds: normalised float images.
    x = normalize(x8, IMAGENET_MEAN, IMAGENET_STD)
    y = torch.arange(n)  # each image is its own class, so label weights read as target / source
    perm = torch.roll(torch.arange(n), -1)
    ops = operators if operators is not None else default_operators(n)

    maps_fg = fine_grained(x8)
    maps_sr = spectral_residual(x8)
    columns = [("fine-grained", maps_fg), ("spectral", maps_sr)]
    runs: List[Tuple[str, Any, Optional[torch.Tensor]]] = [(name, op, None) for name, op in ops]
    if cam is not None:
        device = next(cam.model.parameters()).device
        seen = normalize(x8, cam.mean, cam.std).to(device)  # as the model was trained
        maps_cam = class_activation_maps(cam.model, seen, "predicted").cpu()
        columns.append(("CAM", maps_cam))
        runs += [(name, op, maps_cam) for name, op in cam_operators(n)]
    results = []
    for name, op, saliency in runs:
        g = torch.Generator().manual_seed(seed)
        params = op.sample_params(x, generator=g, perm=perm, saliency=saliency)
        xm, ym = op.apply_params(x, y, params)
        results.append((name, xm, ym, params))

    def show(ax, img_chw_float):
        img = (img_chw_float * std[0] + mean[0]).clamp(0, 1).permute(1, 2, 0).numpy()
        ax.imshow(img)

    first = 2 + 2 * len(columns)
    cols = first + len(results)
    fig, axes = plt.subplots(n, cols, figsize=(1.9 * cols, 2.1 * n), squeeze=False)
    for i in range(n):
        s = int(perm[i])
        panels = [("target", x[i], False), ("source", x[s], False)]
        panels += [
            (f"{who} {name}", maps[k], True) for who, k in (("target", i), ("source", s)) for name, maps in columns
        ]
        for j, (title, image, is_map) in enumerate(panels):
            ax = axes[i, j]
            if is_map:
                ax.imshow(image.numpy(), cmap="inferno", vmin=0, vmax=1)
            else:
                show(ax, image)
            ax.set_title(title, fontsize=7)
        for k, (name, xm, ym, params) in enumerate(results):
            ax = axes[i, first + k]
            show(ax, xm[i])
            r1, c1, r2, c2 = [int(v) for v in params.dst_boxes[i]]
            if r2 > r1 and c2 > c1 and bool(params.applied[i]) and not bool(params.mixup[i]):
                ax.add_patch(Rectangle((c1 - 0.5, r1 - 0.5), c2 - c1, r2 - r1, fill=False, ec="yellow", lw=1))
            ax.set_title(f"{name}\ntgt {float(ym[i, i]):.2f} / src {float(ym[i, s]):.2f}", fontsize=7)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("Saliency maps (uint8 images) and operator outputs; label weights target / source", fontsize=9)
    fig.tight_layout()
    out = Path(out)
    try:  # through the one atomic writer: a read-only folder is one line, never half an image
        atomic_write(out, lambda fh: fig.savefig(fh, dpi=110, format=out.suffix.lstrip(".").lower() or "png"))
    finally:
        plt.close(fig)
    return out
