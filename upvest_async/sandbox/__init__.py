"""The embedded sandbox: a local simulator of the Upvest Investment API on 127.0.0.1.

It verifies every signature like the real API (see :mod:`.verifier`), issues access tokens for
its generated client credentials and key pair, checks bearer tokens and scopes, and serves a
generated tenant (:mod:`.tenant`): positions, and the Portfolios endpoints E1 to E15 with
in-memory state and idempotent replay (:mod:`.portfolios`, :mod:`.idempotency`). Use it
in-process::

    async with Sandbox(accounts=5, positions_per_account=1200) as sandbox:
        async with UpvestClient(**sandbox.client_settings()) as client:
            async for position in client.positions.list(sandbox.account_ids[0]):
                ...

or standalone with ``upvest-async sandbox``.

It is a second, independent reading of Upvest's API: it imports nothing of the client (its own
scope table in :mod:`.scopes`, its own v6 webhook signatures in :mod:`.webhooks.signer`, its own
request verifier, bodies and ISIN check digits), so a misreading in the client is caught by
tests against it instead of being repeated by it. It could be its own distribution unchanged.

It can also be an unreliable server (:mod:`.faults`): ``Sandbox(faults=Faults(seed=1,
server_error_rate=0.2, lost_response_rate=0.1))`` answers random 5xx and 429s, resets
connections, loses the answers of writes it performed, or answers slowly, deterministically from
its ``seed``; ``sandbox.state.faults`` can be replaced at run time and ``sandbox.counters`` counts
what was injected and whether anything was created twice.

It limits the access rate per client as Upvest does: ``Sandbox(rate_limit=50)`` keeps one token
bucket per ``upvest-client-id`` (50 requests/s, burst 5) and answers a request over it 429
problem+json without ``Retry-After``; ``sandbox.set_rate_limit(...)`` changes it while running,
``sandbox.counters.throttled`` counts the 429s.

It sends Upvest's webhooks (:mod:`.webhooks`): ``Sandbox(webhook_urls=["http://127.0.0.1:8081/
hooks"], order_fill_seconds=0.2)`` signs every package v6 with a key of its own (JWKS at
``GET /auth/verify_keys``), emits ``PORTFOLIO_ORDER.*``, ``POSITION.UPDATED``,
``PORTFOLIO_ALLOCATION.*`` and ``REBALANCING_EXECUTION_ORDER.*`` as its state changes, and
delivers them with Upvest's batching, back-off and blocking; ``await sandbox.webhooks_idle()``
waits until everything is filled and delivered.
"""

from __future__ import annotations

import base64
import hashlib
import uuid
from collections.abc import Sequence
from types import TracebackType
from typing import Any, Self

import attrs
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from .app import create_app
from .faults import FAULT_KINDS, Faults
from .portfolios import PortfolioStore
from .state import JournalEntry, SandboxCounters, SandboxState
from .tenant import Tenant
from .throttling import ClientBuckets, check_burst
from .verifier import SignatureVerifier
from .webhooks import OrderLifecycle, WebhookEngine, WebhookFaults, WebhookStats

__all__ = [
    "FAULT_KINDS",
    "Faults",
    "JournalEntry",
    "PortfolioStore",
    "Sandbox", "SandboxCounters", "SandboxCredentials", "SandboxState", "Tenant",
    "WebhookFaults", "WebhookStats"]


