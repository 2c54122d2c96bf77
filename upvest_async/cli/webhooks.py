"""``upvest-async webhooks listen``: a local webhook receiver that prints and records events.

Like ``stripe listen``: it runs the receiver of :mod:`upvest_async.webhooks` on 127.0.0.1,
verifies every request with the keys of the configured API (``UPVEST_API_*``, through
``client.webhooks.verify_keys()``) or, with ``--embedded-sandbox``, of an embedded sandbox that
is subscribed to the listener (``--demo`` places orders in it so that events flow), prints each
verified event's type and id as it arrives, and appends it to ``--out`` as one JSON line (the
event as received). Events already in ``--out`` are not written again after a restart; a last
line cut short by a crash is removed first (it was never acknowledged, so Upvest redelivers it).

Usage errors (exit 2, one line, before anything is sent or written): an ``--out`` that cannot
be written (:func:`~.preflight.check_paths`) or holds a line that is no JSON event, and a port
that cannot be bound (in use: ``--port 0`` picks a free one). The port is bound before the
keys are fetched; the default, :data:`DEFAULT_PORT`, is not the 8000 of ``mkdocs serve`` and
other development servers.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import IO, TYPE_CHECKING

import click
from aiohttp import web

from ..client import UpvestClient
from ..errors import UpvestError
from ..models.webhooks import WebhookEvent
from ..webhooks import (
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_WEBHOOK_PATH,
    MemoryEventStore,
    MemoryTransaction,
)
from ..webhooks.app import WebhookReceiver
from ..webhooks.events import dumps_json
from ..webhooks.logs import MalformedRequestFilter
from .common import EMBEDDED_SANDBOX, EXIT_USAGE, embedded_sandbox_option, resolve_target, stderr
from .preflight import PreflightError, check_paths, shown

if TYPE_CHECKING:  # imported when listen runs embedded: other commands start faster
    from ..sandbox import Sandbox

__all__ = ["DEFAULT_PORT", "webhooks_group"]

#: The default ``--port``: not 8000 (``mkdocs serve``, Django, ``python -m http.server``),
#: 8080, 8888 (Jupyter) nor 8787 (``wrangler dev``, RStudio Server).
DEFAULT_PORT = 8749


def _recover(out: Path) -> list[str]:
    """Ids of the events already in ``out`` (none when it does not exist); a partial last line
    (a crash while writing it) is then cut off. Raises :class:`~.preflight.PreflightError`
    (``--out``), leaving the file as it was, when it cannot be read or a complete line is not
    a JSON event."""
    try:
        data = out.read_bytes() if out.exists() else b""
    except OSError as exc:
        raise PreflightError("--out", f"cannot read {shown(out)}: {exc.strerror}") from None
    complete = data.rfind(b"\n") + 1
    ids = []
    for number, line in enumerate(data[:complete].splitlines(), start=1):
        try:
            event = json.loads(line)
        except (ValueError, RecursionError):
            event = None
        if not isinstance(event, dict):
            raise PreflightError("--out", f"{shown(out)}:{number} is not a JSON event (not a "
                                          "file of webhooks listen?)")
        if isinstance(event.get("id"), str):
            ids.append(event["id"])
    if complete < len(data):
        try:
            with out.open("r+b") as stream:
                stream.truncate(complete)
        except OSError as exc:
            raise PreflightError("--out", f"cannot cut the partial last line of {shown(out)}: "
                                          f"{exc.strerror}") from None
    return ids


def _bind(port: int, host: str = "127.0.0.1") -> socket.socket:
    """A socket bound to ``host``:``port`` (0: a free one; ``host`` an IPv4 or IPv6
    address), for the receiver to listen on. Raises :class:`~.preflight.PreflightError`
    (``--port``, or ``--host`` for an address that is not one) when it cannot be bound."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    where = f"[{host}]:{port}" if family == socket.AF_INET6 else f"{host}:{port}"
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as aiohttp's TCPSite
        sock.bind((host, port))
    except (OSError, UnicodeError) as exc:
        sock.close()
        if isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE:
            raise PreflightError("--port", f"{where} is in use (--port 0 picks a "
                                           "free port)") from None
        if isinstance(exc, socket.gaierror | UnicodeError):
            raise PreflightError("--host", f"{_printable(host)!r} is not an address to "
                                           "listen on") from None
        raise PreflightError("--port", f"cannot listen on {_printable(where)}: "
                                       f"{getattr(exc, 'strerror', None) or exc}") from None
    return sock


