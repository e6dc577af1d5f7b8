"""Self-CAM labels: a mixed batch's label weights read from the model's own class activation maps
in the training forward that computes the loss, at no extra pass (``docs/methods.md``,
"Self-CAM labels"; TransMix does the analogue for vision transformers with attention).

For a mixed batch ``x'`` with its params and a model whose head is ``logits = W · pool(F) + b``
(found by structure, as for :func:`~randsaliencymix.cam_and_logits`), per sample ``i`` with target
class ``a`` and source class ``b`` (class indices; the argmax of probability rows):

1. ``s_i``: the source's share of ``x'_i`` as applied (:func:`~randsaliencymix.source_share`),
   area-averaged to the features' ``(h, w)``;
2. ``A_c = relu(Σ_d W[c, d] F_i[d])`` for ``c`` in ``{a, b}``, from that forward's features,
   detached and in float32 (also under autocast);
3. ``w_cam = E_b / (E_a + E_b)`` with ``E_b = Σ s_i A_b`` and ``E_a = Σ (1 − s_i) A_a``; where
   ``E_a + E_b == 0``, the applied area weight ``mean(s_i)``;
4. the source's label weight becomes ``(1 − kappa) · w + kappa · w_cam`` (``w`` the weight the
   operator applied), and the soft targets are rebuilt from the original labels with it (the
   operator's label smoothing as before);
5. unchanged: samples whose two classes are equal, samples not mixed, and samples whose share is
   the same at every pixel (MixUp, RandSaliencyMix's MixUp switch, a box over the whole image):
   a uniform share carries no spatial evidence.

No gradient flows through the targets, nothing is read on the host (value checks aside, as
everywhere: on CPU by default, or with ``validate=True``), and the work is two ``(B, D, h, w)``
products per step. In a training loop::

    labeler = SelfCAMLabels(model, kappa=0.5)
    step = labeler.step(op, x, y, generator=g)      # mixes (op.sample_params + op.apply_params)
    logits = model(step.images)                       # the one training forward, features captured
    loss = soft_target_cross_entropy(logits, step.targets)

Misuse is an error, never a silent label: a model without a pooled linear head, a forward on
another tensor than ``step.images``, a second forward before ``step.targets`` is read, no forward
at all, or a step replaced by a newer one before its targets were read.

Internal: import from randsaliencymix instead; may change without notice.
"""

from __future__ import annotations

from typing import Any, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ._checks import check_images, should_check_values, to_soft_targets
from .apply import mix_checked
from .base import Mixer, _class_indices
from .cam import _HEAD_ERROR, _active_dropout, _check_head_reproduces, _Recorder
from .params import MixParams, check_params, source_share

__all__ = ["SelfCAMLabels", "SelfCAMStep", "self_cam_weights"]


def _cell_cover(lo: torch.Tensor, hi: torch.Tensor, size: int, cells: int) -> torch.Tensor:
    """``(B, cells)``: the share of each adaptive-pooling cell along one axis (cell ``r`` spans
    ``[floor(r·size/cells), ceil((r+1)·size/cells))``) covered by ``[lo, hi)``, in float32."""
    r = torch.arange(cells, device=lo.device)
    start = (r * size) // cells
    end = ((r + 1) * size + cells - 1) // cells
    overlap = (torch.minimum(hi[:, None], end) - torch.maximum(lo[:, None], start)).clamp(min=0)
    return overlap.float() / (end - start).float()


def _share(params: MixParams, h: int, w: int, device: torch.device) -> Tuple[torch.Tensor, ...]:
    """``(s (B, h, w), area weight (B,), varies (B,))``: the source's share area-averaged to the
    features' grid, its image mean, and whether it differs between pixels. Boxes are separable, so
    their cells' averages come from the box edges directly (no (B, H, W) map is built); a per-pixel
    ``share_map`` is pooled."""
    height, width = params.image_size
    applied = params.applied.to(device)
    if params.share_map is not None:
        share = source_share(params, height, width, torch.float32).to(device)  # (B, 1, H, W)
        s = F.adaptive_avg_pool2d(share, (h, w))[:, 0]
        flat = share.flatten(1)
        return s, flat.mean(dim=1), flat.amax(dim=1) > flat.amin(dim=1)
    box = params.dst_boxes.to(device)
    eta = params.eta.to(device).float()
    mixup = params.mixup.to(device)
    patch = applied & ~mixup
    rows = _cell_cover(box[:, 0], box[:, 2], height, h)
    cols = _cell_cover(box[:, 1], box[:, 3], width, w)
    pixels = ((box[:, 2] - box[:, 0]).clamp(min=0) * (box[:, 3] - box[:, 1]).clamp(min=0)).float()
    inside = eta * patch.float()
    mix = ((1.0 - params.lam.to(device)).float() * (applied & mixup).float())[:, None, None]
    s = inside[:, None, None] * rows[:, :, None] * cols[:, None, :] + mix.expand(-1, h, w)
    area = inside * pixels / float(height * width) + mix[:, 0, 0]
    varies = patch & (eta > 0) & (pixels > 0) & (pixels < height * width)
    return s, area, varies


