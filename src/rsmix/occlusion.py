"""Does a saliency source see what the classifier uses? The occlusion diagnostic of study 2.

For each test image and each saliency source (a detector's maps, or the model's own CAM), the
``side`` x ``side`` window whose summed saliency is **largest** is filled with the dataset's mean
colour (grey after normalisation), and the model is scored on the occluded images; likewise the
window of **least** saliency, a **random** window of the same size (seeded) and the **centre**
window (photographs tend to centre their object: a source must beat that prior). If a source finds
the object the classifier uses, occluding its most salient window costs much more accuracy than a
random window, and its least salient window costs less.

Windows are found on the whole batch at once: the sum of every window comes from the maps'
integral image (float64), and the window is the arg-max (or arg-min) of that, the first in raster
order on ties. Occlusion works on the uint8 images, before the one input pipeline normalises them,
so the model sees exactly what evaluation feeds it.
"""

from __future__ import annotations

from typing import Dict, Mapping, Sequence, Tuple

import torch
from torch import nn

from .evaluate import predict
from .metrics import classification_metrics

__all__ = ["KINDS", "occlude", "occlusion_errors", "random_windows", "salient_windows", "source_maps"]

KINDS = ("most", "least", "random", "centre")


def salient_windows(maps: torch.Tensor, side: int, kind: str = "most") -> torch.Tensor:
    """The ``side`` x ``side`` window of each map ``(B, H, W)`` with the largest (``"most"``) or
    smallest (``"least"``) summed saliency, as ``(B, 4)`` long boxes ``(r1, c1, r2, c2)``."""
    if maps.ndim != 3 or not maps.is_floating_point():
        raise ValueError(f"Expected float maps of shape (B, H, W), but got {maps.dtype} {tuple(maps.shape)} instead.")
    h, w = maps.shape[-2:]
    if not 1 <= side <= min(h, w):
        raise ValueError(f"Expected a window side in [1, {min(h, w)}], but got {side} instead.")
    if kind not in ("most", "least"):
        raise ValueError(f"Expected kind 'most' or 'least', but got {kind!r} instead.")
    b = maps.shape[0]
    # Window sums from a zero-padded float64 integral image: O(1) a window whatever its side (a
    # stride-1 avg_pool2d costs side² a window: minutes for 4,000 maps at 64 px). Only corners
    # whose window fits in the map, (H - side + 1) x (W - side + 1) of them, are candidates.
    table = maps.double().new_zeros(b, h + 1, w + 1)
    torch.cumsum(maps.double(), dim=2, out=table[:, 1:, 1:])
    table[:, 1:, 1:] = table[:, 1:, 1:].cumsum(dim=1)
    rows = table[:, side:, :] - table[:, : h + 1 - side, :]  # (B, H - side + 1, W + 1)
    sums = (rows[:, :, side:] - rows[:, :, : w + 1 - side]).clamp_(min=0.0).flatten(1)
    index = sums.argmax(dim=1) if kind == "most" else sums.argmin(dim=1)  # the first in raster order on ties
    r1, c1 = index // (w + 1 - side), index % (w + 1 - side)
    return torch.stack([r1, c1, r1 + side, c1 + side], dim=1)


def random_windows(b: int, height: int, width: int, side: int, generator: torch.Generator) -> torch.Tensor:
    """``b`` windows of ``side`` x ``side``, each position uniform over the image, as ``(B, 4)`` boxes."""
    if not 1 <= side <= min(height, width):
        raise ValueError(f"Expected a window side in [1, {min(height, width)}], but got {side} instead.")
    r1 = torch.randint(0, height - side + 1, (b,), generator=generator)
    c1 = torch.randint(0, width - side + 1, (b,), generator=generator)
    return torch.stack([r1, c1, r1 + side, c1 + side], dim=1)


