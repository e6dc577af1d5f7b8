"""RandSaliencyMix: saliency-guided mix augmentation for image classification, batched in torch.

Public: every name in ``__all__``: the operators (:class:`Mixer` and its subclasses), their
parameters (:class:`MixParams`, :func:`apply_mix`, :func:`source_share`, :func:`window_mass`), the
loss, :class:`MixCollate`, the self-CAM labels, the saliency sources, and ``SALIENCY_ON``, the
keyword arguments that switch RandSaliencyMix's saliency ideas on
(``RandSaliencyMix(num_classes=10, **SALIENCY_ON)``). The other public modules are
:mod:`randsaliencymix.saliency`, :mod:`randsaliencymix.reference`,
:mod:`randsaliencymix.integrations.timm` and :mod:`randsaliencymix.integrations.lightning`; every
other module is internal and may change without notice.
"""

from .apply import apply_mix
from .base import Mixer
from .collate import MixCollate
from .geometry import window_mass
from .guided import GuidedMixup
from .loss import SoftTargetCrossEntropy, soft_target_cross_entropy
from .mixing import CutMix, MixUp, NoMix, RandomChoiceMix, SaliencyMix
from .params import MixParams, source_share
from .randsaliency import SALIENCY_ON, RandSaliencyMix
from .saliency import (
    cam_and_logits,
    class_activation_maps,
    dataset_maps,
    fine_grained,
    saliency_map,
    spectral_residual,
    to_uint8,
)
from .selfcam import SelfCAMLabels, SelfCAMStep

__version__ = "0.1.0"

__all__ = [
    "CutMix",
    "GuidedMixup",
    "MixCollate",
    "MixParams",
    "MixUp",
    "Mixer",
    "NoMix",
    "RandomChoiceMix",
    "RandSaliencyMix",
    "SALIENCY_ON",
    "SaliencyMix",
    "SelfCAMLabels",
    "SelfCAMStep",
    "SoftTargetCrossEntropy",
    "apply_mix",
    "cam_and_logits",
    "class_activation_maps",
    "dataset_maps",
    "fine_grained",
    "saliency_map",
    "soft_target_cross_entropy",
    "source_share",
    "spectral_residual",
    "to_uint8",
    "window_mass",
]
