"""Mixing operators: MixUp, CutMix, SaliencyMix (official and per-sample), RandSaliencyMix, and the
no-mixing and random-choice wrappers.

Every operator is a :class:`Mixer`: a sampler of :class:`MixParams` plus the one shared, pure
:func:`apply_mix` (see :mod:`randsaliencymix.base` and :mod:`randsaliencymix.params`):

* ``op.sample_params(x, generator=...) -> MixParams`` draws everything random from the caller's
  generator and computes the label weights;
* ``op.apply_params(x, y, params)`` (or :func:`apply_mix`) mixes images and targets and is deterministic;
* ``op(x, y, params=None, generator=None)`` does both.

Row ``i`` is the target, row ``perm[i]`` its source (the conventions of docs/methods.md in the
repository). Every constructor takes keyword arguments only (``RandomChoiceMix`` takes its
operators first).

Internal: import from randsaliencymix instead; may change without notice.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import fields
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union, cast

import torch
from torch import nn

from . import _random as rnd
from ._checks import (
    check_choice,
    check_images,
    check_nonnegative,
    check_positive,
    check_saliency_maps,
    to_soft_targets,
)
from .apply import apply_mix, mix_checked
from .base import DetectorMixer, Mixer
from .geometry import box_area_share, box_sides, centred_boxes, peak_of_quantised, window_mass
from .params import MixParams, _unmixed_params, source_share
from .randsaliency import SALIENCY_ON, RandSaliencyMix

__all__ = [
    "SALIENCY_ON",
    "CutMix",
    "MixParams",
    "MixUp",
    "Mixer",
    "NoMix",
    "RandSaliencyMix",
    "RandomChoiceMix",
    "SaliencyMix",
    "apply_mix",
    "source_share",
    "window_mass",
]


def _draw_perm(n: int, generator: torch.Generator, dev: torch.device, perm: Optional[torch.Tensor]) -> torch.Tensor:
    return rnd.permutation(n, generator, dev) if perm is None else perm


class NoMix(Mixer):
    """Identity (the "no mixing" baseline): returns the images and their (smoothed) soft targets.

    ``op(x, y)`` returns ``x`` itself, not a copy (as ``nn.Identity`` does: nothing is mixed, so
    nothing is read or written; ``out=`` still receives a copy), and draws nothing from the
    generator. ``sample_params`` gives the identity params, which ``apply_params`` and ``apply_mix`` apply
    as any other (a copy)."""

    def __init__(
        self, *, num_classes: Optional[int] = None, label_smoothing: float = 0.0, validate: Optional[bool] = None
    ) -> None:
        super().__init__(num_classes=num_classes, p=0.0, label_smoothing=label_smoothing, validate=validate)

    def forward(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        params: Optional[MixParams] = None,
        generator: Optional[torch.Generator] = None,
        perm: Optional[torch.Tensor] = None,
        saliency: Optional[torch.Tensor] = None,
        out: Optional[torch.Tensor] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        if params is not None or perm is not None:  # the general path checks and applies them
            return super().forward(x, y, params=params, generator=generator, perm=perm, saliency=saliency, out=out)
        check_images(x, self.validate)
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"Expected generator to be a torch.Generator, but got {type(generator).__name__} instead.")
        soft = to_soft_targets(y, x.shape[0], self.num_classes, self.label_smoothing, self.validate)
        if saliency is not None:
            check_saliency_maps(saliency, x, self.validate)  # checked as every operator checks them
        if out is None:
            return x, soft
        return mix_checked(x, soft, _unmixed_params(x.shape[0], (x.shape[-2], x.shape[-1]), x.device), out=out)

    def draw_params(
        self,
        x: torch.Tensor,
        generator: torch.Generator,
        perm: Optional[torch.Tensor],
        saliency: Optional[torch.Tensor],
        labels: Optional[torch.Tensor] = None,
    ) -> MixParams:
        return _unmixed_params(x.shape[0], (x.shape[-2], x.shape[-1]), x.device)


class _BatchOrSampleMixer(Mixer):
    """An operator whose lam (and box) and coin are drawn per batch or per sample (``mode``)."""

    def __init__(
        self,
        *,
        alpha: float = 1.0,
        num_classes: Optional[int] = None,
        p: float = 1.0,
        mode: str = "batch",
        label_smoothing: float = 0.0,
        validate: Optional[bool] = None,
    ) -> None:
        super().__init__(num_classes=num_classes, p=p, label_smoothing=label_smoothing, validate=validate)
        self.alpha = check_positive("alpha", alpha)
        self.mode = check_choice("mode", mode, ("batch", "sample"))


class MixUp(_BatchOrSampleMixer):
    """MixUp (Zhang et al., 2018): ``x' = lam x + (1 - lam) x[perm]``, the same for the labels."""

    def draw_params(
        self,
        x: torch.Tensor,
        generator: torch.Generator,
        perm: Optional[torch.Tensor],
        saliency: Optional[torch.Tensor],
        labels: Optional[torch.Tensor] = None,
    ) -> MixParams:
        n, dev = x.shape[0], x.device
        per_sample = self.mode == "sample"
        perm = _draw_perm(n, generator, dev, perm)
        lam = self._lam(self.alpha, n, per_sample, generator, dev)
        applied = self._coins(n, per_sample, generator, dev)
        boxes = torch.zeros(n, 4, dtype=torch.long, device=dev)
        return MixParams(
            perm=perm,
            lam=lam,
            src_boxes=boxes,
            dst_boxes=boxes,
            eta=torch.ones(n, dtype=torch.float64, device=dev),
            mixup=torch.ones(n, dtype=torch.bool, device=dev),
            applied=applied,
            source_weight=torch.where(applied, 1.0 - lam, torch.zeros_like(lam)),
            image_size=(x.shape[-2], x.shape[-1]),
            patches=False,
        )


