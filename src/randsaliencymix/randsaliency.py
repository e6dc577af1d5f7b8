"""RandSaliencyMix, this project's method: saliency-proportional crop, object-avoiding paste, blend
and saliency-weighted labels (defined in docs/methods.md in the repository).

Internal: import from randsaliencymix instead; may change without notice.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union, cast

import torch

from . import _random as rnd
from ._checks import (
    check_choice,
    check_nonnegative,
    check_positive,
    check_probability,
    should_check_values,
    to_soft_targets,
)
from .base import DetectorMixer
from .geometry import (
    WindowSums,
    box_sides,
    draw_window_corner,
    draw_window_corners_linear,
    integral,
    normalised_maps,
    valid_extent,
)
from .pairing import (
    CONFUSION_UPDATES,
    complementary_pairing,
    confusion_sources,
    confusion_update,
    guided_maps,
    saliency_distances,
    uniform_confusion,
)
from .params import MixParams

__all__ = ["SALIENCY_ON", "RandSaliencyMix"]

# Every saliency idea switched on, hard paste on every sample: the settings RandSaliencyMix had as
# defaults before tuning on CIFAR-10 validation data chose the current ones.
# ``RandSaliencyMix(**SALIENCY_ON)``.
SALIENCY_ON: Dict[str, Any] = {"p": 1.0, "tau_src": 1.0, "tau_dst": 1.0, "eta": 1.0, "mixup_prob": 0.0, "gamma": 0.5}
# The largest patch_noise sigma accepted: ten times the value range (more only saturates).
MAX_PATCH_NOISE = 10.0


class RandSaliencyMix(DetectorMixer):
    """RandSaliencyMix: saliency-proportional crop, object-avoiding paste, blend and saliency labels.

    Defined in docs/methods.md in the repository ("RandSaliencyMix"). Per sample ``i`` (target
    ``i``, source ``perm[i]``):

    * ``source``: where the patch is cut. ``"saliency"`` draws the top-left corner with probability
      ``(M_s + eps) ** tau_src`` (``M_s`` = source saliency mass in the window), ``"peak"`` takes the
      window of largest mass, ``"uniform"`` any window.
    * ``paste``: where it lands. ``"anti_saliency"`` ``(1 - M_t + eps) ** tau_dst``, ``"saliency"``
      ``(M_t + eps) ** tau_dst``, ``"uniform"``, or ``"same"`` (the source's coordinates).
    * ``eta``: blend strength inside the box, a number (1 = hard paste) or ``"beta"`` for
      ``Beta(beta_blend, beta_blend)`` per sample; ``mixup_prob``: per-sample switch to MixUp.
    * ``gamma``: source label weight ``gamma * w_saliency + (1 - gamma) * w_area``.
    * ``patch_noise`` (0 <= sigma <= 10, ten times the images' value range): inside the pasted box the source pixels get ``sigma * N(0, 1)``
      per pixel and channel, in the units of the images (for uint8 images ``255 * sigma``, the
      noisy source rounded and clipped to 0..255). Labels are unchanged. The noise is drawn last
      and kept in the params (``MixParams.noise``), so a step replays exactly; ``0`` draws none.
      Pixels outside the box are never touched by the noise, whatever its values.
    * ``pairing``: how each target's source is chosen when no ``perm`` is given. ``"random"``: a
      random permutation. ``"complementary"``: GuidedMixup's greedy cycle on the distances of the
      blurred, sum-normalised saliency maps (deterministic given the maps). ``"confusion"``: each
      target of class ``a`` draws its source ``j != i`` independently with probability
      ``∝ E[a, class(j)] + 1e-4`` from a running class-confusion matrix ``E`` (the ``confusion``
      buffer, in ``state_dict()``), which :meth:`observe` updates after each step
      (``confusion_update="mean"``: a batch-mean blend with weight ``confusion_weight``;
      ``"sequential"``: a sample-by-sample blend of shifted logits; both defined in
      docs/methods.md in the repository). It needs
      ``num_classes`` and the batch's labels (``op(x, y)``, or ``sample_params(x, y)``); its
      params have ``perm_is_permutation=False``.

    ``p``, the probability that a sample is mixed, defaults to 1 as in every operator of this
    library. The other defaults were chosen on CIFAR-10 validation data (32x32 images, short
    schedules), together with ``p=0.5``: ``eta="beta", mixup_prob=0.25`` and ``tau_src=0,
    tau_dst=0, gamma=0``. That tuned setting, RSM-seed of the studies (the command line's method
    ``randsaliencymix``), is ``RandSaliencyMix(p=0.5)``. With the last three no draw uses saliency
    and the detector is skipped; in that tuning, switching the saliency ideas on gave no benefit at
    its training budget. Switch them on with e.g. ``tau_src=1, tau_dst=1, gamma=0.5``.

    The detector reads ``x.detach()`` (the mix itself stays differentiable). Maps, given or
    detected, are made safe before use: NaN and negative values count as 0, +inf as the most
    salient value (on CPU, or with ``validate=True``, such maps are rejected instead).
    """

    confusion: torch.Tensor  # (K, K) buffer, with pairing="confusion" only

    def __init__(
        self,
        *,
        alpha: float = 1.0,
        num_classes: Optional[int] = None,
        p: float = 1.0,
        source: str = "saliency",
        tau_src: float = 0.0,
        paste: str = "anti_saliency",
        tau_dst: float = 0.0,
        eta: Union[float, str] = "beta",
        beta_blend: float = 1.0,
        mixup_prob: float = 0.25,
        gamma: float = 0.0,
        detector: Union[str, Callable[[torch.Tensor], torch.Tensor]] = "fine_grained",
        eps: float = 1e-4,
        patch_noise: float = 0.0,
        pairing: str = "random",
        confusion_update: str = "mean",
        confusion_weight: float = 0.5,
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
        self.source = check_choice("source", source, ("saliency", "peak", "uniform"))
        self.paste = check_choice("paste", paste, ("anti_saliency", "same", "uniform", "saliency"))
        self.tau_src = check_nonnegative("tau_src", tau_src)
        self.tau_dst = check_nonnegative("tau_dst", tau_dst)
        if isinstance(eta, str):
            check_choice("eta", eta, ("beta",))
        else:
            check_probability("eta", eta)
        self.eta = eta
        self.beta_blend = check_positive("beta_blend", beta_blend)
        self.mixup_prob = check_probability("mixup_prob", mixup_prob)
        self.gamma = check_probability("gamma", gamma)
        self.eps = check_positive("eps", eps)
        self.patch_noise = check_nonnegative("patch_noise", patch_noise)
        if self.patch_noise > MAX_PATCH_NOISE:  # larger sigmas only saturate, and can overflow float16
            raise ValueError(f"Expected patch_noise <= {MAX_PATCH_NOISE:g}, but got {patch_noise} instead.")
        self.pairing = check_choice("pairing", pairing, ("random", "complementary", "confusion"))
        self.confusion_update = check_choice("confusion_update", confusion_update, CONFUSION_UPDATES)
        self.confusion_weight = check_probability("confusion_weight", confusion_weight)
        if self.pairing == "confusion":
            if self.num_classes is None:
                raise ValueError("Expected num_classes for pairing='confusion', but got None instead.")
            # A buffer: it follows the module's device and lands in state_dict() and checkpoints.
            self.register_buffer("confusion", uniform_confusion(self.num_classes))

    @property
    def uses_labels(self) -> bool:
        """Whether the draws need the batch's labels (``pairing="confusion"``)."""
        return self.pairing == "confusion"

    @property
    def learns_from_model(self) -> bool:
        """The confusion pairing follows the model through :meth:`observe`; the others do not."""
        return self.pairing == "confusion"

    def observe(self, logits: torch.Tensor, targets: torch.Tensor) -> None:
        """Update the confusion matrix from one step (``pairing="confusion"``; a no-op otherwise).

        ``logits`` ``(B, K)``: the model's outputs; ``targets``: the batch's ``(B,)`` class indices
        (one-hot targets) or ``(B, K)`` probability rows (class = argmax). See
        :func:`~randsaliencymix.pairing.confusion_update` for the two update rules. No host
        synchronisation (values are checked on CPU or with ``validate=True``); the matrix moves to
        the logits' device if it is elsewhere."""
        if self.pairing != "confusion":
            return None
        k = cast(int, self.num_classes)
        if not isinstance(logits, torch.Tensor) or logits.ndim != 2 or logits.shape[1] != k:
            got = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
            raise ValueError(f"Expected logits of shape (B, {k}), but got {got} instead.")
        if not logits.is_floating_point():
            raise TypeError(f"Expected floating-point logits, but got {logits.dtype} instead.")
        to_soft_targets(targets, logits.shape[0], k, 0.0, self.validate)
        if should_check_values(logits, self.validate) and not bool(torch.isfinite(logits).all()):
            raise ValueError("Expected finite logits, but got NaN or infinity instead.")
        confusion = self.confusion
        if confusion.device != logits.device:
            confusion = confusion.to(logits.device)
        self.confusion = confusion_update(confusion, logits, targets, self.confusion_weight, self.confusion_update)

    @property
    def uses_saliency(self) -> bool:
        """Whether any draw or label weight depends on the saliency maps (with ``tau_src = 0``,
        ``tau_dst = 0``, ``gamma = 0`` and no complementary pairing none does, and the detector is
        not run)."""
        source = self.source == "peak" or (self.source == "saliency" and self.tau_src > 0)
        paste = self.paste in ("anti_saliency", "saliency") and self.tau_dst > 0
        return source or paste or self.gamma > 0 or self.pairing == "complementary"

    def batch_maps(self, x: torch.Tensor, saliency: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
        """The maps the draws read: ``saliency`` when given (checked by the caller), else the
        detector's maps of ``x`` when any draw or label reads maps, else None."""
        if saliency is not None:
            return saliency
        if self.uses_saliency:
            return self.detect(x)
        # No draw and no label reads the maps: skip the detector (every draw is then the one it
        # would be with any map).
        return None

    def _pairing(
        self,
        x: torch.Tensor,
        maps: Optional[torch.Tensor],
        generator: torch.Generator,
        labels: Optional[torch.Tensor],
    ) -> torch.Tensor:
        n, dev = x.shape[0], x.device
        if self.pairing == "complementary":
            assert maps is not None  # complementary pairing makes uses_saliency True
            return complementary_pairing(saliency_distances(guided_maps(maps)))
        if self.pairing == "confusion":
            if labels is None:
                raise ValueError(
                    "Expected the batch's labels to draw pairing='confusion' (op(x, y) or sample_params(x, y)), "
                    "but got None instead."
                )
            return confusion_sources(self.confusion, labels, generator)
        return rnd.permutation(n, generator, dev)

    def _windows(
        self,
        maps: Optional[torch.Tensor],
        detected: bool,
        perm: torch.Tensor,
        drawn_pairing: bool,
        h: torch.Tensor,
        w: torch.Tensor,
        valid_rows: torch.Tensor,
        valid_cols: torch.Tensor,
        generator: torch.Generator,
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The source and target windows: ``(m_src, m_dst, src_corner, dst_corner)``, the masses
        of the drawn windows (float64; zeros when no label reads them) and their flat corners.

        Draws with ``tau = 1`` (the saliency ideas' setting) read the maps through
        :class:`~randsaliencymix.geometry.WindowSums` (a few batched products, no grid of masses);
        ``"peak"`` and other ``tau`` build the grid from the integral image; uniform draws read no
        map. Every draw uses two uniforms per sample, source first."""
        n, dev = perm.shape[0], perm.device
        src_mode = "uniform" if self.source == "saliency" and self.tau_src == 0 else self.source
        dst_mode = "saliency" if self.paste in ("anti_saliency", "saliency") and self.tau_dst > 0 else "uniform"
        anti = self.paste == "anti_saliency"
        reads_maps = src_mode != "uniform" or (self.paste != "same" and dst_mode != "uniform") or self.gamma > 0
        if not reads_maps:
            corner, _ = draw_window_corner(
                None, perm, h, w, valid_rows, valid_cols, "uniform", 0.0, self.eps, generator
            )
            if self.paste != "same":
                dst, _ = draw_window_corner(
                    None, perm, h, w, valid_rows, valid_cols, "uniform", 0.0, self.eps, generator
                )
            else:
                dst = corner
            # gamma = 0: the label weight is the area whatever the masses (0 * finite = 0).
            zeros = torch.zeros(n, dtype=torch.float64, device=dev)
            return zeros, zeros, corner, dst
        assert maps is not None  # every setting that reads maps makes uses_saliency True
        # The built-in detectors' maps are finite and in [0, 1]; given maps are made safe.
        builtin = detected and isinstance(self.detector, str)
        norm = normalised_maps(maps, assume_clean=builtin, inplace=builtin)  # the detector's own output
        targets = torch.arange(n, device=dev)
        # A drawn random or complementary pairing is a permutation: the products then run over the
        # maps in place. (Confusion pairings, or a given perm, gather the maps instead.)
        inverse = None
        if drawn_pairing and self.pairing != "confusion":
            inverse = torch.empty_like(perm).index_copy_(0, perm, targets)
        table: List[Optional[torch.Tensor]] = [None]  # the integral image, built on first need
        sides = [(perm, inverse), (None, None)]  # sources, targets
        src_linear = src_mode == "saliency" and self.tau_src == 1.0
        dst_linear = self.paste != "same" and dst_mode == "saliency" and self.tau_dst == 1.0
        # tau = 1 draws read the maps through batched products, both sides at once.
        linear_sides = [k for k, on in enumerate((src_linear, dst_linear)) if on]
        sums = WindowSums(norm, [sides[k] for k in linear_sides])
        drawn: Dict[int, Tuple[torch.Tensor, Optional[torch.Tensor]]] = {}

        def draw(k: int, images: torch.Tensor, mode: str, tau: float, anti: bool) -> None:
            if mode != "uniform" and not (mode == "saliency" and tau == 0) and table[0] is None:
                table[0] = integral(norm)
            drawn[k] = draw_window_corner(
                table[0], images, h, w, valid_rows, valid_cols, mode, tau, self.eps, generator, anti
            )

        if src_linear and dst_linear:
            drawn[0], drawn[1] = draw_window_corners_linear(
                sums, h, w, valid_rows, valid_cols, self.eps, generator, [False, anti]
            )
        elif src_linear:
            (drawn[0],) = draw_window_corners_linear(sums, h, w, valid_rows, valid_cols, self.eps, generator, [False])
        else:
            draw(0, perm, src_mode, self.tau_src, False)
        if self.paste == "same":
            drawn[1] = (drawn[0][0], None)
        elif not src_linear and dst_linear:
            (drawn[1],) = draw_window_corners_linear(sums, h, w, valid_rows, valid_cols, self.eps, generator, [anti])
        elif not dst_linear:
            draw(1, targets, dst_mode, self.tau_dst, anti)
        (src_corner, m_src), (dst_corner, m_dst) = drawn[0], drawn[1]
        missing = [k for k, m in ((0, m_src), (1, m_dst)) if m is None]
        if missing:
            # Uniform draws read no map; their windows' masses for the labels.
            width = valid_cols.shape[1]
            corners = [drawn[k][0] for k in missing]
            at_rows = WindowSums(norm, [sides[k] for k in missing]).masses_at_rows(
                torch.stack([c // width for c in corners]), h, w
            )
            for k, c, m in zip(missing, corners, at_rows):
                drawn[k] = (c, m.gather(1, (c % width)[:, None]).squeeze(1).double())
        (src_corner, m_src), (dst_corner, m_dst) = drawn[0], drawn[1]
        assert m_src is not None and m_dst is not None
        return m_src, m_dst, src_corner, dst_corner

    def draw_windows(
        self,
        maps: Optional[torch.Tensor],
        detected: bool,
        perm: torch.Tensor,
        drawn_pairing: bool,
        h: torch.Tensor,
        w: torch.Tensor,
        image_size: Tuple[int, int],
        generator: torch.Generator,
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Where each sample's ``h x w`` patch is cut from its source ``perm[i]`` and where it lands
        in its target, as this operator's ``source``/``tau_src`` and ``paste``/``tau_dst`` say:
        ``(boxes, m_src, m_dst)``, ``boxes`` ``(2, B, 4)`` the source and target boxes ``(r1, c1,
        r2, c2)``, ``m_src``/``m_dst`` the drawn windows' normalised saliency masses (float64; zeros
        when no label reads them). ``maps`` from :meth:`batch_maps` (``detected``: by the built-in
        detector); ``drawn_pairing``: ``perm`` was drawn here (not given by the caller)."""
        height, width = image_size
        valid_rows, valid_cols = valid_extent(height, h), valid_extent(width, w)
        m_src, m_dst, src_corner, dst_corner = self._windows(
            maps, detected, perm, drawn_pairing, h, w, valid_rows, valid_cols, generator
        )
        # Both boxes at once: (2, B, 4) rows, cols of the corners and of the far corners.
        corners = torch.stack([src_corner, dst_corner])
        r1, c1 = corners // width, corners % width
        return torch.stack([r1, c1, r1 + h, c1 + w], dim=2), m_src, m_dst

    def label_weight(
        self, m_src: torch.Tensor, m_dst: torch.Tensor, eta: torch.Tensor, area: torch.Tensor
    ) -> torch.Tensor:
        """The source's label weight of a patch: ``gamma * w_saliency + (1 - gamma) *
        area``, with ``w_saliency = eta m_src / (eta m_src + 1 - eta m_dst)`` (``area`` where that
        sum is 0) and ``area`` the patch's area weight as the caller defines it."""
        kept_src = eta * m_src
        kept_dst = 1.0 - eta * m_dst
        total = kept_src + kept_dst
        by_saliency = torch.where(total > 0, kept_src / total.clamp(min=1e-300), area)
        return self.gamma * by_saliency + (1.0 - self.gamma) * area

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
        maps = self.batch_maps(x, saliency)
        drawn_pairing = perm is None
        perm = self._pairing(x, maps, generator, labels) if perm is None else perm
        lam = rnd.beta(self.alpha, n, generator, dev)
        h, w = box_sides(lam, height, width)
        boxes, m_src, m_dst = self.draw_windows(
            maps, saliency is None, perm, drawn_pairing, h, w, (height, width), generator
        )

        if isinstance(self.eta, str):
            eta = rnd.beta(self.beta_blend, n, generator, dev)
        else:
            eta = torch.full((n,), float(self.eta), dtype=torch.float64, device=dev)
        mixup = rnd.uniform(n, generator, dev) < self.mixup_prob
        applied = rnd.uniform(n, generator, dev) < self.p
        patch = applied & ~mixup

        boxes = boxes * patch[:, None].long()
        weight = self.label_weight(m_src, m_dst, eta, eta * (h * w).double() / (height * width))
        weight = torch.where(mixup, 1.0 - lam, weight)
        weight = torch.where(applied, weight, torch.zeros_like(weight))
        noise = None
        if self.patch_noise > 0:
            # Drawn last: every other draw is the one the operator makes without noise.
            scale = self.patch_noise * (255.0 if x.dtype == torch.uint8 else 1.0)
            noise = torch.randn(tuple(x.shape), generator=generator, device=dev, dtype=torch.float32).mul_(scale)
        return MixParams(
            perm=perm,
            lam=lam,
            src_boxes=boxes[0],
            dst_boxes=boxes[1],
            eta=eta,
            mixup=mixup & applied,
            applied=applied,
            source_weight=weight,
            image_size=(height, width),
            shifted=self.paste != "same",
            blended=self.eta != 1.0 or self.mixup_prob > 0,
            noise=noise,
            perm_is_permutation=not (drawn_pairing and self.pairing == "confusion"),
        )
