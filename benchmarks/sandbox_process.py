"""Run the embedded sandbox in a child process for benchmarks.

On a 2-core machine a sandbox in the benchmark's own event loop would compete with the client
for one CPU; a child process gets its own. The child sends back its client settings when
ready, changes its rate limit when told (``set_rate_limit``), and sends its counters (server
side, with ``journal``: ``(at, status, throttled)`` of every request, ``at`` on the
monotonic clock the parent reads too) when told to stop.
"""

from __future__ import annotations

import asyncio
import multiprocessing
from multiprocessing.connection import Connection
from typing import Any

import attrs


def _serve(conn: Connection, options: dict[str, Any]) -> None:
    from upvest_async.sandbox import Sandbox, tenant

    # A server that regenerates an account's positions for every page would measure itself:
    # the benchmark server keeps every account it generated (``positions_cache`` accounts).
    tenant.POSITIONS_CACHE_SIZE = max(tenant.POSITIONS_CACHE_SIZE,
                                      options.pop("positions_cache", 0))

    async def main() -> None:
        async with Sandbox(**options) as sandbox:
            conn.send(sandbox.client_settings())
            while True:
                command = await asyncio.get_running_loop().run_in_executor(None, conn.recv)
                if command == "stop":
                    break
                _, rate, burst = command
                sandbox.set_rate_limit(rate, burst)
            counters = attrs.asdict(sandbox.counters)
            counters["executions"] = len(sandbox.portfolios.executions)
            counters["journal"] = [(e.at, e.status, e.throttled)
                                   for e in sandbox.state.journal]
            conn.send(counters)

    asyncio.run(main())


class SandboxProcess:
    """``with SandboxProcess(accounts=..., latency_ms=...) as sandbox:`` gives
    ``sandbox.settings`` (UpvestClient keywords); ``sandbox.stop()`` returns the counters.
    ``positions_cache=N``: the child keeps the positions of up to N accounts it generated (the
    sandbox's own default is 64)."""

    def __init__(self, **options: Any) -> None:
        self._options = options
        self._parent, child = multiprocessing.get_context("spawn").Pipe()
        self._process = multiprocessing.get_context("spawn").Process(
            target=_serve, args=(child, options), daemon=True)
        self.settings: dict[str, Any] = {}
        self.counters: dict[str, Any] = {}

    def __enter__(self) -> SandboxProcess:
        self._process.start()
        self.settings = self._parent.recv()
        return self

    def set_rate_limit(self, rate: float | None, burst: float | None = None) -> None:
        """Change the child sandbox's rate limit now (``Sandbox.set_rate_limit``)."""
        self._parent.send(("rate", rate, burst))

    def stop(self) -> dict[str, Any]:
        if not self.counters:
            self._parent.send("stop")
            self.counters = self._parent.recv()
            self._process.join(timeout=30)
        return self.counters

    def __exit__(self, *exc: object) -> None:
        if self._process.is_alive():
            try:
                self.stop()
            finally:
                self._process.kill()
