"""GuidedMixup (Kang & Kim, AAAI 2023), a baseline: a per-pixel blend of two images weighted by
their smoothed saliency, paired so that their salient regions overlap little (defined in
docs/methods.md in the repository).

Internal: import from randsaliencymix instead; may change without notice.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence, Tuple, Union

import torch

from . import _random as rnd
from ._checks import check_choice
from .base import DetectorMixer
from .pairing import complementary_pairing, guided_maps, saliency_distances
from .params import MixParams

__all__ = ["GuidedMixup", "guided_shares"]


def guided_shares(smoothed: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    """Per-pixel share of the *source* ``(B, 1, H, W)`` float32 for targets ``a = i`` and sources
    ``b = perm[i]`` of smoothed, sum-normalised maps ``S~`` (:func:`~randsaliencymix.pairing.guided_maps`):
    ``S~_b / (S~_a + S~_b)``, 0.5 where both are 0. The target keeps ``m = S~_a / (S~_a + S~_b)``."""
    a = smoothed.float()
    b = a.index_select(0, perm)
    total = a + b
    share = torch.where(total > 0, b / total.clamp(min=torch.finfo(torch.float32).tiny), 0.5)
    return share.unsqueeze(1)


class GuidedMixup(DetectorMixer):
    """GuidedMixup: each target ``a`` blended with its source ``b`` pixel by pixel, in proportion
    to their saliency.

    The saliency maps ``S`` (given as ``saliency=``, e.g. class activation maps for the paper's CAM
    variant, or computed by ``detector``: ``"spectral"``, this library's OpenCV-exact spectral
    residual, is the paper's "SR" variant) are blurred by a 7x7 Gaussian (sigma 3, reflect
    padding) and normalised to sum 1 (``S~``). The target keeps ``m = S~_a / (S~_a + S~_b)`` of
    every pixel (0.5 where both maps are 0): ``x' = m * x_a + (1 - m) * x_b`` in every channel, and
    label weights ``mean(m)`` (target) and ``1 - mean(m)`` (source), as applied.

    ``pairing``: ``"complementary"`` (the paper's greedy cycle: each target takes the remaining
    image whose smoothed map is farthest in L2, see
    :func:`~randsaliencymix.pairing.complementary_pairing`) or ``"random"`` (a random
    permutation). ``p``: probability that a sample is mixed (per sample; default 1, as in every
    operator of this library; the paper's ``mix_prob`` is 0.5 for the SR variant on CIFAR-100:
    ``GuidedMixup(p=0.5)``, the command line's method ``guidedmixup``). A given ``perm`` replaces
    the pairing.

    Differences from the official code: the SR maps come from the OpenCV-exact detector (the
    official code has its own torch spectral residual: grey, resized to 128x128 only when larger,
    a 3x3 box filter on the log spectrum, its own 7x7 Gaussian, no 64x64 resize), a map with no
    saliency counts as uniform (the official code divides by 0), and the greedy pairing never
    starts from a diagonal pair (see ``complementary_pairing``). The maps are normalised per image
    (``mean``/``std`` or ``value_range`` as for the other saliency operators).
    """

    def __init__(
        self,
        *,
        num_classes: Optional[int] = None,
        p: float = 1.0,
        pairing: str = "complementary",
        detector: Union[str, Callable[[torch.Tensor], torch.Tensor]] = "spectral",
        value_range: Optional[Tuple[float, float]] = None,
        mean: Optional[Sequence[float]] = None,
        std: Optional[Sequence[float]] = None,
        label_smoothing: float = 0.0,
        validate: Optional[bool] = None,
    ) -> None:
        super().__init__(
            detector=detector, value_range=value_range, mean=mean, std=std, num_classes=num_classes, p=p,
            label_smoothing=label_smoothing, validate=validate,
        )  # fmt: skip
        self.pairing = check_choice("pairing", pairing, ("complementary", "random"))

    @property
    def uses_saliency(self) -> bool:
        return True

    def draw_params(
        self,
        x: torch.Tensor,
        generator: torch.Generator,
        perm: Optional[torch.Tensor],
        saliency: Optional[torch.Tensor],
        labels: Optional[torch.Tensor] = None,
    ) -> MixParams:
        n, dev = x.shape[0], x.device
        height, width = int(x.shape[-2]), int(x.shape[-1])
        if saliency is None:
            saliency = self.detect(x)
        smoothed = guided_maps(saliency)
        if perm is None:
            if self.pairing == "complementary":
                perm = complementary_pairing(saliency_distances(smoothed))
            else:
                perm = rnd.permutation(n, generator, dev)
        applied = rnd.uniform(n, generator, dev) < self.p
        zero = torch.zeros((), dtype=torch.float32, device=dev)
        share = torch.where(applied[:, None, None, None], guided_shares(smoothed, perm), zero)
        # The label weight is the mean of the share map as it will be applied.
        weight = share.double().mean(dim=(1, 2, 3))
        boxes = torch.zeros(n, 4, dtype=torch.long, device=dev)
        return MixParams(
            perm=perm,
            lam=1.0 - weight,
            src_boxes=boxes,
            dst_boxes=boxes,
            eta=torch.ones(n, dtype=torch.float64, device=dev),
            mixup=torch.zeros(n, dtype=torch.bool, device=dev),
            applied=applied,
            source_weight=weight,
            image_size=(height, width),
            blended=True,
            share_map=share,
        )
