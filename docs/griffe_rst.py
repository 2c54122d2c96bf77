"""A griffe extension that turns the reST markup of our docstrings into mkdocstrings Markdown.

The docstrings are written for readers of the source (and ``help()``): Sphinx roles such as
``:class:`RawResponse``` or ``:meth:`~upvest_async.UpvestClient.with_raw_response```, and
``::`` literal blocks. For the API reference, once the package is loaded:

- a role whose target is a name the reference renders (a ``::: path`` entry of
  ``docs/reference/``, or one of its own public members) becomes a cross-reference to that
  entry, written with the path the entry has (``[RawResponse][upvest_async.RawResponse]``), so
  autorefs links it and ``mkdocs build --strict`` fails if the entry ever disappears;
- any other role (a private module, a helper not in the reference) becomes inline code;
- a paragraph ending in ``::`` followed by an indented block becomes a fenced Python block.

Nothing in the package changes: only the docstrings griffe hands to mkdocstrings.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import griffe

ROOT = "upvest_async"
PUBLIC_MODULES = ("upvest_async", "upvest_async.sandbox")
REFERENCE = Path(__file__).parent / "reference"
ROLE = re.compile(r":(?:py:)?(class|meth|func|mod|data|attr|exc|obj|const):`([^`]+)`")


class RstRoles(griffe.Extension):
    """Rewrite reST roles and literal blocks in every docstring of ``upvest_async``."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        """Rewrite the docstrings of the whole package once it is loaded."""
        if pkg.path != ROOT:
            return
        public = _public_paths(pkg)
        for obj in _walk(pkg):
            if obj.docstring is not None:
                obj.docstring.value = _literal_blocks(
                    ROLE.sub(lambda m, o=obj: _role(m, o, pkg, public), obj.docstring.value)
                )


def _walk(obj: griffe.Object) -> list[griffe.Object]:
    found = [obj]
    for member in obj.members.values():
        if not member.is_alias and isinstance(member, griffe.Object):
            found.extend(_walk(member))
    return found


def _canonical(obj: Any) -> Any:
    try:
        return obj.final_target if obj.is_alias else obj
    except (griffe.AliasResolutionError, griffe.CyclicAliasError):
        return None


def _public_paths(pkg: griffe.Module) -> dict[str, str]:
    """Canonical path of every rendered object -> the path its reference entry has."""
    public: dict[str, str] = {}
    for page in sorted(REFERENCE.glob("*.md")):
        for public_path in re.findall(r"(?m)^::: ([\w.]+)\s*$", page.read_text()):
            target = _lookup(pkg, public_path)
            if target is None:
                continue
            public.setdefault(target.path, public_path)
            if target.is_class:
                for member_name, member in target.members.items():
                    if not member_name.startswith("_") and not member.is_alias:
                        public.setdefault(
                            f"{target.path}.{member_name}", f"{public_path}.{member_name}"
                        )
    return public


def _lookup(pkg: griffe.Module, path: str) -> Any:
    if path != ROOT and not path.startswith(ROOT + "."):
        return None
    obj: Any = pkg
    for part in path.split(".")[1:]:
        obj = _canonical(obj)
        if obj is None or part not in obj.members:
            return None
        obj = obj.members[part]
    return _canonical(obj)


def _role(
    match: re.Match[str], where: griffe.Object, pkg: griffe.Module, public: dict[str, str]
) -> str:
    text = match.group(2).strip()
    short = text.startswith("~")
    target = text.lstrip("~").removesuffix("()")
    shown = target.rsplit(".", 1)[-1] if short else target.lstrip(".")
    if match.group(1) in ("meth", "func"):
        shown += "()"
    module = where if where.is_module else where.module
    scopes = [where.path]
    if where.parent is not None:
        scopes.append(where.parent.path)
    scopes += [module.path, module.path.rsplit(".", 1)[0], *PUBLIC_MODULES]
    candidates = [target] if not target.startswith(".") else []
    candidates += [f"{scope}.{target.lstrip('.')}" for scope in scopes]
    for candidate in candidates:
        obj = _lookup(pkg, candidate)
        if obj is not None and obj.path in public:
            return f"[`{shown}`][{public[obj.path]}]"
    return f"`{shown}`"


def _literal_blocks(text: str) -> str:
    lines = text.split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.rstrip().endswith("::") and i + 1 < len(lines) and not lines[i + 1].strip():
            head = line.rstrip()[:-2].rstrip()
            out.append(head + ":" if head else "")
            j = i + 1
            while j < len(lines) and not lines[j].strip():
                j += 1
            block: list[str] = []
            while j < len(lines) and (not lines[j].strip() or lines[j].startswith((" ", "\t"))):
                block.append(lines[j])
                j += 1
            while block and not block[-1].strip():
                block.pop()
            indent = min(len(b) - len(b.lstrip()) for b in block if b.strip()) if block else 0
            out += ["", "```python", *(b[indent:] for b in block), "```", ""]
            i = j
            continue
        out.append(line)
        i += 1
    return "\n".join(out)
