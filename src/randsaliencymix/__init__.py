"""RandSaliencyMix: saliency-guided mix augmentation for image classification, batched in torch."""

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
    "fine_grained",
    "saliency_map",
    "soft_target_cross_entropy",
    "source_share",
    "spectral_residual",
    "to_uint8",
    "window_mass",
]
