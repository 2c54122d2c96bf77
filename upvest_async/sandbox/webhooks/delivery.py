"""Delivery of webhook events as Upvest does it (W2 of docs/guides/api-readings.md).

Per subscription one queue and one worker task. The worker waits the subscription's delay
(times ``time_scale``), takes the oldest events (ordered by ``created_at``) up to ``batch_size``
events and ``max_package_size`` bytes of body (a single event larger than that goes alone), and
POSTs ``{"payload": [...]}`` as ``application/json``, signed v6 (:mod:`.signer`) afresh on
every attempt (new nonce, same body). A 200 delivers the package; any other status, a
connection error or a timeout retries the whole request after 1, 2, 3, 5, 8, ... seconds (the
Fibonacci back-off, at most 600 s) times ``time_scale``, without a limit on attempts, and the
queue waits behind it (blocking). Redirects are not followed.

Faults (:class:`WebhookFaults`, deterministic from their seed per subscription, given the
receiver's answers): ``lost_answer_rate`` treats a 200 as failed (the receiver sees the
package again), ``duplicate_rate`` sends a delivered package once more.
"""

from __future__ import annotations

import asyncio
import collections
import json
import random
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import attrs
from yarl import URL

from .keys import WebhookKeys
from .signer import sign_webhook
from .subscriptions import Subscription

__all__ = ["MAX_BACKOFF", "Dispatcher", "WebhookFaults", "WebhookStats", "backoff"]

#: The longest wait between two attempts, seconds (before ``time_scale``).
MAX_BACKOFF = 600.0
_ENVELOPE = len(b'{"payload":[]}')
_MAX_ANSWER = 1 << 16  # bytes of a receiver's answer read before the connection is released


def backoff(retry: int) -> float:
    """Seconds before retry number ``retry`` (0-based): 1, 2, 3, 5, 8, 13, ... up to 600."""
    low, high = 1, 2
    for _ in range(retry):
        low, high = high, low + high
        if low >= MAX_BACKOFF:
            return MAX_BACKOFF
    return float(min(low, MAX_BACKOFF))


