"""``upvest-async export-positions``."""

from __future__ import annotations

import asyncio
import gc
import sys
import time
from pathlib import Path
from typing import Any

import click

from ..errors import ConfigurationError, UpvestError
from ..jobs.checkpoint import Checkpoint, CheckpointError
from ..jobs.export import ExportSummary, export_positions, list_account_ids
from ..jobs.resume import work_path
from ..redaction import redact
from .common import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    Target,
    client_overrides,
    one_line,
    open_client,
    plural,
    rate_limit_option,
    resolve_target,
    sandbox_options,
    stderr,
    throttling,
    write_json,
)
from .preflight import PreflightError, check_export, shown
from .progress import accounts_progress, showing_throttling

__all__ = ["export_positions_command"]

#: Failed accounts printed on standard error; all of them are in ``--summary-json``.
_SHOWN_FAILURES = 20


async def _run(
    out: Path | None,
    accounts: list[str],
    fmt: str,
    concurrency: int,
    quiet: bool,
    checkpoint: Path | None,
    target: Target,
    summary: ExportSummary,
    restart: bool,
) -> None:
    _tune_gc()
    async with open_client(target, quiet=quiet) as client:
        if not accounts:
            accounts = await list_account_ids(client)
        with accounts_progress(quiet=quiet, unit="positions") as progress:
            task = progress.add_task("export", total=len(accounts), count=0, rate=0.0,
                                     throttle="")
            started = time.monotonic()

            def advance(_: str, positions: int) -> None:
                count = progress.tasks[0].fields["count"] + positions
                rate = count / max(time.monotonic() - started, 1e-9)
                progress.update(task, advance=1, count=count, rate=rate)

            try:
                async with showing_throttling(progress, task, client.stats):
                    await export_positions(
                        client, accounts, out, fmt="csv" if fmt == "csv" else "jsonl",
                        concurrency=concurrency, checkpoint=checkpoint, on_account=advance,
                        summary=summary,
                        on_resume=lambda skipped: progress.update(task, advance=skipped),
                        restart=restart,
                    )
            finally:
                summary.requests = client.stats.requests
                summary.pages = client.stats.pages
                summary.throttled = client.stats.throttled
                summary.learned_rate = client.stats.learned_rate


def _tune_gc() -> None:
    """This process is the export's own: it decodes millions of short-lived objects (freed
    by reference counting, no cycles), so the cyclic collector runs far less often and
    skips everything imported before (about a third less CPU; benchmarks/README.md)."""
    gc.freeze()
    gc.set_threshold(20_000, 10, 10)


@click.command("export-positions")
@click.option("--out", "out", required=True, metavar="PATH",
              help="Output file, written atomically; '-' for standard output.")
@click.option("--account", "accounts", multiple=True, metavar="ID",
              help="Account id to export (repeatable).")
@click.option("--accounts-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="File with one account id per line.")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv"]), default="jsonl",
              show_default=True)
@click.option("--concurrency", type=click.IntRange(1, 256), default=8, show_default=True,
              help="Page requests in flight across all accounts.")
@click.option("--checkpoint", type=click.Path(dir_okay=False, path_type=Path),
              help="Record finished accounts here; a re-run checks <out>.partial against it, "
                   "skips them and appends the rest (exit 2, nothing sent, when they differ, "
                   "or when the export it records has finished: one checkpoint per export).")
@click.option("--restart", is_flag=True,
              help="With --checkpoint: discard the checkpoint and the work file <out>.partial "
                   "and export everything again (--out is replaced only when done).")
@click.option("--summary-json", type=click.Path(dir_okay=False, path_type=Path),
              help="Write a machine-readable summary (counts, failed accounts) here.")
@click.option("--max-retries", type=click.IntRange(0, 100), default=None,
              help="Retries per request after a failed attempt (default 2; a 429 is re-sent "
                   "for as long as it takes, paced by the rate limiter).")
@rate_limit_option
@click.option("--quiet", is_flag=True,
              help="No progress bar and no summary line when the export succeeds (for cron); "
                   "a failure is always reported, with what it left.")
