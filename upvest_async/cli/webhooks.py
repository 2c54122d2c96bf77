"""``upvest-async webhooks listen``: a local webhook receiver that prints and records events.

Like ``stripe listen``: it runs the receiver of :mod:`upvest_async.webhooks` on 127.0.0.1,
verifies every request with the keys of the configured API (``UPVEST_API_*``, through
``client.webhooks.verify_keys()``) or, with ``--embedded-sandbox``, of an embedded sandbox that
is subscribed to the listener (``--demo`` places orders in it so that events flow), prints each
verified event's type and id as it arrives, and appends it to ``--out`` as one JSON line (the
event as received). Events already in ``--out`` are not written again after a restart; a last
line cut short by a crash is removed first (it was never acknowledged, so Upvest redelivers it).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import IO, TYPE_CHECKING

import click
from aiohttp import web

from ..client import UpvestClient
from ..errors import UpvestError
from ..models.webhooks import WebhookEvent
from ..webhooks import DEFAULT_MAX_BODY_BYTES, DEFAULT_WEBHOOK_PATH, MemoryEventStore
from ..webhooks.app import WebhookReceiver
from ..webhooks.events import dumps_json
from .common import EMBEDDED_SANDBOX, EXIT_USAGE, embedded_sandbox_option, resolve_target, stderr

if TYPE_CHECKING:  # imported when listen runs embedded: other commands start faster
    from ..sandbox import Sandbox

__all__ = ["webhooks_group"]


def _recover(out: Path, store: MemoryEventStore) -> list[str]:
    """Ids of the events already in ``out``; a partial last line is cut off first."""
    if not out.exists():
        return []
    data = out.read_bytes()
    if data and not data.endswith(b"\n"):
        keep = data.rfind(b"\n") + 1
        with out.open("r+b") as stream:
            stream.truncate(keep)
        data = data[:keep]
    ids = []
    for line in data.splitlines():
        try:
            event_id = json.loads(line).get("id")
        except (ValueError, AttributeError):
            raise click.ClickException(f"{out} holds a line that is not a JSON event") from None
        if isinstance(event_id, str):
            ids.append(event_id)
    return ids


#: The embedded sandbox of ``listen --embedded-sandbox``: a small tenant whose orders fill
#: on their own after this many seconds.
EMBEDDED_FILL_SECONDS = 0.5
_DEMO_USER = "4b9732bd-7496-4e91-8a5f-6360479d7fed"


@contextlib.asynccontextmanager
async def _client(embedded: bool) -> AsyncIterator[tuple[UpvestClient, Sandbox | None]]:
    """The configured API's client, or (``embedded``) an embedded sandbox's, and the sandbox."""
    from ..sandbox import Sandbox

    if not embedded:
        async with UpvestClient.from_env() as client:
            stderr.print(f"Verifying with the keys of {client.base_url} (UPVEST_API_* variables)")
            yield client, None
        return
    async with Sandbox(accounts=3, positions_per_account=20,
                       order_fill_seconds=EMBEDDED_FILL_SECONDS) as sandbox, \
            sandbox.client() as client:
        stderr.print(f"{EMBEDDED_SANDBOX}: verifying with the keys of the embedded sandbox at "
                     f"{sandbox.base_url}")
        yield client, sandbox


async def _demo(client: UpvestClient, sandbox: Sandbox) -> None:
    """Place a BUY and a SELL order and trigger a rebalancing in the embedded sandbox."""
    first, second = sandbox.tenant.account_ids[:2]
    for side, cash in (("BUY", "1000.00"), ("SELL", "250.00")):
        order = await client.portfolios.orders.create(
            user_id=_DEMO_USER, account_id=first, cash_amount=cash, side=side)
        stderr.print(f"Demo: placed {side} order {order.id} ({cash} EUR) for account {first}")
    execution = await client.portfolios.rebalancings.executions.create(accounts=[second])
    stderr.print(f"Demo: triggered rebalancing execution {execution.id} for account {second}")


async def _listen(port: int, path: str, out: Path | None, max_body_bytes: int,
                  demo: bool, embedded: bool = False) -> None:
    store = MemoryEventStore()
    if out is not None:
        for event_id in _recover(out, store):
            await store.add(event_id)
    stream: IO[str] | None = None

    async def on_event(event: WebhookEvent) -> None:
        if stream is not None:
            stream.write(dumps_json(event.raw) + "\n")
            stream.flush()
            os.fsync(stream.fileno())
        click.echo(f"{event.created_at.isoformat()}  --> {event.type.value} [{event.id}]")
        sys.stdout.flush()

    runner: web.AppRunner | None = None
    try:
        if out is not None:
            stream = out.open("a", encoding="utf-8", newline="")
        async with _client(embedded) as (client, sandbox):
            try:
                keys = await client.webhooks.verify_keys()
            except UpvestError as exc:
                raise click.ClickException(f"cannot fetch the verification keys: {exc}") from None
            receiver = WebhookReceiver(
                on_event, client.webhooks.verifier, store=store, max_body_bytes=max_body_bytes
            )
            app = web.Application(client_max_size=max_body_bytes + 1)
            app.router.add_post(path, receiver.handle)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            try:
                await web.TCPSite(runner, "127.0.0.1", port).start()
            except OSError as exc:
                raise click.ClickException(
                    f"cannot listen on 127.0.0.1:{port}: {exc.strerror or exc}") from None
            url = f"http://127.0.0.1:{runner.addresses[0][1]}{path}"
            stderr.print(f"Ready: listening on {url} "
                         f"({len(keys)} key(s): {', '.join(keys.key_ids)}); Ctrl-C stops")
            if sandbox is not None:
                sandbox.webhooks.subscribe(url, title="upvest-async webhooks listen")
                stderr.print("The embedded sandbox delivers its events here; "
                             + ("placing demo orders now" if demo else
                                "run with --demo to place a few orders so that events flow"))
                if demo:
                    await _demo(client, sandbox)
            await asyncio.Event().wait()
    finally:
        if runner is not None:
            await runner.cleanup()
        if stream is not None:
            stream.close()


@click.group("webhooks")
def webhooks_group() -> None:
    """Receive Upvest webhooks locally."""


@webhooks_group.command("listen")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True,
              help="Port on 127.0.0.1 (0: any free port).")
@click.option("--path", default=DEFAULT_WEBHOOK_PATH, show_default=True,
              help="The URL path webhooks are posted to.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Append each verified event to this file as one JSON line.")
@click.option("--max-body-bytes", type=click.IntRange(1024), default=DEFAULT_MAX_BODY_BYTES,
              show_default=True, help="Larger requests are answered 413.")
@click.option("--demo", is_flag=True,
              help="Embedded sandbox only: place a BUY and a SELL order and trigger a "
                   "rebalancing, so that events arrive.")
@embedded_sandbox_option
def listen_command(port: int, path: str, out: Path | None, max_body_bytes: int,
                   demo: bool, embedded_sandbox: bool) -> None:
    """Run a webhook receiver on 127.0.0.1: verify each request (v6 signatures, keys from
    GET /auth/verify_keys), print each new event's type and id, and record it in --out.

    Answers 200 once every event of a request is recorded, so a failure makes Upvest retry.
    Uses the keys of the API the UPVEST_API_* variables configure (exit 2 when incomplete);
    with --embedded-sandbox an embedded sandbox delivers its events here (--demo makes some).
    Ctrl-C stops it with exit status 0.
    """
    if not path.startswith("/") or "?" in path or "#" in path:
        stderr.print("--path must start with / and hold no query or fragment")
        sys.exit(EXIT_USAGE)
    if demo and not embedded_sandbox:
        stderr.print(f"--demo places orders: it runs only against the embedded sandbox "
                     f"({EMBEDDED_SANDBOX})")
        sys.exit(EXIT_USAGE)
    resolve_target(embedded_sandbox)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_listen(port, path, out, max_body_bytes, demo, embedded_sandbox))
