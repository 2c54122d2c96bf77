"""``upvest-async rebalance``: pre-flight (:mod:`.preflight`), then the job
(:func:`~upvest_async.jobs.rebalance.run_rebalance`) with its durable report
(:mod:`upvest_async.jobs.report`)."""

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
from ..jobs.rebalance import RebalanceSummary, check_plan, run_rebalance
from ..jobs.report import PreviousReport, ReportError, load_report
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
from .preflight import PreflightError, check_batch_id, check_paths, read_accounts, shown
from .progress import accounts_progress, showing_throttling

__all__ = ["MAX_CONCURRENCY", "rebalance_command"]

#: Largest ``--concurrency`` (triggers in flight).
MAX_CONCURRENCY = 512
#: Failed accounts printed on standard error; the rest are in the report.
_SHOWN_FAILURES = 20


async def _run(
    out: Path,
    accounts: list[str] | None,
    options: dict[str, Any],
    quiet: bool,
    target: Target,
    previous: PreviousReport | None,
    summary: RebalanceSummary,
) -> None:
    if options["dry_run"] and accounts is not None:
        # Nothing to read and nothing to send: no client, no embedded sandbox.
        _print_plan(accounts, options)
        await run_rebalance(None, accounts, out, previous=previous, summary=summary, **options)
        return
    async with open_client(target, quiet=quiet) as client:
        if accounts is None:  # --all-accounts
            accounts = await list_account_ids(client)
            check_plan(accounts, options["batch_id"], options["group_size"], previous,
                       dry_run=options["dry_run"])
        if options["dry_run"]:
            _print_plan(accounts, options)
        with accounts_progress(quiet=quiet, unit="triggered") as progress:
            task = progress.add_task("rebalance", total=len(accounts), count=0, rate=0.0,
                                     throttle="")
            started = time.monotonic()

            def advance(result: RebalanceResult) -> None:
                count = progress.tasks[0].fields["count"] + (result.status == "triggered")
                progress.update(task, advance=1, count=count,
                                rate=count / max(time.monotonic() - started, 1e-9))

            try:
                async with showing_throttling(progress, task, client.stats):
                    await run_rebalance(client, accounts, out, on_result=advance,
                                        previous=previous, summary=summary, **options)
            finally:
                # The whole run's traffic, the account listing and its token request included.
                summary.requests = client.stats.requests
                summary.token_requests = client.stats.token_requests
                summary.throttled = client.stats.throttled
                summary.learned_rate = client.stats.learned_rate


def _print_plan(accounts: list[str], options: dict[str, Any]) -> None:
    size = options["group_size"]
    for start in range(0, len(accounts), size):
        group = accounts[start:start + size]
        key = (batch_idempotency_key(options["batch_id"], group) if options["batch_id"]
               else "<random per run>")
        click.echo(f"POST /portfolios/rebalancings/executions idempotency-key: {key} "
                   + json.dumps({"accounts": group}))


def _preflight(
    out: Path, accounts: tuple[str, ...], accounts_file: Path | None, all_accounts: bool,
    batch_id: str | None, dry_run: bool, group_size: int, summary_json: Path | None,
    overwrite: bool,
) -> tuple[list[str] | None, PreviousReport | None]:
    """Everything checked before the first request (README "When things go wrong")."""
    given = bool(accounts) or accounts_file is not None
    if all_accounts and given:
        raise PreflightError("--all-accounts", "cannot be combined with --account or "
                                               "--accounts-file")
    if not all_accounts and not given:
        raise PreflightError("--account/--accounts-file/--all-accounts",
                             "name the accounts to rebalance (--all-accounts for every "
                             "configured account); the scope is never inferred")
    check_batch_id(batch_id, required=not dry_run)
    ids = None if all_accounts else read_accounts(accounts, accounts_file)
    if str(out) == "-":
        raise PreflightError("--out", "the report must be a file, not standard output")
    writes = [("--out", out)] + ([("--summary-json", summary_json)] if summary_json else [])
    check_paths(writes, [("--accounts-file", accounts_file)] if accounts_file else [])
    try:
        try:
            previous = load_report(out, batch_id)
        except ReportError:
            if not overwrite:
                raise
            return ids, None  # not a report of this batch: replaced
        # With --all-accounts the accounts are known after the listing: checked then.
        if ids is not None or dry_run:
            check_plan(ids or [], batch_id, group_size, previous, dry_run=dry_run)
    except ReportError as exc:
        raise PreflightError("--out", str(exc)) from None
    return ids, previous


