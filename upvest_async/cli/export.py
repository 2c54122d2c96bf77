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
from ..jobs.checkpoint import CheckpointError
from ..jobs.export import ExportSummary, export_positions, list_account_ids
from ..redaction import redact
from .common import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    one_line,
    open_client,
    sandbox_options,
    stderr,
    write_json,
)
from .preflight import PreflightError, check_export
from .progress import accounts_progress

__all__ = ["export_positions_command"]


async def _run(
    out: Path | None,
    accounts: list[str],
    fmt: str,
    concurrency: int,
    quiet: bool,
    checkpoint: Path | None,
    max_retries: int | None,
    sandbox: dict[str, Any],
    summary: ExportSummary,
    restart: bool,
) -> None:
    overrides = {} if max_retries is None else {"max_retries": max_retries}
    _tune_gc()
    async with open_client(sandbox, quiet=quiet, **overrides) as client:
        if not accounts:
            accounts = await list_account_ids(client)
        with accounts_progress(quiet=quiet, unit="positions") as progress:
            task = progress.add_task("export", total=len(accounts), count=0, rate=0.0)
            started = time.monotonic()

            def advance(_: str, positions: int) -> None:
                count = progress.tasks[0].fields["count"] + positions
                rate = count / max(time.monotonic() - started, 1e-9)
                progress.update(task, advance=1, count=count, rate=rate)

            await export_positions(
                client, accounts, out, fmt="csv" if fmt == "csv" else "jsonl",
                concurrency=concurrency, checkpoint=checkpoint, on_account=advance,
                summary=summary, on_resume=lambda skipped: progress.update(task, advance=skipped),
                restart=restart,
            )
        summary.requests = client.stats.requests
        summary.pages = client.stats.pages


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
                   "skips them and appends the rest (exit 2, nothing sent, when they differ).")
@click.option("--restart", is_flag=True,
              help="With --checkpoint: discard the checkpoint and the work file <out>.partial "
                   "and export everything again (--out is replaced only when done).")
@click.option("--summary-json", type=click.Path(dir_okay=False, path_type=Path),
              help="Write a machine-readable summary (counts, failed accounts) here.")
@click.option("--max-retries", type=click.IntRange(0, 100), default=None,
              help="Retries per request after the first attempt (default 2).")
@click.option("--quiet", is_flag=True, help="No progress bar and no summary line (for cron).")
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
    quiet: bool,
    restart: bool,
    sandbox_accounts: int,
    sandbox_positions: int,
    sandbox_seed: int,
    sandbox_rate_limit: float | None,
) -> None:
    """Export every position of the accounts to a JSONL or CSV file.

    Without --account/--accounts-file, the accounts are those of GET /portfolios/configurations.
    Exit status: 0 complete, 1 some accounts failed (see --summary-json; the accounts that
    did export are in <out>.partial, --out is not written), 2 usage or configuration error, or
    a checkpoint that does not match its files (nothing sent, no file changed), 130
    interrupted (the checkpoint, if any, is saved).
    """
    target = None if out == "-" else Path(out)
    if restart and checkpoint is None:
        raise PreflightError("--restart", "needs --checkpoint PATH")
    ids = check_export(target, accounts, accounts_file, checkpoint, summary_json, fmt=fmt,
                       verify_checkpoint=not restart)
    sandbox = {"accounts": sandbox_accounts, "positions_per_account": sandbox_positions,
               "seed": sandbox_seed, "rate_limit": sandbox_rate_limit}
    summary = ExportSummary()
    status = 0
    try:
        asyncio.run(_run(target, ids, fmt, concurrency, quiet, checkpoint, max_retries, sandbox,
                         summary, restart))
    except KeyboardInterrupt:
        summary.interrupted = True
        status = EXIT_INTERRUPTED
    except CheckpointError as exc:
        stderr.print(f"checkpoint error: {exc}", markup=False)
        sys.exit(EXIT_USAGE)
    except ConfigurationError as exc:
        stderr.print(f"configuration error: {exc}")
        sys.exit(EXIT_USAGE)
    except UpvestError as exc:
        stderr.print(f"export failed: {exc}")
        status = EXIT_FAILED
    except Exception as exc:  # a bug or the environment: still write the summary, exit 1
        stderr.print(one_line(f"export failed unexpectedly: {type(exc).__name__}: "
                              f"{redact(str(exc))}"), markup=False)
        status = EXIT_FAILED
    if summary.failed and not status:
        status = EXIT_FAILED
    for failure in summary.failed:
        stderr.print(f"account {failure.account_id} failed: {failure.error}")
    if summary_json is not None:
        write_json(summary_json, {**summary.as_dict(), "exit_status": status,
                                  "out": str(target) if target else "-"})
    if summary.interrupted:
        stderr.print(f"Interrupted after {summary.accounts:,} accounts"
                     + (f"; resume with --checkpoint {checkpoint}" if checkpoint else ""))
    elif not quiet and not status:
        skipped = f" ({summary.skipped:,} already done)" if summary.skipped else ""
        stderr.print(
            f"Exported {summary.positions:,} positions of {summary.accounts:,} accounts"
            f"{skipped} to {out}: {summary.pages:,} pages, {summary.requests:,} requests, "
            f"{summary.seconds:.2f} s, {summary.positions_per_second:,.0f} positions/s"
        )
    sys.exit(status)
