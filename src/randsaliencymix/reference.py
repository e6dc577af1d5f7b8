"""OpenCV reference backend (extra ``opencv``: ``opencv-contrib-python-headless``).

A per-image loop over ``cv2.saliency``: the ground truth the batched detectors are tested against,
the baseline they are benchmarked against, and the detector of ``SaliencyMix(variant="official")``.

Public: :func:`opencv_saliency` (``(B, C, H, W)`` tensors) and :func:`opencv_saliency_hwc` (one
``(H, W, C)`` array).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .saliency import to_uint8

__all__ = ["opencv_saliency", "opencv_saliency_hwc"]


def _cv2() -> Any:
    try:
        import cv2
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "The OpenCV reference backend needs opencv-contrib-python-headless: pip install 'randsaliencymix[opencv]'"
        ) from exc
    if not hasattr(cv2, "saliency"):  # pragma: no cover
        raise ImportError("cv2 has no 'saliency' module: install opencv-contrib-python-headless, not opencv-python.")
    return cv2


def opencv_saliency_hwc(image: np.ndarray, method: str = "fine_grained") -> np.ndarray:
    """OpenCV's map of one image given exactly as OpenCV receives it (H, W[, C]), any dtype."""
    cv2 = _cv2()
    if method == "fine_grained":
        detector = cv2.saliency.StaticSaliencyFineGrained_create()
    elif method == "spectral":
        detector = cv2.saliency.StaticSaliencySpectralResidual_create()
    else:
        raise ValueError(f"Expected method to be one of 'fine_grained', 'spectral', but got {method!r} instead.")
    ok, saliency = detector.computeSaliency(np.ascontiguousarray(image))
    if not ok:  # pragma: no cover - OpenCV reports failure only for empty input
        raise RuntimeError("OpenCV failed to compute a saliency map.")
    return np.asarray(saliency, dtype=np.float32)


def opencv_saliency(x: torch.Tensor, method: str = "fine_grained") -> torch.Tensor:
    """Maps of an RGB batch ``(B, C, H, W)`` computed image by image by OpenCV (in BGR order).

    Float images are converted to uint8 exactly as the batched detectors do, so the two agree.
    """
    x8 = to_uint8(x).cpu().permute(0, 2, 3, 1).numpy()
    if x8.shape[-1] == 3:
        x8 = x8[..., ::-1]  # OpenCV reads channels as B, G, R
    maps = [opencv_saliency_hwc(img if img.shape[-1] == 3 else img[..., 0], method) for img in x8]
    return torch.from_numpy(np.stack(maps)).to(x.device)
