"""Imports in upvest_async flow one way: no cycle, and the layers below.

The graph is built from the source with ``ast``: an edge ``a -> b`` for **every** import
statement of ``a`` naming ``b``, wherever it stands (module level, inside a function or a
method, a ``try``, a ``with``, a class body), except under ``if TYPE_CHECKING:`` (type-only
imports never run). A function-local import runs later than the module's own, but it runs:
a cycle through one is still a cycle, only hidden. ``from . import x`` is an edge to the
submodule ``x`` when there is one, else to the package; importing ``a.b.c`` also imports the
packages ``a.b`` on the way, except the importer's own ancestors (already being imported).
Imports made with ``importlib`` (the CLI's command table, inside the ``cli`` layer) are not
seen.

The layers (:data:`LAYERS`), lowest first; a module may import its own layer and those its
layer lists::

    leaves (models, errors, signing, ids, ...)      storage (a database layer)
      <- transport (transport, tokens, retry loop, middlewares)
      <- pagination, webhooks  <- resources  <- client  <- jobs  <- cli (consumers)

and the sandbox beside them all: it imports nothing of ``upvest_async`` outside itself, and
only the consumers (``cli``, ``pytest_plugin``) import it. A lazy import that keeps start-up
fast stays legal as long as it follows the layers and closes no cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from support.graphs import find_cycles

import upvest_async

PACKAGE_DIR = Path(upvest_async.__file__).parent
ROOT = "upvest_async"

#: The layers, lowest first: ``(name, modules, may import)``. ``modules``: names, or a prefix
#: ending in ``*`` (``upvest_async.models*``: the package and everything in it); the longest
#: match places a module. ``may import``: the other layers it may import (its own always).
#: A new module must be placed here, or :func:`test_every_module_is_in_a_layer` fails.
LAYERS: list[tuple[str, tuple[str, ...], tuple[str, ...]]] = [
    # Beside everything: a second reading of the API that the client is tested against.
    ("sandbox", ("upvest_async.sandbox*",), ()),
    ("leaves", (
        "upvest_async.config", "upvest_async.converter", "upvest_async.errors",
        "upvest_async.ids", "upvest_async.json_body", "upvest_async.keys",
        "upvest_async.models*", "upvest_async.problems", "upvest_async.ratelimit",
        "upvest_async.records", "upvest_async.redaction", "upvest_async.responses",
        "upvest_async.retries", "upvest_async.scopes", "upvest_async.signing",
        "upvest_async.stats", "upvest_async.telemetry", "upvest_async.validation",
    ), ()),
    ("storage", ("upvest_async.storage*",), ("leaves",)),
    ("transport", (
        "upvest_async.transport", "upvest_async.tokens", "upvest_async.retry_loop",
        "upvest_async.middlewares",
    ), ("leaves",)),
    ("pagination", ("upvest_async.pagination*",), ("leaves", "transport")),
    ("webhooks", ("upvest_async.webhooks*",), ("leaves", "transport")),
    ("resources", ("upvest_async.resources*", "upvest_async.webhooks.resource"),
     ("leaves", "transport", "pagination", "webhooks")),
    ("client", ("upvest_async", "upvest_async.client"),
     ("leaves", "transport", "pagination", "webhooks", "resources")),
    ("jobs", ("upvest_async.jobs*",),
     ("leaves", "storage", "transport", "pagination", "webhooks", "resources", "client")),
    # The consumers at the top: the command line (``python -m upvest_async`` is its entry
    # point) and the pytest plugin for users' tests.
    ("cli", ("upvest_async.cli*", "upvest_async.__main__", "upvest_async.pytest_plugin"),
     ("leaves", "storage", "transport", "pagination", "webhooks", "resources", "client",
      "jobs", "sandbox")),
]

#: The only modules that may import ``upvest_async.jobs`` or ``upvest_async.cli``.
JOBS_AND_CLI_CONSUMERS = ("upvest_async.jobs*", "upvest_async.cli*", "upvest_async.__main__",
                          "upvest_async.pytest_plugin")


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


def imports_in(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement in ``tree``, at any depth, in source order, except those under
    ``if TYPE_CHECKING:`` (its ``else`` branch counts)."""
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
            return
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        for inner in ast.iter_child_nodes(node):
            visit(inner)

    visit(tree)
    return found


