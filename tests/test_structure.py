"""The package's structure: no import cycle among its modules (module-level or inside functions)."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, List, Set

ROOT = Path(__file__).resolve().parents[1] / "src" / "randsaliencymix"


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
