"""Receiving Upvest's webhooks: v6 signature verification, typed events, and a receiver.

- :class:`WebhookVerifier` checks a request's signature (Upvest's "v6" HTTP message
  signatures: ECDSA P-521/SHA-512 over an unquoted signature base, ``digest: SHA-256=``) with
  keys from a JWKS (:class:`WebhookKeys`, offline) or fetched by ``client.webhooks``
  (:class:`KeyCache`: cached, refreshed on an unknown key id, rate-limited), refuses replays
  (:class:`ReplayCache`), and parses ``{"payload": [...]}`` into :class:`WebhookEvent`.
- :func:`webhook_app` / :class:`WebhookReceiver`: an ``aiohttp.web`` receiver that verifies
  and handles each delivery in one transaction of its :class:`EventStore`
  (:class:`MemoryEventStore`, or ``upvest_async.storage.SQLEventStore`` on a database): the
  signature's nonce and each event id claimed, your ``async def on_event(event, tx)`` awaited
  once per new event in order, everything committed together, and 200 only after the commit.
- Errors: :class:`WebhookVerificationError` (``.reason``, see :data:`REASONS`),
  :class:`WebhookPayloadError` and :class:`StoreUnavailableError`.

Source: the project's API readings, ``docs/guides/api-readings.md`` (webhooks W1 to W12);
docs.upvest.co "Implementing a webhook handler" and "Implementing HTTP Message Signatures v6";
``upvestco/httpsignature-proxy`` v1.3.8.
"""

from ..models.webhooks import (
    RebalancingExecutionOrder,
    RebalancingExecutionOrderStatus,
    WebhookEvent,
    WebhookEventType,
)
from .app import (
    DEFAULT_BODY_TIMEOUT,
    DEFAULT_WEBHOOK_PATH,
    RECEIVER_KEY,
    EventHandler,
    ReceiverStats,
    WebhookReceiver,
    webhook_app,
)
from .base import digest_value, signature_base
from .errors import (
    REASONS,
    TRANSIENT_REASONS,
    StoreUnavailableError,
    WebhookPayloadError,
    WebhookVerificationError,
)
from .events import MAX_BODY_DEPTH, MAX_EVENTS, dumps_json, parse_batch
from .keys import KeyProvider, WebhookKeys, parse_jwks
from .logs import DEFAULT_WARNING_INTERVAL, MalformedRequestFilter
from .remote import KeyCache
from .replay import ReplayCache
from .store import EventStore, MemoryEventStore, MemoryTransaction
from .verifier import (
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_SKEW,
    DEFAULT_MAX_VALIDITY,
    VerifiedSignature,
    WebhookVerifier,
)

__all__ = [
    "DEFAULT_BODY_TIMEOUT",
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_MAX_SKEW",
    "DEFAULT_MAX_VALIDITY",
    "DEFAULT_WARNING_INTERVAL",
    "DEFAULT_WEBHOOK_PATH",
    "MAX_BODY_DEPTH",
    "MAX_EVENTS",
    "REASONS",
    "RECEIVER_KEY",
    "TRANSIENT_REASONS",
    "EventHandler",
    "EventStore",
    "KeyCache",
    "KeyProvider",
    "MalformedRequestFilter",
    "MemoryEventStore",
    "MemoryTransaction",
    "RebalancingExecutionOrder",
    "RebalancingExecutionOrderStatus",
    "ReceiverStats",
    "ReplayCache",
    "StoreUnavailableError",
    "VerifiedSignature",
    "WebhookEvent",
    "WebhookEventType",
    "WebhookKeys",
    "WebhookPayloadError",
    "WebhookReceiver",
    "WebhookVerificationError",
    "WebhookVerifier",
    "digest_value",
    "dumps_json",
    "parse_batch",
    "parse_jwks",
    "signature_base",
    "webhook_app",
]
