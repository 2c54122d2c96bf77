"""The progress bar of the bulk commands (rich, on standard error)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from ..stats import ClientStats
from .common import stderr, throttling

__all__ = ["accounts_progress", "showing_throttling"]


def accounts_progress(*, quiet: bool, unit: str) -> Progress:
    """Accounts done / total, ``unit`` count (``{task.fields[count]}``), rate per second,
    elapsed time, ETA and, once the API answered 429, the throttling
    (``{task.fields[throttle]}``, see :func:`showing_throttling`). Disabled by ``--quiet``."""
    return Progress(
        TextColumn("[bold]accounts"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[count]:,} " + unit),
        TextColumn("{task.fields[rate]:,.0f}/s"), TimeElapsedColumn(), TextColumn("ETA"),
        TimeRemainingColumn(), TextColumn("[yellow]{task.fields[throttle]}"),
        console=stderr, disable=quiet, transient=False, refresh_per_second=5,
    )


@contextlib.asynccontextmanager
async def showing_throttling(
    progress: Progress, task: TaskID, stats: ClientStats, every: float = 0.5
) -> AsyncIterator[None]:
    """Keep ``task``'s ``throttle`` field current (every ``every`` seconds) while the block
    runs: empty until the API answers 429, then how many were and the rate the client now
    paces its requests to."""

    async def watch() -> None:
        while True:
            progress.update(task, throttle=throttling(stats.throttled, stats.learned_rate,
                                                  short=True))
            await asyncio.sleep(every)

    watcher = asyncio.create_task(watch())
    try:
        yield
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        progress.update(task, throttle=throttling(stats.throttled, stats.learned_rate,
                                                  short=True))
