"""The ``export-positions`` job: positions of many accounts to JSONL or CSV.

Output keeps the API's field names and values (decimals stay decimal strings). JSONL writes
one position object per line; CSV has a header row and flattens ``instrument`` into
``instrument.uuid`` and ``instrument.isin``.

Where the output goes:

- ``out=None``: standard output, as it is produced.
- a path, no checkpoint: a temporary file, renamed to ``out`` when the export is complete. When
  accounts failed it is renamed to ``<out>.partial`` instead (the accounts that did export, for
  inspection; not resumable) and ``out`` is left as it was; an interrupted run leaves nothing.
- a path and a checkpoint: the work file ``<out>.partial`` grows account by account and is
  renamed to ``out`` when complete (never while accounts failed); the checkpoint (see
  :mod:`.checkpoint`) lets a re-run skip finished accounts and append the rest, with no gap
  and no duplicate. A re-run first checks the checkpoint against the work file (or, once
  complete, the output) and refuses when they do not match, and when the export it records
  has finished: a checkpoint serves one export (:mod:`.resume`; ``restart`` starts anew).

An account that fails (after the client's retries) is recorded in the summary with its error
and request id, and the export goes on with the next account; a checkpointed re-run retries
it (its positions then come after the accounts exported in the first run).
"""

from __future__ import annotations

import asyncio
import csv
import io
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import attrs

from ..client import UpvestClient
from ..errors import UpvestError
from ..models import Position
from ..models.positions import PositionRecord
from ..records import PositionRecords, render_csv, render_jsonl
from .checkpoint import Checkpoint, discard, locked
from .files import atomic_text
from .resume import Resume, WorkFile, plan_resume, work_path

__all__ = ["CSV_COLUMNS", "AccountFailure", "ExportSummary", "export_positions",
           "list_account_ids"]

Format = Literal["jsonl", "csv"]

CSV_COLUMNS = (
    "account_id", "instrument.uuid", "instrument.isin", "quantity", "available_for_trading",
    "locked_for_trading", "pending_settlement",
)


@attrs.frozen
class AccountFailure:
    """An account whose positions could not be exported: ``error`` (one line) and
    ``request_id`` of the failing answer, when there was one."""

    account_id: str
    error: str
    request_id: str | None


@attrs.define
class ExportSummary:
    """Figures of one run: ``accounts`` exported now, ``skipped`` (finished in an earlier run,
    per the checkpoint), ``failed`` accounts, ``positions`` written now, ``pages`` and
    ``requests`` (HTTP requests, token requests included), ``throttled`` (of them, answered
    429: rate limited, and re-sent), ``learned_rate`` (the rate limiter's pacing rate at the
    end, requests per second; ``None``: not paced), ``seconds`` (wall clock),
    ``interrupted`` (stopped by Ctrl-C / cancellation), ``complete`` (every account is
    exported: ``out`` is written, or standard output has every position), and ``partial``:
    the path of the work file ``<out>.partial`` when the run ended without writing ``out``
    and left the accounts it did export there (``None`` otherwise: complete, standard output,
    or nothing kept)."""

    accounts: int = 0
    skipped: int = 0
    positions: int = 0
    pages: int = 0
    requests: int = 0
    throttled: int = 0
    learned_rate: float | None = None
    seconds: float = 0.0
    interrupted: bool = False
    failed: list[AccountFailure] = attrs.field(factory=list)
    complete: bool = False
    partial: str | None = None

    @property
    def positions_per_second(self) -> float:
        return self.positions / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        data = attrs.asdict(self)
        data["positions_per_second"] = round(self.positions_per_second, 1)
        data["seconds"] = round(self.seconds, 3)
        if self.learned_rate is not None:
            data["learned_rate"] = round(self.learned_rate, 2)
        return data


def render(positions: Sequence[PositionRecord] | Sequence[Position], fmt: Format) -> str:
    r"""The text of ``positions`` in ``fmt`` (no CSV header), in one piece: validated records
    (:class:`~upvest_async.records.PositionRecords`, as the export receives them) or typed
    ``Position``\ s, written alike (see :mod:`upvest_async.records`)."""
    return render_jsonl(positions) if fmt == "jsonl" else render_csv(positions)


def csv_header() -> str:
    """The CSV header row (:data:`CSV_COLUMNS`)."""
    buffer = io.StringIO()
    csv.writer(buffer).writerow(CSV_COLUMNS)
    return buffer.getvalue()


async def list_account_ids(client: UpvestClient) -> list[str]:
    """The accounts of all portfolio configurations (``GET /portfolios/configurations``)."""
    return [str(config.account_id) async for config in client.portfolios.configurations.list()]


async def _stream_accounts(
    client: UpvestClient,
    accounts: list[str],
    concurrency: int,
    summary: ExportSummary,
    write: Callable[[str, PositionRecords], None],
) -> None:
    """Export ``accounts`` in order, calling ``write(account, records)`` once per account
    with its validated records (:mod:`upvest_async.records`); a failing account is recorded
    and skipped."""
    remaining = accounts
    while remaining:
        yielded = 0
        try:
            async for account, positions in client.positions.export_records(
                remaining, concurrency=concurrency
            ):
                write(account, positions)
                yielded += 1
            return
        except UpvestError as exc:
            # Errors surface in account order: the failing account is the next one.
            failed = remaining[yielded]
            summary.failed.append(
                AccountFailure(failed, str(exc), getattr(exc, "request_id", None))
            )
            remaining = remaining[yielded + 1:]


