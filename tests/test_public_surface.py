"""The library's stated public surface: which modules are public, their ``__all__``, the README.

Every library module (the harness aside) says in its docstring whether it is public ("Public:")
or an implementation detail ("Internal: ... may change without notice"); every name a public
module exports is there and documented, and the README's "Public API" section lists exactly the
public modules.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from pathlib import Path

import pytest

import randsaliencymix

ROOT = Path(__file__).resolve().parents[1]


def _library_modules():
    """Every module of the library package."""
    names, packages = ["randsaliencymix"], [("randsaliencymix", randsaliencymix.__path__)]
    while packages:
        prefix, path = packages.pop()
        for info in pkgutil.iter_modules(path, prefix + "."):
            if info.name == "randsaliencymix.__main__":
                continue
            names.append(info.name)
            if info.ispkg:
                packages.append((info.name, importlib.import_module(info.name).__path__))
    return sorted(names)


LIBRARY = _library_modules()


def _declaration(name):
    doc = importlib.import_module(name).__doc__ or ""
    lines = [line for line in doc.splitlines() if line.startswith(("Public:", "Internal:"))]
    return lines


def _public_modules():
    return sorted(name for name in LIBRARY if any(line.startswith("Public:") for line in _declaration(name)))


def test_every_listed_module_is_found():
    expected = {
        "apply", "base", "cam", "collate", "geometry", "guided", "loss", "mixing", "pairing", "params",
        "randsaliency", "reference", "saliency", "selfcam", "integrations.timm", "integrations.lightning",
        "_checks", "_random",
    }  # fmt: skip
    assert {f"randsaliencymix.{name}" for name in expected} <= set(LIBRARY)


@pytest.mark.parametrize("name", [n for n in LIBRARY if n != "randsaliencymix.integrations"])
def test_every_library_module_says_whether_it_is_public(name):
    lines = _declaration(name)
    assert len(lines) == 1, f"{name}: expected one 'Public:' or 'Internal:' line in its docstring, got {lines}"
    if lines[0].startswith("Internal:"):
        assert "import from randsaliencymix" in lines[0] and "may change without notice" in lines[0], name


def test_the_public_modules_are_the_stated_ones():
    assert _public_modules() == [
        "randsaliencymix",
        "randsaliencymix.integrations.lightning",
        "randsaliencymix.integrations.timm",
        "randsaliencymix.reference",
        "randsaliencymix.saliency",
    ]


def _own_doc(obj):
    if inspect.isclass(obj):
        return vars(obj).get("__doc__")
    return getattr(obj, "__doc__", None)


@pytest.mark.parametrize("name", _public_modules())
def test_every_name_a_public_module_exports_exists_and_is_documented(name):
    module = importlib.import_module(name)
    exported = getattr(module, "__all__", None)
    assert exported, f"{name} has no __all__"
    assert len(set(exported)) == len(exported), f"{name}.__all__ repeats a name"
    for attr in exported:
        assert hasattr(module, attr), f"{name}.{attr} is in __all__ but does not exist"
        obj = getattr(module, attr)
        if inspect.isclass(obj) or inspect.isroutine(obj):
            doc = _own_doc(obj)
            assert doc and doc.strip(), f"{name}.{attr} has no docstring"
        else:  # a constant: documented by name in the module's docstring
            assert f"``{attr}``" in (module.__doc__ or ""), f"{name}.{attr} is not described in the module docstring"


def test_the_top_level_names_resolve():
    for attr in randsaliencymix.__all__:
        assert getattr(randsaliencymix, attr) is not None, attr
    namespace: dict = {}
    exec("from randsaliencymix import *", namespace)
    assert set(randsaliencymix.__all__) <= set(namespace)


def _readme_public_section():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(r"^### Public API\n(.*?)(?=^#)", text, flags=re.S | re.M)
    assert match, "README.md has no '### Public API' section"
    return match.group(1)


def test_the_readme_names_exactly_the_public_modules():
    section = _readme_public_section()
    listed = re.findall(r"^\* `(randsaliencymix[\w.]*)`", section, flags=re.M)
    assert len(listed) == len(set(listed))
    assert sorted(listed) == _public_modules()
    assert "internal" in section.lower()
