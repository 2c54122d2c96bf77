"""MkDocs hooks: fail the build when a public name has no docstring.

mkdocstrings renders a missing docstring as an empty entry without a warning, so this hook
loads the package with griffe (as mkdocstrings does) and, before anything is built, checks every
name in ``upvest_async.__all__`` and ``upvest_async.sandbox.__all__``: the name itself and the
public methods, properties and attributes that its reference entry shows. A name without a
docstring raises ``PluginError``, which fails ``mkdocs build`` (strict or not).
"""

from __future__ import annotations

from typing import Any

PACKAGES = ("upvest_async", "upvest_async.sandbox")


def missing_docstrings() -> list[str]:
    """Dotted paths of public names (and their public members) that have no docstring."""
    import griffe

    root = griffe.load("upvest_async", resolve_aliases=True, resolve_external=False)
    missing: list[str] = []
    for module_path in PACKAGES:
        module = root if module_path == "upvest_async" else root[module_path.split(".", 1)[1]]
        exported = module.exports or []
        for name in exported:
            name = str(name)
            target: Any = module.members[name]
            obj = target.final_target if target.is_alias else target
            if not obj.docstring or not obj.docstring.value.strip():
                missing.append(f"{module_path}.{name}")
            if obj.is_class:
                for member_name, member in obj.members.items():
                    if member_name.startswith("_") or member.is_alias:
                        continue
                    if member.is_attribute and "property" not in member.labels:
                        # Fields (attrs, enum members) are described by the class docstring.
                        continue
                    if not member.docstring or not member.docstring.value.strip():
                        missing.append(f"{module_path}.{name}.{member_name}")
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