async def export_positions(
    client: UpvestClient,
    account_ids: Sequence[str],
    out: Path | None,
    *,
    fmt: Format = "jsonl",
    concurrency: int = 8,
    checkpoint: Path | None = None,
    on_account: Callable[[str, int], None] | None = None,
    summary: ExportSummary | None = None,
    on_resume: Callable[[int], None] | None = None,
    restart: bool = False,
) -> ExportSummary:
    """Export the positions of ``account_ids`` (in that order) to ``out`` (``None``: stdout).

    ``concurrency``: bound on page requests in flight across accounts; ``checkpoint``: make the
    export resumable (see the module docs; requires a path ``out`` and distinct accounts);
    ``restart``: discard ``checkpoint`` and the work file first (:func:`.checkpoint.discard`);
    ``on_account(account_id, positions)``: called as each account is written; ``summary``: an
    object to fill (so a caller still has the figures after a cancellation); ``on_resume(n)``:
    called with the number of accounts a checkpoint already holds. Account failures are
    collected in the summary, not raised. Cancellation (Ctrl-C) stops the export, keeps the
    checkpoint consistent, and is re-raised after ``summary.interrupted`` is set.

    Raises :class:`~.checkpoint.CheckpointError`, before any request and changing no file,
    when the checkpoint cannot be resumed or records a finished export (:mod:`.resume`), and
    :class:`ValueError` for a checkpoint without ``out`` or with repeated accounts.
    """
    if checkpoint is not None and out is None:
        raise ValueError("a checkpoint needs an output file, not standard output")
    if checkpoint is not None and len(set(account_ids)) != len(account_ids):
        raise ValueError("a checkpointed export needs distinct account ids")
    started = time.perf_counter()
    pages_before, requests_before = client.stats.pages, client.stats.requests
    summary = summary if summary is not None else ExportSummary()
    try:
        if checkpoint is None or out is None:
            work = None if out is None else work_path(out)
            with atomic_text(work) as stream:
                if fmt == "csv":
                    stream.write(csv_header())

                def write(account: str, positions: PositionRecords) -> None:
                    stream.write(render(positions, fmt))
                    summary.accounts += 1
                    summary.positions += len(positions)
                    if on_account is not None:
                        on_account(account, len(positions))

                await _stream_accounts(client, list(account_ids), concurrency, summary, write)
            if work is not None and out is not None:
                if summary.failed:  # the work stays in <out>.partial, for inspection
                    summary.partial = str(work)
                else:
                    os.replace(work, out)
            summary.complete = not summary.failed
        else:
            await _export_resumable(
                client, list(account_ids), out, fmt, concurrency, checkpoint, summary,
                on_account, on_resume, restart,
            )
    except asyncio.CancelledError:
        summary.interrupted = True
        raise
    finally:
        summary.pages = client.stats.pages - pages_before
        summary.requests = client.stats.requests - requests_before
        summary.seconds = time.perf_counter() - started
    return summary


async def _export_resumable(
    client: UpvestClient,
    accounts: list[str],
    out: Path,
    fmt: Format,
    concurrency: int,
    checkpoint_path: Path,
    summary: ExportSummary,
    on_account: Callable[[str, int], None] | None,
    on_resume: Callable[[int], None] | None,
    restart: bool,
) -> None:
    work = work_path(out)
    with locked(checkpoint_path):
        if restart:
            discard(checkpoint_path, work)
        plan = plan_resume(checkpoint_path, out=out, fmt=fmt, accounts=accounts)
        if plan.action == "rename":  # complete but for the rename: finish it
            os.replace(work, out)
            summary.complete = True
            summary.skipped = len(accounts)
            if on_resume is not None:
                on_resume(summary.skipped)
            return
        state = plan.state if plan.action == "append" else None
        if state is None:
            state = Checkpoint.create(checkpoint_path, out=out, fmt=fmt, accounts=accounts)
        try:
            todo = [account for account in accounts if account not in state.done]
            summary.skipped = len(accounts) - len(todo)
            if on_resume is not None:
                on_resume(summary.skipped)
            with _open_work(work, plan, fmt, state) as stream:

                def write(account: str, positions: PositionRecords) -> None:
                    mark = stream.append(render(positions, fmt).encode("utf-8"))
                    state.finished(account, len(positions), mark)
                    summary.accounts += 1
                    summary.positions += len(positions)
                    if on_account is not None:
                        on_account(account, len(positions))

                await _stream_accounts(client, todo, concurrency, summary, write)
            if not summary.failed:  # with failures, the work stays in <out>.partial
                state.mark_complete()
                os.replace(work, out)
                summary.complete = True
        finally:
            state.close()
            if not state.complete and work.exists():
                summary.partial = str(work)


def _open_work(work: Path, plan: Resume, fmt: Format, state: Checkpoint) -> WorkFile:
    """Open the work file as ``plan`` says; a fresh one gets the CSV header, recorded as the
    ``start`` of the checkpoint."""
    stream = WorkFile(work, plan, csv_header().encode("utf-8") if fmt == "csv" else b"")
    if plan.action == "fresh":
        state.started(stream.mark)
    return stream
