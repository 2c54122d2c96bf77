"""The webhook receiver: an ``aiohttp.web`` handler that verifies, deduplicates and hands each
new event to ``on_event`` once, in order.

Answers (never with a traceback or a reason in the body): 200 when every event of the request
was handled (or had been before); 500 when ``on_event`` or the store failed, so Upvest retries
the request (events handled before the failure stay recorded and are skipped on the retry);
401 for a signature that does not verify; 400 for a verified body that is no valid batch; 413
for a body over ``max_body_bytes``; 503 when the keys cannot be fetched (transient). Source:
WEBHOOKS.md, "Delivery" (200 delivers, anything else is retried with back-off).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import attrs
from aiohttp import web

from ..models.webhooks import WebhookEvent
from .errors import WebhookPayloadError, WebhookVerificationError
from .events import parse_batch
from .store import EventStore, MemoryEventStore
from .verifier import DEFAULT_MAX_BODY_BYTES, VerifiedSignature, WebhookVerifier

__all__ = [
    "DEFAULT_WEBHOOK_PATH",
    "RECEIVER_KEY",
    "ReceiverStats",
    "WebhookReceiver",
    "webhook_app",
]

logger = logging.getLogger("upvest_async.webhooks")

#: The route of :func:`webhook_app` by default.
DEFAULT_WEBHOOK_PATH = "/webhooks/upvest"

#: A handler of one event; an exception makes the delivery fail (and be retried).
EventHandler = Callable[[WebhookEvent], Awaitable[None]]


@attrs.define
class ReceiverStats:
    """Counters of a :class:`WebhookReceiver`: ``requests``, ``rejected`` (signature, size or
    payload), ``handled`` (events passed to ``on_event`` successfully), ``duplicates`` (events
    skipped as already handled), ``failed`` (handler or store failures)."""

    requests: int = 0
    rejected: int = 0
    handled: int = 0
    duplicates: int = 0
    failed: int = 0


def _answer(status: int, title: str) -> web.Response:
    return web.json_response({"status": status, "title": title}, status=status)


class _Guard:
    """Per-event-id locks, dropped when nobody holds or waits for them."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    async def __call__(self, event_id: str, work: Callable[[], Awaitable[None]]) -> None:
        lock, users = self._locks.get(event_id, (asyncio.Lock(), 0))
        self._locks[event_id] = (lock, users + 1)
        try:
            async with lock:
                await work()
        finally:
            lock, users = self._locks[event_id]
            if users == 1:
                del self._locks[event_id]
            else:
                self._locks[event_id] = (lock, users - 1)


class WebhookReceiver:
    """Receives Upvest's webhook requests: mount :meth:`handle` as a POST route of your
    ``aiohttp.web`` application, or use :func:`webhook_app`.

    ``on_event``: an async function awaited once per new event, in the request's order;
    ``verifier``: a :class:`~upvest_async.webhooks.WebhookVerifier` (or
    ``client.webhooks.verifier``); ``store``: an :class:`~upvest_async.webhooks.EventStore` of
    handled event ids (default: a bounded :class:`~upvest_async.webhooks.MemoryEventStore`;
    production wants a durable one); ``max_body_bytes``: larger bodies are answered 413 without
    being read further. Concurrent deliveries of one event never run ``on_event`` for it twice.
    """

    def __init__(
        self,
        on_event: EventHandler,
        verifier: WebhookVerifier,
        *,
        store: EventStore | None = None,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    ) -> None:
        self.on_event = on_event
        self.verifier = verifier
        self.store: EventStore = store if store is not None else MemoryEventStore()
        self.max_body_bytes = max_body_bytes
        self.stats = ReceiverStats()
        self._guard = _Guard()

    async def _read(self, request: web.Request) -> bytes | None:
        if request.content_length is not None and request.content_length > self.max_body_bytes:
            return None
        chunks: list[bytes] = []
        size = 0
        while chunk := await request.content.readany():
            size += len(chunk)
            if size > self.max_body_bytes:
                return None
            chunks.append(chunk)
        return b"".join(chunks)

    async def handle(self, request: web.Request) -> web.Response:
        """The ``aiohttp.web`` handler (see the module docs for the answers)."""
        self.stats.requests += 1
        body = await self._read(request)
        if body is None:
            self.stats.rejected += 1
            return _answer(413, "Payload Too Large")
        try:
            verified = await self.verifier.verify(
                body, request.headers, method=request.method, path=request.path,
                query=request.rel_url.raw_query_string,
            )
        except WebhookVerificationError as exc:
            self.stats.rejected += 1
            logger.warning("webhook request rejected: %s", exc.reason)
            if exc.transient:
                return _answer(503, "Service Unavailable")
            if exc.reason == "body-too-large":
                return _answer(413, "Payload Too Large")
            return _answer(401, "Unauthorized")
        try:
            events = parse_batch(body)
        except WebhookPayloadError as exc:
            self.stats.rejected += 1
            self.verifier.forget(verified)
            logger.warning("verified webhook body rejected: %s", exc)
            return _answer(400, "Bad Request")
        return await self._deliver(events, verified)

    async def _deliver(
        self, events: list[WebhookEvent], verified: VerifiedSignature
    ) -> web.Response:
        for event in events:
            event_id = str(event.id)

            async def once(event: WebhookEvent = event, event_id: str = event_id) -> None:
                if await self.store.has(event_id):
                    self.stats.duplicates += 1
                    return
                await self.on_event(event)
                await self.store.add(event_id)
                self.stats.handled += 1

            try:
                await self._guard(event_id, once)
            except Exception:
                self.stats.failed += 1
                self.verifier.forget(verified)
                logger.exception("webhook event %s (%s) failed; the delivery will be retried",
                                 event_id, event.type)
                return _answer(500, "Internal Server Error")
        return _answer(200, "OK")


#: The :class:`WebhookReceiver` of an application made by :func:`webhook_app`.
RECEIVER_KEY = web.AppKey("upvest_webhook_receiver", WebhookReceiver)


def webhook_app(
    on_event: EventHandler,
    verifier: WebhookVerifier,
    *,
    store: EventStore | None = None,
    path: str = DEFAULT_WEBHOOK_PATH,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
) -> web.Application:
    """An ``aiohttp.web.Application`` serving a :class:`WebhookReceiver` at ``POST path``
    (run it, or mount it in yours with ``app.add_subapp``); the receiver (and its ``stats``)
    is ``app[RECEIVER_KEY]``. Arguments as for :class:`WebhookReceiver`."""
    receiver = WebhookReceiver(on_event, verifier, store=store, max_body_bytes=max_body_bytes)
    app = web.Application(client_max_size=max_body_bytes + 1)
    app[RECEIVER_KEY] = receiver
    app.router.add_post(path, receiver.handle)
    return app
