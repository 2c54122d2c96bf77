"""The webhook receiver: an ``aiohttp.web`` handler that verifies, deduplicates and hands each
new event to ``on_event`` once, in order, inside one transaction of its event store.

Each delivery is handled in ONE transaction of the store (:mod:`.store`): the signature's
(key id, nonce) claimed (a replay is refused, on every replica sharing the store), each event
id claimed (one handled before is skipped), ``on_event(event, tx)`` awaited for each new event
with the transaction, and everything committed together.

Answers (never with a traceback or a reason in the body): 200 when every event of the request
was handled (or had been before), only after the commit; 503 when the store is unavailable
(:class:`~upvest_async.webhooks.StoreUnavailableError`: database down, connection lost, lock
timeout, deadlock) and 500 when ``on_event`` or the store failed otherwise: then nothing of
the request is recorded (the transaction rolled back) and Upvest retries the whole request;
401 for a signature that does not verify or was accepted before (a replay); 400 for a
verified body that is no valid batch (:func:`~upvest_async.webhooks.parse_batch`: also a
body nested deeper than :data:`~upvest_async.webhooks.events.MAX_BODY_DEPTH` levels) or whose
framing is broken; 408, closing the connection, for a body that has not arrived in full
within ``body_timeout`` seconds; 413 for a body over ``max_body_bytes``; 503 when the keys
cannot be fetched (transient). A client that hangs up before its body arrived gets no answer.

Upvest delivers a request again, with back-off, until it is answered 200, and later requests
wait behind it ("Delivery and Retry Logic" of
https://docs.upvest.co/documentation/getting_started/implementing_webhooks/implementing_a_webhook_handler):
so a verified body refused with 400 holds up the deliveries after it until that is resolved
on Upvest's side; such a refusal is logged as a WARNING naming the rule broken.

What any client can cause without a valid signature (refused signatures, bodies cut short,
too slow or malformed) is logged as one WARNING line without traceback, at most one per kind
per ``warning_interval`` seconds; the next line of a kind counts those not logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeAlias, TypeVar, overload

import attrs
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from ..models.webhooks import WebhookEvent
from .errors import StoreUnavailableError, WebhookPayloadError, WebhookVerificationError
from .events import parse_batch
from .logs import DEFAULT_WARNING_INTERVAL, WarningThrottle
from .store import EventStore, MemoryEventStore, MemoryTransaction
from .verifier import DEFAULT_MAX_BODY_BYTES, VerifiedSignature, WebhookVerifier

__all__ = [
    "DEFAULT_BODY_TIMEOUT",
    "DEFAULT_WEBHOOK_PATH",
    "RECEIVER_KEY",
    "EventHandler",
    "ReceiverStats",
    "WebhookReceiver",
    "webhook_app",
]

logger = logging.getLogger("upvest_async.webhooks")

#: The route of :func:`webhook_app` by default.
DEFAULT_WEBHOOK_PATH = "/webhooks/upvest"

#: Seconds a request's body may take to arrive in full, counted from the end of its headers;
#: a slower one is answered 408 (8 MiB in 30 s is 280 KB/s, far below a server's link).
DEFAULT_BODY_TIMEOUT = 30.0


T = TypeVar("T")

#: A handler of one event: ``async def on_event(event, tx)``, ``tx`` the store's transaction
#: (write your effect through it to have it committed with the event's record); an exception
#: rolls the whole delivery back (and Upvest retries it).
EventHandler: TypeAlias = Callable[[WebhookEvent, T], Awaitable[None]]


@attrs.define
class ReceiverStats:
    """Counters of a :class:`WebhookReceiver`: ``requests``, ``rejected`` (signature, replay,
    size or payload), ``handled`` (events passed to ``on_event`` in deliveries that
    committed), ``duplicates`` (events skipped as already handled, in deliveries that
    committed), ``failed`` (deliveries rolled back: handler or store failures), ``incomplete``
    (bodies that did not arrive in full: the client hung up, broke the framing, or was slower
    than ``body_timeout``)."""

    requests: int = 0
    rejected: int = 0
    handled: int = 0
    duplicates: int = 0
    failed: int = 0
    incomplete: int = 0


def _answer(status: int, title: str) -> web.Response:
    return web.json_response({"status": status, "title": title}, status=status)


async def _answer_and_close(request: web.Request, status: int, title: str) -> web.Response:
    """Send the answer now and close the connection: the rest of the body is never read
    (aiohttp would otherwise keep reading it, for up to its ``lingering_time``)."""
    response = _answer(status, title)
    response.force_close()
    with contextlib.suppress(ConnectionError):  # the client may be gone already
        await response.prepare(request)
        await response.write_eof()
    request.protocol.force_close()  # the answer written is flushed before the socket closes
    return response


def _is_number(value: object) -> bool:
    """A finite int or float (not a bool)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) \
        and math.isfinite(value)


def _progress(size: int, expected: int | None) -> str:
    of = f" of {expected}" if expected is not None else ""
    return f"{size}{of} bytes arrived"


class _Replayed(Exception):
    """The store holds the delivery's signature already."""


