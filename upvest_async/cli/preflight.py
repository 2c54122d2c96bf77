"""Pre-flight checks of the bulk commands: everything a command reads or writes is resolved and
checked before its first request, and every refusal is one :class:`PreflightError` (exit 2, one
line naming the option and the rule).

Rules (the README section "When things go wrong" lists them for users):

- account ids (``--account``, ``--accounts-file``): canonical UUIDs (8-4-4-4-12 hex, any case,
  nothing else: the rule of :mod:`upvest_async.ids`), compared and used in lower case; a file
  is UTF-8 text (a BOM is allowed), one id per line (the white space around a line is
  stripped; a ``--account`` value is read as given), blank lines, ``#`` lines and
  trailing ``# comments`` ignored; a file that lists no id, a malformed id (named
  ``FILE:LINE``) and the same account twice (compared as UUIDs, both places named) are refused;
- every path written (``--out``, ``--summary-json``, ``--checkpoint``, the work file
  ``<out>.partial``): not empty, not starting with ``-`` (a swallowed option such as
  ``--out --dry-run``; write ``./-name``), no NUL byte, a name the file system can hold, not
  a directory or other non-regular file, its parent an existing, writable directory; no two
  of them (nor the ``--accounts-file`` read) resolve to the same file; an existing
  ``--checkpoint`` must be a checkpoint of this export;
- the batch id: 1 to :data:`MAX_BATCH_ID` characters, no control or format characters, no
  leading or trailing white space, not starting with ``-``, valid Unicode.

Nothing here sends a request or creates a file.
"""

from __future__ import annotations

import os
import unicodedata
from collections.abc import Iterable, Sequence
from pathlib import Path

import click

from ..errors import UpvestError
from ..validation import check_uuid

__all__ = [
    "MAX_BATCH_ID",
    "PreflightError",
    "check_batch_id",
    "check_export",
    "check_paths",
    "read_accounts",
    "shown",
]

#: Longest accepted ``--batch-id``, in characters.
MAX_BATCH_ID = 200


class PreflightError(click.UsageError):
    """A usage error found before anything was sent: ``option`` and the ``rule`` it broke.
    Its message is one line, ``"<option>: <rule>"``; the command exits 2."""

    def __init__(self, option: str, rule: str) -> None:
        super().__init__(f"{option}: {rule}", ctx=click.get_current_context(silent=True))
        self.option = option
        self.rule = rule


def shown(path: Path | str) -> str:
    """``path`` as printable text: undecodable bytes and control characters escaped."""
    text = os.fsdecode(path) if isinstance(path, Path) else path
    escaped = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in escaped)


def read_accounts(
    accounts: Sequence[str],
    accounts_file: Path | None,
    *,
    account_option: str = "--account",
    file_option: str = "--accounts-file",
) -> list[str]:
    """The canonical account ids of the ``--account`` values, then the ``--accounts-file``
    lines, in that order; raises :class:`PreflightError` for a rule above."""
    entries = [(f"{account_option} #{i + 1}", value) for i, value in enumerate(accounts)]
    if accounts_file is not None:
        lines = _file_entries(accounts_file, file_option)
        if not lines:
            raise PreflightError(file_option, f"{shown(accounts_file)} lists no account id "
                                              "(blank and '#' lines are ignored)")
        entries += lines
    seen: dict[str, str] = {}
    ids = []
    for where, value in entries:
        option = account_option if where.startswith(account_option) else file_option
        try:
            account = check_uuid("account_id", value)
        except UpvestError:
            place = where.replace(f"{account_option} #", "value #")
            raise PreflightError(option, f"{place}: {shown(value[:60])!r} is not an account id "
                                         "(a UUID, 8-4-4-4-12 hex)") from None
        if account in seen:
            raise PreflightError(option, f"account {account} is listed twice "
                                         f"({seen[account]} and {where})")
        seen[account] = where
        ids.append(account)
    return ids


