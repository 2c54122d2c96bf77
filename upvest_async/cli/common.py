"""What the commands share: the console, account lists, the client (configured or sandbox)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from ..client import UpvestClient
from ..config import has_credentials
from ..errors import UpvestError
from ..jobs.files import atomic_text
from ..sandbox import Sandbox
from ..validation import check_uuid

__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_USAGE",
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

stderr = Console(stderr=True, highlight=False, soft_wrap=True)


def read_accounts(accounts: Sequence[str], accounts_file: Path | None) -> list[str]:
    """Account ids from ``--account`` options and an ``--accounts-file`` (one per line, ``#``
    comments), validated as UUIDs; raises :class:`click.BadParameter` (exit 2)."""
    ids = list(accounts)
    if accounts_file is not None:
        lines = accounts_file.read_text(encoding="utf-8").splitlines()
        ids += [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    try:
        return [check_uuid("account_id", account) for account in ids]
    except UpvestError as exc:
        raise click.BadParameter(str(exc), param_hint="--account/--accounts-file") from None


def sandbox_options(function: Any) -> Any:
    """The ``--sandbox-*`` options of a bulk command (used only without credentials)."""
    options = [
        click.option("--sandbox-accounts", type=click.IntRange(0), default=20,
                     show_default=True,
                     help="Embedded sandbox only: accounts in the generated tenant."),
        click.option("--sandbox-positions", type=click.IntRange(0), default=1500,
                     show_default=True, help="Embedded sandbox only: positions per account."),
        click.option("--sandbox-seed", type=int, default=0, show_default=True,
                     help="Embedded sandbox only: seed of the generated tenant."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


@contextlib.asynccontextmanager
async def open_client(
    sandbox: dict[str, Any], *, quiet: bool, **overrides: Any
) -> AsyncIterator[UpvestClient]:
    """The client configured by ``UPVEST_API_*`` variables, or, without credentials, one for
    an embedded sandbox started in-process (``sandbox``: its tenant options). ``overrides``
    are constructor keywords."""
    if has_credentials():
        async with UpvestClient.from_env(**overrides) as client:
            if not quiet:
                stderr.print(f"Using {client.base_url} (from UPVEST_API_* variables)")
            yield client
        return
    async with Sandbox(**sandbox) as running:
        tenant = running.tenant
        if not quiet:
            stderr.print(
                f"No UPVEST_API_* credentials set: using the embedded sandbox at "
                f"{running.base_url} ({len(tenant.account_ids)} accounts x "
                f"{tenant.positions_per_account} positions, seed {tenant.seed})"
            )
        async with running.client(**overrides) as client:
            yield client


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as JSON to ``path`` atomically."""
    with atomic_text(path) as stream:
        json.dump(data, stream, indent=2)
        stream.write("\n")
