"""The sandbox's ``aiohttp.web`` application: authentication, signatures, problem details, routes.

Every request is verified (signature, ``upvest-client-id``, ``accept``), every API request needs
a bearer token with the endpoint's scope, every response carries ``upvest-request-id``, and errors
are ``application/problem+json`` (RFC 9457) with ``type``, ``status``, ``title``, ``detail``,
``instance`` and ``request_id``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import email.utils
import json
import math
import secrets
import socket
import struct
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

import attrs
from aiohttp import web

from ..scopes import PORTFOLIOS_ADMIN, PORTFOLIOS_READ, POSITIONS_READ, TOKEN_PATH
from .faults import FAULT_KINDS, FaultDecision, FaultInjector, Faults
from .tenant import Tenant
from .verifier import SignatureRejected, SignatureVerifier

if TYPE_CHECKING:
    from .idempotency import IdempotencyStore
    from .portfolios import PortfolioStore

__all__ = ["ConnectionDropped", "JournalEntry", "SandboxCounters", "SandboxState", "create_app"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: The status -> problem ``type`` slugs of the seeds' examples (S3).
_TYPES = {
    400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
    405: "method_not_allowed", 406: "not_acceptable", 409: "conflict",
    422: "unprocessable_entity", 429: "too_many_requests", 500: "internal_server_error",
    503: "service_unavailable", 504: "gateway_timeout",
}
_TITLES = {
    400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
    405: "Method Not Allowed", 406: "Not Acceptable", 409: "Conflict",
    422: "Unprocessable Entity", 429: "Too Many Requests", 500: "Internal Server Error",
    503: "Service Unavailable", 504: "Gateway Timeout",
}
_ACCEPTABLE = {"application/json", "application/pdf"}
_MAX_LIMIT = 1000
_DEFAULT_LIMIT = 100


class Problem(Exception):
    """Raised inside handlers to answer with problem details.

    ``type_slug``: the problem ``type``; ``None`` means the status's slug from ``_TYPES`` (S3).
    """

    def __init__(
        self,
        status: int,
        detail: str,
        headers: dict[str, str] | None = None,
        *,
        type_slug: str | None = None,
    ) -> None:
        self.status = status
        self.detail = detail
        self.headers = headers or {}
        self.type_slug = type_slug
        super().__init__(detail)


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
    (:data:`~.faults.FAULT_KINDS`)."""

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