def self_cam_weights(
    features: torch.Tensor, head_weight: torch.Tensor, params: MixParams, classes: torch.Tensor
) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(w_cam, evidence)``, both ``(B,)``: the source weight read from the features (steps
    1-3 of the module docstring, float32) and where it applies (bool: mixed, two different classes,
    a share that varies over the image). ``features`` ``(B, D, h, w)`` of the forward of the images
    ``params`` made, ``head_weight`` ``(K, D)``, ``classes`` ``(B,)`` the class index of each
    original sample. Pure, without gradient; shapes are the caller's to check."""
    with torch.no_grad(), torch.autocast(features.device.type, enabled=False):
        f = features.detach().float()
        s, area, varies = _share(params, int(f.shape[-2]), int(f.shape[-1]), f.device)
        w = head_weight.detach().float().to(f.device)
        a = classes.to(f.device).long()
        b = a.index_select(0, params.perm.to(f.device))
        act_a = torch.einsum("bdhw,bd->bhw", f, w.index_select(0, a)).clamp_(min=0.0)
        act_b = torch.einsum("bdhw,bd->bhw", f, w.index_select(0, b)).clamp_(min=0.0)
        e_b = (s * act_b).sum(dim=(1, 2))
        e_a = ((1.0 - s) * act_a).sum(dim=(1, 2))
        total = e_a + e_b
        w_cam = torch.where(total > 0, e_b / total.clamp(min=torch.finfo(torch.float32).tiny), area)
        evidence = params.applied.to(f.device) & (a != b) & varies
    return w_cam, evidence


class SelfCAMStep:
    """One mixing step whose targets wait for the training forward: ``images`` to give the model
    (once, unchanged), then ``targets`` (``(B, K)``, no gradient). Made by :meth:`SelfCAMLabels.step`;
    usable as a context manager (the capture is closed on exit; ``targets`` stays readable)."""

    def __init__(
        self, labeler: SelfCAMLabels, images: torch.Tensor, soft: torch.Tensor, params: MixParams, classes: torch.Tensor
    ) -> None:
        self.images = images
        self.params = params
        self._labeler = labeler
        self._soft = soft  # (B, K) original targets, smoothed as the operator smooths
        self._classes = classes
        self._recorder = _Recorder()
        self._forwards = 0
        self._foreign: Optional[str] = None
        self._logits: Optional[torch.Tensor] = None
        self._targets: Optional[torch.Tensor] = None
        self._source_weight: Optional[torch.Tensor] = None
        model = labeler.model
        leaves = [m for m in model.modules() if next(iter(m.children()), None) is None]
        # the leaves' hooks record the first forward only (they go when it ends); the model's own
        # count every forward until the targets are read
        self._leaf_hooks: List[Any] = [m.register_forward_hook(self._recorder) for m in leaves]
        self._hooks: List[Any] = [
            model.register_forward_pre_hook(self._before),
            model.register_forward_hook(self._after),
        ]

    # -- hooks on the model ---------------------------------------------------------------------
    def _before(self, module: nn.Module, inputs: Any) -> None:
        self._forwards += 1
        first = inputs[0] if isinstance(inputs, tuple) and inputs else None
        if first is not self.images and self._foreign is None:
            self._foreign = type(first).__name__ if not isinstance(first, torch.Tensor) else "another tensor"

    def _after(self, module: nn.Module, inputs: Any, output: Any) -> None:
        if self._forwards == 1:
            self._logits = output if isinstance(output, torch.Tensor) else None
            self._remove(self._leaf_hooks)

    @staticmethod
    def _remove(hooks: List[Any]) -> None:
        for hook in hooks:
            hook.remove()
        hooks.clear()

    def close(self) -> None:
        """Remove the step's hooks from the model (idempotent; ``targets`` still works afterwards)."""
        self._remove(self._leaf_hooks)
        self._remove(self._hooks)

    def __enter__(self) -> SelfCAMStep:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the targets -------------------------------------------------------------------------------
    @property
    def targets(self) -> torch.Tensor:
        """The soft targets ``(B, K)`` with self-CAM source weights (read after the one forward)."""
        if self._targets is None:
            self._targets = self._compute()
        return self._targets

    def _compute(self) -> torch.Tensor:
        self.close()
        if self._labeler._current is self:
            self._labeler._current = None
        if self._forwards == 0:
            raise RuntimeError(
                "Expected one forward of the model on step.images before reading step.targets, but got none instead."
            )
        if self._forwards > 1:
            raise RuntimeError(
                "Expected one forward of the model between SelfCAMLabels.step() and step.targets, "
                f"but got {self._forwards} instead (make a new step for each forward)."
            )
        if self._foreign is not None:
            raise RuntimeError(
                f"Expected the model's input to be step.images itself, but got {self._foreign} instead "
                "(convert or move the images before step(), not between step() and the forward)."
            )
        logits = self._logits
        if logits is None or logits.ndim != 2 or logits.shape[0] != self.images.shape[0]:
            got = tuple(logits.shape) if isinstance(logits, torch.Tensor) else "no tensor"
            raise ValueError(_HEAD_ERROR.format(f"a model whose output is {got}, not (B, K) logits"))
        features, pooled, head = self._recorder.features_and_head(int(self.images.shape[0]))
        if head.out_features != self._soft.shape[1]:
            raise ValueError(
                f"Expected a head with one row per class ({self._soft.shape[1]}), "
                f"but got {head.out_features} rows instead."
            )
        validate = self._labeler.validate
        if should_check_values(logits, validate) and not _active_dropout(self._labeler.model):
            _check_head_reproduces(pooled.detach().to(head.weight.dtype), head, logits.detach())  # autocast has ended
        params, kappa = self.params, self._labeler.kappa
        w_cam, evidence = self_cam_weights(features, head.weight, params, self._classes)
        applied = params.source_weight.to(w_cam.device)
        mixed = (1.0 - kappa) * applied + kappa * w_cam.double()
        self._source_weight = torch.where(evidence, mixed, applied)
        weight = self._source_weight.to(self._soft.device, self._soft.dtype)[:, None]
        return torch.lerp(self._soft, self._soft.index_select(0, params.perm), weight).detach()

    @property
    def source_weight(self) -> torch.Tensor:
        """``(B,)`` float64: each source's label weight in ``targets`` (the operator's where unchanged)."""
        _ = self.targets
        assert self._source_weight is not None  # set with the targets
        return self._source_weight


