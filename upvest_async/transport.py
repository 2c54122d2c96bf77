"""One API call: build the request, send attempts through the middlewares, retry, raise
typed errors.

Every attempt is a new ``session.request``, so it passes through the token and signing
middlewares again (new ``nonce``, new ``created``, a renewed access token when needed), while
the body bytes and the ``idempotency-key`` stay the same for all attempts of one call.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Mapping
from typing import Any

import aiohttp
import attrs
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)
from yarl import URL

from .errors import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    parse_retry_after,
    status_error_class,
)
from .stats import ClientStats

__all__ = ["RETRYABLE_STATUSES", "RawResponse", "Transport"]

logger = logging.getLogger("upvest_async")

#: Statuses retried (with the same idempotency key): rate limited and transient server errors.
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
#: Methods that change state and therefore carry an ``idempotency-key``.
MUTATING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: Upper bound (seconds) on a wait taken from ``Retry-After``.
MAX_RETRY_AFTER = 60.0


@attrs.frozen
class RawResponse:
    """A 2xx response: ``status``, ``headers`` (lower-case names), ``body`` bytes, and
    ``attempts`` (how many attempts the call took, 1 when the first one succeeded)."""

    method: str
    path: str
    status: int
    headers: Mapping[str, str]
    body: bytes
    attempts: int

    @property
    def request_id(self) -> str | None:
        """The ``upvest-request-id`` response header."""
        return self.headers.get("upvest-request-id")

    def json(self) -> Any:
        """The body parsed as JSON (raises :class:`ValueError` when it is not JSON)."""
        return json.loads(self.body)


def _is_retryable(exc: BaseException) -> bool:
    if isinstance(exc, APIStatusError):
        return exc.status in RETRYABLE_STATUSES
    return isinstance(exc, APIConnectionError)


class _Wait:
    """``Retry-After`` when the answer carries one (capped), else exponential backoff with full
    jitter: a random wait in [0, min(8, 0.25 * 2**attempt)] seconds."""

    def __init__(self) -> None:
        self._backoff = wait_random_exponential(multiplier=0.25, max=8.0)

    def __call__(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, APIStatusError):
            after = parse_retry_after(exc.headers.get("retry-after"))
            if after is not None:
                return min(after, MAX_RETRY_AFTER)
        return float(self._backoff(state))


def _log_retry(method: str, path: str, state: RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome else None
    what = f"status {exc.status}" if isinstance(exc, APIStatusError) else type(exc).__name__
    request_id = getattr(exc, "request_id", None)
    delay = state.next_action.sleep if state.next_action else 0.0
    logger.warning(
        "retrying %s %s after %s (attempt %d, next in %.2f s, request id %s)",
        method, path, what, state.attempt_number, delay, request_id,
    )


class Transport:
    """Sends calls for a client. ``max_retries``: retries after the first attempt;
    ``timeout``: seconds for one attempt."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: URL,
        *,
        max_retries: int,
        timeout: float,
        stats: ClientStats,
    ) -> None:
        self._session = session
        self._base_url = base_url
        self._base_path = base_url.path.rstrip("/")
        self.max_retries = max_retries
        self.timeout = timeout
        self._stats = stats

    def url(self, path: str, params: Mapping[str, str | int] | None = None) -> URL:
        """The absolute URL of an API ``path`` (already percent-encoded) with query ``params``."""
        url = self._base_url.with_path(self._base_path + path, encoded=True)
        return url.with_query(params) if params else url

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | int] | None = None,
        json_body: Any = None,
        idempotency_key: str | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
    ) -> RawResponse:
        """Perform one call and return its 2xx response.

        POST/PUT/PATCH/DELETE carry ``idempotency_key`` (a uuid4 is generated once per call
        when omitted), identical on every attempt. Raises an
        :class:`~upvest_async.errors.APIStatusError` subclass for a non-2xx answer after retries,
        :class:`~upvest_async.errors.APITimeoutError` or
        :class:`~upvest_async.errors.APIConnectionError` when no answer came.
        """
        method = method.upper()
        headers: dict[str, str] = {}
        body: bytes | None = None
        if json_body is not None:
            body = json.dumps(json_body, separators=(",", ":"), allow_nan=False).encode()
            headers["content-type"] = "application/json"
        if method in MUTATING_METHODS:
            headers["idempotency-key"] = idempotency_key or str(uuid.uuid4())
        url = self.url(path, params)
        retries = self.max_retries if max_retries is None else max_retries
        seconds = self.timeout if timeout is None else timeout
        attempts = 0

        async def attempt() -> RawResponse:
            nonlocal attempts
            attempts += 1
            if attempts > 1:
                self._stats.retries += 1
            return await self._attempt(method, path, url, headers, body, seconds, attempts)

        retrying = AsyncRetrying(
            stop=stop_after_attempt(retries + 1),
            wait=_Wait(),
            retry=retry_if_exception(_is_retryable),
            before_sleep=lambda state: _log_retry(method, path, state),
            reraise=True,
        )
        return await retrying(attempt)

    async def _attempt(
        self,
        method: str,
        path: str,
        url: URL,
        headers: dict[str, str],
        body: bytes | None,
        timeout: float,
        attempt_number: int,
    ) -> RawResponse:
        started = time.monotonic()
        try:
            async with self._session.request(
                method, url, data=body, headers=headers,
                timeout=aiohttp.ClientTimeout(total=timeout),
            ) as response:
                content = await response.read()
                status = response.status
                response_headers = {k.lower(): v for k, v in response.headers.items()}
        except TimeoutError:
            raise APITimeoutError(
                f"{method} {path} got no response within {timeout:g} s"
            ) from None
        except aiohttp.ClientError as exc:
            raise APIConnectionError(f"{method} {path} failed: {type(exc).__name__}") from exc
        logger.debug(
            "%s %s -> %d in %.1f ms (request id %s)",
            method, path, status, (time.monotonic() - started) * 1000,
            response_headers.get("upvest-request-id"),
        )
        if status >= 400:
            raise status_error_class(status)(
                status=status, method=method, path=path, body=content,
                headers=response_headers, attempts=attempt_number,
            )
        return RawResponse(
            method=method, path=path, status=status, headers=response_headers, body=content,
            attempts=attempt_number,
        )
