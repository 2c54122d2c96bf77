"""The ``upvest-async`` command line: ``export-positions`` and ``sandbox``.

With no ``UPVEST_API_*`` credentials in the environment, ``export-positions`` starts the
embedded sandbox in-process and exports its tenant; with credentials it talks to
``UPVEST_API_BASE_URL``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from .client import UpvestClient
from .config import has_credentials
from .errors import ConfigurationError, UpvestError
from .export import ExportSummary, export_positions, list_account_ids
from .sandbox import Sandbox
from .validation import check_uuid

__all__ = ["main"]

stderr = Console(stderr=True, highlight=False, soft_wrap=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="upvest-async")
def main() -> None:
    """Async SDK tools for the Upvest Investment API."""


def _read_accounts(accounts: Sequence[str], accounts_file: Path | None) -> list[str]:
    ids = list(accounts)
    if accounts_file is not None:
        lines = accounts_file.read_text(encoding="utf-8").splitlines()
        ids += [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    try:
        return [check_uuid("account_id", account) for account in ids]
    except UpvestError as exc:
        raise click.BadParameter(str(exc), param_hint="--account/--accounts-file") from None


@contextlib.asynccontextmanager
async def _client(sandbox_options: dict[str, Any]) -> AsyncIterator[UpvestClient]:
    """The configured client, or one for an in-process sandbox when no credentials are set."""
    if has_credentials():
        async with UpvestClient.from_env() as client:
            stderr.print(f"Using {client.base_url} (from UPVEST_API_* variables)")
            yield client
        return
    async with Sandbox(**sandbox_options) as sandbox:
        tenant = sandbox.tenant
        stderr.print(
            f"No UPVEST_API_* credentials set: using the embedded sandbox at {sandbox.base_url} "
            f"({len(tenant.account_ids)} accounts x {tenant.positions_per_account} positions, "
            f"seed {tenant.seed})"
        )
        async with sandbox.client() as client:
            yield client


async def _export(
    out: Path,
    accounts: list[str],
    fmt: str,
    concurrency: int,
    quiet: bool,
    sandbox_options: dict[str, Any],
) -> ExportSummary:
    async with _client(sandbox_options) as client:
        if not accounts:
            accounts = await list_account_ids(client)
        progress = Progress(
            TextColumn("[bold]accounts"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[positions]:,} positions"),
            TextColumn("{task.fields[rate]:,.0f}/s"), TimeElapsedColumn(), TimeRemainingColumn(),
            console=stderr, disable=quiet, transient=False,
        )
        with progress:
            task = progress.add_task("export", total=len(accounts), positions=0, rate=0.0)
            loop = asyncio.get_running_loop()
            started = loop.time()
            count = 0

            def advance(_: str, positions: int) -> None:
                nonlocal count
                count += positions
                rate = count / max(loop.time() - started, 1e-9)
                progress.update(task, advance=1, positions=count, rate=rate)

            summary = await export_positions(
                client, accounts, out, fmt="csv" if fmt == "csv" else "jsonl",
                concurrency=concurrency, on_account=advance,
            )
        summary.requests = client.stats.requests
        summary.pages = client.stats.pages
        return summary


@main.command("export-positions")
@click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Output file (written atomically).")
@click.option("--account", "accounts", multiple=True, metavar="ID",
              help="Account id to export (repeatable).")
@click.option("--accounts-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="File with one account id per line.")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv"]), default="jsonl",
              show_default=True)
@click.option("--concurrency", type=click.IntRange(1, 256), default=8, show_default=True,
              help="Accounts fetched at the same time.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("--sandbox-accounts", type=click.IntRange(0), default=20, show_default=True,
              help="Embedded sandbox only: accounts in the generated tenant.")
@click.option("--sandbox-positions", type=click.IntRange(0), default=1500, show_default=True,
              help="Embedded sandbox only: positions per account.")
@click.option("--sandbox-seed", type=int, default=0, show_default=True,
              help="Embedded sandbox only: seed of the generated tenant.")
def export_positions_command(
    out: Path,
    accounts: tuple[str, ...],
    accounts_file: Path | None,
    fmt: str,
    concurrency: int,
    quiet: bool,
    sandbox_accounts: int,
    sandbox_positions: int,
    sandbox_seed: int,
) -> None:
    """Export every position of the accounts to a JSONL or CSV file.

    Without --account/--accounts-file, the accounts are those of GET /portfolios/configurations.
    """
    ids = _read_accounts(accounts, accounts_file)
    sandbox_options = {
        "accounts": sandbox_accounts, "positions_per_account": sandbox_positions,
        "seed": sandbox_seed,
    }
    try:
        summary = asyncio.run(_export(out, ids, fmt, concurrency, quiet, sandbox_options))
    except ConfigurationError as exc:
        stderr.print(f"configuration error: {exc}")
        sys.exit(2)
    except UpvestError as exc:
        stderr.print(f"export failed: {exc}")
        sys.exit(1)
    stderr.print(
        f"Exported {summary.positions:,} positions of {summary.accounts:,} accounts to {out}: "
        f"{summary.pages:,} pages, {summary.requests:,} requests, {summary.seconds:.2f} s, "
        f"{summary.positions_per_second:,.0f} positions/s"
    )


def _env_file_text(sandbox: Sandbox) -> str:
    env: dict[str, Any] = sandbox.env()
    pem = env.pop("UPVEST_API_HTTP_SIGN_PRIVATE_KEY")
    env["UPVEST_API_HTTP_SIGN_PRIVATE_KEY_BASE64"] = base64.b64encode(pem.encode()).decode()
    return "".join(f"export {name}={value}\n" for name, value in env.items())


@main.command("sandbox")
@click.option("--port", type=click.IntRange(0, 65535), default=0, help="0: any free port.")
@click.option("--accounts", type=click.IntRange(0), default=20, show_default=True)
@click.option("--positions", type=click.IntRange(0), default=1500, show_default=True,
              help="Positions per account.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--latency-ms", type=click.FloatRange(0), default=0.0, show_default=True,
              help="Milliseconds added to every response.")
@click.option("--token-lifetime", type=click.FloatRange(0.5), default=1799.0,
              show_default=True, help="Seconds an access token is valid.")
@click.option("--env-file", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the UPVEST_API_* variables for a client to this file.")
def sandbox_command(
    port: int,
    accounts: int,
    positions: int,
    seed: int,
    latency_ms: float,
    token_lifetime: float,
    env_file: Path | None,
) -> None:
    """Run the embedded sandbox on 127.0.0.1 until interrupted."""

    async def serve() -> None:
        async with Sandbox(
            accounts=accounts, positions_per_account=positions, seed=seed, port=port,
            latency_ms=latency_ms, token_lifetime=token_lifetime,
        ) as sandbox:
            text = _env_file_text(sandbox)
            if env_file is not None:
                partial = env_file.with_name(env_file.name + ".tmp")
                partial.write_text(text, encoding="utf-8")
                partial.chmod(0o600)
                partial.replace(env_file)
                hint = f"source {env_file}"
            else:
                hint = "set the variables below"
            click.echo(f"Sandbox listening on {sandbox.base_url}; to point a client at it, "
                       f"{hint} (Ctrl-C stops it)")
            if env_file is None:
                click.echo(text, nl=False)
            sys.stdout.flush()
            await asyncio.Event().wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())
