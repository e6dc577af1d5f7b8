"""YAML as a user writes it: ``--config`` files, ``--mix-opt KEY=VALUE`` and compare's variant
options read numbers the way a person types them.

PyYAML follows YAML 1.1, where ``1e-3`` and ``1E3`` (no dot) are strings, so ``alpha=1e-3`` would
be refused as "not a number", while ``0x10``, ``0b11``, ``1_000`` and ``1:30`` (sexagesimal: 90) are
numbers nobody meant. :func:`load` resolves numbers as YAML 1.2's core schema does: integers are
decimal (``12``, ``-3``, ``+5``); floats are ``1e-3``, ``1E3``, ``.5``, ``5.``, ``-2.5e+4``,
``.inf`` and ``.nan``; anything else (hex, octal, binary, underscores, sexagesimal) stays a
string, which the option's own check then refuses as not a number. The rest is PyYAML's
``safe_load`` unchanged.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["load"]

_INT = re.compile(r"^[-+]?[0-9]+$")
_FLOAT = re.compile(
    r"""^(?:[-+]?(?:[0-9]+)\.[0-9]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9]+)(?:[eE][-+]?[0-9]+)
    |[-+]?\.[0-9]+(?:[eE][-+]?[0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.X,
)
_loader: Any = None


def _safe_loader() -> Any:
    """``yaml.SafeLoader`` with the int and float resolvers replaced by YAML 1.2's (built once)."""
    global _loader
    if _loader is None:
        import yaml

        class Loader(yaml.SafeLoader):
            pass

        # A copy of the implicit resolvers without the YAML 1.1 float pattern, then 1.2's.
        Loader.yaml_implicit_resolvers = {
            key: [(tag, rx) for tag, rx in resolvers if tag not in ("tag:yaml.org,2002:float", "tag:yaml.org,2002:int")]
            for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
        }
        Loader.add_implicit_resolver("tag:yaml.org,2002:int", _INT, list("-+0123456789"))
        Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT, list("-+0123456789."))
        _loader = Loader
    return _loader


def load(text: str) -> Any:
    """``yaml.safe_load(text)`` with YAML 1.2 floats; raises ``yaml.YAMLError`` as it does."""
    import yaml

    return yaml.load(text, Loader=_safe_loader())  # a SafeLoader subclass: safe