def _centred_box_params(
    perm: torch.Tensor,
    lam: torch.Tensor,
    applied: torch.Tensor,
    centre_r: torch.Tensor,
    centre_c: torch.Tensor,
    height: int,
    width: int,
) -> MixParams:
    """CutMix's and SaliencyMix's step: the box of side ``sqrt(1 - lam)`` centred on the given
    centre and clipped, pasted at the same place (hard), weighted by the area it covers."""
    h, w = box_sides(lam, height, width)
    boxes = centred_boxes(centre_r, centre_c, h, w, height, width)
    boxes = torch.where(applied[:, None], boxes, torch.zeros_like(boxes))
    n, dev = perm.shape[0], perm.device
    return MixParams(
        perm=perm,
        lam=lam,
        src_boxes=boxes,
        dst_boxes=boxes,
        eta=torch.ones(n, dtype=torch.float64, device=dev),
        mixup=torch.zeros(n, dtype=torch.bool, device=dev),
        applied=applied,
        source_weight=box_area_share(boxes, height, width),
        image_size=(height, width),
        blended=False,
    )


class CutMix(_BatchOrSampleMixer):
    """CutMix (Yun et al., 2019): a random box of the source pasted at the same place.

    ``mode="batch"`` is the official code (one lam, box and coin per batch); ``"sample"`` draws
    them per sample. ``lam`` is recomputed from the clipped box.
    """

    def draw_params(
        self,
        x: torch.Tensor,
        generator: torch.Generator,
        perm: Optional[torch.Tensor],
        saliency: Optional[torch.Tensor],
        labels: Optional[torch.Tensor] = None,
    ) -> MixParams:
        n, dev = x.shape[0], x.device
        height, width = x.shape[-2:]
        per_sample = self.mode == "sample"
        m = n if per_sample else 1
        perm = _draw_perm(n, generator, dev, perm)
        lam = self._lam(self.alpha, n, per_sample, generator, dev)
        centre_r = torch.randint(height, (m,), generator=generator, device=dev).expand(n)
        centre_c = torch.randint(width, (m,), generator=generator, device=dev).expand(n)
        applied = self._coins(n, per_sample, generator, dev)
        return _centred_box_params(perm, lam, applied, centre_r, centre_c, height, width)