def _file_entries(path: Path, option: str) -> list[tuple[str, str]]:
    try:
        data = path.read_bytes()
    except IsADirectoryError:
        raise PreflightError(option, f"{shown(path)} is a directory") from None
    except OSError as exc:
        raise PreflightError(option, f"cannot read {shown(path)}: {exc.strerror}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        number = data[:exc.start].count(b"\n") + 1
        raise PreflightError(option, f"{shown(path)}:{number} is not UTF-8 text "
                                     f"(byte offset {exc.start})") from None
    entries = []
    for number, line in enumerate(text.split("\n"), start=1):
        value = line.split("#", 1)[0].strip()
        if value:
            entries.append((f"{shown(path)}:{number}", value))
    return entries


def check_batch_id(batch_id: str | None, *, required: bool, option: str = "--batch-id") -> None:
    """Refuse a missing (when ``required``), empty, too long or unprintable batch id."""
    if batch_id is None:
        if required:
            raise PreflightError(option, "required unless --dry-run: it derives the "
                                         "idempotency keys that make a re-run safe")
        return
    if not batch_id:
        raise PreflightError(option, "must not be empty")
    if len(batch_id) > MAX_BATCH_ID:
        raise PreflightError(option, f"must be at most {MAX_BATCH_ID} characters, "
                                     f"got {len(batch_id)}")
    try:
        batch_id.encode("utf-8")
    except UnicodeEncodeError:
        raise PreflightError(option, "must be valid UTF-8 text") from None
    if any(unicodedata.category(c) in {"Cc", "Cf", "Zl", "Zp"} for c in batch_id):
        raise PreflightError(option, "must not contain control or format characters")
    if batch_id.startswith("-"):
        raise PreflightError(option, f"{batch_id[:40]!r} looks like an option, not a batch id")
    if batch_id != batch_id.strip():
        raise PreflightError(option, "must not start or end with white space")


def check_paths(writes: Iterable[tuple[str, Path]], reads: Iterable[tuple[str, Path]] = ()) \
        -> None:
    """Check each ``(option, path)`` the command will write (rules above), and that no two
    writes, nor a write and a read, are the same file."""
    claimed: dict[str, str] = {}
    for option, path in reads:
        claimed[_identity(option, path)] = option
    for option, path in writes:
        _check_writable(option, path)
        identity = _identity(option, path)
        if identity in claimed:
            other = claimed[identity]
            raise PreflightError(option, f"{shown(path)} is the same file as {other}"
                                 if other != option else f"{shown(path)} is written twice")
        claimed[identity] = option


def _identity(option: str, path: Path) -> str:
    try:
        return os.path.realpath(path)
    except (OSError, ValueError) as exc:
        raise PreflightError(option, f"cannot resolve {shown(path)}: {exc}") from None


def _check_writable(option: str, path: Path) -> None:
    raw = os.fsencode(path)
    if not raw:
        raise PreflightError(option, "must not be empty")
    if b"\0" in raw:
        raise PreflightError(option, "must not contain a NUL byte")
    if raw.startswith(b"-"):
        raise PreflightError(option, f"{shown(path)} looks like an option (for a file of that "
                                     f"name write ./{shown(path)})")
    if raw.endswith(b"/") or path.name in {"", ".", ".."}:
        raise PreflightError(option, f"{shown(path)} names a directory, not a file")
    parent = path.parent
    try:
        if path.is_dir():
            raise PreflightError(option, f"{shown(path)} is a directory")
        if path.exists() and not path.is_file():
            raise PreflightError(option, f"{shown(path)} exists and is not a regular file")
        if not parent.exists():
            raise PreflightError(option, f"directory {shown(parent)} does not exist")
        if not parent.is_dir():
            raise PreflightError(option, f"{shown(parent)} is not a directory")
        limit = os.pathconf(parent, "PC_NAME_MAX")
    except OSError as exc:
        raise PreflightError(option, f"cannot check {shown(path)}: {exc.strerror}") from None
    # Room for the temporary names written beside it (".<name>.<pid>.tmp", "<name>.partial").
    if len(os.fsencode(path.name)) + 24 > limit:
        raise PreflightError(option, f"file name longer than {limit - 24} bytes")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise PreflightError(option, f"directory {shown(parent)} is not writable")
    if path.exists() and not os.access(path, os.W_OK):
        raise PreflightError(option, f"{shown(path)} is not writable")


def check_export(
    out: Path | None,
    accounts: Sequence[str],
    accounts_file: Path | None,
    checkpoint: Path | None,
    summary_json: Path | None,
    *,
    fmt: str = "jsonl",
    verify_checkpoint: bool = True,
) -> list[str]:
    """The pre-flight of ``export-positions`` (``out``: ``None`` for standard output); returns
    the account ids (empty: every configured account). ``verify_checkpoint``: an existing
    ``--checkpoint`` must be one for this ``out`` and ``fmt`` (read, never written, here)."""
    if checkpoint is not None and out is None:
        raise PreflightError("--checkpoint", "needs --out PATH, not standard output")
    ids = read_accounts(accounts, accounts_file)
    writes: list[tuple[str, Path]] = []
    if out is not None:
        writes.append(("--out", out))
        if checkpoint is not None:
            writes.append(("--out (its work file)", out.with_name(out.name + ".partial")))
    if checkpoint is not None:
        writes.append(("--checkpoint", checkpoint))
    if summary_json is not None:
        writes.append(("--summary-json", summary_json))
    check_paths(writes, [("--accounts-file", accounts_file)] if accounts_file else [])
    if checkpoint is not None and out is not None and verify_checkpoint and checkpoint.exists():
        _check_checkpoint(checkpoint, out, fmt, ids)
    return ids


def _check_checkpoint(path: Path, out: Path, fmt: str, ids: list[str]) -> None:
    """A resume that would be refused is refused here, before anything is sent: the checkpoint
    is checked against its work file and output (read, never written)."""
    from ..jobs.checkpoint import CheckpointError
    from ..jobs.resume import plan_resume

    try:
        plan_resume(path, out=out, fmt=fmt, accounts=ids or None)
    except CheckpointError as exc:
        raise PreflightError("--checkpoint", str(exc)) from None
    except (OSError, ValueError) as exc:
        raise PreflightError("--checkpoint", f"{shown(path)} is not a readable checkpoint "
                                             f"({type(exc).__name__})") from None
