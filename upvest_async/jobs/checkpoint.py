"""Resumable exports: which accounts are finished, and the bytes the work file holds for them.

A checkpoint is an append-only file of JSON lines, bound to one export: its output ``out``,
the work file ``<out>.partial`` the output grows in, the format and the list of accounts.
Format version 2; every line is one JSON object ending in ``\\n``:

1. The header, ``{"upvest_async": "export-checkpoint", "version": 2, "out": <absolute path>,
   "format": "jsonl" | "csv", "accounts": <count>, "accounts_sha256": <hex>}``, where
   ``accounts_sha256`` is the SHA-256 of the account ids in export order, each followed by
   ``\\n``. An empty file records nothing (a fresh start); a header cut short is damage.
2. ``{"start": <bytes>, "sha256": <hex>}``: the work file was created and holds ``start`` bytes
   (the CSV header, or nothing); ``sha256`` is the SHA-256 of those bytes.
3. One line per finished account, appended after its bytes were written, flushed and fsynced
   to the work file: ``{"account_id": <id>, "positions": <n>, "offset": <bytes>, "sha256":
   <hex>}``: the length of the work file after that account, and the SHA-256 of its bytes
   ``[0, offset)`` (a running hash, so every line vouches for the whole prefix).
4. ``{"complete": true, "offset": <bytes>, "sha256": <hex>}``: every account is written; the
   work file is renamed to ``out`` right after this line, so ``offset``/``sha256`` then
   describe ``out``.

A run holds an exclusive ``flock`` on the checkpoint, so a second run of the same export
(an overlapping cron job) is refused instead of writing into the first one's files.

A line counts only when it ends in ``\\n``. A torn last line (the process died while appending
it) is ignored, and cut off before the next line is appended, so it is tolerated on every
resume, also after a second crash. Any other damage (an unparsable or out-of-order line, an
unknown format version, a header of another export) is a :class:`CheckpointError`.

What a resume checks against the work file and the output, before anything is sent or
changed, is in :mod:`.resume`; a refusal leaves every file as it was.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json  # (read back here: orjson refuses the lone-surrogate escapes json writes)
import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import attrs

__all__ = [
    "VERSION", "Checkpoint", "CheckpointError", "Mark", "accounts_sha256", "discard",
    "hash_prefix", "locked",
]

#: The checkpoint format version this release writes and reads.
VERSION = 2
_MAGIC = b'{"upvest_async": "export-checkpoint", "version": '
_V1 = b'{"version": 1, "out": '
_HEX = re.compile(r"[0-9a-f]{64}")
_CHUNK = 1 << 20
_RESTART = "start over with --restart"


class CheckpointError(Exception):
    """A checkpoint cannot be used as it is: it belongs to another export, has another format
    version, is damaged, or does not match its work file or output. The message is one line:
    what does not match, and how to start over."""


@attrs.frozen
class Mark:
    """A point in the work file: its first ``offset`` bytes have the SHA-256 ``sha256`` (hex)."""

    offset: int
    sha256: str


def accounts_sha256(accounts: Sequence[str]) -> str:
    """The SHA-256 (hex) of ``accounts`` in order, each id followed by ``\\n``."""
    digest = hashlib.sha256()
    for account in accounts:
        digest.update(account.encode("utf-8") + b"\n")
    return digest.hexdigest()


def hash_prefix(path: Path, length: int) -> hashlib._Hash | None:
    """The SHA-256 state after the first ``length`` bytes of ``path``; ``None`` when the file
    is shorter. Raises :class:`OSError` when it cannot be read."""
    digest = hashlib.sha256()
    left = length
    with path.open("rb") as stream:
        while left:
            chunk = stream.read(min(left, _CHUNK))
            if not chunk:
                return None
            digest.update(chunk)
            left -= len(chunk)
    return digest


def _is_ours(head: bytes) -> bool:
    """Whether ``head`` (a file's first bytes) can be an upvest-async checkpoint, of any version,
    torn or not."""
    return head.startswith((_MAGIC, _V1)) or _MAGIC.startswith(head)


def discard(path: Path, work: Path) -> None:
    """``--restart``: empty the checkpoint ``path`` (in place, so a lock held on it by
    :func:`locked` stays valid; an empty checkpoint records nothing) and delete the work file
    ``work``. Raises :class:`CheckpointError`, changing nothing, when ``path`` is not an
    upvest-async checkpoint (so a wrong ``--checkpoint`` never destroys a user's file)."""
    try:
        if path.exists():
            with path.open("r+b") as stream:
                if not _is_ours(stream.read(len(_MAGIC))):
                    raise CheckpointError(
                        f"{path} is not an upvest-async export checkpoint; not deleting it "
                        "(use another --checkpoint path)")
                stream.truncate(0)
        work.unlink(missing_ok=True)
    except OSError as exc:
        raise CheckpointError(f"cannot discard {exc.filename}: {exc.strerror}") from None


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock (``flock``) on the checkpoint ``path`` for one run, so
    that two runs never write the same export; the file is created empty when missing.

    Raises :class:`CheckpointError` when another process holds the lock, or the file cannot
    be opened for writing.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise CheckpointError(f"cannot open checkpoint {path}: {exc.strerror}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CheckpointError(
                f"checkpoint {path} is in use by another running export; wait for it to end, "
                "or use another --checkpoint path") from None
        yield
    finally:
        os.close(fd)


@attrs.define
class Checkpoint:
    """A loaded (or new) checkpoint; see the module docs for the file format.

    ``done``: account id -> positions written; ``start``: where account data begins;
    ``last``: the latest recorded mark (``start`` or the last finished account);
    ``complete``: the export finished.
    """

    path: Path
    out: str
    fmt: str
    accounts: int
    accounts_sha256: str
    done: dict[str, int] = attrs.field(factory=dict)
    start: Mark | None = None
    last: Mark | None = None
    complete: bool = False
    _valid: int = 0  # bytes of whole lines; a torn tail follows
    _size: int = 0
    _stream: BinaryIO | None = None

    @classmethod
    def load(
        cls, path: Path, *, out: Path, fmt: str, accounts: Sequence[str] | None
    ) -> Checkpoint | None:
        """Read ``path`` for the export of ``accounts`` (``None``: not checked) to ``out`` in
        ``fmt``, without changing it. ``None`` when it is missing or empty (nothing recorded).

        Raises :class:`CheckpointError` when it belongs to another export or version, or is
        damaged beyond a torn last line.
        """
        try:
            data = path.read_bytes() if path.exists() else b""
        except OSError as exc:
            raise CheckpointError(f"cannot read checkpoint {path}: {exc.strerror}") from None
        if not data:
            return None
        end = data.find(b"\n")
        if end < 0 or not data.startswith((_MAGIC, _V1)):
            if _is_ours(data[:len(_MAGIC)]) and end < 0:
                raise CheckpointError(
                    f"checkpoint {path} is damaged (its header line is incomplete); {_RESTART}")
            raise CheckpointError(
                f"{path} is not an upvest-async export checkpoint; use another --checkpoint path")
        header = _parse(path, data[:end], 1)
        version = header.get("version")
        if header.get("upvest_async") != "export-checkpoint" or version != VERSION:
            raise CheckpointError(
                f"checkpoint {path} has format version {version}, this release reads only "
                f"version {VERSION}: finish it with the release that wrote it, or {_RESTART}")
        count, digest = header.get("accounts"), header.get("accounts_sha256")
        recorded = (header.get("out"), header.get("format"))
        if (type(count) is not int or not isinstance(digest, str) or not _HEX.fullmatch(digest)
                or not all(isinstance(value, str) for value in recorded)):
            raise CheckpointError(f"checkpoint {path}: line 1 is corrupt; {_RESTART}")
        state = cls(path=path, out=str(out.resolve()), fmt=fmt, accounts=count,
                    accounts_sha256=digest)
        if recorded != (state.out, fmt):
            raise CheckpointError(
                f"checkpoint {path} belongs to the export of {recorded[0]} ({recorded[1]}), not "
                f"{state.out} ({fmt}); use another --checkpoint path, or {_RESTART}")
        if accounts is not None and (len(accounts), accounts_sha256(accounts)) != (
                state.accounts, state.accounts_sha256):
            raise CheckpointError(
                f"checkpoint {path} was written for another list of accounts ({state.accounts} "
                f"accounts, not these {len(accounts)}); re-run with the same accounts, or "
                f"{_RESTART}")
        state._size = len(data)
        state._valid = data.rfind(b"\n") + 1
        lines = data[end + 1:state._valid].split(b"\n")[:-1]
        for number, line in enumerate(lines, start=2):
            state._apply(_parse(path, line, number), number)
        return state

    def _apply(self, record: dict[str, Any], number: int) -> None:
        def corrupt() -> CheckpointError:
            return CheckpointError(f"checkpoint {self.path}: line {number} is corrupt; {_RESTART}")

        if self.complete:
            raise corrupt()
        keys = set(record)
        if keys == {"start", "sha256"} and self.start is None:
            self.start = self.last = _mark(record, "start", corrupt)
        elif keys == {"account_id", "positions", "offset", "sha256"} and self.last is not None:
            account, positions = record["account_id"], record["positions"]
            mark = _mark(record, "offset", corrupt)
            if (not isinstance(account, str) or account in self.done or type(positions) is not int
                    or positions < 0 or mark.offset < self.last.offset):
                raise corrupt()
            self.done[account] = positions
            self.last = mark
        elif keys == {"complete", "offset", "sha256"} and record["complete"] is True:
            if _mark(record, "offset", corrupt) != self.last or len(self.done) != self.accounts:
                raise corrupt()
            self.complete = True
        else:
            raise corrupt()

    @classmethod
    def create(cls, path: Path, *, out: Path, fmt: str, accounts: Sequence[str]) -> Checkpoint:
        """Write a new checkpoint (header only) at ``path``, replacing what is there in place
        (hold :func:`locked` on it), for the export of ``accounts`` to ``out`` in ``fmt``.
        Raises :class:`OSError`."""
        state = cls(path=path, out=str(out.resolve()), fmt=fmt, accounts=len(accounts),
                    accounts_sha256=accounts_sha256(accounts))
        header = json.dumps({
            "upvest_async": "export-checkpoint", "version": VERSION, "out": state.out,
            "format": fmt, "accounts": state.accounts, "accounts_sha256": state.accounts_sha256,
        }).encode("utf-8") + b"\n"
        with path.open("wb") as stream:
            stream.write(header)
            stream.flush()
            os.fsync(stream.fileno())
        state._size = state._valid = len(header)
        return state

    def resume(self) -> None:
        """Cut off a torn last line (call only after every check passed), so that the next
        line is appended behind the last whole one."""
        if self._size > self._valid:
            with self.path.open("r+b") as stream:
                stream.truncate(self._valid)
                os.fsync(stream.fileno())
            self._size = self._valid

    def _append(self, record: dict[str, Any]) -> None:
        if self._stream is None:
            self.resume()
            self._stream = self.path.open("ab")
        line = json.dumps(record).encode("utf-8") + b"\n"
        self._stream.write(line)
        self._stream.flush()
        os.fsync(self._stream.fileno())
        self._size = self._valid = self._size + len(line)

    def started(self, mark: Mark) -> None:
        """Record that the work file was created and holds ``mark.offset`` bytes (a CSV
        header) before any account."""
        self.start = self.last = mark
        self._append({"start": mark.offset, "sha256": mark.sha256})

    def finished(self, account_id: str, positions: int, mark: Mark) -> None:
        """Record that ``account_id`` is completely written and the work file is ``mark``
        (call only after flushing and fsyncing the work file)."""
        self.done[account_id] = positions
        self.last = mark
        self._append({"account_id": account_id, "positions": positions,
                      "offset": mark.offset, "sha256": mark.sha256})

    def mark_complete(self) -> None:
        """Record that the export is complete (before the work file is renamed to ``out``)."""
        assert self.last is not None
        self.complete = True
        self._append({"complete": True, "offset": self.last.offset, "sha256": self.last.sha256})

    def close(self) -> None:
        """Close the file (appending again reopens it)."""
        if self._stream is not None:
            self._stream.close()
            self._stream = None


def _parse(path: Path, line: bytes, number: int) -> dict[str, Any]:
    try:
        record = json.loads(line.decode("utf-8"))
    except (ValueError, RecursionError):
        record = None
    if not isinstance(record, dict):
        raise CheckpointError(f"checkpoint {path}: line {number} is corrupt; {_RESTART}")
    return record


def _mark(record: dict[str, Any], key: str, corrupt: Any) -> Mark:
    offset, sha = record[key], record["sha256"]
    if type(offset) is not int or offset < 0 or not isinstance(sha, str) or not _HEX.fullmatch(sha):
        raise corrupt()
    return Mark(offset, sha)
