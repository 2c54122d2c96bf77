"""OAuth2 client-credentials access tokens: fetched, cached per scope set, renewed before expiry.

Source: RFC 6749 section 4.4 (client credentials grant) and 5.1 (the token response), RFC 6750
section 2.1 (the ``b64token`` syntax of a bearer token), and Upvest's ``POST /auth/token``,
which is signed like any other request but carries no ``authorization`` header.

**Single flight.** All callers that need a token for the same scopes while none is cached wait
for one shared token request, and share its outcome: the token, or its error. That request goes
through the package's one retry loop (:func:`~upvest_async.retry_loop.call_with_retries`: the
client's retry policy, deadline, retry budget and rate limiter) inside the shared request, so
N concurrent callers cause ``max_retries + 1`` token requests at most (429s aside: they are
re-sent under ``max_throttled_retries``), not N times as many; the calls that waited do not
retry it again (the error has ``token_request=True`` and ``attempts`` = the token requests
made).

**Bounds.** The token answer is read up to ``max_response_bytes``, within the client's
connect/read/total timeouts, without following redirects, and must be a JSON object with an
``access_token`` (1 to 8192 characters of the RFC 6750 ``b64token`` alphabet), an integer
``expires_in`` (1 to 31 536 000 seconds, a year), an optional ``token_type`` (``Bearer``, any
case) and an optional ``scope`` (space-separated, printable ASCII). Anything else is a
:class:`~upvest_async.errors.ResponseValidationError`.
"""

from __future__ import annotations

import asyncio
import functools
import re
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING
from urllib.parse import urlencode

import aiohttp
import attrs
from yarl import URL

from .errors import APIConnectionError, APIStatusError, ResponseValidationError
from .json_body import parse_json
from .problems import status_error
from .ratelimit import RateLimiter
from .redaction import Secrets
from .retries import RetryBudget, RetryPolicy, is_retryable
from .retry_loop import call_with_retries
from .scopes import TOKEN_PATH, satisfies
from .stats import ClientStats
from .transport import (
    Limits,
    client_timeout,
    connection_error,
    read_limited,
    timeout_error,
    visible_cause,
)

if TYPE_CHECKING:
    from .telemetry import Telemetry

__all__ = ["MAX_EXPIRES_IN", "MAX_TOKEN_LENGTH", "AccessToken", "TokenManager"]

