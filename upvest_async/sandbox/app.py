"""The sandbox's ``aiohttp.web`` application: its middlewares and routes, around a
:class:`~.state.SandboxState`.

Every request is verified (signature, ``upvest-client-id``, ``accept``), every API request needs
a bearer token with the endpoint's scope, every response carries ``upvest-request-id``, and errors
are ``application/problem+json`` (RFC 9457) with ``type``, ``status``, ``title``, ``detail``,
``instance`` and ``request_id``."""

from __future__ import annotations

from aiohttp import web

from .context import STATE_KEY
from .middlewares import (
    auth_middleware,
    faults_middleware,
    problems_middleware,
    throttle_middleware,
)
from .portfolios import add_portfolio_routes
from .positions import list_positions, retrieve_position
from .scopes import TOKEN_PATH, check_every_route_has_scopes
from .state import SandboxState
from .tokens import token_endpoint
from .webhooks.routes import add_webhook_routes

__all__ = ["create_app"]


def create_app(state: SandboxState) -> web.Application:
    """Build the sandbox application around ``state``.

    Middlewares, outermost first: problem details (request id, latency, journal), then the
    rate limit per ``upvest-client-id`` (:mod:`.throttling`; a throttled request is answered
    429 before its signature is verified, so it uses up no nonce and runs no handler), then
    signature/token/scope checks, then fault injection (:mod:`.faults`, only for requests
    that passed the checks). The Portfolios routes (E1 to E15, :mod:`.portfolios`) claim
    idempotency keys inside their handlers, so a request refused by the rate limit or by
    authentication never consumes a key. Every route but the token endpoint needs a token
    with one of the scopes :mod:`.scopes` lists for it; a route the table lacks is a
    :class:`RuntimeError` here, before anything is served.
    """
    app = web.Application(
        middlewares=[problems_middleware, throttle_middleware, auth_middleware,
                     faults_middleware]
    )
    app[STATE_KEY] = state
    app.router.add_post(TOKEN_PATH, token_endpoint)
    add_portfolio_routes(app)
    app.router.add_get("/accounts/{account_id}/positions", list_positions)
    app.router.add_get("/accounts/{account_id}/positions/{instrument_id}", retrieve_position)
    add_webhook_routes(app)
    check_every_route_has_scopes(app)
    return app