class SaliencyMix(DetectorMixer):
    """SaliencyMix (Uddin et al., 2021): the box around the source's saliency peak, same place.

    ``variant="per_sample"`` (the default) is the method as the paper describes it: each source has
    its own correctly computed map (batched detector, reading ``x.detach()``), lam, peak and box.
    Maps are read clipped to [0, 1].

    ``variant="official"`` (opt-in) reproduces the authors' code: one lam, one box and one coin per
    batch, the box taken from OpenCV's fine-grained map of ``x[perm[0]]`` *as the tensor holds it*
    (normalised float, channels last; OpenCV then reads float pixels as bytes, so the map is near
    noise). It needs the ``opencv`` extra and copies that one image to the host. OpenCV gets what
    the authors' training loop would hold: a float32 image (float16, bfloat16 and float64 images,
    which OpenCV cannot read, are cast to float32 first), or a uint8 image as is. The harness's
    method ``saliencymix`` is this variant; ``saliencymix_per_sample`` is the default one. (``variant``,
    not ``mode``: ``mode`` means per-batch or per-sample draws in the other operators.)
    """

    def __init__(
        self,
        *,
        alpha: float = 1.0,
        num_classes: Optional[int] = None,
        p: float = 1.0,
        variant: str = "per_sample",
        detector: Union[str, Callable[[torch.Tensor], torch.Tensor]] = "fine_grained",
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
        self.alpha = check_positive("alpha", alpha)
        self.variant = check_choice("variant", variant, ("official", "per_sample"))

    @property
    def uses_saliency(self) -> bool:
        """The per-sample variant reads maps (given ones too); the official variant reads only its own OpenCV map."""
        return self.variant == "per_sample"

    def draw_params(
        self,
        x: torch.Tensor,
        generator: torch.Generator,
        perm: Optional[torch.Tensor],
        saliency: Optional[torch.Tensor],
        labels: Optional[torch.Tensor] = None,
    ) -> MixParams:
        n, dev = x.shape[0], x.device
        height, width = x.shape[-2:]
        perm = _draw_perm(n, generator, dev, perm)
        if self.variant == "official":
            if saliency is not None:  # would be silently ignored: the authors' code reads its own map
                raise ValueError(
                    "Expected no saliency maps for SaliencyMix(variant='official'), which computes the authors' "
                    "OpenCV map itself, but got maps instead; use variant='per_sample' to read given maps."
                )
            lam = self._lam(self.alpha, n, False, generator, dev)
            applied = self._coins(n, False, generator, dev)
            peak_r, peak_c = _official_peak(x[perm[0]])
            centre_r = torch.full((n,), peak_r, dtype=torch.long, device=dev)
            centre_c = torch.full((n,), peak_c, dtype=torch.long, device=dev)
        else:
            lam = self._lam(self.alpha, n, True, generator, dev)
            applied = self._coins(n, True, generator, dev)
            if saliency is None:
                saliency = self.detect(x)
            centre_r, centre_c = peak_of_quantised(saliency.index_select(0, perm))
        return _centred_box_params(perm, lam, applied, centre_r, centre_c, height, width)


def _official_peak(image_chw: torch.Tensor) -> Tuple[int, int]:
    """The authors' saliency_bbox peak: OpenCV on the CHW tensor transposed to HWC, as given
    (float32, or uint8; other float dtypes cast to float32 as a float32 training loop holds them)."""
    import numpy as np

    from .reference import opencv_saliency_hwc

    img = image_chw.detach()
    if img.is_floating_point() and img.dtype != torch.float32:
        img = img.float()  # OpenCV has no float16 or float64 colour path; the authors' loop holds float32
    hwc = img.cpu().numpy().transpose(1, 2, 0)
    if hwc.shape[-1] == 1:
        hwc = hwc[..., 0]
    saliency = opencv_saliency_hwc(hwc, "fine_grained")
    quantised = (saliency * 255).astype("uint8")
    r, c = np.unravel_index(np.argmax(quantised, axis=None), quantised.shape)
    return int(r), int(c)


class RandomChoiceMix(Mixer):
    """Pick one of several operators with given probabilities, per batch or per sample.

    Every operator samples its parameters for the whole batch (so no host synchronisation is
    needed to branch) and the chosen one is kept per batch or per sample. ``p`` applies on top.
    """

    def __init__(
        self,
        ops: Sequence[Mixer],
        *,
        probs: Optional[Sequence[float]] = None,
        mode: str = "batch",
        num_classes: Optional[int] = None,
        p: float = 1.0,
        label_smoothing: float = 0.0,
        validate: Optional[bool] = None,
    ) -> None:
        super().__init__(num_classes=num_classes, p=p, label_smoothing=label_smoothing, validate=validate)
        if (
            not isinstance(ops, (list, tuple, nn.ModuleList))
            or len(ops) == 0
            or not all(isinstance(o, Mixer) for o in ops)
        ):
            raise TypeError("Expected a non-empty sequence of mixing operators, but got something else instead.")
        if probs is None:
            probs = [1.0 / len(ops)] * len(ops)
        if len(probs) != len(ops):
            raise ValueError(f"Expected {len(ops)} probabilities, one per operator, but got {len(probs)} instead.")
        for q in probs:
            check_nonnegative("probs", q)
        if not math.isclose(sum(probs), 1.0, abs_tol=1e-6):
            raise ValueError(f"Expected probs that sum to 1, but got a sum of {sum(probs):.6f} instead.")
        self.ops = nn.ModuleList(ops)
        self.probs = [float(q) for q in probs]
        self.mode = check_choice("mode", mode, ("batch", "sample"))

    @property
    def uses_labels(self) -> bool:
        return any(cast(Mixer, op).uses_labels for op in self.ops)

    @property
    def uses_saliency(self) -> bool:
        return any(cast(Mixer, op).uses_saliency for op in self.ops)

    @property
    def learns_from_model(self) -> bool:
        return any(cast(Mixer, op).learns_from_model for op in self.ops)

    def observe(self, logits: torch.Tensor, targets: torch.Tensor) -> None:
        """Every operator observes the step (see :meth:`Mixer.observe`)."""
        for op in self.ops:
            cast(Mixer, op).observe(logits, targets)

    def _shared_maps(self, x: torch.Tensor, saliency: Optional[torch.Tensor]) -> List[Optional[torch.Tensor]]:
        """The maps each operator reads: the given ones, else each detector's maps computed once per
        batch and shared by every operator that reads the same detector on the same normalisation
        (three RandSaliencyMix settings run the fine-grained detector once, not three times). The
        maps are the ones each would compute itself: the draws are unchanged."""
        if saliency is not None:
            return [saliency] * len(self.ops)
        computed: Dict[Tuple[object, ...], torch.Tensor] = {}
        out: List[Optional[torch.Tensor]] = []
        for op in self.ops:
            if not isinstance(op, DetectorMixer) or not op.uses_saliency:
                out.append(None)  # no maps read, or a composite that shares its own
                continue
            det = op.detector if isinstance(op.detector, str) else id(op.detector)
            key = (
                det,
                op.value_range,
                None if op.mean is None else tuple(op.mean),
                None if op.std is None else tuple(op.std),
            )
            if key not in computed:
                computed[key] = op.detect(x)
            out.append(computed[key])
        return out

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
        with self._governed():  # this operator's validate governs its sub-operators' checks
            maps = self._shared_maps(x, saliency)
            all_params: List[MixParams] = [
                cast(Mixer, op)._draw_checked(x, generator, perm, maps[i], labels) for i, op in enumerate(self.ops)
            ]
        cdf = torch.tensor(list(itertools.accumulate(self.probs)), dtype=torch.float64, device=dev)
        u = rnd.uniform(n if self.mode == "sample" else 1, generator, dev)
        choice = torch.searchsorted(cdf, u, right=True).clamp(max=len(self.ops) - 1).expand(n)
        applied = (rnd.uniform(n if self.mode == "sample" else 1, generator, dev) < self.p).expand(n)
        per_pixel = any(q.share_map is not None for q in all_params)
        noisy = any(q.noise is not None for q in all_params)
        merged: Dict[str, Optional[torch.Tensor]] = {}
        for f in fields(MixParams):
            if f.name in ("image_size", "shifted", "blended", "perm_is_permutation", "patches"):
                continue
            if f.name == "share_map":
                if not per_pixel:
                    merged[f.name] = None
                    continue
                # Box operators' shares as maps, so that every sample has one.
                values = [
                    q.share_map if q.share_map is not None else source_share(q, height, width) for q in all_params
                ]
            elif f.name == "noise":
                if not noisy:
                    merged[f.name] = None
                    continue
                values = [q.noise if q.noise is not None else torch.zeros(x.shape, device=dev) for q in all_params]
            else:
                values = [getattr(q, f.name) for q in all_params]
            stacked = torch.stack([v.float() if f.name in ("share_map", "noise") else v for v in values])
            index = choice.reshape(1, n, *([1] * (stacked.ndim - 2))).expand(1, *stacked.shape[1:])
            merged[f.name] = stacked.gather(0, index).squeeze(0)
        applied_t = cast(torch.Tensor, merged["applied"]) & applied
        weight = cast(torch.Tensor, merged["source_weight"])
        return MixParams(
            perm=cast(torch.Tensor, merged["perm"]),
            lam=cast(torch.Tensor, merged["lam"]),
            src_boxes=cast(torch.Tensor, merged["src_boxes"]),
            dst_boxes=cast(torch.Tensor, merged["dst_boxes"]),
            eta=cast(torch.Tensor, merged["eta"]),
            mixup=cast(torch.Tensor, merged["mixup"]) & applied,
            applied=applied_t,
            source_weight=torch.where(applied, weight, torch.zeros_like(weight)),
            image_size=(height, width),
            shifted=any(q.shifted for q in all_params),
            patches=any(q.patches for q in all_params),
            blended=any(q.blended for q in all_params) or per_pixel,
            share_map=merged["share_map"],
            noise=merged["noise"],
            # Per-sample choices among operators that drew their own pairings mix rows of several
            # permutations: sources are then not a permutation of the batch.
            perm_is_permutation=all(q.perm_is_permutation for q in all_params)
            and (self.mode == "batch" or perm is not None or len(all_params) == 1),
        )