@attrs.frozen
class JournalEntry:
    """One request as the sandbox received and answered it.

    ``headers``: lower-case names to values as received; ``status``: the status answered, 0
    when the connection was dropped without an answer; ``nonce``: of a verified signature
    (``None`` when the signature was rejected); ``at``: sandbox clock seconds when received;
    ``fault``: the injected fault (one of :data:`~.faults.FAULT_KINDS`), ``None`` for none.
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


@attrs.define
class _Token:
    scopes: frozenset[str]
    expires_at: float


# .idempotency and .portfolios import this module, so they are imported when first needed.
def _idempotency_store() -> IdempotencyStore:
    from .idempotency import IdempotencyStore

    return IdempotencyStore()


def _portfolio_store(state: SandboxState) -> PortfolioStore:
    from .portfolios import PortfolioStore

    return PortfolioStore(state.tenant, state.counters)


@attrs.define
class SandboxState:
    """The sandbox's mutable state: tenant, registered client, tokens, counters, options.

    ``latency``: seconds added to every response (to model a WAN); ``token_lifetime``: seconds
    an access token is valid; ``mutation_delay``: seconds a mutating Portfolios handler sleeps
    after claiming its ``idempotency-key`` (holds a request in flight, for tests);
    ``idempotency``: the claimed keys and stored responses (:mod:`.idempotency`);
    ``portfolios``: allocations, configurations, orders and rebalancing executions
    (:mod:`.portfolios`), seeded from ``tenant``; ``faults``: what to inject
    (:class:`~.faults.Faults`; assign a new value at any time, which restarts its seeded draws).
    """

    tenant: Tenant
    client_id: str
    client_secret: str
    verifier: SignatureVerifier
    scopes: frozenset[str] = frozenset({POSITIONS_READ, PORTFOLIOS_READ, PORTFOLIOS_ADMIN})
    token_lifetime: float = 1799.0
    latency: float = 0.0
    counters: SandboxCounters = attrs.field(factory=SandboxCounters)
    tokens: dict[str, _Token] = attrs.field(factory=dict)
    clock: Callable[[], float] = time.monotonic
    journal: collections.deque[JournalEntry] = attrs.field(
        factory=lambda: collections.deque(maxlen=100_000)
    )
    mutation_delay: float = 0.0
    idempotency: IdempotencyStore = attrs.field(factory=_idempotency_store)
    portfolios: PortfolioStore = attrs.field(
        default=attrs.Factory(_portfolio_store, takes_self=True)
    )
    faults: Faults = attrs.field(factory=Faults)
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


STATE_KEY = web.AppKey("state", SandboxState)
REQUEST_ID_KEY = web.RequestKey("request_id", str)
NONCE_KEY = web.RequestKey("nonce", str)
FAULT_KEY = web.RequestKey("fault", str)


class ConnectionDropped(Exception):
    """Raised by the fault middleware after it aborted the connection (no answer is sent)."""


def problem_response(
    status: int,
    detail: str,
    request_id: str,
    instance: str,
    headers: dict[str, str] | None = None,
    type_slug: str | None = None,
) -> web.Response:
    body = {
        "type": type_slug or _TYPES.get(status, "error"),
        "status": status,
        "title": _TITLES.get(status, "Error"),
        "detail": detail,
        "instance": instance,
        "request_id": request_id,
    }
    return web.Response(
        status=status, body=json.dumps(body).encode(), content_type="application/problem+json",
        headers=headers,
    )


def problem_for(request: web.Request, problem: Problem) -> web.Response:
    """The problem-details response of ``problem`` raised while handling ``request``."""
    return problem_response(
        problem.status, problem.detail, request[REQUEST_ID_KEY], request.rel_url.raw_path,
        problem.headers, problem.type_slug,
    )


def json_response(data: Any) -> web.Response:
    """A 200 ``application/json`` response of ``data`` (compact separators)."""
    return web.Response(body=json.dumps(data, separators=(",", ":")).encode(),
                        content_type="application/json")


def _required_scopes(method: str, path: str) -> frozenset[str] | None:
    """Scopes of which one is enough (Q6, read as OR); ``None`` for unknown paths."""
    if path.startswith("/accounts/") and "/positions" in path:
        return frozenset({POSITIONS_READ})
    if path.startswith("/portfolios"):
        if method in {"GET", "HEAD"}:
            return frozenset({PORTFOLIOS_READ, PORTFOLIOS_ADMIN})
        return frozenset({PORTFOLIOS_ADMIN})
    return None


@web.middleware
async def problems_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Give every response an ``upvest-request-id`` and turn errors into problem details."""
    state = request.app[STATE_KEY]
    request_id = str(uuid.uuid4())
    request[REQUEST_ID_KEY] = request_id
    state.counters.requests += 1
    received = state.clock()
    if state.latency:
        await asyncio.sleep(state.latency)
    status: int | None = None
    try:
        response = await handler(request)
    except Problem as problem:
        response = problem_for(request, problem)
    except web.HTTPException as exc:
        response = problem_response(exc.status, exc.reason, request_id, request.rel_url.raw_path)
    except ConnectionDropped:
        # The transport is aborted: aiohttp fails to write this and ignores the failure.
        response, status = web.Response(status=500), 0
    response.headers["upvest-request-id"] = request_id
    state.journal.append(JournalEntry(
        method=request.method, path=request.rel_url.raw_path,
        query=request.rel_url.raw_query_string,
        headers={name.lower(): value for name, value in request.headers.items()},
        status=response.status if status is None else status, request_id=request_id,
        nonce=request.get(NONCE_KEY), at=received, fault=request.get(FAULT_KEY),
    ))
    return response


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Verify the signature and headers of every request, and the bearer token of API calls."""
    state = request.app[STATE_KEY]
    body = await request.read()
    url = request.rel_url
    try:
        verified = state.verifier.verify(
            method=request.method,
            path=url.raw_path,
            query=url.raw_query_string,
            headers=lambda name: request.headers.getall(name, []),
            body=body,
        )
    except SignatureRejected as rejected:
        if rejected.reason == "nonce-replayed":
            state.counters.nonce_replays += 1
        else:
            state.counters.bad_signatures += 1
        raise Problem(401, f"signature rejected: {rejected}") from None
    request[NONCE_KEY] = verified.nonce
    if request.headers.get("upvest-client-id") != state.client_id:
        raise Problem(401, "unknown upvest-client-id")
    if url.raw_path == TOKEN_PATH:
        return await handler(request)
    accept = request.headers.get("accept", "")
    if accept not in _ACCEPTABLE:
        raise Problem(406, "accept must be application/json or application/pdf")
    if request.headers.get("upvest-api-version", "1") != "1":
        raise Problem(400, "unsupported upvest-api-version")
    authorization = request.headers.get("authorization", "")
    scheme, _, value = authorization.partition(" ")
    token = state.tokens.get(value) if scheme == "Bearer" else None
    if token is None or token.expires_at <= state.clock():
        state.counters.unauthorized += 1
        raise Problem(401, "missing, unknown or expired access token",
                      {"www-authenticate": 'Bearer error="invalid_token"'})
    needed = _required_scopes(request.method, url.raw_path)
    if needed is not None and not token.scopes & needed:
        state.counters.forbidden += 1
        raise Problem(403, "the access token lacks scope " + " or ".join(sorted(needed)))
    return await handler(request)


def _abort(request: web.Request) -> None:
    """Drop the connection of ``request`` at once, with a TCP RST where the socket allows."""
    request.protocol.force_close()
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


def _retry_after(seconds: int, http_date: bool) -> str:
    if not http_date:
        return str(seconds)
    # Whole seconds only: round up so that the date is at least ``seconds`` away.
    return email.utils.formatdate(math.ceil(time.time() + seconds), usegmt=True)


async def _inject(
    request: web.Request, handler: Handler, state: SandboxState, decision: FaultDecision
) -> web.StreamResponse:
    kind = decision.kind
    request[FAULT_KEY] = kind
    state.counters.faults[kind] = state.counters.faults.get(kind, 0) + 1
    if kind == "reset":
        _abort(request)
        raise ConnectionDropped
    if decision.status in {500, 502, 503}:
        raise Problem(decision.status, "injected fault: the request was not processed")
    if decision.status == 429:
        seconds = state.faults.rate_limit_retry_after
        raise Problem(429, "injected fault: rate limited, the request was not processed",
                      {"retry-after": _retry_after(seconds, decision.retry_after_date)})
    answer: web.StreamResponse | Problem | web.HTTPException
    try:
        answer = await handler(request)
    except (Problem, web.HTTPException) as raised:
        answer = raised  # an answer too (a 4xx is stored for its idempotency key)
    if kind == "lost-drop":
        _abort(request)
        raise ConnectionDropped
    if kind == "lost-504":
        raise Problem(504, "injected fault: the request was processed but its answer was lost")
    await asyncio.sleep(state.faults.slow_seconds)  # "slow"
    if isinstance(answer, Exception):
        raise answer
    return answer


@web.middleware
async def faults_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Inject the faults of ``state.faults`` (see :mod:`.faults`) into requests that passed
    authentication (and into token requests when ``fault_token_endpoint`` is set)."""
    state = request.app[STATE_KEY]
    injector = state.fault_injector()
    if not injector.applies_to(is_token_request=request.rel_url.raw_path == TOKEN_PATH):
        return await handler(request)
    decision = injector.decide(request.method)
    if decision is None:
        return await handler(request)
    return await _inject(request, handler, state, decision)


