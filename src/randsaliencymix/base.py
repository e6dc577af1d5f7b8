"""The base class of every mixing operator, and of users' own: :class:`Mixer`.

An operator is a sampler of :class:`~randsaliencymix.params.MixParams` plus the one shared, pure
:func:`~randsaliencymix.apply.apply_mix`:

* ``op.sample_params(x, generator=...) -> MixParams`` validates the call and asks the operator's
  :meth:`Mixer.draw_params` for everything random (permutation, lam, boxes, blend strength,
  switches) and the label weights;
* ``op.apply_params(x, y, params)`` mixes images and targets and is deterministic;
* ``op(x, y, params=None, generator=None)`` does both.

Operators whose draws depend on the batch's labels (RandSaliencyMix's confusion pairing) say so
with :attr:`Mixer.uses_labels` and read the ``labels`` argument of :meth:`Mixer.draw_params`, the
one sampling hook; operators that
learn from the model's outputs implement :meth:`Mixer.observe` (a no-op for the others), so a
training loop can call ``op.observe(logits, y)`` after every step whatever the operator.

Internal: import from randsaliencymix instead; may change without notice.
"""

from __future__ import annotations

import contextvars
import inspect
from typing import Any, Callable, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from . import _random as rnd
from ._checks import (
    check_choice,
    check_images,
    check_normalisation,
    check_num_classes,
    check_perm,
    check_probability,
    check_saliency_maps,
    check_validate,
    to_soft_targets,
)
from .apply import mix_checked
from .params import MixParams, check_params

__all__ = ["DetectorMixer", "Mixer"]

# The ``validate`` setting that governs a whole call of a composite operator (RandomChoiceMix):
# set while it draws through its sub-operators, so that their checks follow it, not their own.
_UNSET = object()
# The arguments every operator takes, shown last in its repr.
_COMMON_ARGUMENTS = ("num_classes", "p", "label_smoothing", "validate")
_GOVERNING: contextvars.ContextVar[object] = contextvars.ContextVar("randsaliencymix_validate", default=_UNSET)