def _rate(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise ValueError(f"{attribute.name} must be a fraction between 0 and 1, got {value!r}")


@attrs.frozen
class WebhookFaults:
    """Faults of the webhook sender. ``duplicate_rate``: share of delivered packages sent a
    second time (freshly signed); ``lost_answer_rate``: share of 200 answers treated as failed,
    so the package is retried; ``seed``: of the draws (one per 200 answer for each rate)."""

    seed: int = 0
    duplicate_rate: float = attrs.field(default=0.0, validator=_rate)
    lost_answer_rate: float = attrs.field(default=0.0, validator=_rate)


@attrs.define
class WebhookStats:
    """Webhook counters. ``emitted``: events queued (one per matching subscription);
    ``delivered``: events in packages answered 200 and not treated as lost; ``pending``:
    events queued or in flight; ``retried``: attempts that failed and are retried;
    ``requests``: POSTs sent (duplicates included); ``duplicates``: packages sent again after
    delivery; ``lost_answers``: 200 answers treated as failed; ``dropped``: events discarded
    with their deleted subscription."""

    emitted: int = 0
    delivered: int = 0
    pending: int = 0
    retried: int = 0
    requests: int = 0
    duplicates: int = 0
    lost_answers: int = 0
    dropped: int = 0


@attrs.define(eq=False)
class _Queue:
    subscription: Subscription
    ordinal: int
    events: collections.deque[bytes] = attrs.field(factory=collections.deque)
    wake: asyncio.Event = attrs.field(factory=asyncio.Event)
    busy: bool = False
    deleted: bool = False
    rng: random.Random | None = None
    rng_faults: WebhookFaults | None = None
    task: asyncio.Task[None] | None = None


class Dispatcher:
    """Queues and workers of every subscription; see the module docs.

    ``keys``: signs; ``stats``: counts; ``time_scale``: multiplies delays and back-off;
    ``batch_size``: events per package at most; ``timeout``: seconds per request (connect and
    answer); ``faults``: may be replaced at any time (draws restart from its seed);
    ``clock``: unix seconds for ``created``.
    """

    def __init__(
        self, keys: WebhookKeys, stats: WebhookStats, *, time_scale: float = 1.0,
        batch_size: int = 100, timeout: float = 10.0, faults: WebhookFaults | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.keys, self.stats, self.time_scale = keys, stats, time_scale
        self.batch_size, self.timeout, self.clock = batch_size, timeout, clock
        self.faults = faults if faults is not None else WebhookFaults()
        self._queues: dict[str, _Queue] = {}
        self._session: aiohttp.ClientSession | None = None
        self._ordinal = 0

    def add(self, subscription: Subscription) -> None:
        """Give ``subscription`` a queue (its worker starts with :meth:`start`, or now)."""
        queue = _Queue(subscription, self._ordinal)
        self._ordinal += 1
        self._queues[subscription.id] = queue
        if self._session is not None:
            queue.task = asyncio.get_running_loop().create_task(self._work(queue))

    def remove(self, subscription_id: str) -> None:
        """Forget a deleted subscription; its undelivered events are dropped."""
        queue = self._queues.pop(subscription_id, None)
        if queue is None:
            return
        queue.deleted = True
        dropped = len(queue.events)
        queue.events.clear()
        self.stats.pending -= dropped
        self.stats.dropped += dropped
        if queue.task is not None:
            queue.task.cancel()

    def enqueue(self, subscription_id: str, event: dict[str, Any]) -> None:
        """Queue one event (serialized now, so later changes of its object do not show)."""
        queue = self._queues[subscription_id]
        queue.events.append(json.dumps(event, separators=(",", ":")).encode())
        self.stats.emitted += 1
        self.stats.pending += 1
        queue.wake.set()

    def poke(self, subscription_id: str) -> None:
        """Wake the worker of a subscription that changed (e.g. was enabled again)."""
        queue = self._queues.get(subscription_id)
        if queue is not None:
            queue.wake.set()

    def idle(self) -> bool:
        """No event is queued or in flight."""
        return all(not q.events and not q.busy for q in self._queues.values())

    async def start(self) -> None:
        """Open the session (its own, without client middlewares) and start the workers."""
        if self._session is not None:
            return
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.timeout, connect=self.timeout),
            connector=aiohttp.TCPConnector(limit=100),
        )
        loop = asyncio.get_running_loop()
        for queue in self._queues.values():
            queue.task = loop.create_task(self._work(queue))

    async def stop(self) -> None:
        """Stop the workers (undelivered events stay queued) and close the session."""
        tasks = [q.task for q in self._queues.values() if q.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for queue in self._queues.values():
            queue.task, queue.busy = None, False
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def _take(self, queue: _Queue) -> list[bytes]:
        limit = queue.subscription.max_package_size
        taken: list[bytes] = []
        size = _ENVELOPE
        for event in queue.events:
            extra = len(event) + (1 if taken else 0)
            if taken and (len(taken) >= self.batch_size or size + extra > limit):
                break
            taken.append(event)
            size += extra
        return taken

    async def _work(self, queue: _Queue) -> None:
        while not queue.deleted:
            if not queue.events or not queue.subscription.enabled:
                queue.wake.clear()
                await queue.wake.wait()
                continue
            queue.busy = True
            try:
                delay = queue.subscription.delay_seconds * self.time_scale
                if delay > 0:
                    await asyncio.sleep(delay)
                batch = self._take(queue)
                await self._deliver(queue, b'{"payload":[' + b",".join(batch) + b"]}")
                for _ in batch:
                    queue.events.popleft()
                self.stats.pending -= len(batch)
                self.stats.delivered += len(batch)
            finally:
                queue.busy = False

    def _draw(self, queue: _Queue, rate: float) -> bool:
        if queue.rng is None or queue.rng_faults is not self.faults:
            queue.rng = random.Random(f"webhook-faults-{self.faults.seed}-{queue.ordinal}")
            queue.rng_faults = self.faults
        return queue.rng.random() < rate

    async def _deliver(self, queue: _Queue, body: bytes) -> None:
        retry = 0
        while True:
            ok = await self._post(queue.subscription, body)
            if ok and self._draw(queue, self.faults.lost_answer_rate):
                ok = False
                self.stats.lost_answers += 1
            if ok:
                break
            self.stats.retried += 1
            await asyncio.sleep(backoff(retry) * self.time_scale)
            retry += 1
        if self._draw(queue, self.faults.duplicate_rate):
            self.stats.duplicates += 1
            await self._post(queue.subscription, body)

    async def _post(self, subscription: Subscription, body: bytes) -> bool:
        session = self._session
        if session is None:
            raise asyncio.CancelledError
        url = URL(subscription.url)
        headers = {"content-type": "application/json"}
        headers.update(sign_webhook(
            # Upvest's signer covers the decoded path and the raw query (W6, W11).
            self.keys.current, method="POST", path=url.path, query=url.raw_query_string,
            headers=headers, body=body, created=int(self.clock()),
        ))
        self.stats.requests += 1
        try:
            async with session.post(url, data=body, headers=headers,
                                    allow_redirects=False) as response:
                await response.content.read(_MAX_ANSWER)
                return response.status == 200
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError):
            return False