@attrs.frozen(repr=False)
class SandboxCredentials:
    """Client credentials the sandbox accepts, deterministic from its seed.

    ``private_key_pem`` is the P-521 key (PKCS#8, encrypted with ``passphrase``). Secrets are
    not shown by ``repr``.
    """

    client_id: str
    client_secret: str
    key_id: str
    private_key: ec.EllipticCurvePrivateKey
    passphrase: str

    def __repr__(self) -> str:
        return f"SandboxCredentials(client_id={self.client_id!r}, key_id={self.key_id!r})"

    @classmethod
    def from_seed(cls, seed: int) -> SandboxCredentials:
        """The credentials of the sandbox started with ``seed``: the same seed always gives
        the same client id, secret, key id and P-521 key (generated locally, never sent)."""
        digest = hashlib.sha512(f"upvest-async-sandbox-{seed}".encode()).digest()
        # Any integer in [1, 2**520) is a valid P-521 private scalar (the order is above 2**520).
        scalar = int.from_bytes(digest + hashlib.sha512(digest).digest()) % (2**520 - 1) + 1
        return cls(
            client_id=str(uuid.UUID(bytes=digest[:16], version=4)),
            client_secret=digest[16:40].hex(),
            key_id=f"sandbox-key-{seed}",
            private_key=ec.derive_private_key(scalar, ec.SECP521R1()),
            passphrase=digest[40:56].hex(),
        )

    def private_key_pem(self) -> str:
        """The private key as passphrase-encrypted PKCS#8 PEM text."""
        return self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(self.passphrase.encode()),
        ).decode("ascii")


def _buckets(rate: float | None, burst: float | None) -> ClientBuckets | None:
    """The buckets of a rate limit, ``None`` for none (then ``burst`` must be ``None`` too)."""
    if rate is None:
        if burst is not None:
            check_burst(burst)
            raise ValueError("rate_burst needs a rate_limit")
        return None
    return ClientBuckets(rate, burst)


def _check_retry_after(value: object) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"rate_limit_retry_after must be a bool, got {type(value).__name__}")


