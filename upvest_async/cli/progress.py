"""The progress bar of the bulk commands (rich, on standard error)."""

from __future__ import annotations

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from .common import stderr

__all__ = ["accounts_progress"]


def accounts_progress(*, quiet: bool, unit: str) -> Progress:
    """Accounts done / total, ``unit`` count (``{task.fields[count]}``), rate per second,
    elapsed time and ETA. Disabled by ``--quiet``."""
    return Progress(
        TextColumn("[bold]accounts"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[count]:,} " + unit),
        TextColumn("{task.fields[rate]:,.0f}/s"), TimeElapsedColumn(), TextColumn("ETA"),
        TimeRemainingColumn(), console=stderr, disable=quiet, transient=False,
        refresh_per_second=5,
    )
