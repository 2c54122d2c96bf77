"""The API reference covers the public surface, and every public name has a docstring.

The strict docs build (``mkdocs build --strict``, run by ``.ci/run``) enforces the same with
griffe in ``docs/hooks.py``; these tests catch a gap in the normal test run, without the docs
tools installed.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
import sys
from pathlib import Path
from typing import Any

import pytest

import upvest_async
import upvest_async.sandbox

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "docs" / "reference"
PUBLIC = {"upvest_async": upvest_async, "upvest_async.sandbox": upvest_async.sandbox}


def _reference_entries() -> set[str]:
    entries: set[str] = set()
    for page in sorted(REFERENCE.glob("*.md")):
        entries |= set(re.findall(r"(?m)^::: ([\w.]+)\s*$", page.read_text()))
    return entries


def _public_names() -> list[str]:
    return [f"{prefix}.{name}" for prefix, module in PUBLIC.items() for name in module.__all__]


def test_every_public_name_has_a_reference_entry() -> None:
    entries = _reference_entries()
    missing = [name for name in _public_names() if name not in entries]
    assert missing == [], f"names in __all__ without a `::: name` reference entry: {missing}"


def _resolve(path: str) -> Any:
    module_name, _, rest = path.partition(".")
    obj: Any = importlib.import_module(module_name)
    for part in rest.split(".") if rest else []:
        obj = getattr(obj, part, None) if hasattr(obj, part) else _submodule(obj, part)
    return obj


def _submodule(module: Any, part: str) -> Any:
    try:
        return importlib.import_module(f"{module.__name__}.{part}")
    except (ImportError, AttributeError):
        return None


def test_every_reference_entry_names_an_object() -> None:
    stale = sorted(entry for entry in _reference_entries() if _resolve(entry) is None)
    assert stale == [], f"docs/reference entries that name nothing (renamed?): {stale}"


def test_reference_pages_are_in_the_nav() -> None:
    nav = (ROOT / "mkdocs.yml").read_text()
    for page in REFERENCE.glob("*.md"):
        assert f"reference/{page.name}" in nav, page.name


def _has_attribute_docstring(module: Any, name: str) -> bool:
    """Whether ``name = ...`` in ``module``'s source is followed by a string (the attribute
    docstring griffe and mkdocstrings show)."""
    tree = ast.parse(inspect.getsource(module))
    body = tree.body
    for i, node in enumerate(body):
        targets = (
            [t.id for t in node.targets if isinstance(t, ast.Name)]
            if isinstance(node, ast.Assign)
            else [node.target.id]
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
            else []
        )
        if name in targets:
            following = body[i + 1] if i + 1 < len(body) else None
            return (
                isinstance(following, ast.Expr)
                and isinstance(following.value, ast.Constant)
                and isinstance(following.value.value, str)
                and bool(following.value.value.strip())
            )
    return False


def _defining_module(prefix: str, name: str) -> Any:
    """The module whose source assigns ``name`` (re-exported constants live elsewhere)."""
    package = importlib.import_module(prefix)
    for module_name, module in sorted(sys.modules.items()):
        if not (module_name == prefix or module_name.startswith(prefix + ".")) or module is None:
            continue
        if name in vars(module) and vars(module)[name] is vars(package)[name]:
            try:
                if _has_attribute_docstring(module, name):
                    return module
            except (OSError, TypeError):
                continue
    return None


def _rendered() -> list[tuple[str, str, Any]]:
    """(module prefix, name, object) of every public name and every other reference entry."""
    rendered = [
        (prefix, name, getattr(module, name))
        for prefix, module in PUBLIC.items()
        for name in module.__all__
    ]
    public = {f"{prefix}.{name}" for prefix, name, _ in rendered} | set(PUBLIC)
    for entry in sorted(_reference_entries() - public):
        prefix, _, name = entry.rpartition(".")
        rendered.append((prefix, name, _resolve(entry)))
    return rendered


def _undocumented() -> list[str]:
    missing: list[str] = []
    for prefix, name, obj in _rendered():
        path = f"{prefix}.{name}"
        if inspect.isclass(obj) or inspect.isfunction(obj) or inspect.ismodule(obj):
            # A class's own docstring (not an inherited one); a function's or module's.
            doc = vars(obj).get("__doc__") if inspect.isclass(obj) else obj.__doc__
            if not (doc or "").strip():
                missing.append(path)
        elif _defining_module(prefix, name) is None:
            missing.append(path)
        if not inspect.isclass(obj):
            continue
        for member_name, member in vars(obj).items():
            if member_name.startswith("_"):
                continue
            function = member
            if isinstance(member, staticmethod | classmethod):
                function = member.__func__
            elif isinstance(member, property):
                function = member.fget
            if inspect.isfunction(function) and not (function.__doc__ or "").strip():
                missing.append(f"{path}.{member_name}")
    return missing


def test_every_public_name_and_member_has_a_docstring() -> None:
    assert _undocumented() == []


def test_the_docstring_check_catches_a_missing_one(monkeypatch: pytest.MonkeyPatch) -> None:
    def undocumented(self: object) -> None:
        pass

    monkeypatch.setattr(upvest_async.RetryPolicy, "undocumented", undocumented, raising=False)
    assert _undocumented() == ["upvest_async.RetryPolicy.undocumented"]
