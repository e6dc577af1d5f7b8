"""The library's stated public surface: which modules are public, their ``__all__``, the README.

Every library module (the harness aside) says in its docstring whether it is public ("Public:")
or an implementation detail ("Internal: ... may change without notice"); every name a public
module exports is there and documented, and the README's "Public API" section lists exactly the
public modules. The package's ``__all__`` lists exactly its public names, and each module's
``__all__`` every public definition it makes."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
import types

import pytest

import randsaliencymix
from conftest import ROOT, public_library_modules


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
    assert public_library_modules() == [
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


@pytest.mark.parametrize("name", public_library_modules())
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
    assert sorted(listed) == public_library_modules()
    assert "internal" in section.lower()


# ------------------------------------------------------------------------------------------------
# Exports: the package's and each module's ``__all__``
# ------------------------------------------------------------------------------------------------


def test_package_all_lists_exactly_its_public_names():
    public = {
        name
        for name, value in vars(randsaliencymix).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert sorted(randsaliencymix.__all__) == sorted(public)
    assert len(set(randsaliencymix.__all__)) == len(randsaliencymix.__all__)
    for name in randsaliencymix.__all__:
        assert getattr(randsaliencymix, name) is not None


MODULES = [
    "params",
    "geometry",
    "base",
    "mixing",
    "randsaliency",
    "saliency",
    "cam",
    "pairing",
    "guided",
    "loss",
    "reference",
    "_checks",
    "_random",
]


@pytest.mark.parametrize("module", MODULES)
def test_module_all_is_defined_and_lists_every_public_definition(module):
    mod = importlib.import_module(f"randsaliencymix.{module}")
    for name in mod.__all__:
        assert hasattr(mod, name), name
    defined = {
        name
        for name, value in vars(mod).items()
        if not name.startswith("_")
        and (inspect.isfunction(value) or inspect.isclass(value))
        and value.__module__ == mod.__name__
    }
    assert defined <= set(mod.__all__), defined - set(mod.__all__)


def test_mixing_still_exports_every_name_it_had():
    from randsaliencymix.mixing import (  # noqa: F401
        SALIENCY_ON,
        CutMix,
        Mixer,
        MixParams,
        MixUp,
        NoMix,
        RandomChoiceMix,
        RandSaliencyMix,
        SaliencyMix,
        apply_mix,
        source_share,
        window_mass,
    )

    assert Mixer is randsaliencymix.Mixer


@pytest.mark.slow
@pytest.mark.parametrize(
    "module",
    [
        "collate",
        "integrations.timm",
        "integrations._patches",
        "apply",
        "params",
        "saliency._cached",
        "saliency",
        "rsmix.models",
        "rsmix.data",
    ],
)
def test_new_modules_list_their_public_definitions(module: str) -> None:
    mod = importlib.import_module(module if module.startswith("rsmix") else f"randsaliencymix.{module}")
    defined = {
        name
        for name, value in vars(mod).items()
        if not name.startswith("_")
        and (inspect.isfunction(value) or inspect.isclass(value))
        and value.__module__ == mod.__name__
    }
    assert defined <= set(mod.__all__) and all(hasattr(mod, name) for name in mod.__all__)
    assert randsaliencymix.MixCollate is importlib.import_module("randsaliencymix.collate").MixCollate