def _matches(module: str, pattern: str) -> bool:
    if pattern.endswith("*"):
        stem = pattern[:-1]
        return module == stem or module.startswith(stem + ".")
    return module == pattern


def layer_of(module: str) -> str | None:
    """The layer of ``module``: that of its longest matching pattern, ``None`` for none."""
    best: tuple[int, str] | None = None
    for name, patterns, _ in LAYERS:
        for pattern in patterns:
            if _matches(module, pattern) and (best is None or len(pattern) > best[0]):
                best = (len(pattern), name)
    return None if best is None else best[1]


def _with_packages(target: str, importer: str, modules: dict[str, Path]) -> set[str]:
    """``target`` and the packages imported on the way to it, minus the importer's ancestors
    (and itself)."""
    parts = target.split(".")
    chain = {".".join(parts[:i]) for i in range(1, len(parts) + 1)}
    ancestors = {".".join(importer.split(".")[:i]) for i in range(1, importer.count(".") + 2)}
    return {m for m in chain - ancestors if m in modules}


def import_graph() -> dict[str, dict[str, int]]:
    """Module -> {an upvest_async module it imports: the line of the first such import}."""
    modules = _modules()
    graph: dict[str, dict[str, int]] = {}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        package = name if is_package else name.rpartition(".")[0]
        edges: dict[str, int] = {}
        for node in imports_in(ast.parse(path.read_text(), str(path))):
            targets: set[str] = set()
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] == ROOT:
                        targets |= _with_packages(alias.name, name, modules)
            else:
                if node.level:
                    base_parts = package.split(".")
                    base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                    base = ".".join(base_parts + ([node.module] if node.module else []))
                else:
                    base = node.module or ""
                if base.split(".")[0] != ROOT:
                    continue
                targets |= _with_packages(base, name, modules)
                for alias in node.names:
                    submodule = f"{base}.{alias.name}"
                    if submodule in modules:
                        targets |= _with_packages(submodule, name, modules)
            for target in targets - {name}:
                edges.setdefault(target, node.lineno)
        graph[name] = edges
    return graph


def _describe(cycle: list[str], graph: dict[str, dict[str, int]]) -> str:
    members = set(cycle)
    edges = [f"{a} -> {b} (line {line})" for a in cycle
             for b, line in sorted(graph[a].items()) if b in members]
    return "{" + ", ".join(edges) + "}"


def _in_sandbox(module: str) -> bool:
    return _matches(module, "upvest_async.sandbox*")


GRAPH = import_graph()


def test_the_graph_sees_every_module_and_real_edges() -> None:
    assert set(GRAPH) == set(_modules())
    assert "upvest_async.sandbox" in GRAPH
    assert "upvest_async.client" in GRAPH["upvest_async"]
    # a function-local import is an edge: the client makes its webhooks resource on first use
    assert "upvest_async.webhooks.resource" in GRAPH["upvest_async.client"]
    # Type-only imports are not edges: nothing imports the package root at run time.
    assert not any("upvest_async" in edges for edges in GRAPH.values())


def test_no_import_cycle_outside_the_sandbox() -> None:
    cycles = [c for c in find_cycles(GRAPH) if not all(map(_in_sandbox, c))]
    assert cycles == [], "import cycles (function-local imports included): " + "; ".join(
        _describe(cycle, GRAPH) for cycle in cycles
    )


def test_every_module_is_in_a_layer() -> None:
    unplaced = sorted(module for module in GRAPH if layer_of(module) is None)
    assert unplaced == [], (
        f"modules in no layer: {', '.join(unplaced)}: place each in LAYERS in "
        "tests/test_import_graph.py (the layer whose modules it imports and that imports it)"
    )


