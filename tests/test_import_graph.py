"""The runtime import graph of upvest_async has no cycles.

Built from the source with ``ast``: an edge ``a -> b`` for every import that runs when ``a`` is
imported, that is a module-level import (also inside a module-level ``try``/``if``/``with``)
that is not under ``if TYPE_CHECKING:``. Imports inside functions run later and are not edges.
``from . import x`` is an edge to the submodule ``x`` when there is one, else to the package;
importing ``a.b.c`` also imports the packages ``a.b`` on the way, except the importer's own
ancestors (already being imported).
"""

from __future__ import annotations

import ast
from pathlib import Path

import upvest_async

PACKAGE_DIR = Path(upvest_async.__file__).parent
ROOT = "upvest_async"


def _modules() -> dict[str, Path]:
    modules: dict[str, Path] = {}
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        parts = [ROOT, *path.relative_to(PACKAGE_DIR).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_imports(body: list[ast.stmt]) -> list[ast.Import | ast.ImportFrom]:
    found: list[ast.Import | ast.ImportFrom] = []
    for node in body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        elif isinstance(node, ast.If):
            if not _is_type_checking(node.test):
                found += _runtime_imports(node.body)
            found += _runtime_imports(node.orelse)
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody):
                found += _runtime_imports(block)
            for handler in node.handlers:
                found += _runtime_imports(handler.body)
        elif isinstance(node, ast.With):
            found += _runtime_imports(node.body)
    return found


def _with_packages(target: str, importer: str, modules: dict[str, Path]) -> set[str]:
    """``target`` and the packages imported on the way to it, minus the importer's ancestors
    (and itself)."""
    parts = target.split(".")
    chain = {".".join(parts[:i]) for i in range(1, len(parts) + 1)}
    ancestors = {".".join(importer.split(".")[:i]) for i in range(1, importer.count(".") + 2)}
    return {m for m in chain - ancestors if m in modules}


def import_graph() -> dict[str, set[str]]:
    """Module -> the upvest_async modules its import runs, as built from the source."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        package = name if is_package else name.rpartition(".")[0]
        edges: set[str] = set()
        for node in _runtime_imports(ast.parse(path.read_text(), str(path)).body):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] == ROOT:
                        edges |= _with_packages(alias.name, name, modules)
                continue
            if node.level:
                base_parts = package.split(".")
                base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            if base.split(".")[0] != ROOT:
                continue
            edges |= _with_packages(base, name, modules)
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                if submodule in modules:
                    edges |= _with_packages(submodule, name, modules)
        edges.discard(name)
        graph[name] = edges
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph.get(node, ())):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def test_the_graph_sees_every_module_and_real_edges() -> None:
    graph = import_graph()
    assert "upvest_async" in graph
    assert "upvest_async.sandbox" in graph
    assert "upvest_async.client" in graph["upvest_async"]
    # Type-only imports are not edges: nothing imports the package root at run time.
    assert not any("upvest_async" in edges for edges in graph.values())


def test_runtime_import_graph_is_acyclic() -> None:
    cycles = find_cycles(import_graph())
    assert cycles == [], "import cycles between modules (outside TYPE_CHECKING): " + "; ".join(
        " <-> ".join(cycle) for cycle in cycles
    )


def test_the_cycle_finder_finds_cycles_and_ignores_type_only_imports(tmp_path: Path) -> None:
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []
    source = (
        "from typing import TYPE_CHECKING\n"
        "import os\n"
        "if TYPE_CHECKING:\n    from . import client\n"
        "try:\n    from .errors import X\nexcept ImportError:\n    pass\n"
        "def f():\n    from . import sandbox\n"
    )
    imports = _runtime_imports(ast.parse(source).body)
    assert [(type(n).__name__, getattr(n, "module", None)) for n in imports] == [
        ("ImportFrom", "typing"),
        ("Import", None),
        ("ImportFrom", "errors"),
    ]
