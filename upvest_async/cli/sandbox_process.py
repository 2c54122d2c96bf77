"""The embedded sandbox of the bulk commands, in a child process of its own.

In the command's own process the simulator (building and encoding pages, verifying every
signature) would share the client's event loop and CPU, and the positions/s the command
prints would mostly measure the simulator. A child process has its own interpreter (and,
where there is one, its own core), as a real API would.

Protocol: the parent writes the tenant options as one JSON line to the child's standard
input; the child answers one JSON line on standard output, the client settings
(:meth:`~upvest_async.sandbox.Sandbox.client_settings`) plus ``accounts`` (ids),
``positions_per_account``, ``seed``, ``rate_limit`` and ``rate_burst`` (requests/s per client
id and bucket capacity, ``null`` without a limit); it serves until its standard input ends
(the parent closed it, exited or was killed), then stops. The child runs in a process group
of its own and ignores SIGINT, so a Ctrl-C in the terminal reaches only the parent, which
decides.

    python -m upvest_async.cli.sandbox_process   # (run by open_client, not by hand)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
from collections.abc import AsyncIterator
from typing import Any

from ..errors import ConfigurationError

__all__ = ["sandbox_process"]

#: Seconds the child may take to start serving (imports, key derivation) on a loaded machine.
START_TIMEOUT = 120.0


@contextlib.asynccontextmanager
async def sandbox_process(options: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
    """Run a sandbox with ``options`` (``Sandbox`` keywords) in a child process; yields its
    settings (see the module docs). Raises :class:`~upvest_async.ConfigurationError` when the
    child does not start within :data:`START_TIMEOUT` seconds."""
    # A process group of its own: the terminal's Ctrl-C (sent to the foreground group) never
    # reaches the child, not even while it imports, before it can ignore SIGINT itself.
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", __name__, stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, process_group=0,
    )
    assert process.stdin is not None and process.stdout is not None
    try:
        process.stdin.write(json.dumps(options).encode() + b"\n")
        await process.stdin.drain()
        try:
            line = await asyncio.wait_for(process.stdout.readline(), START_TIMEOUT)
            settings: dict[str, Any] = json.loads(line)
        except (TimeoutError, ValueError):
            raise ConfigurationError("the embedded sandbox did not start") from None
        yield settings
    finally:
        with contextlib.suppress(ConnectionError):
            process.stdin.close()
        try:
            await asyncio.wait_for(process.wait(), 10)
        except TimeoutError:
            process.kill()
            await process.wait()
        except asyncio.CancelledError:
            process.kill()
            await process.wait()
            raise


async def _serve() -> None:
    from ..sandbox import Sandbox

    loop = asyncio.get_running_loop()
    line = await loop.run_in_executor(None, sys.stdin.buffer.readline)
    async with Sandbox(**json.loads(line)) as sandbox:
        tenant = sandbox.tenant
        settings = {**sandbox.client_settings(), "accounts": tenant.account_ids,
                    "positions_per_account": tenant.positions_per_account, "seed": tenant.seed,
                    "rate_limit": sandbox.rate_limit, "rate_burst": sandbox.rate_burst}
        sys.stdout.write(json.dumps(settings) + "\n")
        sys.stdout.flush()
        await loop.run_in_executor(None, sys.stdin.buffer.read)  # until the parent closes it


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    asyncio.run(_serve())
