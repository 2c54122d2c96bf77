"""The embedded sandbox is independent of the client: no module of ``upvest_async/sandbox/``
imports anything of ``upvest_async`` outside it (at module level, inside functions, or for type
checking), its own imports have no cycle (counting imports inside functions), and a copy of the
directory runs as a top-level package of its own with ``upvest_async`` unimportable."""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

from support.graphs import find_cycles

import upvest_async.sandbox

SANDBOX_DIR = Path(upvest_async.sandbox.__file__).resolve().parent  # the installed package's
PACKAGE = "upvest_async.sandbox"


def _modules() -> dict[str, Path]:
    """Dotted name to file of every module of the sandbox."""
    modules: dict[str, Path] = {}
    for path in sorted(SANDBOX_DIR.rglob("*.py")):
        parts = [*PACKAGE.split("."), *path.relative_to(SANDBOX_DIR).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(
    node: ast.AST, *, type_checking: bool = False
) -> list[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Every import under ``node`` (also inside functions and classes), each with whether it
    sits under ``if TYPE_CHECKING:``."""
    found: list[tuple[ast.Import | ast.ImportFrom, bool]] = []
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.Import | ast.ImportFrom):
            found.append((child, type_checking))
        elif isinstance(child, ast.If) and _is_type_checking(child.test):
            for statement in child.body:
                found += _imports(ast.Module([statement], []), type_checking=True)
            for statement in child.orelse:
                found += _imports(ast.Module([statement], []), type_checking=type_checking)
        else:
            found += _imports(child, type_checking=type_checking)
    return found


def _targets(module: str, path: Path, node: ast.Import | ast.ImportFrom) -> list[str]:
    """The absolute module names ``node`` imports (``from x import y``: ``x`` and ``x.y``)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level:
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        parts = package.split(".")
        parts = parts[: len(parts) - (node.level - 1)]
        base = ".".join(parts + ([node.module] if node.module else []))
    else:
        base = node.module or ""
    return [base, *(f"{base}.{alias.name}" for alias in node.names)]


def _with_packages(target: str, importer: str, modules: dict[str, Path]) -> set[str]:
    """``target`` and the sandbox packages imported on the way, minus the importer's
    ancestors."""
    parts = target.split(".")
    chain = {".".join(parts[:i]) for i in range(1, len(parts) + 1)}
    ancestors = {".".join(importer.split(".")[:i]) for i in range(1, importer.count(".") + 2)}
    return {name for name in chain - ancestors if name in modules}


def _escapes(target: str) -> bool:
    return (target == "upvest_async" or target.startswith("upvest_async.")) and not (
        target == PACKAGE or target.startswith(PACKAGE + ".")
    )


def test_no_sandbox_module_imports_the_rest_of_upvest_async() -> None:
    modules = _modules()
    assert {"upvest_async.sandbox", "upvest_async.sandbox.scopes",
            "upvest_async.sandbox.webhooks.signer"} <= set(modules)
    escaping = [
        f"{path.relative_to(SANDBOX_DIR.parent)}:{node.lineno} imports {target}"
        for module, path in modules.items()
        for node, _ in _imports(ast.parse(path.read_text(), str(path)))
        for target in _targets(module, path, node)
        if _escapes(target)
    ]
    assert escaping == []


def test_the_walker_sees_imports_inside_functions_and_type_checking_blocks() -> None:
    source = textwrap.dedent("""
        from typing import TYPE_CHECKING
        from ..client import UpvestClient
        if TYPE_CHECKING:
            from ...scopes import TOKEN_PATH
        def f():
            import upvest_async.retries
            from .webhooks import signer
        class C:
            def g(self):
                from upvest_async.sandbox import Sandbox
    """)
    path = SANDBOX_DIR / "state.py"
    found = [
        (target, type_checking)
        for node, type_checking in _imports(ast.parse(source))
        for target in _targets("upvest_async.sandbox.state", path, node)
    ]
    assert ("upvest_async.client", False) in found
    assert ("upvest_async.sandbox.webhooks.signer", False) in found
    assert [t for t, _ in found if _escapes(t)] == [
        "upvest_async.client", "upvest_async.client.UpvestClient", "upvest_async.retries",
    ]
    assert ("upvest_async.sandbox.webhooks.signer", False) in found
    assert any(type_checking for _, type_checking in found)


def test_the_sandbox_import_graph_has_no_cycle_counting_imports_in_functions() -> None:
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        edges: set[str] = set()
        for node, type_checking in _imports(ast.parse(path.read_text(), str(path))):
            if type_checking:
                continue
            for target in _targets(module, path, node):
                edges |= _with_packages(target, module, modules)
        edges.discard(module)
        graph[module] = edges
    assert "upvest_async.sandbox.idempotency" in graph["upvest_async.sandbox.state"]
    cycles = find_cycles(graph)
    assert cycles == [], "; ".join(" <-> ".join(cycle) for cycle in cycles)


_RUN_THE_COPY = """
import asyncio, importlib.abc, json, sys

class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "upvest_async" or name.startswith("upvest_async."):
            raise ImportError(f"the sandbox copy imported {name}")
        return None

sys.meta_path.insert(0, Refuse())

import aiohttp
import sandbox_copy

async def main() -> dict[str, object]:
    async with sandbox_copy.Sandbox(accounts=2, positions_per_account=3, seed=5) as sandbox:
        settings = sandbox.client_settings()
        async with aiohttp.ClientSession() as session:
            async with session.get(sandbox.base_url + "/accounts") as response:
                answered = (response.status, response.content_type)
    return {
        "answered": list(answered),
        "accounts": sandbox.account_ids,
        "settings": sorted(settings),
        "loaded": sorted(m for m in sys.modules if m.split(".")[0] == "upvest_async"),
    }

print(json.dumps(asyncio.run(main())))
"""


def test_a_copy_of_the_sandbox_runs_as_a_package_of_its_own(tmp_path: Path) -> None:
    shutil.copytree(SANDBOX_DIR, tmp_path / "sandbox_copy",
                    ignore=shutil.ignore_patterns("__pycache__"))
    # ``sandbox_copy`` is found on PYTHONPATH (the tests' PYTHONSAFEPATH keeps the working
    # directory off sys.path).
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", _RUN_THE_COPY], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["loaded"] == []
    assert result["answered"] == [401, "application/problem+json"]  # unsigned: refused
    assert len(result["accounts"]) == 2
    assert result["settings"] == ["base_url", "client_id", "client_secret", "key_id",
                                  "private_key", "private_key_passphrase"]