class WebhookReceiver(Generic[T]):
    """Receives Upvest's webhook requests: mount :meth:`handle` as a POST route of your
    ``aiohttp.web`` application, or use :func:`webhook_app`.

    ``on_event``: ``async def on_event(event, tx)``, awaited once per new event, in the
    request's order, inside the store's transaction ``tx`` (see the module docs);
    ``verifier``: a :class:`~upvest_async.webhooks.WebhookVerifier` (or
    ``client.webhooks.verifier``; the receiver calls its
    :meth:`~upvest_async.webhooks.WebhookVerifier.authenticate` and records nonces in the
    store); ``store``: an :class:`~upvest_async.webhooks.EventStore` (default: a new bounded
    :class:`~upvest_async.webhooks.MemoryEventStore`, for one process; several replicas or a
    restart want :class:`upvest_async.storage.SQLEventStore`); ``max_body_bytes``: larger
    bodies are answered 413 without being read further; ``body_timeout``: seconds (counted
    from the end of the headers) within which the whole body must have arrived, else the
    request is answered 408 and the connection closed (``None``: no deadline);
    ``warning_interval``: seconds between two WARNING lines of one kind about refused or
    broken requests (see the module docs). Concurrent deliveries of one event, to this
    receiver or to another sharing the store, never run ``on_event`` for it in two
    transactions that both commit.

    Raises ``ValueError`` for a ``body_timeout`` or ``warning_interval`` that is not a
    positive number of seconds (``warning_interval`` may be 0: every line is logged).
    """

    @overload
    def __init__(
        self: WebhookReceiver[MemoryTransaction],
        on_event: EventHandler[MemoryTransaction],
        verifier: WebhookVerifier,
        *,
        store: None = None,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        body_timeout: float | None = DEFAULT_BODY_TIMEOUT,
        warning_interval: float = DEFAULT_WARNING_INTERVAL,
    ) -> None: ...

    @overload
    def __init__(
        self,
        on_event: EventHandler[T],
        verifier: WebhookVerifier,
        *,
        store: EventStore[T],
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        body_timeout: float | None = DEFAULT_BODY_TIMEOUT,
        warning_interval: float = DEFAULT_WARNING_INTERVAL,
    ) -> None: ...

    def __init__(
        self,
        on_event: EventHandler[Any],
        verifier: WebhookVerifier,
        *,
        store: EventStore[Any] | None = None,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        body_timeout: float | None = DEFAULT_BODY_TIMEOUT,
        warning_interval: float = DEFAULT_WARNING_INTERVAL,
    ) -> None:
        if body_timeout is not None and not (_is_number(body_timeout) and body_timeout > 0):
            raise ValueError(f"body_timeout must be a positive number of seconds or None, "
                             f"got {body_timeout!r}")
        if not (_is_number(warning_interval) and warning_interval >= 0):
            raise ValueError(f"warning_interval must be a number of seconds >= 0, "
                             f"got {warning_interval!r}")
        self.on_event: EventHandler[T] = on_event
        self.verifier = verifier
        self.store: EventStore[T] = store if store is not None \
            else MemoryEventStore()  # type: ignore[assignment]  # (the first overload: T)
        self.max_body_bytes = max_body_bytes
        self.body_timeout = body_timeout
        self.stats = ReceiverStats()
        self._warnings = WarningThrottle(warning_interval)

    async def _read(self, request: web.Request) -> bytes | web.Response:
        """The body, or the answer refusing it (413, 408, 400)."""
        expected = request.content_length
        if expected is not None and expected > self.max_body_bytes:
            self.stats.rejected += 1
            return _answer(413, "Payload Too Large")
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self.body_timeout):
                while chunk := await request.content.readany():
                    size += len(chunk)
                    if size > self.max_body_bytes:
                        self.stats.rejected += 1
                        return _answer(413, "Payload Too Large")
                    chunks.append(chunk)
        except TimeoutError:
            self.stats.incomplete += 1
            self._warnings.warning(
                "slow-body", "webhook request from %s refused (408): its body did not arrive "
                "within %s s (%s)", request.remote, self.body_timeout, _progress(size, expected))
            return await _answer_and_close(request, 408, "Request Timeout")
        except ConnectionError:
            self.stats.incomplete += 1
            self._warnings.warning(
                "incomplete-body", "webhook request from %s dropped: the client closed the "
                "connection before its body arrived (%s)", request.remote,
                _progress(size, expected))
            return await _answer_and_close(request, 400, "Bad Request")  # (nobody reads it)
        except (HttpProcessingError, web.RequestPayloadError) as exc:
            self.stats.incomplete += 1
            cause = exc.__cause__ if isinstance(exc.__cause__, HttpProcessingError) else exc
            self._warnings.warning(
                "malformed-body", "webhook request from %s refused (400): its body is "
                "malformed (%s; %s)", request.remote, type(cause).__name__,
                _progress(size, expected))
            return await _answer_and_close(request, 400, "Bad Request")
        return b"".join(chunks)

    async def handle(self, request: web.Request) -> web.Response:
        """The ``aiohttp.web`` handler (see the module docs for the answers)."""
        self.stats.requests += 1
        body = await self._read(request)
        if isinstance(body, web.Response):
            return body
        try:
            verified = await self.verifier.authenticate(
                body, request.headers, method=request.method, path=request.path,
                query=request.rel_url.raw_query_string,
            )
        except WebhookVerificationError as exc:
            return self._refuse(request, exc)
        try:
            events = parse_batch(body)
        except WebhookPayloadError as exc:
            self.stats.rejected += 1
            logger.warning("verified webhook body rejected: %s", exc)
            return _answer(400, "Bad Request")
        return await self._deliver(request, events, verified)

    def _refuse(self, request: web.Request, exc: WebhookVerificationError) -> web.Response:
        self.stats.rejected += 1
        self._warnings.warning(f"rejected:{exc.reason}", "webhook request from %s "
                               "rejected: %s", request.remote, exc.reason)
        if exc.transient:
            return _answer(503, "Service Unavailable")
        if exc.reason == "body-too-large":
            return _answer(413, "Payload Too Large")
        return _answer(401, "Unauthorized")

    async def _deliver(
        self, request: web.Request, events: list[WebhookEvent], verified: VerifiedSignature
    ) -> web.Response:
        """Claim the signature, then every event id (in id order: two deliveries sharing
        events claim them in the same order, so they wait for each other instead of
        deadlocking), then run the handler for the new ones in the request's order; commit."""
        handled = duplicates = 0
        current: WebhookEvent | None = None
        try:
            async with self.store.transaction() as tx:
                if not await self.store.claim_signature(
                        tx, verified.key_id, verified.nonce, keep_until=verified.keep_until):
                    raise _Replayed  # (rolls the transaction back; nothing else was done)
                first = {e.id: e for e in reversed(events)}  # the first event of each id
                new = await self.store.claim_events(tx, [first[i] for i in sorted(first)])
                for current in events:
                    if current.id in new and first[current.id] is current:
                        await self.on_event(current, tx)
                        handled += 1
                    else:
                        duplicates += 1
                current = None  # (what fails now is the commit)
        except _Replayed:
            return self._refuse(request, WebhookVerificationError("replayed"))
        except StoreUnavailableError as exc:
            self.stats.failed += 1
            logger.warning("webhook delivery of %d event(s) rolled back, the store is "
                           "unavailable (answered 503; Upvest retries): %s", len(events), exc)
            return _answer(503, "Service Unavailable")
        except Exception:
            self.stats.failed += 1
            where = f"event {current.id} ({current.type})" if current is not None \
                else "the store"
            logger.exception("webhook delivery of %d event(s) rolled back: %s failed "
                             "(answered 500; Upvest retries)", len(events), where)
            return _answer(500, "Internal Server Error")
        self.stats.handled += handled
        self.stats.duplicates += duplicates
        return _answer(200, "OK")


