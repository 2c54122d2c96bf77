"""One API call: build the request, send attempts through the middlewares, retry, raise
typed errors.

Every attempt is a new ``session.request``, so it passes through the token and signing
middlewares again (new ``nonce``, new ``created``, a renewed access token when needed), while
the body bytes and the ``idempotency-key`` stay the same for all attempts of one call. The
retry loop is ``tenacity``'s; the decisions are in :mod:`upvest_async.retries`.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Mapping
from typing import Any, TypedDict

import aiohttp
import attrs
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt
from tenacity.stop import stop_base, stop_before_delay
from yarl import URL

from .errors import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    ResponseTooLargeError,
    ValidationError,
    status_error,
)
from .responses import RawResponse, record_response
from .retries import BudgetStop, RetryBudget, RetryPolicy, describe, is_retryable
from .stats import ClientStats

__all__ = ["RESERVED_HEADERS", "Limits", "RawResponse", "RequestOptions", "Transport"]

logger = logging.getLogger("upvest_async")

#: Methods that change state and therefore carry an ``idempotency-key``.
MUTATING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: Headers the SDK owns; ``extra_headers`` may not set them.
RESERVED_HEADERS = frozenset({
    "accept", "authorization", "content-digest", "content-length", "content-type", "host",
    "idempotency-key", "signature", "signature-input", "transfer-encoding",
})


class RequestOptions(TypedDict, total=False):
    """Per-call options, accepted by every method as keyword arguments and by
    :meth:`~upvest_async.UpvestClient.with_options`.

    ``timeout``: seconds for one attempt; ``max_retries``: retries after the first attempt;
    ``deadline``: seconds for the whole call, retries and waits included; ``backoff_max``:
    longest backoff wait in seconds; ``extra_headers``: additional request headers (they can
    neither replace the SDK's own nor any ``upvest-*`` header).
    """

    timeout: float
    max_retries: int
    deadline: float | None
    backoff_max: float
    extra_headers: Mapping[str, str]


def check_extra_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Validate ``extra_headers``: strings only, none reserved. Raises ValidationError."""
    checked = {}
    for name, value in headers.items():
        lower = str(name).lower()
        if lower in RESERVED_HEADERS or lower.startswith("upvest-"):
            raise ValidationError("extra_headers", f"{lower} is set by the SDK")
        if not isinstance(value, str) or "\n" in value or "\r" in value:
            raise ValidationError("extra_headers", f"{lower} must be a one-line string")
        checked[lower] = value
    return checked


def _log_retry(method: str, path: str, state: RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome else None
    delay = state.next_action.sleep if state.next_action else 0.0
    logger.warning(
        "retrying %s %s after %s (attempt %d, next in %.2f s, request id %s)",
        method, path, describe(exc), state.attempt_number, delay,
        getattr(exc, "request_id", None),
    )


@attrs.frozen
class Limits:
    """Per-attempt limits. ``timeout``: seconds for a whole attempt (connect, send, read);
    ``connect_timeout``: seconds to establish a connection; ``read_timeout``: seconds the
    server may stay silent while answering; ``max_response_bytes``: larger bodies are refused
    (:class:`~upvest_async.errors.ResponseTooLargeError`)."""

    timeout: float = 60.0
    connect_timeout: float = 10.0
    read_timeout: float = 30.0
    max_response_bytes: int = 32 * 1024 * 1024


async def _read_limited(response: aiohttp.ClientResponse, limit: int, what: str) -> bytes:
    declared = response.content_length
    if declared is not None and declared > limit:
        raise ResponseTooLargeError(f"{what}: response of {declared} bytes exceeds {limit}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(65536):
        size += len(chunk)
        if size > limit:
            raise ResponseTooLargeError(f"{what}: response exceeds {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


class Transport:
    """Sends calls for a client: ``policy`` (retries), ``budget`` (client-wide retry budget),
    ``limits`` (timeouts in seconds and the response size limit)."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: URL,
        *,
        policy: RetryPolicy,
        budget: RetryBudget,
        limits: Limits,
        stats: ClientStats,
    ) -> None:
        self._session = session
        self._base_url = base_url
        self._base_path = base_url.path.rstrip("/")
        self.policy = policy
        self.budget = budget
        self.limits = limits
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
        options: RequestOptions | None = None,
    ) -> RawResponse:
        """Perform one call and return its 2xx response.

        POST/PUT/PATCH/DELETE carry ``idempotency_key`` (a uuid4 is generated once per call
        when omitted), identical on every attempt. Raises an
        :class:`~upvest_async.errors.APIStatusError` subclass for a non-2xx answer after
        retries, :class:`~upvest_async.errors.APITimeoutError` or
        :class:`~upvest_async.errors.APIConnectionError` when no answer came; each carries
        ``attempts``.
        """
        options = options or {}
        method = method.upper()
        headers = check_extra_headers(options.get("extra_headers") or {})
        body: bytes | None = None
        if json_body is not None:
            body = json.dumps(json_body, separators=(",", ":"), allow_nan=False).encode()
            headers["content-type"] = "application/json"
        if method in MUTATING_METHODS:
            headers["idempotency-key"] = idempotency_key or str(uuid.uuid4())
        url = self.url(path, params)
        policy = self.policy
        changes: dict[str, Any] = {
            key: options[key]
            for key in ("max_retries", "deadline", "backoff_max") if key in options
        }
        if changes:
            try:
                policy = attrs.evolve(policy, **changes)
            except (TypeError, ValueError) as exc:
                raise ValidationError("options", str(exc)) from None
        timeout = options.get("timeout", self.limits.timeout)
        if not isinstance(timeout, int | float) or timeout <= 0:
            raise ValidationError("timeout", "must be a positive number of seconds")
        started = time.monotonic()
        attempts = 0

        async def attempt() -> RawResponse:
            nonlocal attempts
            attempts += 1
            if attempts > 1:
                self._stats.retries += 1
            seconds = float(timeout)
            if policy.deadline is not None:
                seconds = min(seconds, policy.deadline - (time.monotonic() - started))
                if seconds <= 0:
                    raise APITimeoutError(f"{method} {path}: deadline of "
                                          f"{policy.deadline:g} s exceeded")
            try:
                return await self._attempt(method, path, url, headers, body, seconds, attempts)
            except (APIConnectionError, APIStatusError) as exc:
                # Also errors of the token request made inside this attempt, which know
                # nothing of the call's attempts.
                exc.attempts = attempts
                raise

        budget_stop = BudgetStop(self.budget)
        stop: stop_base = stop_after_attempt(policy.max_retries + 1)
        if policy.deadline is not None:
            stop = stop | stop_before_delay(policy.deadline)
        retrying = AsyncRetrying(
            stop=stop | budget_stop,
            wait=policy.wait,
            retry=retry_if_exception(is_retryable),
            before_sleep=lambda state: _log_retry(method, path, state),
            reraise=True,
        )
        try:
            response: RawResponse = await retrying(attempt)
        except (APIStatusError, APIConnectionError):
            if budget_stop.exhausted:
                logger.warning("retry budget exhausted: %s %s fails fast", method, path)
            raise
        self.budget.succeeded(budget_stop.spent)
        record_response(response)
        return response

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
                timeout=aiohttp.ClientTimeout(
                    total=timeout,
                    sock_connect=min(timeout, self.limits.connect_timeout),
                    sock_read=min(timeout, self.limits.read_timeout),
                ),
            ) as response:
                content = await _read_limited(
                    response, self.limits.max_response_bytes, f"{method} {path}"
                )
                status = response.status
                response_headers = {k.lower(): v for k, v in response.headers.items()}
        except TimeoutError:
            raise APITimeoutError(
                f"{method} {path} got no response within {timeout:g} s"
            ) from None
        except aiohttp.ClientError as exc:
            raise APIConnectionError(f"{method} {path} failed: {type(exc).__name__}") from exc
        logger.debug(
            "%s %s -> %d in %.1f ms (attempt %d, request id %s)",
            method, path, status, (time.monotonic() - started) * 1000, attempt_number,
            response_headers.get("upvest-request-id"),
        )
        if status >= 400:
            raise status_error(
                status=status, method=method, path=path, body=content,
                headers=response_headers, attempts=attempt_number,
            )
        return RawResponse(
            method=method, path=path, status=status, headers=response_headers, body=content,
            attempts=attempt_number,
        )