@sandbox_options
def export_positions_command(
    out: str,
    accounts: tuple[str, ...],
    accounts_file: Path | None,
    fmt: str,
    concurrency: int,
    checkpoint: Path | None,
    summary_json: Path | None,
    max_retries: int | None,
    max_requests_per_second: float | None,
    quiet: bool,
    restart: bool,
    embedded_sandbox: bool,
    **sandbox: Any,
) -> None:
    """Export every position of the accounts to a JSONL or CSV file.

    Runs against the API the UPVEST_API_* variables configure (all of them: exit 2 when the
    configuration is incomplete), or with --embedded-sandbox against a local simulator.
    Without --account/--accounts-file, the accounts are those of GET /portfolios/configurations.
    Exit status: 0 complete, 1 some accounts failed (see --summary-json; the accounts that
    did export are in <out>.partial, --out is not written), 2 usage or configuration error, or
    a checkpoint that does not match its files or whose export finished (nothing sent, no file
    changed), 130 interrupted (the checkpoint, if any, is saved).
    """
    target = None if out == "-" else Path(out)
    if restart and checkpoint is None:
        raise PreflightError("--restart", "needs --checkpoint PATH")
    ids = check_export(target, accounts, accounts_file, checkpoint, summary_json, fmt=fmt,
                       verify_checkpoint=not restart)
    where = resolve_target(embedded_sandbox, sandbox,
                           **client_overrides(max_retries, max_requests_per_second))
    summary = ExportSummary()
    status, error = 0, None
    try:
        asyncio.run(_run(target, ids, fmt, concurrency, quiet, checkpoint, where, summary,
                         restart))
    except KeyboardInterrupt:
        if not summary.complete:  # else Ctrl-C came while shutting down: the work is done
            summary.interrupted = True
            status = EXIT_INTERRUPTED
    except CheckpointError as exc:
        stderr.print(f"checkpoint error: {exc}", markup=False)
        sys.exit(EXIT_USAGE)
    except ConfigurationError as exc:
        stderr.print(one_line(f"configuration error: {exc}"), markup=False)
        sys.exit(EXIT_USAGE)
    except UpvestError as exc:
        error = one_line(f"export failed: {exc}")
        status = EXIT_FAILED
    except Exception as exc:  # a bug or the environment: still write the summary, exit 1
        error = one_line(f"export failed unexpectedly: {type(exc).__name__}: "
                         f"{redact(str(exc))}")
        status = EXIT_FAILED
    if summary.failed and not status:
        status = EXIT_FAILED
    for failure in summary.failed[:_SHOWN_FAILURES]:
        stderr.print(one_line(f"account {failure.account_id} failed: {failure.error}"),
                     markup=False)
    if len(summary.failed) > _SHOWN_FAILURES:
        more = len(summary.failed) - _SHOWN_FAILURES
        stderr.print(f"... and {plural(more, 'more account')} failed"
                     + (f"; all are in {shown(summary_json)}" if summary_json else ""),
                     markup=False)
    if error is not None:
        stderr.print(error, markup=False)
    if summary_json is not None:
        write_json(summary_json, {**summary.as_dict(), "exit_status": status,
                                  "out": str(target) if target else "-"})
    if summary.interrupted:
        stderr.print(_interrupted(summary, target, checkpoint, fmt), markup=False)
    elif status or not quiet:
        stderr.print(_summary_line(summary, out, status), markup=False)
        if status:
            stderr.print(_left(summary, target, checkpoint), markup=False)
    sys.exit(status)


def _summary_line(summary: ExportSummary, out: str, status: int) -> str:
    """``Exported N positions of M accounts [(K already done)] to OUT: figures``; after a
    failure ``Export not complete (F failed): N positions of M accounts exported ...``."""
    skipped = f" ({summary.skipped:,} already done)" if summary.skipped else ""
    where = "standard output" if out == "-" else shown(out)
    figures = (f"{plural(summary.pages, 'page')}, {plural(summary.requests, 'request')}, "
               f"{summary.seconds:.2f} s, {summary.positions_per_second:,.0f} positions/s")
    counts = (f"{plural(summary.positions, 'position')} of "
              f"{plural(summary.accounts, 'account')}{skipped}")
    throttled = throttling(summary.throttled, summary.learned_rate)
    figures += f"; {throttled}" if throttled else ""
    if not status:
        return f"Exported {counts} to {where}: {figures}"
    failed = (f" ({plural(len(summary.failed), 'account')} failed)" if summary.failed
              else "")
    return f"Export not complete{failed}: {counts} exported: {figures}"


def _left(summary: ExportSummary, out: Path | None, checkpoint: Path | None) -> str:
    """What a failed run (exit 1) left, and what to do next."""
    if out is None:
        return ("The positions of the accounts exported went to standard output; the failed "
                "accounts' are missing from it")
    if summary.partial is None:
        return f"Nothing was written to {shown(out)}"
    done = summary.skipped + summary.accounts
    if checkpoint is not None:
        kept = (f"{shown(checkpoint)} records the {plural(done, 'account')} exported, in "
                f"{shown(summary.partial)}" if done else "no account was exported")
        return (f"{shown(out)} was not written; {kept}: re-run the same command to retry the "
                "failed accounts")
    kept = (f"the {plural(done, 'account')} exported {'is' if done == 1 else 'are'} in "
            f"{shown(summary.partial)}" if done else
            f"no account was exported ({shown(summary.partial)} holds none)")
    return (f"{shown(out)} was not written; {kept}; without --checkpoint that file is for "
            "inspection only: a re-run exports everything again")


def _interrupted(summary: ExportSummary, out: Path | None, checkpoint: Path | None,
                 fmt: str) -> str:
    """What an interrupted run (exit 130) left: a resume hint only when there is something
    to resume (a checkpoint that records finished accounts, and their work file)."""
    now = (f"Interrupted after {plural(summary.accounts, 'account')}" if summary.accounts
           else "Interrupted before any account was exported")
    if out is None:
        return now + ("; their positions went to standard output" if summary.accounts else "")
    if checkpoint is None:
        return (f"{now}; nothing was written to {shown(out)} (without --checkpoint an "
                "interrupted export keeps nothing)")
    done, work = _recorded(checkpoint, out, fmt), work_path(out)
    if not done or not work.exists():
        return (f"{now}; {shown(checkpoint)} records no finished account: nothing to resume"
                if checkpoint.exists() else f"{now}: nothing to resume")
    return (f"{now}; {shown(checkpoint)} records {plural(done, 'account')} done, in "
            f"{shown(work)}: re-run the same command to export the rest")


def _recorded(checkpoint: Path, out: Path, fmt: str) -> int:
    """How many finished accounts ``checkpoint`` records (0 when it is missing, empty or
    not usable)."""
    try:
        state = Checkpoint.load(checkpoint, out=out, fmt=fmt, accounts=None)
    except (CheckpointError, OSError):
        return 0
    return 0 if state is None else len(state.done)