def _printable(text: str, limit: int = 200) -> str:
    """``text`` (chosen by the sender) as printable ASCII, at most ``limit`` characters:
    anything else escaped, so that printing it can neither fail nor drive the terminal."""
    escaped = text[:limit].encode("ascii", "backslashreplace").decode("ascii")
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in escaped)


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
            UpvestClient(**sandbox.client_settings()) as client:
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


async def _listen(sock: socket.socket, path: str, out: Path | None, known: list[str],
                  max_body_bytes: int, demo: bool, embedded: bool = False) -> None:
    """Receive on ``sock`` (bound) at ``path``; ``known``: ids of the events already in
    ``out``."""
    store = MemoryEventStore(handled=known)
    stream: IO[bytes] | None = None

    async def on_event(event: WebhookEvent, tx: MemoryTransaction) -> None:
        if stream is not None:
            # A lone surrogate (a "\ud800" escape received) cannot be UTF-8: written as the
            # same JSON escape, the line stays UTF-8 and reads back as received.
            stream.write((dumps_json(event.raw) + "\n").encode("utf-8", "backslashreplace"))
            stream.flush()
            os.fsync(stream.fileno())
        click.echo(f"{event.created_at.isoformat()}  --> {_printable(event.type.value)} "
                   f"[{event.id}]")
        sys.stdout.flush()

    runner: web.AppRunner | None = None
    malformed = MalformedRequestFilter()
    logging.getLogger("aiohttp.server").addFilter(malformed)
    try:
        async with _client(embedded) as (client, sandbox):
            try:
                keys = await client.webhooks.verify_keys()
            except UpvestError as exc:
                raise click.ClickException(f"cannot fetch the verification keys: {exc}") from None
            if out is not None:
                try:
                    stream = out.open("ab")
                except OSError as exc:
                    raise click.ClickException(
                        f"cannot open {shown(out)}: {exc.strerror}") from None
            receiver = WebhookReceiver(
                on_event, client.webhooks.verifier, store=store, max_body_bytes=max_body_bytes
            )
            app = web.Application(client_max_size=max_body_bytes + 1)
            app.router.add_post(path, receiver.handle)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            await web.SockSite(runner, sock).start()
            url = f"http://127.0.0.1:{sock.getsockname()[1]}{path}"
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
        logging.getLogger("aiohttp.server").removeFilter(malformed)


@click.group("webhooks")
def webhooks_group() -> None:
    """Receive Upvest webhooks locally."""


@webhooks_group.command("listen")
@click.option("--port", type=click.IntRange(0, 65535), default=DEFAULT_PORT, show_default=True,
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
    Ctrl-C stops it with exit status 0. An --out that cannot be written or is no file of
    events, and a port in use, are usage errors (exit 2, nothing sent or written).
    """
    if not path.startswith("/") or "?" in path or "#" in path:
        stderr.print("--path must start with / and hold no query or fragment")
        sys.exit(EXIT_USAGE)
    if demo and not embedded_sandbox:
        stderr.print(f"--demo places orders: it runs only against the embedded sandbox "
                     f"({EMBEDDED_SANDBOX})")
        sys.exit(EXIT_USAGE)
    resolve_target(embedded_sandbox)
    if out is not None:
        check_paths([("--out", out)])
    sock = _bind(port)
    try:
        known = _recover(out) if out is not None else []
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_listen(sock, path, out, known, max_body_bytes, demo, embedded_sandbox))
    finally:
        sock.close()