async def token_endpoint(request: web.Request) -> web.Response:
    """``POST /auth/token``: OAuth2 client credentials grant (RFC 6749 section 4.4)."""
    state = request.app[STATE_KEY]
    state.counters.token_requests += 1
    if request.content_type != "application/x-www-form-urlencoded":
        raise Problem(400, "the token request must be application/x-www-form-urlencoded")
    form = dict(parse_qsl((await request.read()).decode("utf-8", "replace")))
    if form.get("grant_type") != "client_credentials":
        raise Problem(400, "grant_type must be client_credentials")
    if form.get("client_id") != state.client_id or not secrets.compare_digest(
        form.get("client_secret", "").encode(), state.client_secret.encode()
    ):
        raise Problem(401, "invalid client credentials")
    asked = frozenset(form.get("scope", "").split())
    if asked - state.scopes:
        raise Problem(400, "invalid scope: " + " ".join(sorted(asked - state.scopes)))
    granted = asked or state.scopes
    value = secrets.token_urlsafe(32)
    state.tokens[value] = _Token(scopes=granted, expires_at=state.clock() + state.token_lifetime)
    return json_response({
        "access_token": value,
        "expires_in": int(state.token_lifetime) if state.token_lifetime >= 1 else 1,
        "token_type": "bearer",
        "scope": " ".join(sorted(granted)),
    })


