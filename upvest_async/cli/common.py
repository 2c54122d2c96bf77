"""What the commands share: the console, account lists, the client (configured or sandbox)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from ..client import UpvestClient
from ..config import has_credentials
from ..jobs.files import atomic_text
from .preflight import read_accounts

__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_USAGE",
    "MAX_SANDBOX_ACCOUNTS",
    "MAX_SANDBOX_POSITIONS",
    "open_client",
    "read_accounts",
    "sandbox_options",
    "stderr",
    "write_json",
]

#: Exit statuses: 0 complete, 1 some accounts failed, 2 usage or configuration error,
#: 130 interrupted (Ctrl-C).
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

#: Largest embedded sandbox tenant the bulk commands generate.
MAX_SANDBOX_ACCOUNTS = 100_000
MAX_SANDBOX_POSITIONS = 1_000_000

stderr = Console(stderr=True, highlight=False, soft_wrap=True)


def sandbox_options(function: Any) -> Any:
    """The ``--sandbox-*`` options of a bulk command (used only without credentials)."""
    options = [
        click.option("--sandbox-accounts", type=click.IntRange(0, MAX_SANDBOX_ACCOUNTS),
                     default=20, show_default=True,
                     help="Embedded sandbox only: accounts in the generated tenant."),
        click.option("--sandbox-positions", type=click.IntRange(0, MAX_SANDBOX_POSITIONS),
                     default=1500, show_default=True,
                     help="Embedded sandbox only: positions per account."),
        click.option("--sandbox-seed", type=int, default=0, show_default=True,
                     help="Embedded sandbox only: seed of the generated tenant."),
        click.option("--sandbox-rate-limit", type=click.FloatRange(0, min_open=True),
                     default=None, metavar="R",
                     help="Embedded sandbox only: requests per second per client id, as "
                          "Upvest limits them (429 without Retry-After; default: no limit)."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


@contextlib.asynccontextmanager
async def open_client(
    sandbox: dict[str, Any], *, quiet: bool, **overrides: Any
) -> AsyncIterator[UpvestClient]:
    """The client configured by ``UPVEST_API_*`` variables, or, without credentials, one for
    an embedded sandbox (``sandbox``: its tenant options) run in a child process of its own
    (:mod:`.sandbox_process`), so the figures printed are the client's, not the simulator's.
    ``overrides`` are constructor keywords."""
    if has_credentials():
        async with UpvestClient.from_env(**overrides) as client:
            if not quiet:
                stderr.print(f"Using {client.base_url} (from UPVEST_API_* variables)")
            yield client
        return
    from .sandbox_process import sandbox_process

    async with sandbox_process(sandbox) as running:
        if not quiet:
            stderr.print(
                f"No UPVEST_API_* credentials set: using the embedded sandbox at "
                f"{running['base_url']} ({len(running['accounts'])} accounts x "
                f"{running['positions_per_account']} positions, seed {running['seed']}; "
                + (f"rate limit {running['rate_limit']:g} req/s per client id; "
                   if running.get("rate_limit") is not None else "")
                + "in a child process)"
            )
        settings = {key: running[key] for key in (
            "client_id", "client_secret", "key_id", "private_key", "private_key_passphrase",
            "base_url")}
        async with UpvestClient(**{**settings, **overrides}) as client:
            yield client


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as JSON to ``path`` atomically."""
    with atomic_text(path) as stream:
        json.dump(data, stream, indent=2)
        stream.write("\n")


def one_line(message: str, limit: int = 2000) -> str:
    """``message`` on one line (line breaks become spaces), at most ``limit`` characters."""
    text = " ".join(str(message).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."