class SelfCAMLabels:
    """Self-CAM labels for one model (see the module's docstring): :meth:`step` mixes a batch with
    an operator and captures the features of the model's next forward; the step's ``targets`` then
    carry the self-CAM source weights.

    ``model``: the classifier being trained (its head global pooling then one linear layer; a
    ``DistributedDataParallel`` or ``LightningModule`` around it works too). ``kappa`` in ``[0, 1]``:
    the share of the self-CAM weight in the label (0: the operator's own labels). ``validate``: value
    checks (the head reproduces the logits, the operator's checks) as everywhere: ``None`` on CPU only.
    """

    def __init__(self, model: nn.Module, *, kappa: float, validate: Optional[bool] = None) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"Expected model to be a torch.nn.Module, but got {type(model).__name__} instead.")
        if isinstance(kappa, bool) or not isinstance(kappa, (int, float)) or not 0.0 <= float(kappa) <= 1.0:
            raise ValueError(f"Expected kappa in [0, 1], but got {kappa!r} instead.")
        if validate is not None and not isinstance(validate, bool):
            raise TypeError(f"Expected validate as None, True or False, but got {validate!r} instead.")
        self.model = model
        self.kappa = float(kappa)
        self.validate = validate
        self._current: Optional[SelfCAMStep] = None

    def __repr__(self) -> str:
        return f"SelfCAMLabels(model={type(self.model).__name__}, kappa={self.kappa}, validate={self.validate})"

    def step(
        self,
        op: Mixer,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        params: Optional[MixParams] = None,
        generator: Optional[torch.Generator] = None,
        perm: Optional[torch.Tensor] = None,
        saliency: Optional[torch.Tensor] = None,
        out: Optional[torch.Tensor] = None,
    ) -> SelfCAMStep:
        """Mix ``x`` and ``y`` with ``op`` (its ``params``, or drawn as ``op(x, y, generator=...,
        perm=..., saliency=...)`` draws them: the same images) and arm the capture of the next
        forward. Raises if the previous step's targets were never read (its forward would be lost)."""
        if not isinstance(op, Mixer):
            raise TypeError(f"Expected op to be a randsaliencymix Mixer, but got {type(op).__name__} instead.")
        previous = self._current
        if previous is not None:
            previous.close()
            self._current = None
            if previous._forwards:
                raise RuntimeError(
                    "Expected step.targets of the previous step to be read before the next step, "
                    "but got a new step instead (its forward's labels would be lost)."
                )
        x = check_images(x, op.validate)
        soft = to_soft_targets(y, x.shape[0], op.num_classes, op.label_smoothing, op.validate)
        if params is None:
            params = op.sample_params(x, y, generator=generator, perm=perm, saliency=saliency)
        else:
            params = check_params(params, x, op.validate)
        images, _ = mix_checked(x, soft, params, out=out)
        step = SelfCAMStep(self, images, soft, params, _class_indices(y, x.device))
        self._current = step
        return step
