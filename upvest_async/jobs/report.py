"""The durable report of a rebalance batch: a JSONL journal while it runs, one line per
account when it ends.

Every line is one JSON object with the same keys, :data:`RECORD_KEYS`: ``account_id``,
``batch_id``, ``idempotency_key``, ``status``, ``execution_id``, ``attempts``, ``error``,
``request_id`` and ``replayed``. **The last line of an account is its state.** Statuses:

- ``sending``: the trigger is about to be sent (journal only: the intent record);
- ``triggered``: the execution exists (``execution_id``); ``replayed`` is true when the
  answer was for a key an earlier run of this batch had already sent, or the server marked it
  as a replay (``upvest-idempotent-replay: true``): no second execution was created;
- ``failed``: the trigger failed after its retries (``error``, ``request_id``);
- ``unknown``: it was sent, and the run ended before the answer (Ctrl-C or an error);
- ``not_sent``: the run ended before it was sent;
- ``planned``: ``--dry-run``, nothing sent.

Lifecycle (see :class:`ReportJournal`): the file is created and fsynced, with its directory
entry, before the first trigger; before a trigger is sent one ``sending`` line per account is
written with a single ``write(2)`` and ``fdatasync`` (in a worker thread, so concurrent groups'
syncs overlap); each result is written as soon as it is known (one ``write(2)``: it
survives ``kill -9``; it is fsynced at the end). When the run ends, however it ends short
of ``kill -9``, the file is replaced atomically by one line per account in input order
(``sending`` becomes ``unknown``). After ``kill -9`` the journal stays:
read it last-line-wins. A torn last line (no newline) was never followed by a send; the next
run of the batch drops it.

A re-run of the batch (same ``--out``, same ``--batch-id``) reads the report with
:func:`load_report`, appends to it, and sends only the groups not ``triggered`` already, with
the same idempotency keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import json  # (read back here: orjson refuses the lone-surrogate escapes json writes)
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from .batch import RebalanceResult
from .files import atomic_text

__all__ = [
    "RECORD_KEYS",
    "SENT",
    "STATUSES",
    "PreviousReport",
    "ReportError",
    "ReportJournal",
    "load_report",
    "to_record",
]

RECORD_KEYS = ("account_id", "batch_id", "idempotency_key", "status", "execution_id",
               "attempts", "error", "request_id", "replayed")

#: Every status a report line may hold.
STATUSES = frozenset({"sending", "triggered", "failed", "unknown", "not_sent", "planned"})
#: Statuses meaning the trigger was (or may have been) sent.
SENT = frozenset({"sending", "triggered", "failed", "unknown"})


class ReportError(Exception):
    """``--out`` holds something this run must not append to or replace (a report of another
    batch, a damaged report, not a report); ``str()`` is one line."""


@attrs.frozen
class PreviousReport:
    """What an earlier run of the batch recorded: ``results`` (last state per account),
    ``size`` (bytes up to the last complete line: a torn tail is cut off before appending)."""

    results: Mapping[str, RebalanceResult]
    size: int

    @property
    def sent_keys(self) -> frozenset[str]:
        """Idempotency keys an earlier run sent (or may have sent)."""
        return frozenset(r.idempotency_key for r in self.results.values() if r.status in SENT)

    @property
    def any_sent(self) -> bool:
        """Whether an earlier run sent (or may have sent) any trigger."""
        return bool(self.sent_keys)


def to_record(result: RebalanceResult, batch_id: str | None) -> dict[str, Any]:
    """One report line's object: :data:`RECORD_KEYS`, in that order."""
    data = result.as_dict()
    return {key: batch_id if key == "batch_id" else data[key] for key in RECORD_KEYS}


def load_report(path: Path, batch_id: str | None) -> PreviousReport | None:
    """The report at ``path`` of batch ``batch_id``, ``None`` when there is no file (a plan of
    another batch, nothing sent, counts as empty); raises :class:`ReportError` when the file is
    not a report, is damaged, or records triggers of another batch."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ReportError(f"cannot read {path}: {exc.strerror}") from None
    size = data.rfind(b"\n") + 1  # a torn last line was never followed by a send
    results: dict[str, RebalanceResult] = {}
    foreign: object = None
    for number, line in enumerate(data[:size].splitlines(), start=1):
        try:
            record = json.loads(line)
            if (not isinstance(record, dict) or tuple(record) != RECORD_KEYS
                    or record["status"] not in STATUSES
                    or not isinstance(record["account_id"], str)
                    or not isinstance(record["idempotency_key"], str)):
                raise ValueError("not a report line")
            result = RebalanceResult(**{k: v for k, v in record.items() if k != "batch_id"})
        except (ValueError, TypeError, RecursionError):
            raise ReportError(f"{path}:{number} is not a line of a rebalance report (use "
                              "another --out, or --overwrite to replace the file)") from None
        if record["batch_id"] != batch_id and foreign is None:
            foreign = record["batch_id"]
        results[result.account_id] = result
    if foreign is not None:
        if all(r.status == "planned" for r in results.values()):
            return PreviousReport(results={}, size=0)  # a plan: nothing was sent
        raise ReportError(f"{path} is the report of batch {foreign!r:.80}, not "
                          f"{batch_id!r:.80} (use another --out, or --overwrite to replace it)")
    return PreviousReport(results=results, size=size)


class ReportJournal:
    """The open report of a running batch (see the module docstring)."""

    def __init__(self, path: Path, batch_id: str | None, fd: int) -> None:
        self.path = path
        self.batch_id = batch_id
        self._fd: int | None = fd

    @classmethod
    def create(cls, path: Path, batch_id: str | None,
               previous: PreviousReport | None) -> ReportJournal:
        """Create ``path`` (or, with ``previous``, open it for appending after its last
        complete line), fsync it and its directory entry."""
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_CLOEXEC", 0)
        if previous is None:
            flags |= os.O_TRUNC
        fd = os.open(path, flags, 0o644)
        try:
            if previous is not None:
                os.ftruncate(fd, previous.size)
            os.fsync(fd)
            _fsync_dir(path.parent)
        except BaseException:
            os.close(fd)
            raise
        return cls(path, batch_id, fd)

    def record(self, results: Iterable[RebalanceResult], *, durable: bool) -> None:
        """Append one line per result in one ``write(2)``; ``durable``: also ``fdatasync``
        (the intent records, before their trigger is sent)."""
        if self._fd is None:
            raise ValueError("the report is closed")
        data = "".join(json.dumps(to_record(r, self.batch_id)) + "\n" for r in results)
        view = memoryview(data.encode("utf-8"))
        while view:
            view = view[os.write(self._fd, view):]
        if durable:
            os.fdatasync(self._fd)

    async def sync(self) -> None:
        """``fdatasync`` the journal in a worker thread, so that the syncs of concurrent
        groups overlap instead of blocking the event loop one after another."""
        if self._fd is None:
            raise ValueError("the report is closed")
        await asyncio.to_thread(os.fdatasync, self._fd)

    def finish(self, results: Sequence[RebalanceResult]) -> None:
        """Replace the journal atomically by one line per result (in order) and close it."""
        self.close()
        with atomic_text(self.path) as stream:
            for result in results:
                stream.write(json.dumps(to_record(result, self.batch_id)) + "\n")
        _fsync_dir(self.path.parent)

    def close(self) -> None:
        """Fsync and close the journal (idempotent); :meth:`finish` calls it."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            with contextlib.suppress(OSError):
                os.fsync(fd)
            os.close(fd)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
