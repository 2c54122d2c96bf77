"""Upvest's webhook sending side, in the embedded sandbox (W1 to W12 of
docs/guides/api-readings.md).

- :mod:`.keys`: the sandbox's own P-521 key pairs (JWKS at ``GET /auth/verify_keys``, rotation);
- :mod:`.signer`: Upvest's v6 signatures (signature base, ``digest``, params and signing:
  the sandbox's own reading of the format, independent of the client's verifier);
- :mod:`.subscriptions`: subscriptions and the loopback rule for their URLs;
- :mod:`.routes`: ``GET /auth/verify_keys`` and ``/webhooks``;
- :mod:`.events`: event types and the event envelope;
- :mod:`.lifecycle`: which state change emits which event, the orders' automatic progress and
  rebalancing execution orders; :mod:`.trading`: how fills change positions;
- :mod:`.delivery`: queues, batches, back-off, blocking, faults, counters;
- :mod:`.engine`: all of it behind ``Sandbox.webhooks``.
"""

from .delivery import MAX_BACKOFF, Dispatcher, WebhookFaults, WebhookStats, backoff
from .engine import WebhookEngine
from .events import EVENT_TYPES, make_event
from .keys import WebhookKey, WebhookKeys
from .lifecycle import OrderLifecycle
from .signer import (
    SIGNATURE_LIFETIME,
    format_signature_params,
    sign_base,
    sign_webhook,
)
from .subscriptions import LOOPBACK_HOSTS, Subscription, check_url
from .trading import order_changes, price

__all__ = [
    "EVENT_TYPES",
    "LOOPBACK_HOSTS",
    "MAX_BACKOFF",
    "SIGNATURE_LIFETIME",
    "Dispatcher",
    "OrderLifecycle",
    "Subscription",
    "WebhookEngine",
    "WebhookFaults",
    "WebhookKey",
    "WebhookKeys",
    "WebhookStats",
    "backoff",
    "check_url",
    "format_signature_params",
    "make_event",
    "order_changes",
    "price",
    "sign_base",
    "sign_webhook",
]
