"""The sandbox's webhook engine: keys, subscriptions, event emission and delivery together.

:class:`WebhookEngine` is what ``Sandbox.webhooks`` is. Events are emitted by
:class:`~.lifecycle.OrderLifecycle` (the portfolio store's observer) through :meth:`emit`:
one event per enabled subscription whose ``type`` matches, queued for delivery by the
:class:`~.delivery.Dispatcher`.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from .delivery import Dispatcher, WebhookFaults, WebhookStats
from .events import EventClock, make_event
from .keys import WebhookKeys
from .subscriptions import DEFAULT_MAX_PACKAGE_SIZE, Subscription, check_url, matches

__all__ = ["WebhookEngine"]


class WebhookEngine:
    """Keys, subscriptions and delivery of the sandbox's webhooks.

    ``seed``: keys and the ids of subscriptions given as ``urls`` are deterministic from it;
    ``urls``: subscriptions to everything (``ALL``, no delay, ``max_package_size`` 64 KiB)
    made at once (each checked by :func:`~.subscriptions.check_url`, :class:`ValueError`);
    ``time_scale``, ``batch_size``, ``timeout``, ``faults``: of the
    :class:`~.delivery.Dispatcher`. ``busy`` tells whether anything else is still to happen
    (orders still to fill), for :meth:`idle`.
    """

    def __init__(
        self, *, seed: int = 0, urls: Sequence[str] = (), time_scale: float = 1.0,
        batch_size: int = 100, timeout: float = 10.0, faults: WebhookFaults | None = None,
    ) -> None:
        if isinstance(urls, str):
            raise TypeError("webhook_urls must be a sequence of URLs, not one string")
        if not time_scale >= 0:
            raise ValueError("webhook_backoff_scale must be >= 0")
        if batch_size < 1:
            raise ValueError("webhook_batch_size must be >= 1")
        if not timeout > 0:
            raise ValueError("webhook_timeout must be > 0")
        self.keys = WebhookKeys(seed)
        self.stats = WebhookStats()
        self.clock = EventClock()
        self.dispatcher = Dispatcher(self.keys, self.stats, time_scale=time_scale,
                                     batch_size=batch_size, timeout=timeout, faults=faults)
        self.subscriptions: dict[str, Subscription] = {}
        self.busy: Callable[[], bool] = lambda: False
        for index, url in enumerate(urls):
            digest = hashlib.sha256(f"sandbox-webhook-{seed}-{index}".encode()).digest()
            self.subscribe(check_url(url), title=f"sandbox webhook {index + 1}",
                           subscription_id=str(uuid.UUID(bytes=digest[:16], version=4)))

    @property
    def faults(self) -> WebhookFaults:
        """The sender's faults; assign a new :class:`~.delivery.WebhookFaults` at any time."""
        return self.dispatcher.faults

    @faults.setter
    def faults(self, value: WebhookFaults) -> None:
        self.dispatcher.faults = value

    def subscribe(
        self, url: str, *, title: str = "sandbox webhook", types: Sequence[str] = ("ALL",),
        enabled: bool = True, delay: str = "0s", delay_seconds: float = 0.0,
        max_package_size: int = DEFAULT_MAX_PACKAGE_SIZE, subscription_id: str | None = None,
    ) -> Subscription:
        """Add a subscription (``url`` is checked, :class:`ValueError`) and return it."""
        stamp = self.clock.stamp()
        subscription = Subscription(
            id=subscription_id or str(uuid.uuid4()), created_at=stamp, updated_at=stamp,
            title=title, url=check_url(url), type=list(types), enabled=enabled, delay=delay,
            delay_seconds=delay_seconds, max_package_size=max_package_size,
        )
        self.subscriptions[subscription.id] = subscription
        self.dispatcher.add(subscription)
        return subscription

    def changed(self, subscription: Subscription) -> None:
        """Record a change of ``subscription`` (new ``updated_at``; wakes its queue)."""
        subscription.updated_at = self.clock.stamp()
        self.dispatcher.poke(subscription.id)

    def unsubscribe(self, subscription_id: str) -> bool:
        """Delete a subscription and drop its undelivered events; ``False`` if unknown."""
        if self.subscriptions.pop(subscription_id, None) is None:
            return False
        self.dispatcher.remove(subscription_id)
        return True

    def emit(self, event_type: str, obj: dict[str, Any]) -> None:
        """Queue one ``event_type`` event of ``obj`` for every enabled, matching
        subscription (``obj`` is serialized at once)."""
        created_at = self.clock.stamp()
        for subscription in self.subscriptions.values():
            if subscription.enabled and matches(subscription.type, event_type):
                self.dispatcher.enqueue(
                    subscription.id, make_event(event_type, obj, subscription.id, created_at)
                )

    def rotate_key(self, *, keep_old: bool = True) -> str:
        """Sign with a new key pair from now on; returns its key id (see
        :meth:`~.keys.WebhookKeys.rotate`)."""
        return self.keys.rotate(keep_old=keep_old).kid

    def idle(self) -> bool:
        """Nothing is queued or in flight and no order is still to fill."""
        return not self.busy() and self.dispatcher.idle()

    async def wait_idle(self, timeout: float = 30.0) -> None:
        """Return once :meth:`idle`; :class:`TimeoutError` after ``timeout`` seconds."""
        async with asyncio.timeout(timeout):
            # Idleness combines queues, in-flight requests and order timers: polled on purpose.
            while not self.idle():  # noqa: ASYNC110
                await asyncio.sleep(0.005)

    async def start(self) -> None:
        """Start delivering (opens the sender's own HTTP session)."""
        await self.dispatcher.start()

    async def stop(self) -> None:
        """Stop delivering and close the session; undelivered events stay queued."""
        await self.dispatcher.stop()
