"""What a checkpointed export checks before it resumes, and the work file it appends to.

A checkpoint (:mod:`.checkpoint`) is bound to its work file ``<out>.partial`` and, once
complete, to ``out``. Before any request is sent and before any file is changed,
:func:`plan_resume` decides:

- no checkpoint (missing or empty file), or one holding only its header: a fresh start, the
  work file is (re)created;
- an unfinished checkpoint: the work file must exist, be at least as long as the last
  recorded offset, and its bytes up to that offset must have the recorded SHA-256. Bytes after
  it (an account being written when the process died) are cut off, as is a torn last
  checkpoint line, and the export goes on with the accounts not yet recorded;
- a complete checkpoint: when the work file is still there and matches (the process died
  between recording completion and renaming), it is renamed to ``out``. Otherwise the export
  it records has finished, and a checkpoint runs one export once: it is refused, saying when
  it finished (the checkpoint's last change) and that ``--restart`` starts a new export; a
  re-run must not succeed having exported nothing (a nightly job with a fixed
  ``--checkpoint``). ``out`` is checked first (it must exist and match, length and SHA-256),
  so the refusal says whether it is still the finished export. The same holds for a
  checkpoint that records every account but lost its completion line, when the work file is
  gone and ``out`` matches the last line exactly.

Anything else is refused with :class:`~.checkpoint.CheckpointError` (one line: what does not
match, and how to start over), leaving every file as it was.
"""

from __future__ import annotations

import datetime
import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Literal, Self

import attrs

from .checkpoint import Checkpoint, CheckpointError, Mark, hash_prefix

__all__ = ["Resume", "WorkFile", "plan_resume", "work_path"]

_RESTART = "start over with --restart"


def work_path(out: Path) -> Path:
    """The work file of the export to ``out``: ``<out>.partial`` beside it."""
    return out.with_name(out.name + ".partial")


@attrs.frozen
class Resume:
    """What a checkpointed export does: ``"fresh"`` (start, ``state`` is ``None`` or holds
    only a header), ``"append"`` (go on after ``state.last``, whose running hash ``digest``
    continues) or ``"rename"`` (complete but for its last step: move the work file to
    ``out``)."""

    action: Literal["fresh", "append", "rename"]
    state: Checkpoint | None = None
    digest: hashlib._Hash | None = None


def _matches(path: Path, mark: Mark) -> tuple[bool, hashlib._Hash | None, int]:
    """Whether ``path`` starts with the bytes ``mark`` vouches for; its hash state there,
    and its size. Raises :class:`CheckpointError` when it cannot be read."""
    try:
        size = path.stat().st_size
        digest = hash_prefix(path, mark.offset) if size >= mark.offset else None
    except OSError as exc:
        raise CheckpointError(f"cannot read {path}: {exc.strerror}") from None
    return digest is not None and digest.hexdigest() == mark.sha256, digest, size


def _exactly(path: Path, mark: Mark) -> tuple[bool, int]:
    """Whether ``path`` holds exactly the bytes ``mark`` vouches for, nothing more; and its
    size (see :func:`_matches`)."""
    same, _, size = _matches(path, mark)
    return same and size == mark.offset, size


def plan_resume(
    checkpoint: Path, *, out: Path, fmt: str, accounts: Sequence[str] | None
) -> Resume:
    """Check the checkpoint ``checkpoint`` of the export of ``accounts`` (``None``: not
    checked) to ``out`` in ``fmt`` against its files, changing nothing (module docs).

    Raises :class:`CheckpointError` when the export cannot be resumed.
    """
    state = Checkpoint.load(checkpoint, out=out, fmt=fmt, accounts=accounts)
    if state is None or state.last is None:
        return Resume("fresh", state)
    work = work_path(out)
    if state.complete:
        if work.exists() and _exactly(work, state.last)[0]:
            return Resume("rename", state)
        if not out.exists():
            raise CheckpointError(
                f"checkpoint {checkpoint} records a complete export to {out}, but {out} does "
                f"not exist; put it back, or {_RESTART}")
        exact, size = _exactly(out, state.last)
        if not exact:
            raise CheckpointError(
                f"{out} is not the complete export checkpoint {checkpoint} recorded "
                f"({_difference(size, state.last)}); put it back, or {_RESTART}")
        raise _finished(checkpoint, out)
    recorded = f"{len(state.done)} finished accounts, {state.last.offset} bytes"
    if (not work.exists() and len(state.done) == state.accounts and out.exists()
            and _exactly(out, state.last)[0]):  # only the completion line was lost
        raise _finished(checkpoint, out)
    if not work.exists():
        raise CheckpointError(
            f"checkpoint {checkpoint} records {recorded} in {work}, but {work} does not "
            f"exist; {_RESTART}")
    same, digest, size = _matches(work, state.last)
    if not same:
        raise CheckpointError(
            f"{work} does not match checkpoint {checkpoint} ({recorded}: "
            f"{_difference(size, state.last)}); {_RESTART}")
    return Resume("append", state, digest)


def _finished(checkpoint: Path, out: Path) -> CheckpointError:
    """The refusal of a checkpoint whose export finished: when (the checkpoint's last
    change, local time with its offset), and how to start a new export."""
    try:
        when = datetime.datetime.fromtimestamp(checkpoint.stat().st_mtime).astimezone()
        at = f" at {when.isoformat(timespec='seconds')}"
    except (OSError, ValueError, OverflowError):
        at = ""
    return CheckpointError(
        f"checkpoint {checkpoint} records an export to {out} that finished{at}; a checkpoint "
        f"serves one export: --restart starts a new export (or give each run its own "
        f"--checkpoint)")


def _difference(size: int, mark: Mark) -> str:
    if size < mark.offset:
        return f"the file has {size} bytes, {mark.offset} were recorded"
    return f"the SHA-256 of its first {mark.offset} bytes differs"


class WorkFile:
    """The work file, open for appending whole accounts; keeps the running SHA-256 of its
    bytes. ``mark`` is where it ends."""

    def __init__(self, path: Path, plan: Resume, header: bytes) -> None:
        """Open ``path`` as ``plan`` says: ``"fresh"`` recreates it holding ``header``;
        ``"append"`` cuts it to ``plan.state.last``. Raises :class:`OSError`."""
        if plan.action == "append":
            assert plan.state is not None and plan.state.last is not None
            assert plan.digest is not None
            self._stream: BinaryIO = path.open("r+b")
            self._stream.seek(plan.state.last.offset)
            self._stream.truncate()
            self._digest = plan.digest
            self._offset = plan.state.last.offset
        else:
            self._stream = path.open("w+b")
            self._digest = hashlib.sha256()
            self._offset = 0
            self.append(header)

    @property
    def mark(self) -> Mark:
        """The length of the file and the SHA-256 of all its bytes."""
        return Mark(self._offset, self._digest.hexdigest())

    def append(self, data: bytes) -> Mark:
        """Write ``data`` at the end, flush and fsync; returns the new :attr:`mark`."""
        self._stream.write(data)
        self._stream.flush()
        os.fsync(self._stream.fileno())
        self._digest.update(data)
        self._offset += len(data)
        return self.mark

    def close(self) -> None:
        """Close the file."""
        self._stream.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
