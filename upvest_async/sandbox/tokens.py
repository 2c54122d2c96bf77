"""``POST /auth/token``: the OAuth2 client credentials grant (RFC 6749 section 4.4)."""

from __future__ import annotations

import secrets
from urllib.parse import parse_qsl

from aiohttp import web

from .context import STATE_KEY
from .problems import Problem, json_response
from .state import Token

__all__ = ["token_endpoint"]


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
    state.tokens[value] = Token(scopes=granted, expires_at=state.clock() + state.token_lifetime)
    return json_response({
        "access_token": value,
        "expires_in": int(state.token_lifetime) if state.token_lifetime >= 1 else 1,
        "token_type": "bearer",
        "scope": " ".join(sorted(granted)),
    })
