"""Fixed corruptions of a uint8 test set, for robustness evaluation of trained models.

Every corruption is a batched tensor function of a ``(N, C, H, W)`` uint8 batch that returns a new
uint8 batch (the input is never modified). The random parts (noise, occluder positions) come from
an explicit generator, so every model of a study is scored on the very same corrupted images.

The severities are fixed, one level each, close to the middle of CIFAR-10-C's range (Hendrycks &
Dietterich, 2019): Gaussian noise sigma 0.08 (its level 3), Gaussian blur sigma 1.0 (level 5),
contrast factor 0.4 (level 3), JPEG quality 40 (level 5). Occlusion replaces a random square, fully
inside the image, by the mid-grey 128 (about the CIFAR mean), at a quarter and at half the side.
"""

from __future__ import annotations

import io
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import torch

__all__ = ["CORRUPTIONS", "corrupt", "occlude", "gaussian_noise", "gaussian_blur", "contrast", "jpeg", "corrupted_sets"]


def _to_u8(x: torch.Tensor) -> torch.Tensor:
    return x.round().clamp(0, 255).to(torch.uint8)


def occlude(
    images: torch.Tensor, side: int, generator: Optional[torch.Generator] = None, fill: int = 128
) -> torch.Tensor:
    """A ``side x side`` square at a uniform position inside each image set to ``fill``."""
    n, _, h, w = images.shape
    if not 0 < side <= min(h, w):
        raise ValueError(f"Expected an occluder side in [1, {min(h, w)}], but got {side} instead.")
    top = torch.randint(0, h - side + 1, (n,), generator=generator, device=images.device)
    left = torch.randint(0, w - side + 1, (n,), generator=generator, device=images.device)
    rows = torch.arange(h, device=images.device)
    cols = torch.arange(w, device=images.device)
    inside = ((rows[None] >= top[:, None]) & (rows[None] < top[:, None] + side))[:, :, None] & (
        (cols[None] >= left[:, None]) & (cols[None] < left[:, None] + side)
    )[:, None, :]
    return torch.where(inside[:, None], torch.full_like(images, fill), images)


def gaussian_noise(images: torch.Tensor, sigma: float, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Additive Gaussian noise of standard deviation ``sigma`` on the [0, 1] scale."""
    noise = torch.randn(images.shape, generator=generator, device=images.device)
    return _to_u8(images.float() + noise * (sigma * 255.0))


def _reflect_blur_matrix(size: int, kernel: torch.Tensor) -> torch.Tensor:
    """``(size, size)`` matrix ``M`` with ``out = M @ x`` the 1-D convolution of ``x`` with
    ``kernel`` under reflect-101 borders (``a b c | b a``)."""
    radius = (kernel.numel() - 1) // 2
    matrix = torch.zeros(size, size, dtype=kernel.dtype, device=kernel.device)
    rows = torch.arange(size, device=kernel.device)
    for k in range(-radius, radius + 1):
        cols = rows + k
        period = 2 * (size - 1) if size > 1 else 1
        cols = cols.remainder(period)
        cols = torch.where(cols >= size, period - cols, cols)
        matrix.index_put_((rows, cols), kernel[k + radius].expand(size), accumulate=True)
    return matrix


def gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur (radius ``ceil(3 sigma)``, reflected borders), as two matrix
    products: far faster on CPU than a single-channel convolution over a large batch."""
    radius = max(1, int(np.ceil(3 * sigma)))
    taps = torch.arange(-radius, radius + 1, dtype=torch.float32, device=images.device)
    kernel = torch.exp(-0.5 * (taps / sigma) ** 2)
    kernel = kernel / kernel.sum()
    h, w = images.shape[-2:]
    rows = _reflect_blur_matrix(h, kernel)
    cols = _reflect_blur_matrix(w, kernel)
    return _to_u8(rows @ images.float() @ cols.T)


def contrast(images: torch.Tensor, factor: float) -> torch.Tensor:
    """Pull every pixel toward its image's mean by ``factor`` (1 = unchanged, 0 = flat)."""
    x = images.float()
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return _to_u8((x - mean) * factor + mean)


def jpeg(images: torch.Tensor, quality: int) -> torch.Tensor:
    """JPEG round trip at ``quality`` with Pillow (one image at a time: the codec has no batch API)."""
    try:
        from PIL import Image
    except ImportError as exc:  # pragma: no cover - Pillow is in the train extra
        raise ImportError("the jpeg corruption needs Pillow: pip install 'randsaliencymix[train]'") from exc
    arrays = images.permute(0, 2, 3, 1).cpu().numpy()
    out = np.empty_like(arrays)
    mode = "L" if arrays.shape[-1] == 1 else "RGB"
    for i, a in enumerate(arrays):
        buffer = io.BytesIO()
        Image.fromarray(a[..., 0] if mode == "L" else a, mode).save(buffer, format="JPEG", quality=quality)
        buffer.seek(0)
        decoded = np.asarray(Image.open(buffer).convert(mode))
        out[i] = decoded[..., None] if mode == "L" else decoded
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous().to(images.device)


# name -> (function of (images, generator), description for tables)
CORRUPTIONS: Dict[str, Tuple[Callable[[torch.Tensor, Optional[torch.Generator]], torch.Tensor], str]] = {
    "occlusion_quarter": (
        lambda x, g: occlude(x, max(1, x.shape[-1] // 4), g),
        "grey square, 1/4 of the side (8 px on CIFAR)",
    ),
    "occlusion_half": (
        lambda x, g: occlude(x, max(1, x.shape[-1] // 2), g),
        "grey square, 1/2 of the side (16 px on CIFAR)",
    ),
    "gaussian_noise": (lambda x, g: gaussian_noise(x, 0.08, g), "Gaussian noise, sigma 0.08"),
    "gaussian_blur": (lambda x, g: gaussian_blur(x, 1.0), "Gaussian blur, sigma 1.0 px"),
    "contrast": (lambda x, g: contrast(x, 0.4), "contrast x0.4"),
    "jpeg": (lambda x, g: jpeg(x, 40), "JPEG quality 40"),
}


def corrupt(images: torch.Tensor, name: str, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """One named corruption of a uint8 batch ``(N, C, H, W)``."""
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"Expected images as a torch.Tensor, but got {type(images).__name__} instead.")
    if images.ndim != 4 or images.shape[0] < 1 or min(images.shape[-2:]) < 2:
        raise ValueError(f"Expected a batch of shape (B, C, H, W), but got {tuple(images.shape)} instead.")
    if images.dtype != torch.uint8:
        raise TypeError(f"Expected uint8 images, but got {images.dtype} instead.")
    if name not in CORRUPTIONS:
        raise ValueError(f"Expected a corruption in {sorted(CORRUPTIONS)}, but got {name!r} instead.")
    return CORRUPTIONS[name][0](images, generator)


def corrupted_sets(images: torch.Tensor, names: Optional[List[str]] = None, seed: int = 0) -> Dict[str, torch.Tensor]:
    """Every corruption of ``images``, each drawn from its own generator seeded by ``seed`` so that
    a corruption's images do not depend on which other corruptions were asked for."""
    out = {}
    order = list(CORRUPTIONS)
    for name in names or order:
        if name not in CORRUPTIONS:
            raise ValueError(f"Expected a corruption in {sorted(CORRUPTIONS)}, but got {name!r} instead.")
        generator = torch.Generator(device=images.device).manual_seed(seed * 1_000 + order.index(name))
        out[name] = corrupt(images, name, generator)
    return out