def paging(request: web.Request) -> tuple[int, int]:
    """Parse ``offset`` (>= 0, default 0) and ``limit`` (0..1000, default 100); 400 otherwise."""
    values = []
    for name, default, upper in (("offset", 0, None), ("limit", _DEFAULT_LIMIT, _MAX_LIMIT)):
        raw = request.query.get(name)
        if raw is None:
            values.append(default)
            continue
        if not raw.isdigit():
            raise Problem(400, f"{name} must be a non-negative integer")
        value = int(raw)
        if upper is not None and value > upper:
            raise Problem(400, f"{name} must be at most {upper}")
        values.append(value)
    return values[0], values[1]


def list_response(
    items: list[dict[str, Any]], total: int, offset: int, limit: int, sort: str
) -> web.Response:
    return json_response({
        "meta": {"offset": offset, "limit": limit, "count": len(items), "total_count": total,
                 "sort": sort, "order": "ASC"},
        "data": items,
    })


def _account(request: web.Request) -> str:
    tenant = request.app[STATE_KEY].tenant
    account = request.match_info["account_id"]
    if not tenant.has_account(account):
        raise Problem(404, "no such account")
    return account


async def list_positions(request: web.Request) -> web.Response:
    """``GET /accounts/{account_id}/positions`` (E16)."""
    account = _account(request)
    offset, limit = paging(request)
    positions = request.app[STATE_KEY].tenant.positions(account)
    return list_response(positions[offset:offset + limit], len(positions), offset, limit, "id")


async def retrieve_position(request: web.Request) -> web.Response:
    """``GET /accounts/{account_id}/positions/{instrument_id}`` (E17)."""
    account = _account(request)
    raw = request.match_info["instrument_id"].removeprefix("urn:")
    kind, _, value = raw.partition(":")
    if kind not in {"isin", "uuid"} or not value:
        raise Problem(400, "instrument_id must be isin:<ISIN> or uuid:<UUID>")
    for position in request.app[STATE_KEY].tenant.positions(account):
        instrument = position["instrument"]
        if (kind == "isin" and instrument.get("isin") == value) or (
            kind == "uuid" and instrument["uuid"] == value.lower()
        ):
            return json_response(position)
    raise Problem(404, "the account holds no position in this instrument")


def create_app(state: SandboxState) -> web.Application:
    """Build the sandbox application around ``state``.

    Middlewares, outermost first: problem details, then signature/token/scope checks, then
    fault injection (:mod:`.faults`, only for requests that passed the checks). The
    Portfolios routes (E1 to E15, :mod:`.portfolios`) claim idempotency keys inside their
    handlers, so a request refused by authentication never consumes a key.
    """
    from .portfolios import add_portfolio_routes  # imports this module

    app = web.Application(
        middlewares=[problems_middleware, auth_middleware, faults_middleware]
    )
    app[STATE_KEY] = state
    app.router.add_post(TOKEN_PATH, token_endpoint)
    add_portfolio_routes(app)
    app.router.add_get("/accounts/{account_id}/positions", list_positions)
    app.router.add_get("/accounts/{account_id}/positions/{instrument_id}", retrieve_position)
    return app
