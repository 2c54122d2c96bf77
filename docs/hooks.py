"""MkDocs hooks: fail the build when a public name has no docstring.

mkdocstrings renders a missing docstring as an empty entry without a warning, so this hook
loads the package with griffe (as mkdocstrings does) and, before anything is built, checks
every ``::: name`` entry of ``docs/reference/`` (which cover ``upvest_async.__all__`` and
``upvest_async.sandbox.__all__``; ``tests/test_docs.py`` checks that): the name itself and the
public methods and properties its entry shows. A name without a docstring raises
``PluginError``, which fails ``mkdocs build`` (strict or not).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

REFERENCE = Path(__file__).parent / "reference"


def reference_entries() -> list[str]:
    """The dotted paths of the ``::: path`` entries of the reference pages, in page order."""
    entries: list[str] = []
    for page in sorted(REFERENCE.glob("*.md")):
        entries += re.findall(r"(?m)^::: ([\w.]+)\s*$", page.read_text())
    return entries


def missing_docstrings() -> list[str]:
    """Dotted paths of rendered names (and their public members) that have no docstring."""
    import griffe

    root = griffe.load("upvest_async", resolve_aliases=True, resolve_external=False)
    missing: list[str] = []
    for path in reference_entries():
        obj: Any = root
        for part in path.split(".")[1:]:
            obj = obj.members[part]
        obj = obj.final_target if obj.is_alias else obj
        if not obj.docstring or not obj.docstring.value.strip():
            missing.append(path)
        if not obj.is_class:
            continue
        for member_name, member in obj.members.items():
            if member_name.startswith("_") or member.is_alias:
                continue
            if member.is_attribute and "property" not in member.labels:
                # Fields (attrs, enum members) are described by the class docstring.
                continue
            if not member.docstring or not member.docstring.value.strip():
                missing.append(f"{path}.{member_name}")
    return missing


def on_pre_build(config: Any, **kwargs: Any) -> None:
    """Fail the build listing every public name without a docstring."""
    from mkdocs.exceptions import PluginError

    missing = missing_docstrings()
    if missing:
        raise PluginError(
            f"{len(missing)} public name(s) without a docstring: " + ", ".join(missing)
        )


if __name__ == "__main__":
    for path in missing_docstrings():
        print(path)