def occlude(images_u8: torch.Tensor, boxes: torch.Tensor, fill: Sequence[float]) -> torch.Tensor:
    """A copy of uint8 images ``(B, C, H, W)`` with each box filled with ``fill`` (per channel, in
    [0, 1]: the dataset's mean colour, which normalisation maps to 0)."""
    b, c, h, w = images_u8.shape
    rows = torch.arange(h).view(1, h, 1)
    cols = torch.arange(w).view(1, 1, w)
    boxes = boxes.to(torch.long).cpu()
    inside = (
        (rows >= boxes[:, 0, None, None])
        & (rows < boxes[:, 2, None, None])
        & (cols >= boxes[:, 1, None, None])
        & (cols < boxes[:, 3, None, None])
    )
    grey = (torch.tensor([float(v) for v in fill]) * 255).round().clamp(0, 255).to(torch.uint8).view(1, c, 1, 1)
    return torch.where(inside.unsqueeze(1), grey.expand(b, c, h, w), images_u8.cpu())


def occlusion_errors(
    model: nn.Module,
    images_u8: torch.Tensor,
    labels: torch.Tensor,
    maps: Mapping[str, torch.Tensor],
    sides: Sequence[int],
    mean: Sequence[float],
    std: Sequence[float],
    *,
    device: torch.device,
    channels_last: bool = False,
    precision: str = "fp32",
    seed: int = 0,
) -> Dict[Tuple[str, int, str], float]:
    """Top-1 error (%) of ``model`` on the images occluded at each source's most and least salient
    window and at a random window, for each side: ``{(source, side, kind): error}``, plus
    ``("clean", 0, "none")``. ``maps``: ``{source: (N, H, W) float maps}`` of the images. The
    random windows are the same for every source (seeded by ``seed`` and the side); so is the
    ``"centre"`` window, the image's centre: the prior a source must beat, as photographs tend to
    centre their object."""

    def error(images: torch.Tensor) -> float:
        logits = predict(model, images, mean, std, device=device, channels_last=channels_last, precision=precision)
        return classification_metrics(logits, labels)["top1_err"]

    out: Dict[Tuple[str, int, str], float] = {("clean", 0, "none"): error(images_u8)}
    n, _, h, w = images_u8.shape
    for side in sides:
        generator = torch.Generator().manual_seed(seed * 100_003 + side)
        random_error = error(occlude(images_u8, random_windows(n, h, w, side, generator), mean))
        r1, c1 = (h - side) // 2, (w - side) // 2
        centre = torch.tensor([[r1, c1, r1 + side, c1 + side]]).expand(n, 4)
        centre_error = error(occlude(images_u8, centre, mean))
        for source, source_maps in maps.items():
            for kind in ("most", "least"):
                boxes = salient_windows(source_maps.float().cpu(), side, kind)
                out[(source, side, kind)] = error(occlude(images_u8, boxes, mean))
            out[(source, side, "random")] = random_error
            out[(source, side, "centre")] = centre_error
    return out


def source_maps(
    model: nn.Module,
    images_u8: torch.Tensor,
    sources: Sequence[str],
    mean: Sequence[float],
    std: Sequence[float],
    *,
    device: torch.device,
    precision: str = "fp32",
    batch_size: int = 250,
) -> Dict[str, torch.Tensor]:
    """``{source: (N, H, W) float maps}`` of uint8 images: a detector's (``"fine_grained"``,
    ``"spectral"``: of the images as stored) or ``"cam"`` (the model's class activation map of its
    predicted class, the model in evaluation mode, its forward in ``precision``)."""
    from randsaliencymix import class_activation_maps, saliency_map

    from .augment import normalize
    from .precision import autocast

    out: Dict[str, torch.Tensor] = {}
    for source in sources:
        chunks = []
        for start in range(0, images_u8.shape[0], batch_size):
            chunk = images_u8[start : start + batch_size].to(device)
            if source == "cam":
                model.eval()
                with autocast(device, precision):
                    chunks.append(class_activation_maps(model, normalize(chunk, mean, std), "predicted").cpu())
            else:
                chunks.append(saliency_map(chunk, source).cpu())
        out[source] = torch.cat(chunks)
    return out
