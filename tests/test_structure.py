"""The package's structure: two layers, the library at the top of the package and the training harness
in ``randsaliencymix.harness`` (the library never imports the harness); no import cycle among its
modules (module-level or inside functions); every module path the README and the examples name
resolves."""

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

PROJECT = Path(__file__).resolve().parents[1]
ROOT = PROJECT / "src" / "randsaliencymix"
HARNESS = "randsaliencymix.harness"
# ``python -m randsaliencymix`` runs the command line, which is the harness's: the one module outside
# the harness that may import it (and nothing imports it).
ENTRY_POINT = "randsaliencymix.__main__"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, name: str) -> Set[str]:
    """The package modules ``path`` imports anywhere in it (relative or absolute)."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: Set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("randsaliencymix"):
                found.add(target)
                for alias in node.names:  # "from . import yamlio" imports a module
                    found.add(f"{target}.{alias.name}")
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("randsaliencymix"))
    return found


def _graph() -> Dict[str, Set[str]]:
    paths = {_module_name(p): p for p in ROOT.rglob("*.py")}
    return {name: {t for t in _imports(path, name) if t in paths and t != name} for name, path in paths.items()}


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
    assert "randsaliencymix.harness.train" in graph and "randsaliencymix.harness.evaluate" in graph
    assert "randsaliencymix.harness.train" not in graph["randsaliencymix.harness.evaluate"]  # the cycle of issue 18
    cycle = _cycle(graph, ignore_packages=True)
    assert not cycle, " -> ".join(cycle)


def _in_harness(name: str) -> bool:
    return name == HARNESS or name.startswith(HARNESS + ".")


def test_library_never_imports_the_harness() -> None:
    graph = _graph()
    harness = {name for name in graph if _in_harness(name)}
    library = set(graph) - harness
    # Both layers are where the README's layout says they are.
    assert {f"{HARNESS}.cli", f"{HARNESS}.train", f"{HARNESS}.data", f"{HARNESS}.models"} <= harness
    assert {"randsaliencymix", "randsaliencymix.base", "randsaliencymix.saliency", "randsaliencymix.collate"} <= library
    assert graph[ENTRY_POINT] == {f"{HARNESS}.cli"}
    assert not any(ENTRY_POINT in targets for targets in graph.values())
    wrong = sorted(
        f"{name} imports {target}" for name in library - {ENTRY_POINT} for target in graph[name] if _in_harness(target)
    )
    assert not wrong, wrong


@pytest.mark.slow
def test_importing_the_whole_library_loads_no_harness_module() -> None:
    """At run time too (a fresh interpreter): every library module imported, no harness module loaded."""
    names = sorted(
        name
        for name in _graph()
        if not _in_harness(name) and name not in (ENTRY_POINT, "randsaliencymix.reference")  # reference: OpenCV
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
_FROM_IMPORT = re.compile(r"from\s+(randsaliencymix[\w.]*)\s+import\s+(\([^)]*\)|[^\n`\"]*)")
_DOTTED = re.compile(r"(?<![\w/.-])randsaliencymix(?:\.\w+)+")


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
    assert ("README.md", "randsaliencymix.harness.data.dataset_maps", "") in named
    assert ("README.md", "randsaliencymix.harness.pipeline.DeviceLoader", "") in named
    assert any(doc.endswith(".py") for doc, _, _ in named)
