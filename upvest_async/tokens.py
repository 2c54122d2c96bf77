"""OAuth2 client-credentials access tokens: fetched, cached per scope set, renewed before expiry.

Source: RFC 6749 section 4.4 (client credentials grant), and Upvest's ``POST /auth/token``, which
is signed like any other request but carries no ``authorization`` header.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Sequence
from urllib.parse import urlencode

import aiohttp
import attrs
from yarl import URL

from .errors import ResponseValidationError, status_error
from .scopes import TOKEN_PATH, satisfies
from .stats import ClientStats

__all__ = ["AccessToken", "TokenManager"]

#: Renew when less than this share of the lifetime is left ...
_RENEW_FRACTION = 0.1
#: ... but never more than this many seconds before expiry.
_RENEW_MAX_SECONDS = 60.0


@attrs.frozen(repr=False)
class AccessToken:
    """An access token. ``value`` is secret and never shown by ``repr``.

    ``scopes``: scopes granted. ``renew_at`` / ``expires_at``: monotonic-clock seconds.
    """

    value: str
    scopes: frozenset[str]
    renew_at: float
    expires_at: float

    def __repr__(self) -> str:
        return f"AccessToken(scopes={sorted(self.scopes)!r}, value=<redacted>)"


class TokenManager:
    """Hands out valid access tokens; concurrent callers share a single token request.

    With ``scopes=None`` each call asks for the least scope its endpoint needs, and any cached
    token whose granted scopes satisfy it is reused. With explicit ``scopes``, one token for all
    of them is used for every call.
    """

    def __init__(
        self,
        *,
        client_id: str,
        client_secret: str,
        scopes: Sequence[str] | None,
        stats: ClientStats,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client_id = client_id
        self._client_secret = client_secret
        self._scopes = frozenset(scopes) if scopes is not None else None
        self._stats = stats
        self._clock = clock
        self._tokens: list[AccessToken] = []
        self._locks: dict[frozenset[str], asyncio.Lock] = {}
        self._session: aiohttp.ClientSession | None = None
        self._token_url: URL | None = None
        self._middlewares: tuple[aiohttp.ClientMiddlewareType, ...] = ()

    def __repr__(self) -> str:
        return f"TokenManager(client_id={self._client_id!r}, cached={len(self._tokens)})"

    def bind(
        self,
        session: aiohttp.ClientSession,
        base_url: URL,
        signing_middleware: aiohttp.ClientMiddlewareType,
    ) -> None:
        """Use ``session`` for token requests, signed by ``signing_middleware`` only."""
        self._session = session
        self._token_url = base_url.with_path(TOKEN_PATH)
        self._middlewares = (signing_middleware,)

    def _cached(self, wanted: frozenset[str], needed: str | None) -> AccessToken | None:
        now = self._clock()
        self._tokens = [token for token in self._tokens if token.expires_at > now]
        for token in self._tokens:
            if token.renew_at <= now:
                continue
            if self._scopes is not None or needed is None:
                if token.scopes >= wanted:
                    return token
            elif satisfies(token.scopes, needed):
                return token
        return None

    async def get(self, needed: str | None) -> AccessToken:
        """Return a valid access token for an endpoint that needs scope ``needed``.

        Raises the :class:`~upvest_async.errors.APIStatusError` subclass of the token endpoint's
        answer when it refuses (e.g. 401 for wrong client credentials), or
        :class:`~upvest_async.errors.ResponseValidationError` for a malformed token response.
        """
        if self._scopes is not None:
            wanted = self._scopes
        else:
            wanted = frozenset({needed}) if needed else frozenset()
        token = self._cached(wanted, needed)
        if token is not None:
            return token
        lock = self._locks.setdefault(wanted, asyncio.Lock())
        async with lock:
            token = self._cached(wanted, needed)
            if token is None:
                token = await self._fetch(wanted)
                self._tokens.append(token)
            return token

    def invalidate(self, token: AccessToken) -> None:
        """Forget ``token`` (after a 401); a no-op when it was already replaced."""
        self._tokens = [cached for cached in self._tokens if cached is not token]

    async def _fetch(self, scopes: frozenset[str]) -> AccessToken:
        if self._session is None or self._token_url is None:
            raise RuntimeError("TokenManager is not bound to a session")
        form = {
            "client_id": self._client_id,
            "client_secret": self._client_secret,
            "grant_type": "client_credentials",
        }
        if scopes:
            form["scope"] = " ".join(sorted(scopes))
        started = self._clock()
        self._stats.token_requests += 1
        async with self._session.post(
            self._token_url,
            data=urlencode(form).encode("ascii"),
            headers={"content-type": "application/x-www-form-urlencoded"},
            middlewares=self._middlewares,
        ) as response:
            body = await response.read()
            headers = {name.lower(): value for name, value in response.headers.items()}
            if response.status != 200:
                raise status_error(
                    status=response.status, method="POST", path=TOKEN_PATH, body=body,
                    headers=headers,
                )
        return self._parse(body, scopes, started, headers.get("upvest-request-id"))

    def _parse(
        self, body: bytes, asked: frozenset[str], started: float, request_id: str | None
    ) -> AccessToken:
        try:
            payload = json.loads(body)
            value = payload["access_token"]
            expires_in = float(payload["expires_in"])
        except (ValueError, KeyError, TypeError):
            raise ResponseValidationError(
                "token response needs access_token and a numeric expires_in",
                path="/auth/token", request_id=request_id,
            ) from None
        if not isinstance(value, str) or not value or expires_in <= 0:
            raise ResponseValidationError(
                "access_token must be a non-empty string and expires_in positive",
                path="/auth/token", request_id=request_id,
            )
        granted = payload.get("scope")
        scopes = frozenset(granted.split()) if isinstance(granted, str) and granted else asked
        margin = min(_RENEW_MAX_SECONDS, expires_in * _RENEW_FRACTION)
        return AccessToken(
            value=value,
            scopes=scopes,
            renew_at=started + expires_in - margin,
            expires_at=started + expires_in,
        )
