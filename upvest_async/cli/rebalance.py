"""``upvest-async rebalance``."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import click

from ..errors import ConfigurationError, UpvestError
from ..jobs.batch import RebalanceResult, batch_idempotency_key
from ..jobs.export import list_account_ids
from ..jobs.rebalance import RebalanceSummary, run_rebalance
from .common import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    open_client,
    read_accounts,
    sandbox_options,
    stderr,
    write_json,
)
from .progress import accounts_progress

__all__ = ["rebalance_command"]


async def _run(
    out: Path,
    accounts: list[str],
    options: dict[str, Any],
    quiet: bool,
    sandbox: dict[str, Any],
    holder: list[RebalanceSummary],
) -> None:
    overrides: dict[str, Any] = {}
    # One access token for the whole batch: the admin scope also serves the list (Q6).
    if not os.environ.get("UPVEST_API_SCOPES"):
        overrides["scopes"] = ["portfolios:admin"]
    async with open_client(sandbox, quiet=quiet, **overrides) as client:
        if not accounts:
            accounts = await list_account_ids(client)
        if options["dry_run"]:
            _print_plan(accounts, options)
        with accounts_progress(quiet=quiet, unit="triggered") as progress:
            task = progress.add_task("rebalance", total=len(accounts), count=0, rate=0.0)
            started = time.monotonic()

            def advance(result: RebalanceResult) -> None:
                count = progress.tasks[0].fields["count"] + (result.status == "triggered")
                progress.update(task, advance=1, count=count,
                                rate=count / max(time.monotonic() - started, 1e-9))

            summary, _ = await run_rebalance(client, accounts, out, on_result=advance,
                                             **options)
        # The whole run's traffic, the account listing and its token request included.
        summary.requests = client.stats.requests
        summary.token_requests = client.stats.token_requests
        holder.append(summary)


def _print_plan(accounts: list[str], options: dict[str, Any]) -> None:
    size = options["group_size"]
    for start in range(0, len(accounts), size):
        group = accounts[start:start + size]
        key = (batch_idempotency_key(options["batch_id"], group) if options["batch_id"]
               else "<random per run>")
        click.echo(f"POST /portfolios/rebalancings/executions idempotency-key: {key} "
                   + json.dumps({"accounts": group}))


@click.command("rebalance")
@click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="JSONL report: exactly one line per account.")
@click.option("--accounts-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="File with one account id per line (default: all configured accounts).")
@click.option("--concurrency", type=click.IntRange(1, 512), default=16, show_default=True,
              help="Triggers in flight.")
@click.option("--batch-id", help="Derive each execution's idempotency key from this id, so "
                                 "re-running the batch creates no second execution.")
@click.option("--group-size", type=click.IntRange(1, 10_000), default=1, show_default=True,
              help="Accounts per rebalancing execution.")
@click.option("--dry-run", is_flag=True, help="Validate and print what would be sent.")
@click.option("--max-retries", type=click.IntRange(0, 100), default=None,
              help="Retries per trigger after the first attempt (default 2).")
@click.option("--summary-json", type=click.Path(dir_okay=False, path_type=Path),
              help="Write a machine-readable summary here.")
@click.option("--quiet", is_flag=True, help="No progress bar and no summary line.")
@sandbox_options
def rebalance_command(
    out: Path,
    accounts_file: Path | None,
    concurrency: int,
    batch_id: str | None,
    group_size: int,
    dry_run: bool,
    max_retries: int | None,
    summary_json: Path | None,
    quiet: bool,
    sandbox_accounts: int,
    sandbox_positions: int,
    sandbox_seed: int,
) -> None:
    """Trigger a rebalancing execution per account (or per --group-size accounts).

    Exit status: 0 all triggered, 1 some failed (see the report), 2 usage or configuration
    error, 130 interrupted (the report lists the accounts not done; re-run with the same
    --batch-id to finish without duplicates).
    """
    ids = read_accounts((), accounts_file)
    sandbox = {"accounts": sandbox_accounts, "positions_per_account": sandbox_positions,
               "seed": sandbox_seed}
    options = {"concurrency": concurrency, "batch_id": batch_id, "group_size": group_size,
               "dry_run": dry_run, "max_retries": max_retries}
    holder: list[RebalanceSummary] = []
    status = 0
    try:
        asyncio.run(_run(out, ids, options, quiet, sandbox, holder))
    except KeyboardInterrupt:
        status = EXIT_INTERRUPTED
    except ConfigurationError as exc:
        stderr.print(f"configuration error: {exc}")
        sys.exit(EXIT_USAGE)
    except UpvestError as exc:
        stderr.print(f"rebalance failed: {exc}")
        status = EXIT_FAILED
    summary = holder[0] if holder else None
    if summary is not None and summary.failed and not status:
        status = EXIT_FAILED
    if summary_json is not None:
        data = {} if summary is None else {
            "accounts": summary.accounts, "triggered": summary.triggered,
            "failed": summary.failed, "planned": summary.planned,
            "executions": summary.executions, "requests": summary.requests,
            "token_requests": summary.token_requests, "seconds": round(summary.seconds, 3)}
        write_json(summary_json, {**data, "exit_status": status, "report": str(out)})
    if summary is not None and not quiet:
        stderr.print(
            f"Rebalanced {summary.accounts:,} accounts: {summary.triggered:,} triggered, "
            f"{summary.failed:,} failed, {summary.planned:,} planned, {summary.executions:,} "
            f"executions, {summary.requests:,} requests ({summary.token_requests} token), "
            f"{summary.seconds:.2f} s; report in {out}"
        )
    elif status == EXIT_INTERRUPTED:
        stderr.print(f"Interrupted; report of what was done in {out}")
    sys.exit(status)
