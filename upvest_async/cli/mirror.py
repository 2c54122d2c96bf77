"""``upvest-async mirror load`` and ``mirror serve``: the positions mirror
(:mod:`upvest_async.jobs.mirror`) on SQLite or PostgreSQL.

``--db URL``: ``sqlite:///PATH`` or ``postgresql://USER@HOST:PORT/DB``
(:func:`~upvest_async.storage.parse_database_url`); a PostgreSQL password is never on the
command line: ``PGPASSWORD``, or ``~/.pgpass`` (``PGPASSFILE``), as for ``psql``.

Exit statuses: 0 done (``serve``: stopped by SIGTERM or Ctrl-C), 1 the load failed (the table
is unchanged) or ``serve`` could not start, 2 usage or configuration error (nothing sent,
nothing written), 130 the load was interrupted (the table is unchanged).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import click

from ..config import describe_missing
from ..errors import ConfigurationError, UpvestError
from ..redaction import redact
from ..webhooks import DEFAULT_MAX_BODY_BYTES, DEFAULT_WEBHOOK_PATH
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
)
from .preflight import PreflightError, read_accounts
from .progress import accounts_progress, showing_throttling

__all__ = ["mirror_group"]


def _database_url(value: str) -> Any:
    """``--db``, parsed; a usage error (exit 2) naming the rule otherwise."""
    from ..storage import DatabaseURLError, parse_database_url

    try:
        return parse_database_url(value)
    except DatabaseURLError as exc:
        raise PreflightError("--db", str(exc)) from None


def _accounts(accounts: tuple[str, ...], accounts_file: Path | None,
              all_accounts: bool) -> list[str] | None:
    """The accounts of ``mirror load``: exactly one of ``--account``, ``--accounts-file`` and
    ``--all-accounts`` (``None``: every account, listed when the load starts)."""
    given = [name for name, present in (("--account", bool(accounts)),
                                        ("--accounts-file", accounts_file is not None),
                                        ("--all-accounts", all_accounts)) if present]
    if len(given) != 1:
        which = " and ".join(given) if given else "none was given"
        raise PreflightError(given[-1] if given else "--account",
                             "give exactly one of --account ID ..., --accounts-file F and "
                             f"--all-accounts ({which})")
    return None if all_accounts else read_accounts(accounts, accounts_file)


async def _load(url: Any, accounts: list[str] | None, target: Target, concurrency: int,
                quiet: bool, figures: dict[str, Any], summary: Any) -> Any:
    from ..jobs.export import list_account_ids
    from ..jobs.mirror import PositionsMirror
    from ..storage import open_database

    async with open_database(url) as database:
        mirror = PositionsMirror(database)
        async with open_client(target, quiet=quiet) as client:
            ids = accounts if accounts is not None else await list_account_ids(client)
            with accounts_progress(quiet=quiet, unit="positions") as progress:
                task = progress.add_task("load", total=len(ids), count=0, rate=0.0,
                                         throttle="")
                started = time.monotonic()

                def advance(_: str, positions: int) -> None:
                    count = progress.tasks[0].fields["count"] + positions
                    rate = count / max(time.monotonic() - started, 1e-9)
                    progress.update(task, advance=1, count=count, rate=rate)

                try:
                    async with showing_throttling(progress, task, client.stats):
                        return await mirror.load(client, ids, concurrency=concurrency,
                                                 on_account=advance, summary=summary)
                finally:
                    figures.update(requests=client.stats.requests, pages=client.stats.pages,
                                   throttled=client.stats.throttled,
                                   learned_rate=client.stats.learned_rate)


@click.group("mirror")
def mirror_group() -> None:
    """A mirror of positions in your database (SQLite or PostgreSQL), loaded by an export
    and kept current by webhooks."""


@mirror_group.command("load")
@click.option("--db", "db", required=True, metavar="URL",
              help="sqlite:///PATH or postgresql://USER@HOST:PORT/DB (a password: PGPASSWORD "
                   "or ~/.pgpass, never the command line).")
@click.option("--account", "accounts", multiple=True, metavar="ID",
              help="Account id to load (repeatable).")
@click.option("--accounts-file", type=click.Path(dir_okay=False, path_type=Path),
              help="File with one account id per line.")
@click.option("--all-accounts", is_flag=True,
              help="Every account of GET /portfolios/configurations.")
@click.option("--concurrency", type=click.IntRange(1, 256), default=8, show_default=True,
              help="Page requests in flight across all accounts.")
@click.option("--max-retries", type=click.IntRange(0, 100), default=None,
              help="Retries per request after a failed attempt (default 2; a 429 is re-sent "
                   "for as long as it takes, paced by the rate limiter).")
@rate_limit_option
@click.option("--quiet", is_flag=True,
              help="No progress bar and no summary line when the load succeeds (for cron).")
@sandbox_options
def load_command(db: str, accounts: tuple[str, ...], accounts_file: Path | None,
                 all_accounts: bool, concurrency: int, max_retries: int | None,
                 max_requests_per_second: float | None, quiet: bool, embedded_sandbox: bool,
                 **sandbox: Any) -> None:
    """Export the positions of the accounts into the table upvest_positions (created if
    missing), replacing those accounts in one transaction.

    Exactly one of --account, --accounts-file and --all-accounts. Runs against the API the
    UPVEST_API_* variables configure, or with --embedded-sandbox against a local simulator.
    Exit status: 0 loaded, 1 failed (the table is unchanged), 2 usage or configuration error
    (nothing sent, nothing written), 130 interrupted (the table is unchanged).
    """
    url = _database_url(db)
    ids = _accounts(accounts, accounts_file, all_accounts)
    target = resolve_target(embedded_sandbox, sandbox,
                            **client_overrides(max_retries, max_requests_per_second))
    from ..jobs.mirror import LoadSummary
    from ..storage import DatabaseUnavailableError, SchemaError

    figures: dict[str, Any] = {}
    started = time.monotonic()
    summary = LoadSummary()
    try:
        asyncio.run(_load(url, ids, target, concurrency, quiet, figures, summary))
    except KeyboardInterrupt:
        if not summary.committed:
            stderr.print(f"Interrupted: {_unchanged(url)}", markup=False)
            sys.exit(EXIT_INTERRUPTED)
        # Ctrl-C came after the final transaction committed: the load is done.
    except ConfigurationError as exc:
        stderr.print(one_line(f"configuration error: {exc}"), markup=False)
        sys.exit(EXIT_USAGE)
    except (UpvestError, DatabaseUnavailableError, SchemaError) as exc:
        stderr.print(one_line(f"load failed: {exc}; {_unchanged(url)}"), markup=False)
        sys.exit(EXIT_FAILED)
    except Exception as exc:  # the database's own errors, or a bug: the table is unchanged
        stderr.print(one_line(f"load failed unexpectedly: {type(exc).__name__}: "
                              f"{redact(str(exc))}; {_unchanged(url)}"), markup=False)
        sys.exit(EXIT_FAILED)
    if not quiet:
        seconds = time.monotonic() - started
        kept = (f", {plural(summary.kept, 'newer row')} kept" if summary.kept else "")
        line = (f"Loaded {plural(summary.positions, 'position')} of "
                f"{plural(summary.accounts, 'account')} into upvest_positions of {url} "
                f"({plural(summary.deleted, 'row')} deleted{kept}): "
                f"{plural(figures.get('pages', 0), 'page')}, "
                f"{plural(figures.get('requests', 0), 'request')}, {seconds:.2f} s, "
                f"{summary.positions / max(seconds, 1e-9):,.0f} positions/s")
        throttled = throttling(figures.get("throttled", 0), figures.get("learned_rate"))
        stderr.print(line + (f"; {throttled}" if throttled else ""), markup=False)


def _unchanged(url: Any) -> str:
    return f"upvest_positions of {url} is unchanged"


async def _serve(url: Any, sock: Any, path: str, max_body_bytes: int,
                 settings: dict[str, Any]) -> None:
    from ..webhooks.logs import MalformedRequestFilter

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    malformed = MalformedRequestFilter()  # as webhooks listen: one line per malformed request
    logging.getLogger("aiohttp.server").addFilter(malformed)
    try:
        await _receive(url, sock, path, max_body_bytes, settings, stop)
    finally:
        logging.getLogger("aiohttp.server").removeFilter(malformed)
    stderr.print("Stopped", markup=False)


async def _receive(url: Any, sock: Any, path: str, max_body_bytes: int,
                   settings: dict[str, Any], stop: asyncio.Event) -> None:
    from aiohttp import web

    from ..client import UpvestClient
    from ..jobs.mirror import PositionsMirror
    from ..storage import SQLEventStore, open_database
    from ..webhooks import webhook_app

    async with open_database(url) as database:
        mirror = PositionsMirror(database)
        async with UpvestClient(**settings) as client:
            try:
                keys = await client.webhooks.verify_keys()
            except UpvestError as exc:
                raise click.ClickException(f"cannot fetch the verification keys: {exc}") \
                    from None
            app = webhook_app(mirror.apply, client.webhooks.verifier,
                              store=SQLEventStore(database), path=path,
                              max_body_bytes=max_body_bytes)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            try:
                await web.SockSite(runner, sock).start()
                host, port = sock.getsockname()[:2]
                host = f"[{host}]" if ":" in host else host
                stderr.print(f"Ready: http://{host}:{port}{path} applies POSITION.UPDATED to "
                             f"upvest_positions of {url} ({len(keys)} key(s) of "
                             f"{client.base_url}); SIGTERM or Ctrl-C stops", markup=False)
                await stop.wait()
            finally:
                await runner.cleanup()


@mirror_group.command("serve")
@click.option("--db", "db", required=True, metavar="URL",
              help="sqlite:///PATH or postgresql://USER@HOST:PORT/DB (a password: PGPASSWORD "
                   "or ~/.pgpass, never the command line).")
@click.option("--port", type=click.IntRange(0, 65535), required=True,
              help="Port to listen on (0: any free port).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on.")
@click.option("--path", default=DEFAULT_WEBHOOK_PATH, show_default=True,
              help="The URL path webhooks are posted to.")
@click.option("--max-body-bytes", type=click.IntRange(1024), default=DEFAULT_MAX_BODY_BYTES,
              show_default=True, help="Larger requests are answered 413.")
def serve_command(db: str, port: int, host: str, path: str, max_body_bytes: int) -> None:
    """Receive Upvest's webhooks: verify each request with the keys of the API the
    UPVEST_API_* variables configure (as webhooks listen does), record each event in
    upvest_webhook_events and apply POSITION.UPDATED to upvest_positions in the same
    transaction; answer 200 only once committed (503 when the database fails).

    Any number of replicas may share one PostgreSQL database. SIGTERM or Ctrl-C stops it
    (exit status 0).
    """
    from .webhooks import _bind

    url = _database_url(db)
    if not path.startswith("/") or "?" in path or "#" in path:
        raise PreflightError("--path", "must start with / and hold no query or fragment")
    incomplete = describe_missing(os.environ)
    if incomplete is not None:  # (no --embedded-sandbox here: the receiver serves an API)
        raise click.UsageError(f"{incomplete}; set them (see the configuration guide): the "
                               "webhooks are verified with that API's keys")
    target = resolve_target(False)
    assert target.settings is not None
    sock = _bind(port, host)
    from ..storage import DatabaseUnavailableError

    try:
        asyncio.run(_serve(url, sock, path, max_body_bytes, target.settings))
    except ConfigurationError as exc:  # the schema of a table, too
        stderr.print(one_line(f"configuration error: {exc}"), markup=False)
        sys.exit(EXIT_USAGE)
    except DatabaseUnavailableError as exc:
        stderr.print(one_line(f"mirror serve cannot start: {exc}"), markup=False)
        sys.exit(EXIT_FAILED)
    finally:
        with contextlib.suppress(OSError):
            sock.close()
