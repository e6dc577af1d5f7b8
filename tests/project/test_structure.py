"""The distribution's structure: two packages, the library ``randsaliencymix`` and the training
harness ``rsmix``. The library never imports the harness; the harness uses only the library's public
API (its public modules' ``__all__``); no import cycle among the modules (module-level or inside
functions); every module path the README, the docs and the examples name resolves."""

from __future__ import annotations

import ast
import importlib
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Set, Tuple

import pytest

from conftest import ROOT, public_library_modules

PROJECT = ROOT
SRC = PROJECT / "src"
LIBRARY = "randsaliencymix"
HARNESS = "rsmix"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _ours(name: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in (LIBRARY, HARNESS))


def _import_edges(path: Path, name: str) -> List[Tuple[str, str]]:
    """(module, imported name or "") for every import of our packages in ``path``, anywhere in it
    (relative or absolute): ``from m import a`` gives (m, "a"), ``import m`` gives (m, "")."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: List[Tuple[str, str]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if _ours(target):
                found.extend((target, alias.name) for alias in node.names)
        elif isinstance(node, ast.Import):
            found.extend((a.name, "") for a in node.names if _ours(a.name))
    return found


def _paths() -> Dict[str, Path]:
    return {_module_name(p): p for package in (LIBRARY, HARNESS) for p in (SRC / package).rglob("*.py")}


def _graph() -> Dict[str, Set[str]]:
    paths = _paths()
    graph: Dict[str, Set[str]] = {}
    for name, path in paths.items():
        targets: Set[str] = set()
        for module, attr in _import_edges(path, name):
            targets.add(module)
            if attr:
                targets.add(f"{module}.{attr}")  # "from . import yamlio" imports a module
        graph[name] = {t for t in targets if t in paths and t != name}
    return graph


def _cycle(graph: Dict[str, Set[str]], ignore_packages: bool) -> List[str]:
    """One cycle of module imports, or []. A package's ``__init__`` importing its submodules (and
    those reading siblings through the package) is how a package is built, not a cycle of rooms:
    edges into a package ``__init__`` from its own submodules are skipped."""
    state: Dict[str, int] = {}
    stack: List[str] = []

    def visit(node: str) -> List[str]:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if ignore_packages and node.startswith(nxt + "."):
                continue
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return []

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return []


def test_no_import_cycle_between_modules() -> None:
    graph = _graph()
    assert "rsmix.train" in graph and "rsmix.evaluate" in graph
    assert "rsmix.train" not in graph["rsmix.evaluate"]  # the cycle of issue 18
    cycle = _cycle(graph, ignore_packages=True)
    assert not cycle, " -> ".join(cycle)


def _in_harness(name: str) -> bool:
    return name == HARNESS or name.startswith(HARNESS + ".")


def test_library_never_imports_the_harness() -> None:
    graph = _graph()
    harness = {name for name in graph if _in_harness(name)}
    library = set(graph) - harness
    # Both packages are where the README's layout says they are.
    assert {
        f"{HARNESS}.cli",
        f"{HARNESS}.__main__",
        f"{HARNESS}.train",
        f"{HARNESS}.data",
        f"{HARNESS}.models",
    } <= harness
    assert {"randsaliencymix", "randsaliencymix.base", "randsaliencymix.saliency", "randsaliencymix.collate"} <= library
    wrong = sorted(f"{name} imports {target}" for name in library for target in graph[name] if _in_harness(target))
    assert not wrong, wrong


def test_the_harness_uses_only_the_librarys_public_api() -> None:
    """Every import of the library from the harness names a public module and, for ``from m import
    a``, a name in ``m.__all__``; no harness source reaches a private name through an attribute."""
    wrong = []
    seen = 0
    public = set(public_library_modules())
    assert {"randsaliencymix", "randsaliencymix.saliency", "randsaliencymix.integrations.timm"} <= public, public
    for name, path in sorted(_paths().items()):
        if not _in_harness(name):
            continue
        for module, attr in _import_edges(path, name):
            if _in_harness(module):
                continue
            seen += 1
            if module not in public:
                wrong.append(f"{name} imports the internal module {module}")
            elif attr and attr != "__version__" and attr not in importlib.import_module(module).__all__:
                wrong.append(f"{name} imports {module}.{attr}, which is not in its __all__")
        text = path.read_text(encoding="utf-8")
        wrong.extend(f"{name} names {m}" for m in re.findall(r"randsaliencymix(?:\.\w+)*\._\w+", text))
    assert seen >= 10, seen  # the harness does use the library
    assert not wrong, "\n".join(wrong)


def test_the_public_api_check_catches_an_internal_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("from randsaliencymix._random import pick_generator\nfrom randsaliencymix import geometry\n")
    edges = _import_edges(bad, "rsmix.bad")
    assert ("randsaliencymix._random", "pick_generator") in edges and ("randsaliencymix", "geometry") in edges
    assert (
        "randsaliencymix._random" not in set(public_library_modules())
        and "geometry" not in importlib.import_module("randsaliencymix").__all__
    )


@pytest.mark.slow
def test_importing_the_whole_library_loads_no_harness_module() -> None:
    """At run time too (a fresh interpreter): every library module imported, no harness module loaded."""
    names = sorted(
        name
        for name in _graph()
        if not _in_harness(name) and name != "randsaliencymix.reference"  # reference: OpenCV
    )
    code = (
        "import importlib, sys\n"
        f"for name in {names!r}: importlib.import_module(name)\n"
        f"print(sorted(m for m in sys.modules if m == {HARNESS!r} or m.startswith({HARNESS + '.'!r})))\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "[]", proc.stdout


# --------------------------------------------------------------------------------------------
# What the README, docs and examples name
# --------------------------------------------------------------------------------------------

DOCUMENTS = [
    PROJECT / "README.md",
    *sorted((PROJECT / "docs").glob("*.md")),
    *sorted((PROJECT / "examples").glob("*.py")),
]
_FROM_IMPORT = re.compile(r"from\s+((?:randsaliencymix|rsmix)[\w.]*)\s+import\s+(\([^)]*\)|[^\n`\"]*)")
_DOTTED = re.compile(r"(?<![\w/.-])(?:randsaliencymix|rsmix)(?:\.\w+)+")


def _named() -> List[Tuple[str, str, str]]:
    """(document, module or dotted name, attribute or "") for every ``from randsaliencymix... import
    a, b`` and every dotted ``randsaliencymix.x.y`` name in the documents."""
    found: List[Tuple[str, str, str]] = []
    for path in DOCUMENTS:
        text = path.read_text(encoding="utf-8")
        for match in _FROM_IMPORT.finditer(text):
            names = match.group(2).split("#", 1)[0].strip().strip("()")
            for item in names.split(","):
                item = item.strip().split(" as ", 1)[0].strip()
                if item.isidentifier():  # not a placeholder such as "..."
                    found.append((path.name, match.group(1), item))
        found.extend((path.name, dotted, "") for dotted in _DOTTED.findall(text))
    return found


def _resolve(dotted: str) -> object:
    """The object a dotted name means: its longest importable module prefix, then attributes."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj: object = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError as exc:
            if exc.name is None or not dotted.startswith(exc.name):
                raise  # a third-party module missing: a real failure, not a wrong path
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise ModuleNotFoundError(dotted)


def test_every_module_path_the_readme_docs_and_examples_name_resolves() -> None:
    named = _named()
    broken = []
    for doc, name, attr in named:
        try:
            obj = _resolve(name)
            if attr:
                getattr(obj, attr)
        except (ImportError, AttributeError) as exc:
            broken.append(f"{doc}: {name}{' import ' + attr if attr else ''}: {type(exc).__name__}: {exc}")
    assert not broken, "\n".join(broken)
    # The README's public imports and the harness paths its prose names are all found.
    assert ("README.md", "randsaliencymix", "RandSaliencyMix") in named
    assert ("README.md", "randsaliencymix.integrations.timm", "Mixup") in named
    assert ("README.md", "randsaliencymix.dataset_maps", "") in named
    assert any(doc.endswith(".py") for doc, _, _ in named)
