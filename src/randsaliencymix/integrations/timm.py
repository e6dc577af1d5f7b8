"""A drop-in for timm's ``timm.data.Mixup``: the same constructor, the same draws and soft targets,
vectorised, and with this library's saliency operators as the cut-and-paste part.

**In timm's ``train.py``** (timm 1.0) ``Mixup`` comes in one import line with other names
(``from timm.data import create_dataset, create_loader, resolve_data_config, Mixup,
FastCollateMixup, AugMixDataset``), so the change is one added line *after* it, which rebinds the
name::

    from randsaliencymix.integrations.timm import Mixup  # after timm's import: the drop-in wins

``mixup_fn = Mixup(**mixup_args)`` (timm passes ``mixup_alpha``, ``cutmix_alpha``,
``cutmix_minmax``, ``prob``, ``switch_prob``, ``mode``, ``label_smoothing``, ``num_classes``),
``x, target = mixup_fn(x, target)`` and ``mixup_fn.mixup_enabled = False`` (``--mixup-off-epoch``)
then work unchanged. timm is never imported. **Run timm with ``--no-prefetcher``:** with its
prefetcher (the default) timm mixes in the collate with its own ``FastCollateMixup`` and never
builds ``Mixup``, so the drop-in is not used at all. Options assigned after construction
(``mixup_fn.label_smoothing = 0.2``) go through the constructor's checks; a new ``cutmix_op`` (or
``cutmix_options``) rebuilds the cut-and-paste operator as the constructor would.

What matches timm (tested against timm's own ``timm/data/mixup.py``):

* per batch, pair or element (``mode``), with probability ``prob`` a sample is mixed; when both
  ``mixup_alpha`` and ``cutmix_alpha`` are > 0, CutMix is chosen with probability ``switch_prob``;
  ``lam ~ Beta(alpha, alpha)`` of the chosen method;
* **pairing**: sample ``i`` is mixed with sample ``B - 1 - i`` (the batch flipped), as timm does;
  in ``"pair"`` mode both samples of a pair share every draw and swap the same box;
* CutMix's box: centre uniform over the image, rows ``[cy - h // 2, cy + (h + 1) // 2)`` clipped;
  ``cutmix_minmax=(lo, hi)``: sides uniform in ``[int(H lo), int(H hi))``, never clipped;
* targets: ``off = label_smoothing / num_classes``, ``on = 1 - label_smoothing + off``, mixed as
  ``y * lam + y.flip(0) * (1 - lam)`` with ``lam`` the area kept when ``correct_lam`` (or
  ``cutmix_minmax``), else as drawn.

What differs, on purpose:

* every draw comes from a ``torch.Generator`` (``generator=``; else the images' device's default
  generator, seeded by ``torch.manual_seed``), not NumPy's global RNG: no host synchronisation, so
  a CUDA batch stays on the GPU. The draws are timm's in distribution, not number for number;
* the input is never modified (timm mixes ``x`` in place);
* any batch size works: with an odd batch the middle sample is its own partner and stays unmixed
  (timm asserts an even batch);
* ``num_classes`` is required (timm defaults to 1000); arguments are keyword-only; ``multi_label``
  is not supported; labels may also be ``(B, K)`` probabilities;
* ``cutmix_op`` chooses the cut-and-paste part: ``"cutmix"`` (timm's), ``"saliencymix"`` (the box
  centred on the source's saliency peak, SaliencyMix per sample) or ``"randsaliencymix"``
  (RandSaliencyMix's patch: saliency-proportional crop, object-avoiding paste, blend, saliency
  labels), configured by ``cutmix_options``. With empty ``cutmix_options`` RandSaliencyMix's
  defaults switch its saliency ideas off (``tau_src=0``, ``tau_dst=0``, ``gamma=0``) and its
  detector never runs: pass e.g. ``{"tau_src": 1.0, "tau_dst": 1.0, "gamma": 0.5, "mean": ...,
  "std": ...}`` to switch them on. ``pairing="random"`` pairs a random permutation of
  the batch instead of the flip (timm's rule applied to a shuffled batch).

Public: :class:`Mixup` and ``CUTMIX_OPS``, which maps each ``cutmix_op`` to the names its
``cutmix_options`` accept.
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Sequence, Tuple, Union

import torch

from .. import _random as rnd
from .._checks import check_choice, check_nonnegative, check_num_classes, check_probability, check_validate
from ..base import Mixer
from ..mixing import SaliencyMix
from ..params import MixParams, _unmixed_params
from ..randsaliency import RandSaliencyMix
from ._patches import Patches, cutmix_patches, randsaliency_patches, saliency_peak_patches, unit_sides

__all__ = ["CUTMIX_OPS", "Mixup"]

# The options each cut-and-paste operator takes in ``cutmix_options``: everything but what the
# drop-in sets itself (alpha = cutmix_alpha, p = prob, mixup_prob = switch_prob, labels).
CUTMIX_OPS: Dict[str, Tuple[str, ...]] = {
    "cutmix": (),
    "saliencymix": ("detector", "value_range", "mean", "std"),
    "randsaliencymix": (
        "source",
        "tau_src",
        "paste",
        "tau_dst",
        "eta",
        "beta_blend",
        "gamma",
        "detector",
        "eps",
        "value_range",
        "mean",
        "std",
    ),
}
_MODES = ("batch", "pair", "elem")
_PAIRINGS = ("flip", "random")


def _check_bool(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"Expected {name} to be a bool, but got {type(value).__name__} instead.")
    return value


# The options a timm user may assign after construction, each with the constructor's check.
_SETTABLE: Dict[str, Any] = {
    "mixup_alpha": check_nonnegative,
    "cutmix_alpha": check_nonnegative,
    "cutmix_minmax": lambda name, value: _check_minmax(value),
    "p": check_probability,
    "switch_prob": check_probability,
    "label_smoothing": check_probability,
    "mode": lambda name, value: check_choice(name, value, _MODES),
    "pairing": lambda name, value: check_choice(name, value, _PAIRINGS),
    "correct_lam": _check_bool,
    "mixup_enabled": _check_bool,
    "num_classes": lambda name, value: check_num_classes(value),
    "validate": lambda name, value: check_validate(value),
    "cutmix_op": lambda name, value: check_choice(name, value, tuple(CUTMIX_OPS)),
}


def _check_minmax(minmax: object) -> Optional[Tuple[float, float]]:
    if minmax is None:
        return None
    if not isinstance(minmax, Sequence) or isinstance(minmax, str) or len(minmax) != 2:
        raise ValueError(f"Expected cutmix_minmax as None or (min, max), but got {minmax!r} instead.")
    lo = check_probability("cutmix_minmax[0]", minmax[0])
    hi = check_probability("cutmix_minmax[1]", minmax[1])
    if not lo < hi:
        raise ValueError(f"Expected cutmix_minmax with min < max, but got {minmax!r} instead.")
    return lo, hi


def _build_cut_op(
    name: str, options: Optional[Mapping[str, Any]], validate: Optional[bool]
) -> Optional[Union[SaliencyMix, RandSaliencyMix]]:
    check_choice("cutmix_op", name, tuple(CUTMIX_OPS))
    options = dict(options or {})
    unknown = sorted(set(options) - set(CUTMIX_OPS[name]))
    if unknown:
        accepted = ", ".join(CUTMIX_OPS[name]) or "none"
        raise ValueError(
            f"Expected cutmix_options for cutmix_op={name!r} among ({accepted}), but got {unknown} instead."
        )
    if name == "saliencymix":
        return SaliencyMix(variant="per_sample", validate=validate, **options)
    if name == "randsaliencymix":
        return RandSaliencyMix(p=1.0, mixup_prob=0.0, validate=validate, **options)
    return None


class Mixup(Mixer):
    """timm's ``Mixup``/``CutMix`` switch as a :class:`~randsaliencymix.Mixer`: ``x, target = mixup_fn(x, target)``.

    Arguments (keyword only), timm's first and with timm's meaning and defaults:

    * ``mixup_alpha`` (MixUp is on when > 0), ``cutmix_alpha`` (CutMix is on when > 0),
      ``cutmix_minmax`` (``(lo, hi)``: CutMix on, box sides from these image fractions instead of
      ``cutmix_alpha``), ``prob`` (probability of mixing), ``switch_prob`` (probability of CutMix
      when both are on), ``mode`` (``"batch"``, ``"pair"`` or ``"elem"``: which samples share the
      draws), ``correct_lam`` (label weight from the area actually pasted), ``label_smoothing``,
      ``num_classes`` (required here);
    * ``cutmix_op``: ``"cutmix"``, ``"saliencymix"`` or ``"randsaliencymix"``, with
      ``cutmix_options`` for the saliency operators (e.g. ``{"tau_src": 1.0, "gamma": 0.5,
      "mean": ..., "std": ...}``); their patch size still comes from ``cutmix_alpha`` (or
      ``cutmix_minmax``) and their switch from ``switch_prob``;
    * ``pairing``: ``"flip"`` (timm's: ``i`` with ``B - 1 - i``) or ``"random"``;
    * ``generator``: the ``torch.Generator`` (on the images' device) every call draws from;
      ``None`` uses that device's default generator. A call may pass its own ``generator=``;
    * ``validate``: as for every operator.

    ``mixup_enabled`` (timm's switch, set to ``False`` by ``--mixup-off-epoch``) turns mixing off:
    the targets are then only smoothed. Like every operator it also has ``sample_params`` and
    ``apply_params``; ``perm=`` fixes the pairing in ``"batch"`` and ``"elem"`` modes.
    """

    cut_op: Optional[Union[SaliencyMix, RandSaliencyMix]]  # built from cutmix_op and cutmix_options

    def __init__(
        self,
        *,
        mixup_alpha: float = 1.0,
        cutmix_alpha: float = 0.0,
        cutmix_minmax: Optional[Sequence[float]] = None,
        prob: float = 1.0,
        switch_prob: float = 0.5,
        mode: str = "batch",
        correct_lam: bool = True,
        label_smoothing: float = 0.1,
        num_classes: Optional[int],
        cutmix_op: str = "cutmix",
        cutmix_options: Optional[Mapping[str, Any]] = None,
        pairing: str = "flip",
        generator: Optional[torch.Generator] = None,
        validate: Optional[bool] = None,
    ) -> None:
        check_probability("prob", prob)
        super().__init__(num_classes=num_classes, p=prob, label_smoothing=label_smoothing, validate=validate)
        self.mixup_alpha = check_nonnegative("mixup_alpha", mixup_alpha)
        self.cutmix_alpha = check_nonnegative("cutmix_alpha", cutmix_alpha)
        self.cutmix_minmax = _check_minmax(cutmix_minmax)
        if self.mixup_alpha == 0 and self.cutmix_alpha == 0 and self.cutmix_minmax is None:
            raise ValueError(
                "Expected mixup_alpha > 0, cutmix_alpha > 0 or cutmix_minmax to switch some mixing on, "
                "but got none of them instead."
            )
        self.switch_prob = check_probability("switch_prob", switch_prob)
        self.mode = check_choice("mode", mode, _MODES)
        self.correct_lam = correct_lam  # checked by __setattr__
        self._cutmix_options: Dict[str, Any] = dict(cutmix_options or {})
        self.cutmix_op = cutmix_op  # checked, and self.cut_op built, by __setattr__
        self.pairing = check_choice("pairing", pairing, _PAIRINGS)
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"Expected generator to be a torch.Generator, but got {type(generator).__name__} instead.")
        self.generator = generator
        self.mixup_enabled = True

    def __setattr__(self, name: str, value: Any) -> None:
        """Options assigned after construction are checked as the constructor checks them; a new
        ``cutmix_op`` rebuilds the cut-and-paste operator (with ``cutmix_options``), a new
        ``validate`` reaches it too."""
        check = _SETTABLE.get(name)
        value = value if check is None else check(name, value)
        if name == "cutmix_op":
            # Built before anything is assigned, so that a refused value leaves the operator as it was.
            self._set_cut_op(_build_cut_op(value, self._cutmix_options, self.validate))
        super().__setattr__(name, value)
        if name == "validate":
            cut_op = self._modules.get("cut_op")
            if isinstance(cut_op, Mixer):
                cut_op.validate = value

    @property
    def cutmix_options(self) -> Dict[str, Any]:
        """The options of the cut-and-paste operator (a copy); assigning new ones rebuilds it."""
        return dict(self._cutmix_options)

    @cutmix_options.setter
    def cutmix_options(self, value: Optional[Mapping[str, Any]]) -> None:
        options = dict(value or {})
        cut_op = _build_cut_op(self.cutmix_op, options, self.validate)
        self._cutmix_options = options
        self._set_cut_op(cut_op)

    def _set_cut_op(self, cut_op: Optional[Union[SaliencyMix, RandSaliencyMix]]) -> None:
        """``self.cut_op``, a submodule or (timm's CutMix) ``None``, not listed among the submodules."""
        if cut_op is None:
            self._modules.pop("cut_op", None)
            object.__setattr__(self, "cut_op", None)
        else:
            super().__setattr__("cut_op", cut_op)

    # timm's name for the probability of mixing.
    @property
    def mix_prob(self) -> float:
        return self.p

    @mix_prob.setter
    def mix_prob(self, value: float) -> None:
        self.p = check_probability("mix_prob", value)

    @property
    def cutmix_on(self) -> bool:
        return self.cutmix_alpha > 0 or self.cutmix_minmax is not None

    def extra_repr(self) -> str:
        return (
            f"mixup_alpha={self.mixup_alpha}, cutmix_alpha={self.cutmix_alpha}, cutmix_minmax={self.cutmix_minmax}, "
            f"prob={self.p}, switch_prob={self.switch_prob}, mode={self.mode!r}, correct_lam={self.correct_lam}, "
            f"label_smoothing={self.label_smoothing}, num_classes={self.num_classes}, cutmix_op={self.cutmix_op!r}, "
            f"cutmix_options={self.cutmix_options!r}, pairing={self.pairing!r}, generator={self.generator!r}, "
            f"validate={self.validate!r}"
        )

    # -- calls: the constructor's generator unless one is passed ---------------------------------
    def sample_params(
        self,
        x: torch.Tensor,
        y: Optional[torch.Tensor] = None,
        *,
        generator: Optional[torch.Generator] = None,
        perm: Optional[torch.Tensor] = None,
        saliency: Optional[torch.Tensor] = None,
    ) -> MixParams:
        gen = self.generator if generator is None else generator
        return super().sample_params(x, y, generator=gen, perm=perm, saliency=saliency)

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
        """``(x (B, C, H, W), y (B,) or (B, K)) -> (mixed x, soft targets (B, K))``, as timm's ``__call__``
        (``x`` is not modified; ``out=`` is an optional buffer for the mixed images, see ``Mixer.forward``)."""
        gen = self.generator if generator is None else generator
        return super().forward(x, y, params=params, generator=gen, perm=perm, saliency=saliency, out=out)

    # -- the draws ---------------------------------------------------------------------------
    def _pairing(
        self, n: int, generator: torch.Generator, dev: torch.device, perm: Optional[torch.Tensor]
    ) -> Tuple[torch.Tensor, torch.Tensor, int]:
        """(partner of each sample, its draw unit, number of units)."""
        idx = torch.arange(n, device=dev)
        if perm is not None:
            if self.mode == "pair":
                raise ValueError(
                    "Expected perm=None in mode='pair' (pairs come from pairing='flip' or 'random'), "
                    "but got a perm instead."
                )
            partner = perm
            pos = idx
        else:
            # Sample order[k] is paired with order[B - 1 - k]: timm's flip when order is 0..B-1.
            order = idx if self.pairing == "flip" else rnd.permutation(n, generator, dev)
            pos = torch.empty_like(order).scatter_(0, order, idx)
            partner = order.index_select(0, n - 1 - pos)
        if self.mode == "batch":
            return partner, torch.zeros_like(idx), 1
        if self.mode == "elem":
            return partner, idx, n
        return partner, torch.minimum(pos, n - 1 - pos), (n + 1) // 2

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
        if not self.mixup_enabled:
            return _unmixed_params(n, (height, width), dev)
        partner, unit, m = self._pairing(n, generator, dev, perm)
        mixup_on = self.mixup_alpha > 0
        # Per draw unit: the coin, the switch, lam of each method, the patch sides.
        applied_u = rnd.uniform(m, generator, dev) < self.p
        if mixup_on and self.cutmix_on:
            cut_u = rnd.uniform(m, generator, dev) < self.switch_prob
        else:
            cut_u = torch.full((m,), self.cutmix_on, dtype=torch.bool, device=dev)
        ones = torch.ones(m, dtype=torch.float64, device=dev)
        lam_mix_u = rnd.beta(self.mixup_alpha, m, generator, dev) if mixup_on else ones
        # With cutmix_minmax timm forces cutmix_alpha to 1 (and then ignores the lam it draws).
        cut_alpha = self.cutmix_alpha if self.cutmix_minmax is None else 1.0
        lam_cut_u = rnd.beta(cut_alpha, m, generator, dev) if self.cutmix_on else ones
        h_u, w_u = unit_sides(lam_cut_u, self.cutmix_minmax, height, width, generator)

        cut = cut_u.index_select(0, unit)
        applied = applied_u.index_select(0, unit) & (partner != torch.arange(n, device=dev))
        lam_cut = lam_cut_u.index_select(0, unit)
        src, dst, eta, cut_weight = self._patches(x, saliency, partner, unit, h_u, w_u, lam_cut, generator)
        if self.cutmix_minmax is not None:  # no lam is drawn: report the share of the image the patch leaves
            area = (h_u * w_u).double().index_select(0, unit) / (height * width)
            lam_cut = 1.0 - area
        lam = torch.where(cut, lam_cut, lam_mix_u.index_select(0, unit))
        patch = (applied & cut)[:, None]
        weight = torch.where(cut, cut_weight, 1.0 - lam)
        return MixParams(
            perm=partner,
            lam=lam,
            src_boxes=torch.where(patch, src, torch.zeros_like(src)),
            dst_boxes=torch.where(patch, dst, torch.zeros_like(dst)),
            eta=torch.where(cut, eta, torch.ones_like(eta)),
            mixup=applied & ~cut,
            applied=applied,
            source_weight=torch.where(applied, weight, torch.zeros_like(weight)),
            image_size=(height, width),
            shifted=isinstance(self.cut_op, RandSaliencyMix) and self.cut_op.paste != "same",
            blended=mixup_on or (isinstance(self.cut_op, RandSaliencyMix) and self.cut_op.eta != 1.0),
        )

    def _patches(
        self,
        x: torch.Tensor,
        saliency: Optional[torch.Tensor],
        partner: torch.Tensor,
        unit: torch.Tensor,
        h_u: torch.Tensor,
        w_u: torch.Tensor,
        lam: torch.Tensor,
        generator: torch.Generator,
    ) -> Patches:
        height, width = int(x.shape[-2]), int(x.shape[-1])
        exact_area = self.correct_lam or self.cutmix_minmax is not None
        if self.cut_op is None:
            return cutmix_patches(h_u, w_u, unit, lam, self.cutmix_minmax, exact_area, height, width, generator)
        h, w = h_u.index_select(0, unit), w_u.index_select(0, unit)
        if isinstance(self.cut_op, SaliencyMix):
            return saliency_peak_patches(self.cut_op, x, saliency, partner, h, w, lam, exact_area)
        op = self.cut_op
        m = h_u.shape[0]
        if isinstance(op.eta, str):
            eta_u = rnd.beta(op.beta_blend, m, generator, x.device)
        else:
            eta_u = torch.full((m,), float(op.eta), dtype=torch.float64, device=x.device)
        eta = eta_u.index_select(0, unit)
        return randsaliency_patches(op, x, saliency, partner, h, w, eta, lam, exact_area, generator)
