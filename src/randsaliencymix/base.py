"""The base class of every mixing operator, and of users' own: :class:`Mixer`.

An operator is a sampler of :class:`~randsaliencymix.params.MixParams` plus the one shared, pure
:func:`~randsaliencymix.params.apply_mix`:

* ``op.sample_params(x, generator=...) -> MixParams`` validates the call and asks the operator's
  :meth:`Mixer.draw_params` for everything random (permutation, lam, boxes, blend strength,
  switches) and the label weights;
* ``op.apply(x, y, params)`` mixes images and targets and is deterministic;
* ``op(x, y, params=None, generator=None)`` does both.
"""

from __future__ import annotations

from typing import Callable, Optional, Tuple, Union, overload

import torch
from torch import nn

from . import _random as rnd
from ._checks import (
    check_images,
    check_num_classes,
    check_perm,
    check_probability,
    check_saliency_maps,
    to_soft_targets,
)
from .params import MixParams, apply_mix, check_params

__all__ = ["Mixer"]


class Mixer(nn.Module):
    """Base class of the mixing operators: validation, soft targets, ``forward`` = sample + apply.

    To write an operator, subclass it, call ``super().__init__(num_classes=..., p=...,
    label_smoothing=..., validate=...)`` and implement :meth:`draw_params`. ``sample_params``,
    ``apply`` and ``forward`` then validate every input, turn labels into soft targets (with
    label smoothing) and mix with :func:`~randsaliencymix.apply_mix`. For example, the left half
    of each source pasted over the left half of its target, with probability ``p`` per sample::

        class HalfMix(Mixer):
            def draw_params(self, x, generator, perm, saliency):
                n, (h, w), dev = x.shape[0], x.shape[-2:], x.device
                if perm is None:
                    perm = torch.randperm(n, generator=generator, device=dev)
                applied = torch.rand(n, generator=generator, device=dev, dtype=torch.float64) < self.p
                box = torch.tensor([0, 0, h, w // 2], device=dev).expand(n, 4)
                box = torch.where(applied[:, None], box, torch.zeros_like(box))
                area = ((box[:, 2] - box[:, 0]) * (box[:, 3] - box[:, 1])).double() / (h * w)
                return dataclasses.replace(
                    MixParams.identity(n, (h, w), dev),
                    perm=perm, src_boxes=box, dst_boxes=box, applied=applied, source_weight=area,
                )

    Arguments (keyword only): ``num_classes`` (needed for ``(B,)`` class-index labels), ``p`` (the
    probability of mixing, for the subclass to use), ``label_smoothing`` (applied to the soft
    targets), ``validate`` (check tensor values, which needs a host synchronisation: ``True`` on
    any device, ``None`` only on CPU, ``False`` never; shapes and dtypes are always checked).
    """

    def __init__(
        self,
        *,
        num_classes: Optional[int] = None,
        p: float = 1.0,
        label_smoothing: float = 0.0,
        validate: Optional[bool] = None,
    ) -> None:
        super().__init__()
        self.num_classes = check_num_classes(num_classes)
        self.p = check_probability("p", p)
        self.label_smoothing = check_probability("label_smoothing", label_smoothing)
        self.validate = validate

    # -- the hook a subclass implements ---------------------------------------------------
    def draw_params(
        self,
        x: torch.Tensor,
        generator: torch.Generator,
        perm: Optional[torch.Tensor],
        saliency: Optional[torch.Tensor],
    ) -> MixParams:
        """Draw the parameters of one mixing step for the batch ``x`` ``(B, C, H, W)``.

        Called by :meth:`sample_params` and :meth:`forward` after validation, with:
        ``generator`` the generator to draw every random number from (on ``x``'s device; never
        ``None``), ``perm`` the caller's pairing (a checked ``(B,)`` long tensor: target ``i`` gets
        source ``perm[i]``) or ``None`` to draw one, and ``saliency`` the caller's ``(B, H, W)``
        maps of ``x`` (checked, detached) or ``None``. ``x`` may require grad: read
        ``x.detach()``. Return a :class:`MixParams` with ``image_size=(H, W)``; draw without host
        synchronisation (no ``.item()``, ``.cpu()``, ``nonzero``) to keep the operator fast on GPU.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement draw_params(x, generator, perm, saliency)")

    # -- public API ----------------------------------------------------------------------
    def sample_params(
        self,
        x: torch.Tensor,
        y: Optional[torch.Tensor] = None,
        generator: Optional[torch.Generator] = None,
        perm: Optional[torch.Tensor] = None,
        saliency: Optional[torch.Tensor] = None,
    ) -> MixParams:
        """Draw the parameters of one mixing step for the batch ``x`` (``y`` is not needed).

        ``perm`` fixes the pairing (target ``i`` gets source ``perm[i]``) instead of drawing it;
        ``saliency`` gives precomputed ``(B, H, W)`` maps of ``x`` to the saliency-based operators.
        """
        check_images(x, self.validate)
        return self._checked_sample(x, generator, perm, saliency)

    def _checked_sample(
        self,
        x: torch.Tensor,
        generator: Optional[torch.Generator],
        perm: Optional[torch.Tensor],
        saliency: Optional[torch.Tensor],
    ) -> MixParams:
        gen = rnd.pick_generator(generator, x.device)
        if perm is not None:
            perm = check_perm(perm, x, self.validate)
        if saliency is not None:
            saliency = check_saliency_maps(saliency, x, self.validate).detach()
        return self._draw_checked(x, gen, perm, saliency)

    def _draw_checked(
        self,
        x: torch.Tensor,
        generator: torch.Generator,
        perm: Optional[torch.Tensor],
        saliency: Optional[torch.Tensor],
    ) -> MixParams:
        """:meth:`draw_params`, its result checked (type, batch size, image size)."""
        params = self.draw_params(x, generator, perm, saliency)
        if not isinstance(params, MixParams):
            raise TypeError(f"Expected draw_params to return MixParams, but got {type(params).__name__} instead.")
        return check_params(params, x)

    @overload
    def apply(self, x: Callable[[nn.Module], None]) -> Mixer: ...

    @overload
    def apply(self, x: torch.Tensor, y: torch.Tensor, params: MixParams) -> Tuple[torch.Tensor, torch.Tensor]: ...

    def apply(
        self,
        x: Union[torch.Tensor, Callable[[nn.Module], None]],
        y: Optional[torch.Tensor] = None,
        params: Optional[MixParams] = None,
    ) -> Union[Mixer, Tuple[torch.Tensor, torch.Tensor]]:
        """Mix ``x`` and ``y`` with given parameters; ``y`` as ``(B,)`` indices or ``(B, K)`` probabilities.

        Called with one function instead, it is :meth:`torch.nn.Module.apply` (so that
        ``model.apply(init_fn)`` still walks a model that holds an operator).
        """
        if callable(x) and not isinstance(x, torch.Tensor) and y is None and params is None:
            return super().apply(x)
        x = check_images(x, self.validate)
        soft = to_soft_targets(y, x.shape[0], self.num_classes, self.label_smoothing, self.validate)
        return apply_mix(x, soft, check_params(params, x))

    def forward(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        params: Optional[MixParams] = None,
        generator: Optional[torch.Generator] = None,
        perm: Optional[torch.Tensor] = None,
        saliency: Optional[torch.Tensor] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Mix a batch: ``x (B, C, H, W)``, ``y (B,)`` or ``(B, K)`` -> ``(x', y' (B, K))``."""
        check_images(x, self.validate)
        soft = to_soft_targets(y, x.shape[0], self.num_classes, self.label_smoothing, self.validate)
        if params is None:
            params = self._checked_sample(x, generator, perm, saliency)
        return apply_mix(x, soft, params)

    # -- helpers for the library's operators ------------------------------------------------
    def _coins(self, n: int, per_sample: bool, gen: torch.Generator, dev: torch.device) -> torch.Tensor:
        u = rnd.uniform(n if per_sample else 1, gen, dev)
        return (u < self.p).expand(n)

    def _lam(self, alpha: float, n: int, per_sample: bool, gen: torch.Generator, dev: torch.device) -> torch.Tensor:
        return rnd.beta(alpha, n if per_sample else 1, gen, dev).expand(n).contiguous()
