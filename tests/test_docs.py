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


# --- Self-contained citations ------------------------------------------------------------------
#
# Every citation resolves inside the repository or to a public URL. The one page that defines
# the project's short codes (E endpoints, W webhooks, S shapes, Q readings) is
# docs/guides/api-readings.md; a code it does not define, a mention of a document that is not in
# the repository, or a relative link to a missing file fails here.

READINGS = ROOT / "docs" / "guides" / "api-readings.md"
_SKIPPED_DIRS = {
    ".git", "build", "site", "dist", ".ci-venv", ".venv", "venv", "node_modules", "__pycache__",
    ".mypy_cache", ".ruff_cache", ".pytest_cache", ".nox", ".hypothesis", ".tox",
}
#: The project's short codes: E1, W3, S12, Q7 (one letter, one or two digits; not an ISO week
#: such as 2021-W29).
_CODE = re.compile(r"(?<![0-9]{4}-)\b[EQSW][0-9]{1,2}\b")
#: Mentions that point outside the repository (written so that this file does not match them).
_OUTSIDE = {
    "a document outside the repository": re.compile(
        r"\b(?:ENDPOINTS|WEBHOOKS|SIGNING)\.md\b|shared[/\\]reference"
    ),
    "Upvest's reference called a seed (cite its URL or the readings page)": re.compile(
        r"(?i)\bthe\s+seeds?\b|\bseeds?\s+00[0-9]\b|\bseeds?(?:'s|s')?\s+(?:pattern|example|shape)s?\b"
    ),
    "a line number of a document outside the repository": re.compile(r"\bL[0-9]{1,5}\b"),
}
_ANCHOR = re.compile(r"\{#([a-z0-9-]+)\}")
_READINGS_LINK = re.compile(r"api-readings\.md#([A-Za-z0-9_-]+)")


def _repository_files() -> list[Path]:
    files: list[Path] = []
    for path in sorted(ROOT.rglob("*")):
        relative = path.relative_to(ROOT).parts
        if any(part in _SKIPPED_DIRS or part.endswith(".egg-info") for part in relative[:-1]):
            continue
        if path.is_file() and path.stat().st_size < 5_000_000:
            files.append(path)
    return files


def _text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError):
        return None  # binary


def _readings_anchors() -> set[str]:
    """The anchors of the readings page: explicit ``{#id}`` ones, and the other headings'."""
    text = READINGS.read_text(encoding="utf-8")
    anchors = set(_ANCHOR.findall(text))
    for heading in re.findall(r"(?m)^#{2,6} (.+?)\s*$", text):
        if not _ANCHOR.search(heading):
            anchors.add(re.sub(r"[\s]+", "-", re.sub(r"[^\w\s-]", "", heading).strip().lower()))
    return anchors


def _defined_codes() -> set[str]:
    return {anchor.upper() for anchor in _ANCHOR.findall(READINGS.read_text(encoding="utf-8"))
            if _CODE.fullmatch(anchor.upper())}


def test_the_readings_page_defines_the_codes() -> None:
    codes = _defined_codes()
    assert {f"E{n}" for n in range(1, 18)} <= codes
    assert {"W1", "S3", "S12", "Q7"} <= codes


def test_every_short_code_is_defined_on_the_readings_page() -> None:
    defined = _defined_codes()
    undefined = [
        f"{path.relative_to(ROOT)}:{number}: {code}"
        for path in _repository_files()
        if (text := _text(path)) is not None
        for number, line in enumerate(text.splitlines(), 1)
        for code in _CODE.findall(line)
        if code not in defined
    ]
    assert undefined == [], f"short codes docs/guides/api-readings.md does not define: {undefined}"


def test_nothing_cites_a_document_outside_the_repository() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{text.count(chr(10), 0, match.start()) + 1}: {what}: "
        f"{match.group(0)!r}"
        for path in _repository_files()
        if (text := _text(path)) is not None
        for what, pattern in _OUTSIDE.items()
        for match in pattern.finditer(text)  # whole text: a phrase may wrap
    ]
    assert found == [], "\n".join(found)


def test_links_into_the_readings_page_name_an_anchor_of_it() -> None:
    anchors = _readings_anchors()
    broken = [
        f"{path.relative_to(ROOT)}: #{anchor}"
        for path in _repository_files()
        if (text := _text(path)) is not None
        for anchor in _READINGS_LINK.findall(text)
        if anchor not in anchors
    ]
    assert broken == []


_CODE_SPAN = re.compile(r"(?ms)^\s*(```|~~~).*?^\s*\1|``[^`]*``|`[^`\n]*`")
_MARKDOWN_LINK = re.compile(
    r"(?m)\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)|^\s*\[[^\]]+\]:\s*(\S+)"
)


def _relative_link_targets(path: Path) -> list[str]:
    text = _CODE_SPAN.sub("", path.read_text(encoding="utf-8"))
    targets = [inline or reference for inline, reference in _MARKDOWN_LINK.findall(text)]
    return [t for t in targets if not re.match(r"(?i)^(?:[a-z][a-z0-9+.-]*:|#|//)", t)]


def test_every_relative_link_in_the_docs_resolves_to_a_file() -> None:
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    broken = [
        f"{page.relative_to(ROOT)}: {target}"
        for page in pages
        for target in _relative_link_targets(page)
        if not (page.parent / target.split("#")[0].split("?")[0]).exists()
    ]
    assert broken == [], broken