class Mixer(nn.Module):
    """Base class of the mixing operators: validation, soft targets, ``forward`` = sample + apply.

    To write an operator, subclass it, call ``super().__init__(num_classes=..., p=...,
    label_smoothing=..., validate=...)`` and implement :meth:`draw_params`. ``sample_params``,
    ``apply_params`` and ``forward`` then validate every input, turn labels into soft targets (with
    label smoothing) and mix with :func:`~randsaliencymix.apply_mix`. For example, the left half
    of each source pasted over the left half of its target, with probability ``p`` per sample::

        class HalfMix(Mixer):
            def draw_params(self, x, generator, perm, saliency, labels=None):
                n, (h, w), dev = x.shape[0], x.shape[-2:], x.device
                if perm is None:
                    perm = torch.randperm(n, generator=generator, device=dev)
                applied = torch.rand(n, generator=generator, device=dev, dtype=torch.float64) < self.p
                box = torch.tensor([0, 0, h, w // 2], device=dev).expand(n, 4)
                box = torch.where(applied[:, None], box, torch.zeros_like(box))
                area = ((box[:, 2] - box[:, 0]) * (box[:, 3] - box[:, 1])).double() / (h * w)
                ones = torch.ones(n, dtype=torch.float64, device=dev)
                return MixParams.create(
                    perm=perm, lam=1.0 - area, src_boxes=box, dst_boxes=box, eta=ones,
                    mixup=torch.zeros_like(applied), applied=applied, source_weight=area,
                    image_size=(h, w),
                )

    :meth:`MixParams.create` sets the static fast-path flags (``blended``, ``shifted``,
    ``patches``, ``perm_is_permutation``) to values that are right whatever the tensors hold, so
    an operator never promises a fast path its draws break; ``dataclasses.replace`` of
    :meth:`MixParams.identity` is equally safe.

    An operator whose draws need the batch's labels sets ``uses_labels`` and reads ``labels``.
    ``draw_params`` is the one sampling hook, always called with five arguments: a subclass that
    defines it with another signature is refused with a ``TypeError`` when the class is created.

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
        self.validate = check_validate(validate)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "draw_params" in vars(cls):
            _check_hook(cls)

    def extra_repr(self) -> str:
        """The constructor's arguments as this operator holds them, the operator's own first and
        the common ones (``num_classes``, ``p``, ``label_smoothing``, ``validate``) last:
        ``CutMix(alpha=1.0, mode='batch', num_classes=10, p=1.0, label_smoothing=0.0, validate=None)``.
        Arguments held as submodules (RandomChoiceMix's ``ops``) are listed as children instead,
        and arguments an operator does not keep under their own name are left out."""
        names = [
            name
            for name, parameter in inspect.signature(type(self).__init__).parameters.items()
            if name != "self" and parameter.kind not in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD)
        ]
        names = [n for n in names if n not in _COMMON_ARGUMENTS] + [n for n in _COMMON_ARGUMENTS if n in names]
        shown = []
        for name in names:
            value = getattr(self, name, _UNSET)
            if value is _UNSET or isinstance(value, nn.Module):
                continue
            shown.append(f"{name}={value!r}")
        return ", ".join(shown)

    # -- the hook a subclass implements ---------------------------------------------------
    def draw_params(
        self,
        x: torch.Tensor,
        generator: torch.Generator,
        perm: Optional[torch.Tensor],
        saliency: Optional[torch.Tensor],
        labels: Optional[torch.Tensor] = None,
    ) -> MixParams:
        """Draw the parameters of one mixing step for the batch ``x`` ``(B, C, H, W)``: the one
        sampling hook of an operator.

        Called by :meth:`sample_params` and :meth:`forward` after validation, with:
        ``generator`` the generator to draw every random number from (on ``x``'s device; never
        ``None``), ``perm`` the caller's pairing (a checked ``(B,)`` long tensor: target ``i`` gets
        source ``perm[i]``) or ``None`` to draw one, ``saliency`` the caller's ``(B, H, W)``
        maps of ``x`` (checked, detached) or ``None``, and ``labels`` the batch's class indices
        ``(B,)`` (long, on ``x``'s device; the argmax of each row for ``(B, K)`` probabilities)
        when the operator :attr:`uses_labels` and the caller gave labels, else ``None``. ``x`` may
        require grad: read ``x.detach()``. Return a :class:`MixParams` with ``image_size=(H, W)``;
        draw without host synchronisation (no ``.item()``, ``.cpu()``, ``nonzero``) to keep the
        operator fast on GPU.
        """
        raise NotImplementedError(
            f"{type(self).__name__} must implement draw_params(x, generator, perm, saliency, labels)"
        )

    @property
    def uses_labels(self) -> bool:
        """Whether the draws depend on the batch's labels (then ``sample_params`` needs ``y``)."""
        return False

    @property
    def uses_saliency(self) -> bool:
        """Whether any draw or label weight reads saliency maps (then a training loop may pass
        ``saliency=`` maps from its own source, e.g. cached detector maps or CAM)."""
        return False

    @property
    def learns_from_model(self) -> bool:
        """Whether :meth:`observe` changes the draws (state that follows the model, e.g.
        RandSaliencyMix's confusion pairing): such an operator must mix where ``observe`` is
        called, in the training loop's process, not in DataLoader workers."""
        return False

    def observe(self, logits: torch.Tensor, targets: torch.Tensor) -> None:
        """Learn from one training step's model outputs ``logits (B, K)`` and ``targets`` ((B,)
        class indices or (B, K) probabilities). A no-op here; operators with state that follows
        the model (RandSaliencyMix's confusion matrix) override it. Call it after every step."""
        return None

    # -- public API ----------------------------------------------------------------------
    def sample_params(
        self,
        x: torch.Tensor,
        y: Optional[torch.Tensor] = None,
        *,
        generator: Optional[torch.Generator] = None,
        perm: Optional[torch.Tensor] = None,
        saliency: Optional[torch.Tensor] = None,
    ) -> MixParams:
        """Draw the parameters of one mixing step for the batch ``x``.

        ``y`` (the batch's labels) is needed only by operators whose draws depend on them
        (:attr:`uses_labels`, e.g. RandSaliencyMix's confusion pairing); others ignore it.
        ``perm`` fixes the pairing (target ``i`` gets source ``perm[i]``) instead of drawing it;
        ``saliency`` gives precomputed ``(B, H, W)`` maps of ``x`` to the saliency-based operators.
        """
        check_images(x, self.validate)
        _check_labels_argument(y)
        labels = None
        if y is not None and self.uses_labels:
            to_soft_targets(y, x.shape[0], self.num_classes, 0.0, self.validate)
            labels = _class_indices(y, x.device)
        return self._checked_sample(x, generator, perm, saliency, labels)

    def _checked_sample(
        self,
        x: torch.Tensor,
        generator: Optional[torch.Generator],
        perm: Optional[torch.Tensor],
        saliency: Optional[torch.Tensor],
        labels: Optional[torch.Tensor] = None,
    ) -> MixParams:
        gen = rnd.pick_generator(generator, x.device)
        if perm is not None:
            perm = check_perm(perm, x, self.validate)
        if saliency is not None:
            saliency = check_saliency_maps(saliency, x, self.validate).detach()
        return self._draw_checked(x, gen, perm, saliency, labels)

    def _draw_checked(
        self,
        x: torch.Tensor,
        generator: torch.Generator,
        perm: Optional[torch.Tensor],
        saliency: Optional[torch.Tensor],
        labels: Optional[torch.Tensor] = None,
    ) -> MixParams:
        """:meth:`draw_params`, its result checked (type, batch size, image size, pairing)."""
        params = self.draw_params(x, generator, perm, saliency, labels)
        if not isinstance(params, MixParams):
            raise TypeError(f"Expected draw_params to return MixParams, but got {type(params).__name__} instead.")
        return check_params(params, x, self._validate_now())

    def _validate_now(self) -> Optional[bool]:
        """``validate`` for the checks of this draw: a composite operator's own while it draws
        through this one (see :meth:`_governed`), else this operator's."""
        governing = _GOVERNING.get()
        return self.validate if governing is _UNSET else governing  # type: ignore[return-value]

    def _governed(self) -> Any:
        """A context in which every operator's checks follow this operator's ``validate``."""
        return _Governed(self.validate)

    def apply_params(
        self, x: torch.Tensor, y: torch.Tensor, params: MixParams, *, out: Optional[torch.Tensor] = None
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Mix ``x`` and ``y`` with given parameters; ``y`` as ``(B,)`` indices or ``(B, K)`` probabilities.

        Pure and deterministic: the same params give the same output. ``out``: an optional buffer
        for the mixed images (see :func:`~randsaliencymix.apply_mix`); ``x`` is never modified.
        (``op.apply(fn)`` is :meth:`torch.nn.Module.apply`, as for any module.)
        """
        x = check_images(x, self.validate)
        soft = to_soft_targets(y, x.shape[0], self.num_classes, self.label_smoothing, self.validate)
        return mix_checked(x, soft, check_params(params, x, self.validate), out=out)

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
        """Mix a batch: ``x (B, C, H, W)``, ``y (B,)`` or ``(B, K)`` -> ``(x', y' (B, K))``.

        ``x`` is never modified. ``out``: an optional ``(B, C, H, W)`` buffer of ``x``'s dtype and
        device, sharing no memory with ``x``, that receives the mixed images and is returned as
        ``x'`` (reusing one buffer across steps saves allocating a batch per step; no autograd).
        """
        check_images(x, self.validate)
        soft = to_soft_targets(y, x.shape[0], self.num_classes, self.label_smoothing, self.validate)
        if params is None:
            labels = _class_indices(y, x.device) if self.uses_labels else None
            params = self._checked_sample(x, generator, perm, saliency, labels)
        else:
            params = check_params(params, x, self.validate)
        return mix_checked(x, soft, params, out=out)

    # -- helpers for the library's operators ------------------------------------------------
    def _coins(self, n: int, per_sample: bool, gen: torch.Generator, dev: torch.device) -> torch.Tensor:
        u = rnd.uniform(n if per_sample else 1, gen, dev)
        return (u < self.p).expand(n)

    def _lam(self, alpha: float, n: int, per_sample: bool, gen: torch.Generator, dev: torch.device) -> torch.Tensor:
        return rnd.beta(alpha, n if per_sample else 1, gen, dev).expand(n).contiguous()


_HOOK_SIGNATURE = "draw_params(self, x, generator, perm, saliency, labels=None)"


def _check_hook(cls: type) -> None:
    """Refuse a ``draw_params`` that cannot be called as the one hook: with ``x, generator, perm,
    saliency, labels`` by position (a signature that cannot be read is let through)."""
    hook = vars(cls)["draw_params"]
    if isinstance(hook, staticmethod):
        function, leading = hook.__func__, 0
    elif isinstance(hook, classmethod):
        function, leading = hook.__func__, 1
    else:
        function, leading = hook, 1
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):
        return
    try:
        signature.bind(*([None] * (leading + 5)))
    except TypeError:
        name = f"{cls.__name__}.draw_params"
        raise TypeError(f"Expected {_HOOK_SIGNATURE}, but got {name}{signature} instead.") from None


class _Governed:
    def __init__(self, validate: Optional[bool]) -> None:
        self.validate, self.token = validate, None

    def __enter__(self) -> None:
        self.token = _GOVERNING.set(self.validate)  # type: ignore[assignment]

    def __exit__(self, *exc: object) -> None:
        _GOVERNING.reset(self.token)  # type: ignore[arg-type]


def _check_labels_argument(y: object) -> None:
    """``sample_params``'s ``y``: labels or ``None``, never a generator passed by position (which
    would otherwise be ignored, and the draws come from the global generator)."""
    if y is None or isinstance(y, torch.Tensor):
        return
    if isinstance(y, torch.Generator):
        raise TypeError(
            "Expected y as labels (a tensor) or None, but got a torch.Generator instead (pass it as generator=g)."
        )
    raise TypeError(f"Expected y as labels (a tensor) or None, but got {type(y).__name__} instead.")


def _class_indices(y: torch.Tensor, device: torch.device) -> torch.Tensor:
    """The class of each sample of checked labels: the index, or the argmax of a probability row."""
    classes = y.argmax(dim=1) if y.ndim == 2 else y
    return classes.long().to(device)


_DetectorArg = Union[str, Callable[[torch.Tensor], torch.Tensor]]


class DetectorMixer(Mixer):
    """A :class:`Mixer` that runs a saliency detector on the batch when it is given no maps: the
    detector (``"fine_grained"``, ``"spectral"`` or a callable ``f(x) -> (B, H, W)``) and the
    normalisation of the images it reads (``mean``/``std`` or ``value_range``), checked once here,
    and :meth:`detect`, the one way the saliency operators compute their maps."""

    def __init__(
        self,
        *,
        detector: _DetectorArg,
        value_range: Optional[Tuple[float, float]],
        mean: Optional[Sequence[float]],
        std: Optional[Sequence[float]],
        num_classes: Optional[int],
        p: float,
        label_smoothing: float,
        validate: Optional[bool],
    ) -> None:
        super().__init__(num_classes=num_classes, p=p, label_smoothing=label_smoothing, validate=validate)
        if isinstance(detector, str):
            check_choice("detector", detector, ("fine_grained", "spectral"))
        self.detector = detector
        check_normalisation(value_range, mean, std)
        self.value_range, self.mean, self.std = value_range, mean, std

    def detect(self, x: torch.Tensor) -> torch.Tensor:
        """The detector's maps ``(B, H, W)`` of ``x.detach()``, checked (a callable's output) and detached."""
        from .saliency import saliency_map

        detected = saliency_map(x.detach(), self.detector, self.value_range, self.mean, self.std, validate=False)
        return check_saliency_maps(detected, x, self._validate_now()).detach()
