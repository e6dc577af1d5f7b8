"""The one registry of mixing methods: name -> operator class, the options a user may set, their
defaults, and how the harness builds the operator. ``rsmix train``/``compare``, the CLI's help,
the gallery and the benchmarks all read it, so a method is added in one place.

A method pins some of its operator's arguments (``saliencymix`` is ``SaliencyMix(variant="official")``)
and may set its own default for an option (``randsaliencymix`` and ``guidedmixup`` mix half the
batches, ``p=0.5``, as in the studies, where the operators' own default is ``p=1``);
the run supplies ``num_classes``, ``label_smoothing`` and, for operators whose detector must see the
real picture, the dataset's ``mean``/``std``; every other constructor argument is an option
(``--mix-opt key=value``, a compare variant ``name=method:key=value``).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from randsaliencymix import CutMix, GuidedMixup, Mixer, MixUp, NoMix, RandSaliencyMix, SaliencyMix

from .errors import UsageError

__all__ = ["METHODS", "METHOD_NAMES", "Method", "build_mixer", "get_method"]

# Set by the run, never an option.
_RUN_SET = ("num_classes", "label_smoothing", "validate")


@dataclass(frozen=True)
class Method:
    """A named way to mix: an operator class, the arguments it pins and whether it is normalised."""

    name: str
    operator: type
    summary: str
    fixed: Mapping[str, Any] = field(default_factory=dict)  # arguments the method pins
    hidden: Tuple[str, ...] = ()  # arguments that mean nothing for this method
    # Options whose default here differs from the operator's (a user's value still wins): the
    # methods of the studies keep the meaning their runs gave them.
    own_defaults: Mapping[str, Any] = field(default_factory=dict)
    normalised: bool = False  # the run passes its mean/std (the detector reads the picture)

    def _parameters(self) -> List[inspect.Parameter]:
        skip = set(_RUN_SET) | set(self.fixed) | set(self.hidden) | {"self"}
        if self.normalised:
            skip |= {"mean", "std", "value_range"}
        params = inspect.signature(self.operator).parameters.values()
        return [p for p in params if p.name not in skip and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]

    def option_names(self) -> List[str]:
        """The options a user may set for this method."""
        return [p.name for p in self._parameters()]

    def defaults(self) -> Dict[str, Any]:
        """Each option's default value (what a run gets when it does not set it)."""
        found = {p.name: p.default for p in self._parameters() if p.default is not inspect.Parameter.empty}
        return {**found, **self.own_defaults}

    def check_options(self, options: Mapping[str, Any]) -> None:
        unknown = sorted(set(options) - set(self.option_names()))
        if unknown:
            accepted = ", ".join(self.option_names()) or "none"
            raise UsageError(f"unknown options {unknown} for method {self.name!r}; accepted: {accepted}")

    def build(
        self,
        num_classes: int,
        options: Optional[Mapping[str, Any]] = None,
        *,
        label_smoothing: float = 0.0,
        mean: Optional[Sequence[float]] = None,
        std: Optional[Sequence[float]] = None,
    ) -> Mixer:
        """The operator with these options; a bad option is a :class:`UsageError`."""
        options = dict(options or {})
        self.check_options(options)
        kwargs: Dict[str, Any] = {"num_classes": num_classes, "label_smoothing": label_smoothing}
        kwargs.update(self.own_defaults)
        kwargs.update(self.fixed)
        if self.normalised and mean is not None:
            kwargs.update(mean=tuple(mean), std=tuple(std) if std is not None else None)
        kwargs.update(options)
        try:
            return self.operator(**kwargs)
        except (TypeError, ValueError) as exc:
            raise UsageError(f"bad options for method {self.name!r}: {exc}") from exc


METHODS: Dict[str, Method] = {
    m.name: m
    for m in (
        Method("none", NoMix, "no mixing (the baseline)"),
        Method("mixup", MixUp, "MixUp (Zhang et al., 2018)"),
        Method("cutmix", CutMix, "CutMix (Yun et al., 2019)"),
        Method(
            "saliencymix",
            SaliencyMix,
            "SaliencyMix as the authors' code does it (one OpenCV map per batch, of the normalised tensor)",
            fixed={"variant": "official"},
            hidden=("detector", "value_range", "mean", "std"),
        ),
        Method(
            "saliencymix_per_sample",
            SaliencyMix,
            "SaliencyMix as the paper describes it (each source's own map, peak and box)",
            fixed={"variant": "per_sample"},
            normalised=True,
        ),
        Method(
            "randsaliencymix",
            RandSaliencyMix,
            "RandSaliencyMix (this project; docs/methods.md), as tuned on CIFAR-10 (p=0.5 by default)",
            normalised=True,
            own_defaults={"p": 0.5},
        ),
        Method(
            "guidedmixup",
            GuidedMixup,
            "GuidedMixup, SR variant (Kang & Kim, 2023): per-pixel saliency blend, complementary pairing",
            fixed={"detector": "spectral"},
            normalised=True,
            own_defaults={"p": 0.5},
        ),
    )
}
METHOD_NAMES: Tuple[str, ...] = tuple(METHODS)


def get_method(name: str) -> Method:
    """The registered method ``name``, or a :class:`UsageError` listing the accepted ones."""
    if name not in METHODS:
        raise UsageError(f"unknown method {name!r}; accepted: {', '.join(METHOD_NAMES)}")
    return METHODS[name]


def build_mixer(
    method: str,
    num_classes: int,
    options: Optional[Mapping[str, Any]] = None,
    *,
    label_smoothing: float = 0.0,
    mean: Optional[Sequence[float]] = None,
    std: Optional[Sequence[float]] = None,
) -> Mixer:
    """The operator of a registered method with its options (see :meth:`Method.build`)."""
    return get_method(method).build(num_classes, options, label_smoothing=label_smoothing, mean=mean, std=std)