#: Renew when less than this share of the lifetime is left ...
_RENEW_FRACTION = 0.1
#: ... but never more than this many seconds before expiry.
_RENEW_MAX_SECONDS = 60.0
#: The longest ``expires_in`` accepted (seconds: one year).
MAX_EXPIRES_IN = 365 * 24 * 3600
#: The longest access token accepted (characters).
MAX_TOKEN_LENGTH = 8192
#: RFC 6750 section 2.1: b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*", re.ASCII)
_SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+", re.ASCII)  # RFC 6749 3.3 scope-token


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
    """Hands out valid access tokens; concurrent callers share a single token request and its
    outcome (see the module docs).

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
        #: The secrets to redact from errors and logs: the client secret and the tokens.
        self.secrets = Secrets(client_secret)
        self._scopes = frozenset(scopes) if scopes is not None else None
        self._stats = stats
        self._clock = clock
        self._tokens: list[AccessToken] = []
        self._telemetry: Telemetry | None = None
        self._fetches: dict[frozenset[str], asyncio.Task[AccessToken]] = {}
        self._locks: dict[frozenset[str], asyncio.Lock] = {}
        self._session: aiohttp.ClientSession | None = None
        self._token_url: URL | None = None
        self._middlewares: tuple[aiohttp.ClientMiddlewareType, ...] = ()
        self._limits = Limits()
        self._policy = RetryPolicy()
        self._budget: RetryBudget | None = None
        self._limiter: RateLimiter | None = None

    def __repr__(self) -> str:
        return f"TokenManager(client_id={self._client_id!r}, cached={len(self._tokens)})"

    def bind(
        self,
        session: aiohttp.ClientSession,
        base_url: URL,
        signing_middleware: aiohttp.ClientMiddlewareType,
        *,
        limits: Limits | None = None,
        policy: RetryPolicy | None = None,
        budget: RetryBudget | None = None,
        limiter: RateLimiter | None = None,
        telemetry: Telemetry | None = None,
    ) -> None:
        """Use ``session`` for token requests, signed by ``signing_middleware`` only, within
        ``limits`` (timeouts, ``max_response_bytes``), retried under ``policy`` and ``budget``
        and paced by ``limiter`` (defaults: those of :class:`Limits` and
        :class:`RetryPolicy`, no budget, not paced), traced by ``telemetry`` (``None``: not
        traced)."""
        self._session = session
        self._token_url = base_url.with_path(TOKEN_PATH)
        self._middlewares = (signing_middleware,)
        self._limits = limits or Limits()
        self._policy = policy or RetryPolicy()
        self._budget = budget
        self._limiter = limiter
        self._telemetry = telemetry

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
        answer when it refuses (e.g. 401 for wrong client credentials),
        :class:`~upvest_async.errors.APIConnectionError` /
        :class:`~upvest_async.errors.APITimeoutError` when it gives no answer (each after the
        token request's retries, with ``token_request=True``), or
        :class:`~upvest_async.errors.ResponseValidationError` for a malformed token answer.
        Every caller waiting for the same token gets the same outcome.
        """
        if self._scopes is not None:
            wanted = self._scopes
        else:
            wanted = frozenset({needed}) if needed else frozenset()
        token = self._cached(wanted, needed)
        if token is not None:
            return token
        task = self._fetches.get(wanted)
        if task is None or task.done():
            task = asyncio.ensure_future(self._fetch_retrying(wanted))
            self._fetches[wanted] = task
            task.add_done_callback(functools.partial(self._fetched, wanted))
        # The outcome is handed to the waiters one at a time (each sends its own request before
        # the next one wakes), and a waiter that gives up (its own timeout) leaves the shared
        # request to the others.
        async with self._locks.setdefault(wanted, asyncio.Lock()):
            return await asyncio.shield(task)

    def _fetched(self, wanted: frozenset[str], task: asyncio.Task[AccessToken]) -> None:
        if self._fetches.get(wanted) is task:
            del self._fetches[wanted]
        if not task.cancelled() and task.exception() is None:  # (marks the error retrieved)
            self._tokens.append(task.result())

    def invalidate(self, token: AccessToken) -> None:
        """Forget ``token`` (after a 401); a no-op when it was already replaced."""
        self._tokens = [cached for cached in self._tokens if cached is not token]

    async def aclose(self) -> None:
        """Cancel the token requests in flight and wait for them to end."""
        tasks = list(self._fetches.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _fetch_retrying(self, scopes: frozenset[str]) -> AccessToken:
        async def send(seconds: float, deadline: float | None, attempt: int) -> AccessToken:
            return await self._fetch(scopes, seconds, deadline)

        try:
            return await call_with_retries(
                f"POST {TOKEN_PATH}", send, policy=self._policy, budget=self._budget,
                limiter=self._limiter, stats=self._stats, timeout=self._limits.timeout,
                retryable=is_retryable,
                trace=(None if self._telemetry is None or self._token_url is None
                       else self._telemetry.call("POST", TOKEN_PATH, self._token_url)),
            )
        except (APIConnectionError, APIStatusError) as exc:
            exc.token_request = True
            raise

    async def _fetch(
        self, scopes: frozenset[str], seconds: float, deadline: float | None
    ) -> AccessToken:
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
        limits = self._limits
        what = f"POST {TOKEN_PATH}"
        try:
            async with self._session.post(
                self._token_url,
                data=urlencode(form).encode("ascii"),
                headers={"content-type": "application/x-www-form-urlencoded"},
                middlewares=self._middlewares,
                allow_redirects=False,
                timeout=client_timeout(limits, seconds),
            ) as response:
                body = await read_limited(response, limits.max_response_bytes, what)
                status = response.status
                headers = {name.lower(): value for name, value in response.headers.items()}
        except TimeoutError as exc:
            raise timeout_error(exc, what, limits, seconds, deadline=deadline) from None
        except aiohttp.ClientError as exc:
            raise connection_error(exc, what) from visible_cause(exc)
        if status != 200:
            raise status_error(
                status=status, method="POST", path=TOKEN_PATH, body=body, headers=headers,
            )
        return self._parse(body, scopes, started, headers.get("upvest-request-id"))

    def _parse(
        self, body: bytes, asked: frozenset[str], started: float, request_id: str | None
    ) -> AccessToken:
        payload = parse_json(body, what="token response", request_id=request_id)

        def invalid(field: str, rule: str) -> ResponseValidationError:
            return ResponseValidationError(f"token response: {rule}", path=f"$.{field}",
                                           request_id=request_id)

        if not isinstance(payload, dict):
            raise invalid("", "must be a JSON object")
        value = payload.get("access_token")
        if not isinstance(value, str) or not value:
            raise invalid("access_token", "access_token must be a non-empty string")
        if len(value) > MAX_TOKEN_LENGTH or not _B64TOKEN.fullmatch(value):
            # Never quote it: it may be a real token with one bad character.
            raise invalid("access_token", "access_token must be 1 to "
                          f"{MAX_TOKEN_LENGTH} characters of the RFC 6750 b64token syntax")
        self.secrets.add(value, token=True)
        token_type = payload.get("token_type")
        if token_type is not None and (
            not isinstance(token_type, str) or token_type.lower() != "bearer"
        ):
            raise invalid("token_type", "token_type must be Bearer")
        expires_in = payload.get("expires_in")
        if isinstance(expires_in, float) and expires_in.is_integer():
            expires_in = int(expires_in)  # 3600.0: an integer written as a float
        if (
            not isinstance(expires_in, int) or isinstance(expires_in, bool)
            or not 1 <= expires_in <= MAX_EXPIRES_IN
        ):
            raise invalid("expires_in", "expires_in must be an integer number of seconds in "
                          f"1..{MAX_EXPIRES_IN}")
        granted = payload.get("scope")
        if granted is not None and (
            not isinstance(granted, str)
            or not all(_SCOPE_TOKEN.fullmatch(scope) for scope in granted.split(" ") if scope)
        ):
            raise invalid("scope", "scope must be a space-separated list of scope names")
        scopes = frozenset(granted.split()) if granted else asked
        lifetime = float(expires_in)
        margin = min(_RENEW_MAX_SECONDS, lifetime * _RENEW_FRACTION)
        return AccessToken(
            value=value,
            scopes=scopes,
            renew_at=started + lifetime - margin,
            expires_at=started + lifetime,
        )