def test_the_layers_are_ordered_and_name_only_layers_below() -> None:
    names = [name for name, _, _ in LAYERS]
    assert len(set(names)) == len(names)
    for position, (name, _, below) in enumerate(LAYERS):
        unknown_or_above = [other for other in below if other not in names[:position]]
        assert unknown_or_above == [], f"layer {name} may import {unknown_or_above}, not below it"


def test_imports_follow_the_layers() -> None:
    may_import = {name: {name, *below} for name, _, below in LAYERS}
    wrong = []
    for module, edges in sorted(GRAPH.items()):
        layer = layer_of(module)
        if layer is None or layer == "sandbox":  # the sandbox: see its own test
            continue
        for target, line in sorted(edges.items()):
            target_layer = layer_of(target)
            if target_layer is not None and target_layer not in may_import[layer]:
                wrong.append(f"{module} ({layer}) imports {target} ({target_layer}) at line "
                             f"{line}")
    assert wrong == [], "imports against the layers: " + "; ".join(wrong)


def test_only_jobs_and_the_command_line_import_jobs_and_cli() -> None:
    def consumer(module: str) -> bool:
        return any(_matches(module, pattern) for pattern in JOBS_AND_CLI_CONSUMERS)

    wrong = [
        f"{module} imports {target} (line {line})"
        for module, edges in sorted(GRAPH.items()) if not consumer(module)
        for target, line in sorted(edges.items())
        if _matches(target, "upvest_async.jobs*") or _matches(target, "upvest_async.cli*")
    ]
    assert wrong == [], "only jobs, cli and the pytest plugin may import jobs or cli: " + (
        "; ".join(wrong))


def test_the_sandbox_imports_nothing_of_upvest_async_outside_itself() -> None:
    outside = [
        f"{module} imports {target} (line {line})"
        for module, edges in sorted(GRAPH.items()) if _in_sandbox(module)
        for target, line in sorted(edges.items()) if not _in_sandbox(target)
    ]
    cycles = [_describe(c, GRAPH) for c in find_cycles(GRAPH) if all(map(_in_sandbox, c))]
    assert outside == [], "the sandbox imports the client's modules: " + "; ".join(outside)
    assert cycles == [], "import cycles inside the sandbox: " + "; ".join(cycles)


def test_the_cycle_finder_finds_cycles() -> None:
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_every_import_counts_but_type_only_ones() -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "import os\n"
        "if TYPE_CHECKING:\n    from . import client\nelse:\n    from . import ids\n"
        "try:\n    from .errors import X\nexcept ImportError:\n    pass\n"
        "def f():\n    from . import sandbox\n"
        "    if TYPE_CHECKING:\n        from . import jobs\n"
        "class C:\n    async def m(self):\n        with open(os.devnull):\n"
        "            import upvest_async.cli\n"
    )
    found = [(type(n).__name__, getattr(n, "module", None), n.names[0].name)
             for n in imports_in(ast.parse(source))]
    assert found == [
        ("ImportFrom", "typing", "TYPE_CHECKING"),
        ("Import", None, "os"),
        ("ImportFrom", None, "ids"),
        ("ImportFrom", "errors", "X"),
        ("ImportFrom", None, "sandbox"),
        ("Import", None, "upvest_async.cli"),
    ]


@pytest.mark.parametrize(("module", "layer"), [
    ("upvest_async", "client"),
    ("upvest_async.models.positions", "leaves"),
    ("upvest_async.webhooks", "webhooks"),
    ("upvest_async.webhooks.resource", "resources"),
    ("upvest_async.jobs.mirror", "jobs"),
    ("upvest_async.storage", "storage"),
    ("upvest_async.sandbox.webhooks.engine", "sandbox"),
    ("upvest_async.nothing_yet", None),
])
def test_a_module_is_placed_by_its_longest_pattern(module: str, layer: str | None) -> None:
    assert layer_of(module) == layer
