"""YAML as a user writes it: ``--config`` files, ``--mix-opt KEY=VALUE`` and compare's variant
options read numbers the way a person types them.

PyYAML follows YAML 1.1, where ``1e-3`` and ``1E3`` (no dot) are strings, so ``alpha=1e-3`` would
be refused as "not a number". :func:`load` resolves floats as YAML 1.2 does: ``1e-3``, ``1E3``,
``.5``, ``5.``, ``-2.5e+4``, ``.inf`` and ``.nan`` are floats; everything else is PyYAML's
``safe_load`` unchanged.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["load"]

_FLOAT = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |[-+]?\.[0-9_]+(?:[eE][-+]?[0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.X,
)
_loader: Any = None


def _safe_loader() -> Any:
    """``yaml.SafeLoader`` with the float resolver replaced by YAML 1.2's (built once)."""
    global _loader
    if _loader is None:
        import yaml

        class Loader(yaml.SafeLoader):
            pass

        # A copy of the implicit resolvers without the YAML 1.1 float pattern, then 1.2's.
        Loader.yaml_implicit_resolvers = {
            key: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:float"]
            for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
        }
        Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT, list("-+0123456789."))
        _loader = Loader
    return _loader


def load(text: str) -> Any:
    """``yaml.safe_load(text)`` with YAML 1.2 floats; raises ``yaml.YAMLError`` as it does."""
    import yaml

    return yaml.load(text, Loader=_safe_loader())  # a SafeLoader subclass: safe