class Sandbox:
    """Runs the sandbox application on ``host`` (127.0.0.1) and a free ``port`` (0: any).

    ``accounts`` / ``positions_per_account`` / ``seed``: the generated tenant; ``latency_ms``:
    milliseconds added to every response; ``token_lifetime``: seconds an access token lives;
    ``faults``: what to inject (:class:`~.faults.Faults`; default none, replace it later through
    ``sandbox.state.faults``). ``base_url`` is known after :meth:`start` (or entering
    ``async with``).

    Webhooks (:mod:`.webhooks`): ``webhook_urls``: loopback ``http://`` URLs subscribed to
    every event (more through ``POST /webhooks``; a URL off loopback is a
    :class:`ValueError`); ``order_fill_seconds``: seconds an order takes from NEW through
    PROCESSING to FILLED on its own (half each), and with it rebalancing executions create
    orders; ``None`` (default): orders move only through the API or
    ``sandbox.portfolios.set_order_status``; ``webhook_backoff_scale``: multiplies Upvest's
    waits (back-off 1, 2, 3, 5, 8, ... 600 s and a subscription's ``config.delay``), e.g.
    0.001 in tests; ``webhook_faults``: duplicate deliveries and lost answers
    (:class:`~.webhooks.WebhookFaults`); ``webhook_batch_size``: events per request at most;
    ``webhook_timeout``: seconds per delivery request.

    Rate limit, as Upvest limits the access rate per client
    (https://docs.upvest.co/documentation/concepts/api_concepts/throttling):
    ``rate_limit``: requests per second per ``upvest-client-id`` (``None``, the default: no
    limit); each client id has a token bucket refilled at that rate, holding ``rate_burst``
    tokens (default ``max(1, rate_limit / 10)``, at least 1), full at first; requests without
    the header share one bucket. Every request takes a token, ``POST /auth/token`` included;
    one that finds none is answered ``429`` ``application/problem+json`` (``type``
    ``too_many_requests``, as Upvest's 429 example) before its signature is verified and
    before any handler runs, so nothing happens and no nonce or idempotency key is used up.
    Like Upvest it sends no ``Retry-After`` and no rate-limit headers, unless
    ``rate_limit_retry_after`` is true: then ``Retry-After`` gives the whole seconds until
    the next token (rounded up, at least 1). Change it while running with
    :meth:`set_rate_limit`; ``counters.throttled`` / ``counters.throttled_by_client`` count
    these 429s and their journal entries have ``throttled=True``. A ``rate_limit`` or
    ``rate_burst`` that is not a positive finite number is a :class:`ValueError`
    (:class:`TypeError` for a non-number or a bool); so is ``rate_burst`` below 1 or without
    ``rate_limit``.
    """

    def __init__(
        self,
        *,
        accounts: int = 20,
        positions_per_account: int = 500,
        seed: int = 0,
        latency_ms: float = 0.0,
        token_lifetime: float = 1799.0,
        faults: Faults | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        webhook_urls: Sequence[str] = (),
        order_fill_seconds: float | None = None,
        webhook_backoff_scale: float = 1.0,
        webhook_faults: WebhookFaults | None = None,
        webhook_batch_size: int = 100,
        webhook_timeout: float = 10.0,
        rate_limit: float | None = None,
        rate_burst: float | None = None,
        rate_limit_retry_after: bool = False,
    ) -> None:
        throttle = _buckets(rate_limit, rate_burst)
        _check_retry_after(rate_limit_retry_after)
        self.credentials = SandboxCredentials.from_seed(seed)
        self.tenant = Tenant(
            accounts=accounts, positions_per_account=positions_per_account, seed=seed
        )
        self.state = SandboxState(
            tenant=self.tenant,
            client_id=self.credentials.client_id,
            client_secret=self.credentials.client_secret,
            verifier=SignatureVerifier(
                {self.credentials.key_id: self.credentials.private_key.public_key()}
            ),
            token_lifetime=token_lifetime,
            latency=latency_ms / 1000.0,
            faults=faults if faults is not None else Faults(),
            throttle=throttle,
            throttle_retry_after=rate_limit_retry_after,
        )
        self.webhooks = WebhookEngine(
            seed=seed, urls=webhook_urls, time_scale=webhook_backoff_scale,
            batch_size=webhook_batch_size, timeout=webhook_timeout, faults=webhook_faults,
        )
        self.state.webhooks = self.webhooks
        self.lifecycle = OrderLifecycle(
            self.state.portfolios, self.tenant, self.webhooks, order_fill_seconds
        )
        self.app = create_app(self.state)
        self._host = host
        self._port = port
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    @property
    def counters(self) -> SandboxCounters:
        """What the sandbox saw so far (requests, token requests, rejected signatures, nonce
        replays, idempotent replays, resources created, duplicates, injected faults by kind)."""
        return self.state.counters

    @property
    def account_ids(self) -> list[str]:
        """The tenant's account ids as canonical uuid text (lower-case, hyphenated), sorted
        (a copy of ``tenant.account_ids``)."""
        return list(self.tenant.account_ids)

    @property
    def rate_limit(self) -> float | None:
        """Requests per second allowed per ``upvest-client-id``; ``None`` for no limit."""
        throttle = self.state.throttle
        return None if throttle is None else throttle.rate

    @property
    def rate_burst(self) -> float | None:
        """Tokens (requests) each client id's bucket holds at most; ``None`` for no limit."""
        throttle = self.state.throttle
        return None if throttle is None else throttle.burst

    def set_rate_limit(
        self, rate: float | None, burst: float | None = None, *, retry_after: bool | None = None
    ) -> None:
        """Change the rate limit now, while running or not.

        ``rate``: requests per second per ``upvest-client-id``, ``None`` for no limit (the
        buckets are forgotten: a later limit starts with full ones); ``burst``: the buckets'
        capacity in tokens (default ``max(1, rate / 10)``); ``retry_after``: send
        ``Retry-After`` with the 429s, ``None`` keeps the current choice. Existing buckets
        keep the tokens they hold now, clipped to the new capacity, and refill at the new
        rate from now on. Raises :class:`ValueError` / :class:`TypeError` as the constructor
        does, changing nothing.
        """
        if retry_after is not None:
            _check_retry_after(retry_after)
        state = self.state
        if rate is None or state.throttle is None:
            state.throttle = _buckets(rate, burst)
        else:
            state.throttle.set_rate(rate, burst, state.clock())
        if retry_after is not None:
            state.throttle_retry_after = retry_after

    @property
    def portfolios(self) -> PortfolioStore:
        """The Portfolios state (allocations, configurations, orders, executions); e.g.
        ``sandbox.portfolios.set_order_status(order_id, "PROCESSING")``."""
        return self.state.portfolios

    @property
    def webhook_stats(self) -> WebhookStats:
        """Webhook counters: emitted, delivered, pending, retried, requests, duplicates,
        lost answers, dropped (:class:`~.webhooks.WebhookStats`)."""
        return self.webhooks.stats

    async def webhooks_idle(self, timeout: float = 30.0) -> None:
        """Wait until no order is still to fill and every event is delivered;
        :class:`TimeoutError` after ``timeout`` seconds (e.g. a receiver that keeps failing)."""
        await self.webhooks.wait_idle(timeout)

    def rotate_webhook_key(self, *, keep_old: bool = True) -> str:
        """Sign webhooks with a new key pair from now on; returns its key id. The JWKS lists
        the new key first, and the older ones too unless ``keep_old`` is false."""
        return self.webhooks.rotate_key(keep_old=keep_old)

    async def start(self) -> str:
        """Start serving (and delivering webhooks); returns the base URL
        (``http://127.0.0.1:<port>``)."""
        runner = web.AppRunner(self.app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self._host, self._port)
        await site.start()
        self._runner = runner
        port = runner.addresses[0][1]
        self.base_url = f"http://{self._host}:{port}"
        await self.webhooks.start()
        return self.base_url

    async def stop(self) -> None:
        """Stop serving, stop orders' progress and webhook delivery (undelivered events stay
        queued), and close open connections."""
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()
        await self.lifecycle.stop()
        await self.webhooks.stop()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def client_settings(self) -> dict[str, Any]:
        """The keyword arguments of ``upvest_async.UpvestClient`` that reach this sandbox:
        ``client_id``, ``client_secret``, ``key_id``, ``private_key`` (PEM text, encrypted),
        ``private_key_passphrase`` and ``base_url`` (all ``str``); build a client with
        ``UpvestClient(**sandbox.client_settings())``, adding any other keyword. Raises
        :class:`RuntimeError` before :meth:`start`."""
        if not self.base_url:
            raise RuntimeError("start the sandbox first")
        return {
            "client_id": self.credentials.client_id,
            "client_secret": self.credentials.client_secret,
            "key_id": self.credentials.key_id,
            "private_key": self.credentials.private_key_pem(),
            "private_key_passphrase": self.credentials.passphrase,
            "base_url": self.base_url,
        }

    def env(self, *, key_base64: bool = False) -> dict[str, str]:
        """The ``UPVEST_API_*`` variables that point a client at this sandbox. The key is PEM
        text in ``UPVEST_API_HTTP_SIGN_PRIVATE_KEY``, or with ``key_base64`` base64 of the PEM
        in ``UPVEST_API_HTTP_SIGN_PRIVATE_KEY_BASE64`` (one line, safe in shell env files)."""
        settings = self.client_settings()
        pem: str = settings["private_key"]
        key = (
            {"UPVEST_API_HTTP_SIGN_PRIVATE_KEY_BASE64": base64.b64encode(pem.encode()).decode()}
            if key_base64 else {"UPVEST_API_HTTP_SIGN_PRIVATE_KEY": pem}
        )
        return {
            "UPVEST_API_BASE_URL": settings["base_url"],
            "UPVEST_API_CLIENT_ID": settings["client_id"],
            "UPVEST_API_CLIENT_SECRET": settings["client_secret"],
            "UPVEST_API_KEY_ID": settings["key_id"],
            **key,
            "UPVEST_API_HTTP_SIGN_PRIVATE_KEY_PASSPHRASE": settings["private_key_passphrase"],
        }