@click.command("rebalance")
@click.option("--out", "out", type=click.Path(path_type=Path), required=True,
              help="JSONL report, the durable record of every trigger: written before each "
                   "trigger is sent, one line per account at the end.")
@click.option("--account", "accounts", multiple=True, metavar="ID",
              help="Account id to rebalance (repeatable).")
@click.option("--accounts-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="File with one account id per line ('#' comments, blank lines ignored).")
@click.option("--all-accounts", is_flag=True,
              help="Rebalance every configured account (GET /portfolios/configurations); "
                   "excludes --account and --accounts-file.")
@click.option("--concurrency", type=click.IntRange(1, MAX_CONCURRENCY), default=16,
              show_default=True, help=f"Triggers in flight (at most {MAX_CONCURRENCY}).")
@click.option("--batch-id", metavar="ID",
              help="Required unless --dry-run: each execution's idempotency key is derived from "
                   "it, so re-running the batch (same --out) creates no second execution. "
                   "1-200 characters, no control characters.")
@click.option("--group-size", type=click.IntRange(1, 10_000), default=1, show_default=True,
              help="Accounts per rebalancing execution (at most 10000).")
@click.option("--dry-run", is_flag=True,
              help="Validate and print what would be sent; sends nothing (--all-accounts "
                   "still lists the accounts).")
@click.option("--max-retries", type=click.IntRange(0, 100), default=None,
              help="Retries per trigger after a failed attempt (default 2, at most 100; a 429 "
                   "is re-sent for as long as it takes, paced by the rate limiter).")
@rate_limit_option
@click.option("--summary-json", type=click.Path(path_type=Path),
              help="Write a machine-readable summary here.")
@click.option("--overwrite", is_flag=True,
              help="Replace what --out holds when it is not a report of this batch (a report "
                   "of another batch, or any file) instead of refusing. A report of this batch "
                   "is always reconciled, never replaced.")
@click.option("--quiet", is_flag=True,
              help="No progress bar and no summary line when every account is triggered; "
                   "failures are always reported.")
@sandbox_options
def rebalance_command(
    out: Path,
    accounts: tuple[str, ...],
    accounts_file: Path | None,
    all_accounts: bool,
    concurrency: int,
    batch_id: str | None,
    group_size: int,
    dry_run: bool,
    max_retries: int | None,
    max_requests_per_second: float | None,
    summary_json: Path | None,
    overwrite: bool,
    quiet: bool,
    embedded_sandbox: bool,
    **sandbox: Any,
) -> None:
    """Trigger a rebalancing execution per account (or per --group-size accounts).

    Runs against the API the UPVEST_API_* variables configure (all of them: exit 2 when the
    configuration is incomplete), or with --embedded-sandbox against a local simulator.
    --dry-run sends nothing; with --account/--accounts-file it reads nothing either (and
    starts no embedded sandbox).
    The accounts are never inferred: give --account/--accounts-file, or --all-accounts.
    Re-running with the same --batch-id and --out after a crash or Ctrl-C sends only what is
    not triggered yet, with the same idempotency keys (answers the API replays are marked
    "replayed": true). Exit status: 0 all triggered, 1 some failed or not known (see the
    report) or an unexpected error, 2 usage or configuration error (nothing sent), 130
    interrupted.
    """
    ids, previous = _preflight(out, accounts, accounts_file, all_accounts, batch_id, dry_run,
                               group_size, summary_json, overwrite)
    overrides = client_overrides(None, max_requests_per_second)
    # One access token for the whole batch: the admin scope also serves the list (Q6).
    if not os.environ.get("UPVEST_API_SCOPES"):
        overrides["scopes"] = ["portfolios:admin"]
    target = resolve_target(embedded_sandbox, sandbox, **overrides)
    options = {"concurrency": concurrency, "batch_id": batch_id, "group_size": group_size,
               "dry_run": dry_run, "max_retries": max_retries}
    summary = RebalanceSummary()
    status, error = 0, None
    try:
        asyncio.run(_run(out, ids, options, quiet, target, previous, summary))
    except KeyboardInterrupt:
        status = EXIT_INTERRUPTED
    except ReportError as exc:
        raise PreflightError("--out", str(exc)) from None
    except ConfigurationError as exc:
        stderr.print(one_line(f"configuration error: {exc}"), markup=False)
        if not summary.results:  # nothing was sent and no report was written
            sys.exit(EXIT_USAGE)
        status = EXIT_USAGE
    except UpvestError as exc:
        error = one_line(f"rebalance failed: {exc}")
        status = EXIT_FAILED
    except Exception as exc:  # a bug or an OS error: the report and summary still get written
        error = one_line(f"rebalance failed: unexpected {type(exc).__name__}: {exc}")
        status = EXIT_FAILED
    if not status and (summary.failed or summary.unknown or summary.not_sent):
        status = EXIT_FAILED
    if error is not None:
        stderr.print(error, markup=False)
    _print_failures(summary.results)
    if summary_json is not None:
        write_json(summary_json, {**summary.as_dict(), "batch_id": batch_id,
                                  "exit_status": status, "error": error, "report": str(out)})
    if status == EXIT_INTERRUPTED:
        if summary.accounts:  # run_rebalance ended: the report is written
            stderr.print(f"Interrupted; report in {shown(out)}; re-run with the same "
                         "--batch-id and --out to finish the batch", markup=False)
        else:
            kept = "is unchanged" if out.exists() else "was not written"
            stderr.print(f"Interrupted before anything was sent; {shown(out)} {kept}",
                         markup=False)
    elif summary.accounts and (status or not quiet):
        stderr.print(
            f"Rebalanced {plural(summary.accounts, 'account')}: {summary.triggered:,} "
            f"triggered ({summary.replayed:,} replayed), {summary.failed:,} failed, "
            f"{summary.unknown:,} unknown, {summary.not_sent:,} not sent, {summary.planned:,} "
            f"planned, {plural(summary.executions, 'execution')}, "
            f"{plural(summary.requests, 'request')} "
            f"({plural(summary.token_requests, 'token request')}), {summary.seconds:.2f} s"
            + (f", {throttled}" if (throttled := throttling(summary.throttled,
                                                            summary.learned_rate)) else "")
            + f"; report in {shown(out)}",
            markup=False,
        )
    sys.exit(status)


def _print_failures(results: list[RebalanceResult]) -> None:
    """One line per account failed or unknown (account, error, request id or idempotency
    key), then the count of accounts not sent."""
    bad = [r for r in results if r.status in {"failed", "unknown"}]
    for result in bad[:_SHOWN_FAILURES]:
        if result.status == "unknown":
            line = (f"account {result.account_id} unknown: sent with idempotency key "
                    f"{result.idempotency_key}, no answer received; re-run the batch")
        else:
            line = f"account {result.account_id} failed: {result.error}"
            if not result.request_id:
                line += " (no request id: no answer received)"
            elif result.request_id not in line:
                line += f" (request id {result.request_id})"
        stderr.print(one_line(line), markup=False)
    if len(bad) > _SHOWN_FAILURES:
        stderr.print(f"... and {plural(len(bad) - _SHOWN_FAILURES, 'more account')} failed "
                     "or unknown; see the report", markup=False)
    not_sent = sum(r.status == "not_sent" for r in results)
    if not_sent:
        stderr.print(f"{plural(not_sent, 'account')} not sent; re-run with the same "
                     "--batch-id and --out to send them", markup=False)
