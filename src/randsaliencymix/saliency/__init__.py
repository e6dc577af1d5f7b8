"""Batched saliency detectors in torch, bit-faithful to OpenCV contrib's static saliency.

Both detectors take ``(B, C, H, W)`` images (C = 3 RGB, or C = 1 grey) and return ``(B, H, W)``
float32 maps in [0, 1] on the input's device. Every step is a tensor op over the whole batch.

* :func:`fine_grained` reproduces ``cv2.saliency.StaticSaliencyFineGrained`` (Montabone & Soto,
  2010) pixel for pixel on uint8 images up to 256x256, including OpenCV's integer grey
  conversion, its fixed-point blur, its float32 arithmetic order and the 8-bit wrap-around of its
  final ``(uchar)`` cast.
* :func:`spectral_residual` reproduces ``cv2.saliency.StaticSaliencySpectralResidual`` (Hou & Zhang,
  2007, OpenCV 4.x) to about 1e-5, with OpenCV's bit-exact fixed-point resize to 64x64.

Float images are first brought to uint8 (see :func:`to_uint8`), because both algorithms are
defined on 8-bit grey values. A constant image has no saliency: its map is all zeros.

The third saliency source, class activation maps of the model being trained
(:func:`class_activation_maps`, :func:`cam_and_logits`), lives in :mod:`randsaliencymix.cam` and is
re-exported here.

Public: :func:`saliency_map`, :func:`fine_grained`, :func:`spectral_residual`, :func:`to_uint8`,
:func:`rgb_to_gray_u8`, :func:`resize_linear_exact_u8`, :func:`class_activation_maps`,
:func:`cam_and_logits`, :func:`cam_from_features`, and :func:`dataset_maps` (a dataset's maps, computed
once and cached by content, with ``MAP_DETECTORS``, the detectors it caches).
"""

from __future__ import annotations

from typing import Callable, Dict, Optional, Sequence, Tuple, Union

import torch

from .._checks import check_choice
from ..cam import cam_and_logits, cam_from_features, class_activation_maps
from ._cached import MAP_DETECTORS, dataset_maps
from ._fine_grained import fine_grained
from ._grey import rgb_to_gray_u8, to_uint8
from ._spectral import resize_linear_exact_u8, spectral_residual

__all__ = [
    "MAP_DETECTORS",
    "cam_and_logits",
    "cam_from_features",
    "class_activation_maps",
    "dataset_maps",
    "fine_grained",
    "resize_linear_exact_u8",
    "rgb_to_gray_u8",
    "saliency_map",
    "spectral_residual",
    "to_uint8",
]

Detector = Callable[..., torch.Tensor]

DETECTORS: Dict[str, Detector] = {
    "fine_grained": fine_grained,
    "spectral": spectral_residual,
}


def saliency_map(
    x: torch.Tensor,
    method: Union[str, Detector] = "fine_grained",
    value_range: Optional[Tuple[float, float]] = None,
    mean: Optional[Sequence[float]] = None,
    std: Optional[Sequence[float]] = None,
    validate: Optional[bool] = None,
) -> torch.Tensor:
    """Saliency maps ``(B, H, W)`` in [0, 1] by a named detector or a callable ``f(x) -> (B, H, W)``.

    A callable's maps are checked like the ``saliency=`` argument of the operators: shape and
    dtype always, finite non-negative values on CPU or with ``validate=True``.
    """
    if callable(method):
        from .._checks import check_saliency_maps

        return check_saliency_maps(method(x), x, validate)
    check_choice("method", method, tuple(DETECTORS))
    return DETECTORS[method](x, value_range=value_range, mean=mean, std=std, validate=validate)
