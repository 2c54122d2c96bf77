"""The sandbox's mutable state: tenant, registered client, tokens, counters, journal,
options, and the keys under which requests and the application carry it."""

from __future__ import annotations

import collections
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import attrs

from .faults import FAULT_KINDS, FaultInjector, Faults
from .idempotency import IdempotencyStore
from .scopes import ALL_SCOPES
from .store import PortfolioStore
from .tenant import Tenant
from .throttling import ClientBuckets
from .verifier import SignatureVerifier

if TYPE_CHECKING:
    from .webhooks.engine import WebhookEngine


__all__ = [
    "JournalEntry",
    "SandboxCounters",
    "SandboxState",
    "Token",
]


@attrs.define
class SandboxCounters:
    """What the sandbox saw. ``requests``: every request received; ``token_requests``;
    ``bad_signatures``: signatures rejected for any reason but a replay;
    ``nonce_replays``; ``unauthorized``: bearer tokens refused; ``forbidden``: scope refusals;
    ``idempotent_replays``: stored responses replayed for a reused ``idempotency-key``;
    ``created``: resources created through the API by kind (``allocation``, ``configuration``,
    ``order``, ``execution``; E11 liquidation requests count as ``order``);
    ``duplicates``: resources created with the same request content as an earlier one but under
    a different ``idempotency-key`` (what a client that changes its key on retry would cause;
    see :class:`~.portfolios.PortfolioStore`); ``faults``: injected faults by kind
    (:data:`~.faults.FAULT_KINDS`); ``throttled``: requests answered 429 by the rate limit
    (``Sandbox(rate_limit=...)``; injected 429s count in ``faults["429"]`` only), and
    ``throttled_by_client`` the same by ``upvest-client-id`` (``""`` for requests without
    one)."""

    requests: int = 0
    token_requests: int = 0
    bad_signatures: int = 0
    nonce_replays: int = 0
    unauthorized: int = 0
    forbidden: int = 0
    idempotent_replays: int = 0
    created: dict[str, int] = attrs.field(
        factory=lambda: dict.fromkeys(("allocation", "configuration", "order", "execution"), 0)
    )
    duplicates: int = 0
    faults: dict[str, int] = attrs.field(factory=lambda: dict.fromkeys(FAULT_KINDS, 0))
    throttled: int = 0
    throttled_by_client: dict[str, int] = attrs.field(factory=dict)


@attrs.frozen
class JournalEntry:
    """One request as the sandbox received and answered it.

    ``headers``: lower-case names to values as received; ``status``: the status answered, 0
    when the connection was dropped without an answer; ``nonce``: of a verified signature
    (``None`` when the signature was rejected); ``at``: sandbox clock seconds when received;
    ``fault``: the injected fault (one of :data:`~.faults.FAULT_KINDS`), ``None`` for none;
    ``throttled``: answered 429 by the rate limit (before the signature was verified, so
    ``nonce`` is ``None``; ``fault`` stays ``None``).
    """

    method: str
    path: str
    query: str
    headers: dict[str, str]
    status: int
    request_id: str
    nonce: str | None
    at: float
    fault: str | None = None
    throttled: bool = False


@attrs.define
class Token:
    scopes: frozenset[str]
    expires_at: float


def _portfolio_store(state: SandboxState) -> PortfolioStore:
    return PortfolioStore(state.tenant, state.counters)


@attrs.define
class SandboxState:
    """The sandbox's mutable state: tenant, registered client, tokens, counters, options.

    ``scopes``: those the registered client may ask for (default
    :data:`~.scopes.ALL_SCOPES`, every scope some endpoint accepts);
    ``latency``: seconds added to every response (to model a WAN); ``token_lifetime``: seconds
    an access token is valid; ``mutation_delay``: seconds a mutating Portfolios handler sleeps
    after claiming its ``idempotency-key`` (holds a request in flight, for tests);
    ``idempotency``: the claimed keys and stored responses (:mod:`.idempotency`);
    ``portfolios``: allocations, configurations, orders and rebalancing executions
    (:mod:`.portfolios`), seeded from ``tenant``; ``faults``: what to inject
    (:class:`~.faults.Faults`; assign a new value at any time, which restarts its seeded draws);
    ``webhooks``: the webhook engine (keys, subscriptions, delivery; :mod:`.webhooks`), ``None``
    for a state without one (its endpoints then answer 404); ``throttle``: the rate limit's
    token buckets per ``upvest-client-id`` (:class:`~.throttling.ClientBuckets`, read on
    :attr:`clock`), ``None`` for no limit; ``throttle_retry_after``: send ``Retry-After`` (whole
    seconds until the next token) with its 429s (Upvest sends none). Change both through
    ``Sandbox.set_rate_limit``.
    """

    tenant: Tenant
    client_id: str
    client_secret: str
    verifier: SignatureVerifier
    scopes: frozenset[str] = ALL_SCOPES
    token_lifetime: float = 1799.0
    latency: float = 0.0
    counters: SandboxCounters = attrs.field(factory=SandboxCounters)
    tokens: dict[str, Token] = attrs.field(factory=dict)
    clock: Callable[[], float] = time.monotonic
    journal: collections.deque[JournalEntry] = attrs.field(
        factory=lambda: collections.deque(maxlen=100_000)
    )
    mutation_delay: float = 0.0
    idempotency: IdempotencyStore = attrs.field(factory=IdempotencyStore)
    portfolios: PortfolioStore = attrs.field(
        default=attrs.Factory(_portfolio_store, takes_self=True)
    )
    faults: Faults = attrs.field(factory=Faults)
    webhooks: WebhookEngine | None = None
    throttle: ClientBuckets | None = None
    throttle_retry_after: bool = False
    _injector: FaultInjector | None = attrs.field(default=None, init=False, repr=False)

    def fault_injector(self) -> FaultInjector:
        """The injector of the current :attr:`faults` (a new one, with fresh draws, after
        :attr:`faults` was replaced)."""
        if self._injector is None or self._injector.faults is not self.faults:
            self._injector = FaultInjector(self.faults)
        return self._injector

    def revoke_tokens(self) -> None:
        """Invalidate every issued access token (the next API call gets a 401)."""
        self.tokens.clear()
