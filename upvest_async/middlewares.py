"""The two aiohttp client middlewares every request passes through: token, then signing.

``ClientSession(middlewares=(token_middleware, signing_middleware))``: the token middleware is
the outer one, so every attempt (a retry, or the replay after a 401) is signed again with a new
``nonce`` and ``created``. The token request itself goes through the signing middleware only.
"""

from __future__ import annotations

from aiohttp import ClientHandlerType, ClientRequest, ClientResponse
from cryptography.hazmat.primitives.asymmetric import ec

from .scopes import required_scope
from .signing import DEFAULT_EXPIRES_IN, sign_request
from .stats import ClientStats
from .tokens import TokenManager

__all__ = ["SigningMiddleware", "TokenMiddleware"]


class SigningMiddleware:
    """Signs each request attempt (HTTP message signatures v15, see :mod:`upvest_async.signing`).

    Adds ``content-digest`` (requests with a body), ``signature-input``, ``signature`` and
    ``upvest-signature-version``, replacing those of an earlier attempt of the same request.
    """

    def __init__(
        self,
        private_key: ec.EllipticCurvePrivateKey,
        key_id: str,
        *,
        stats: ClientStats,
        expires_in: int = DEFAULT_EXPIRES_IN,
    ) -> None:
        self._private_key = private_key
        self._key_id = key_id
        self._stats = stats
        self._expires_in = expires_in

    def __repr__(self) -> str:
        return f"SigningMiddleware(key_id={self._key_id!r})"

    async def __call__(self, request: ClientRequest, handler: ClientHandlerType) -> ClientResponse:
        body = request.body
        data = b"" if isinstance(body, bytes) else await body.as_bytes()
        request.headers.update(
            sign_request(
                method=request.method,
                path=request.url.raw_path,
                query=request.url.raw_query_string,
                headers=request.headers,
                body=data,
                private_key=self._private_key,
                key_id=self._key_id,
                expires_in=self._expires_in,
            )
        )
        self._stats.requests += 1
        return await handler(request)


class TokenMiddleware:
    """Adds ``authorization: Bearer <access token>`` with the least scope the endpoint needs.

    On a 401 answer it renews the access token once and replays the request once (the replay is
    signed again by the inner signing middleware). Source: RFC 6750 section 3.1 (``invalid_token``).
    """

    def __init__(self, tokens: TokenManager) -> None:
        self._tokens = tokens

    def __repr__(self) -> str:
        return "TokenMiddleware()"

    async def __call__(self, request: ClientRequest, handler: ClientHandlerType) -> ClientResponse:
        needed = required_scope(request.method, request.url.raw_path)
        token = await self._tokens.get(needed)
        request.headers["authorization"] = f"Bearer {token.value}"
        response = await handler(request)
        if response.status != 401:
            return response
        response.release()
        self._tokens.invalidate(token)
        token = await self._tokens.get(needed)
        request.headers["authorization"] = f"Bearer {token.value}"
        return await handler(request)