#: The :class:`WebhookReceiver` of an application made by :func:`webhook_app`.
RECEIVER_KEY = web.AppKey("upvest_webhook_receiver", WebhookReceiver)


@overload
def webhook_app(
    on_event: EventHandler[MemoryTransaction],
    verifier: WebhookVerifier,
    *,
    store: None = None,
    path: str = DEFAULT_WEBHOOK_PATH,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    body_timeout: float | None = DEFAULT_BODY_TIMEOUT,
    warning_interval: float = DEFAULT_WARNING_INTERVAL,
) -> web.Application: ...


@overload
def webhook_app(
    on_event: EventHandler[T],
    verifier: WebhookVerifier,
    *,
    store: EventStore[T],
    path: str = DEFAULT_WEBHOOK_PATH,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    body_timeout: float | None = DEFAULT_BODY_TIMEOUT,
    warning_interval: float = DEFAULT_WARNING_INTERVAL,
) -> web.Application: ...


def webhook_app(
    on_event: EventHandler[Any],
    verifier: WebhookVerifier,
    *,
    store: EventStore[Any] | None = None,
    path: str = DEFAULT_WEBHOOK_PATH,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    body_timeout: float | None = DEFAULT_BODY_TIMEOUT,
    warning_interval: float = DEFAULT_WARNING_INTERVAL,
) -> web.Application:
    """An ``aiohttp.web.Application`` serving a :class:`WebhookReceiver` at ``POST path``
    (run it, or mount it in yours with ``app.add_subapp``); the receiver (and its ``stats``)
    is ``app[RECEIVER_KEY]``. Arguments as for :class:`WebhookReceiver`: ``store`` any
    :class:`~upvest_async.webhooks.EventStore` (``on_event`` receives its transactions)."""
    receiver: WebhookReceiver[Any] = WebhookReceiver(
        on_event, verifier, store=store if store is not None else MemoryEventStore(),
        max_body_bytes=max_body_bytes, body_timeout=body_timeout,
        warning_interval=warning_interval)
    app = web.Application(client_max_size=max_body_bytes + 1)
    app[RECEIVER_KEY] = receiver
    app.router.add_post(path, receiver.handle)
    return app
