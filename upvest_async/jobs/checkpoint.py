"""Resumable exports: which accounts are finished, and where their output ends.

A checkpoint is an append-only JSON-lines file next to the export's work file
(``<out>.partial``). After each finished account the work file is flushed and fsynced, then a
line ``{"account_id": ..., "offset": <bytes>, "positions": <n>}`` is appended (and fsynced).
On resume the work file is truncated to the last recorded offset, so an account that was being
written when the process died is dropped and exported again: no gap, no duplicate. A last line
``{"complete": true}`` marks a finished export. A torn last line (a crash while appending) is
ignored.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, TextIO

import attrs

__all__ = ["Checkpoint", "CheckpointError"]

_VERSION = 1


class CheckpointError(Exception):
    """The checkpoint belongs to another export (other output path or format) or is corrupt."""


@attrs.define
class Checkpoint:
    """The state of a resumable export; see the module docs for the file format."""

    path: Path
    out: str
    fmt: str
    done: dict[str, int] = attrs.field(factory=dict)  # account id -> positions written
    offset: int = 0
    complete: bool = False
    _stream: TextIO | None = None

    @classmethod
    def open(cls, path: Path, *, out: Path, fmt: str) -> Checkpoint:
        """Load ``path`` (or start it) for the export of ``out`` in format ``fmt``.

        Raises :class:`CheckpointError` when it was written for another output or format.
        """
        checkpoint = cls(path=path, out=str(out.resolve()), fmt=fmt)
        if path.exists():
            checkpoint._load()
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            checkpoint._append({"version": _VERSION, "out": checkpoint.out, "format": fmt})
        return checkpoint

    def _load(self) -> None:
        lines = self.path.read_text(encoding="utf-8").splitlines()
        records: list[dict[str, Any]] = []
        for number, line in enumerate(lines):
            try:
                records.append(json.loads(line))
            except ValueError:
                if number == len(lines) - 1:
                    break  # torn last line: the process died while appending it
                raise CheckpointError(f"{self.path}: line {number + 1} is corrupt") from None
        if not records or records[0].get("version") != _VERSION:
            raise CheckpointError(f"{self.path}: not an upvest-async checkpoint")
        header = records[0]
        if header.get("out") != self.out or header.get("format") != self.fmt:
            raise CheckpointError(
                f"{self.path} belongs to the export of {header.get('out')} "
                f"({header.get('format')}), not {self.out} ({self.fmt})"
            )
        for record in records[1:]:
            if record.get("complete"):
                self.complete = True
            elif "account_id" in record:
                self.done[record["account_id"]] = int(record["positions"])
                self.offset = int(record["offset"])
            elif "start" in record:
                self.offset = int(record["start"])

    def _append(self, record: dict[str, Any]) -> None:
        if self._stream is None:
            self._stream = self.path.open("a", encoding="utf-8")
        self._stream.write(json.dumps(record) + "\n")
        self._stream.flush()
        os.fsync(self._stream.fileno())

    def started(self, offset: int) -> None:
        """Record where account data begins (after a CSV header)."""
        self.offset = offset
        self._append({"start": offset})

    def finished(self, account_id: str, positions: int, offset: int) -> None:
        """Record that ``account_id`` is completely written and the work file ends at
        ``offset`` bytes (call only after flushing and fsyncing the work file)."""
        self.done[account_id] = positions
        self.offset = offset
        self._append({"account_id": account_id, "offset": offset, "positions": positions})

    def mark_complete(self) -> None:
        self.complete = True
        self._append({"complete": True})

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None
