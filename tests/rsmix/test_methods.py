"""The registry of mixing methods (``methods.py``): every method builds with its defaults, unknown
methods and options are refused, and the ``saliencymix`` method is the authors' official SaliencyMix
while the library's SaliencyMix defaults to the per-sample method."""

from __future__ import annotations

import pytest

from randsaliencymix import SaliencyMix
from rsmix.errors import UsageError
from rsmix.methods import METHOD_NAMES, METHODS, build_mixer, get_method


@pytest.mark.slow
@pytest.mark.parametrize("name", METHOD_NAMES)
def test_every_registered_method_builds_with_its_defaults(name: str) -> None:
    method = get_method(name)
    op = build_mixer(name, 10, mean=(0.5, 0.5, 0.5), std=(0.2, 0.2, 0.2))
    assert isinstance(op, method.operator)
    for key, value in method.fixed.items():
        assert getattr(op, key) == value
    for key, value in method.defaults().items():
        if key in ("mean", "std"):  # the run's, not options
            continue
        assert getattr(op, key, value) == value


@pytest.mark.slow
def test_registry_rejects_unknown_methods_and_options() -> None:
    with pytest.raises(UsageError, match="accepted: none, mixup"):
        get_method("bogus")
    with pytest.raises(UsageError, match="'bogus'"):
        build_mixer("cutmix", 10, {"bogus": 1})
    with pytest.raises(UsageError, match="alpha"):
        build_mixer("mixup", 10, {"alpha": -1.0})
    assert "variant" not in METHODS["saliencymix"].option_names()
    assert "mean" not in METHODS["randsaliencymix"].option_names()


K = 4


def test_saliencymix_defaults_to_the_per_sample_method_and_the_cli_keeps_the_official_one() -> None:
    op = SaliencyMix()
    assert op.variant == "per_sample" and op.uses_saliency
    official = build_mixer("saliencymix", K, {})
    assert isinstance(official, SaliencyMix) and official.variant == "official"
    per_sample = build_mixer("saliencymix_per_sample", K, {})
    assert isinstance(per_sample, SaliencyMix) and per_sample.variant == "per_sample"
