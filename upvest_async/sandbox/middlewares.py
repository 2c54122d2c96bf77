"""The sandbox's ``aiohttp.web`` middlewares, outermost first: request ids, latency, journal
and problem details; the rate limit per ``upvest-client-id`` (:mod:`.throttling`); signature,
``upvest-client-id``, ``accept``, bearer token and scope checks; fault injection
(:mod:`.faults`)."""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import math
import socket
import struct
import time
import uuid

from aiohttp import web

from .context import FAULT_KEY, NONCE_KEY, REQUEST_ID_KEY, STATE_KEY, THROTTLED_KEY, Handler
from .faults import FaultDecision
from .problems import Problem, problem_for, problem_response
from .scopes import TOKEN_PATH, accepted_scopes
from .state import JournalEntry, SandboxState
from .verifier import SignatureRejected

__all__ = [
    "ConnectionDropped",
    "auth_middleware",
    "faults_middleware",
    "problems_middleware",
    "throttle_middleware",
]


_ACCEPTABLE = {"application/json", "application/pdf"}


class ConnectionDropped(Exception):
    """Raised by the fault middleware after it aborted the connection (no answer is sent)."""


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
        throttled=request.get(THROTTLED_KEY, False),
    ))
    return response


@web.middleware
async def throttle_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Take a token from the bucket of the request's ``upvest-client-id`` (``state.throttle``;
    one bucket for requests without one), or answer 429 ``too_many_requests`` problem details
    at once: before the signature is verified (no nonce is used up), before the token and
    scope checks and before any handler, as a gateway would, for every path,
    ``POST /auth/token`` included. ``Retry-After`` (whole seconds until the next token, at
    least 1) only with ``state.throttle_retry_after``; Upvest sends none."""
    state = request.app[STATE_KEY]
    buckets = state.throttle
    if buckets is None:
        return await handler(request)
    client_id = request.headers.get("upvest-client-id") or None
    wait = buckets.take(client_id, state.clock())
    if not wait:
        return await handler(request)
    request[THROTTLED_KEY] = True
    counters = state.counters
    counters.throttled += 1
    key = client_id or ""
    counters.throttled_by_client[key] = counters.throttled_by_client.get(key, 0) + 1
    headers = {"retry-after": str(max(1, math.ceil(wait)))} if state.throttle_retry_after else {}
    raise Problem(429, "rate limit exceeded for this upvest-client-id; the request was not "
                       "processed", headers)


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
    route = request.match_info.route.resource
    if route is None:  # no such endpoint: the router's 404 or 405 follows
        return await handler(request)
    accepted = accepted_scopes(request.method, route.canonical)
    if not token.scopes & accepted:
        state.counters.forbidden += 1
        wanted = " or ".join(sorted(accepted)) or "a scope no token has"
        raise Problem(403, f"the access token lacks scope {wanted}")
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
