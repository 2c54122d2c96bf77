"""One API call: build the request, send attempts through the middlewares, retry, raise
typed errors.

Every attempt is a new ``session.request``, so it passes through the token and signing
middlewares again (new ``nonce``, new ``created``, a renewed access token when needed), while
the body bytes and the ``idempotency-key`` stay the same for all attempts of one call. The
attempts run in the package's one retry loop (:mod:`upvest_async.retry_loop`); the decisions
are in :mod:`upvest_async.retries`.

Redirects are never followed: a request is signed for one target URI, and a redirect could take
the access token to another host. A 3xx answer is an :class:`~upvest_async.errors.APIStatusError`.
Every body is read up to ``max_response_bytes`` and no further
(:class:`~upvest_async.errors.ResponseTooLargeError`).
"""

from __future__ import annotations

import errno
import json
import logging
import time
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypedDict

import aiohttp
import attrs
from yarl import URL

from .errors import (
    APIConnectionError,
    APITimeoutError,
    InvalidInputError,
    ResponseTooLargeError,
    TimeoutLimit,
)
from .problems import status_error
from .ratelimit import RateLimiter
from .redaction import redact
from .responses import RawResponse, record_response
from .retries import RetryBudget, RetryPolicy
from .retry_loop import call_with_retries
from .stats import ClientStats

if TYPE_CHECKING:
    from .telemetry import Telemetry

__all__ = ["RESERVED_HEADERS", "Limits", "RawResponse", "RequestOptions", "Transport",
           "client_timeout", "connection_error", "read_limited", "timeout_error",
           "visible_cause"]

logger = logging.getLogger("upvest_async")

#: Methods that change state and therefore carry an ``idempotency-key``.
MUTATING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: Headers the SDK owns; ``extra_headers`` may not set them.
RESERVED_HEADERS = frozenset({
    "accept", "authorization", "content-digest", "content-length", "content-type", "host",
    "idempotency-key", "signature", "signature-input", "transfer-encoding",
})


class RequestOptions(TypedDict, total=False):
    """Per-call options, accepted by every method of the resources as keyword arguments (a
    ``list()`` or an export applies them to each of its page requests) and by
    :meth:`~upvest_async.UpvestClient.with_options`. (``client.webhooks``' key reads are one
    cached fetch shared by every caller: they use the options of the client that made the
    cache.)

    ``timeout``: seconds for one attempt; ``max_retries``: retries after failed attempts;
    ``max_throttled_retries``: re-sends after 429 answers (``None``: bounded by the deadline
    only); ``deadline``: seconds for the whole call, retries and waits (the rate limiter's
    included); ``backoff_max``: longest backoff wait in seconds; ``extra_headers``: additional
    request headers (they can neither replace the SDK's own nor any ``upvest-*`` header).
    """

    timeout: float
    max_retries: int
    max_throttled_retries: int | None
    deadline: float | None
    backoff_max: float
    extra_headers: Mapping[str, str]


def resolve_options(
    options: RequestOptions, policy: RetryPolicy, timeout: float
) -> tuple[dict[str, str], RetryPolicy, float]:
    """Check per-call ``options`` and apply them to the client's retry ``policy`` and
    ``timeout`` (seconds): the request headers they add, the call's policy and its timeout.
    Raises :class:`TypeError` for a name that is no option (as a call with an unexpected
    keyword would) and :class:`~upvest_async.errors.InvalidInputError` for a bad value, before
    anything is sent."""
    unknown = sorted(set(options) - RequestOptions.__optional_keys__)
    if unknown:
        raise TypeError(f"unexpected keyword argument {unknown[0]!r} (not a per-call option)")
    headers = check_extra_headers(options.get("extra_headers") or {})
    changes: dict[str, Any] = {
        key: options[key]
        for key in ("max_retries", "max_throttled_retries", "deadline", "backoff_max")
        if key in options
    }
    if changes:
        try:
            policy = attrs.evolve(policy, **changes)
        except (TypeError, ValueError) as exc:
            raise InvalidInputError("options", str(exc)) from None
    seconds = options.get("timeout", timeout)
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds <= 0:
        raise InvalidInputError("timeout", "must be a positive number of seconds")
    return headers, policy, float(seconds)


def check_extra_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Validate ``extra_headers``: strings only, none reserved. Raises InvalidInputError."""
    checked = {}
    for name, value in headers.items():
        lower = str(name).lower()
        if lower in RESERVED_HEADERS or lower.startswith("upvest-"):
            raise InvalidInputError("extra_headers", f"{lower} is set by the SDK")
        if not isinstance(value, str) or "\n" in value or "\r" in value:
            raise InvalidInputError("extra_headers", f"{lower} must be a one-line string")
        checked[lower] = value
    return checked


@attrs.frozen
class Limits:
    """Per-attempt limits. ``timeout``: seconds for a whole attempt (connect, send, read);
    ``connect_timeout``: seconds to establish a connection; ``read_timeout``: seconds the
    server may stay silent while answering; ``max_response_bytes``: larger bodies (API answers,
    error bodies and access token answers alike, counted after decompression) are refused
    (:class:`~upvest_async.errors.ResponseTooLargeError`). The access token request has the
    same limits."""

    timeout: float = 60.0
    connect_timeout: float = 10.0
    read_timeout: float = 30.0
    max_response_bytes: int = 32 * 1024 * 1024


def client_timeout(limits: Limits, seconds: float) -> aiohttp.ClientTimeout:
    """The aiohttp timeouts of one attempt allowed ``seconds`` in total (the connect and read
    timeouts only when shorter, so that the limit reported is the one that was binding)."""
    return aiohttp.ClientTimeout(
        total=seconds,
        sock_connect=limits.connect_timeout if limits.connect_timeout < seconds else None,
        sock_read=limits.read_timeout if limits.read_timeout < seconds else None,
    )


def timeout_error(
    exc: TimeoutError, what: str, limits: Limits, seconds: float, *, deadline: float | None = None
) -> APITimeoutError:
    """The :class:`~upvest_async.errors.APITimeoutError` for an attempt of ``what`` that was
    allowed ``seconds`` (``deadline``: the call's deadline, when it is what cut ``seconds``)."""
    limit: TimeoutLimit
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        limit, value = "connect", limits.connect_timeout
        why = f"connect timeout of {value:g} s exceeded (no connection within {value:g} s)"
    elif isinstance(exc, aiohttp.SocketTimeoutError):
        limit, value = "read", limits.read_timeout
        why = f"read timeout of {value:g} s exceeded (the server sent nothing for {value:g} s)"
    elif deadline is not None:
        limit, value = "deadline", deadline
        why = (f"deadline of {value:g} s exceeded (the call, retries and waits included, did "
               f"not complete within {value:g} s)")
    else:
        limit, value = "total", seconds
        why = (f"total timeout of {value:g} s per attempt exceeded (the attempt did not "
               f"complete within {value:g} s)")
    return APITimeoutError(f"{what}: {why}", limit=limit, seconds=value)


async def read_limited(response: aiohttp.ClientResponse, limit: int, what: str) -> bytes:
    """The body of ``response``, refused with
    :class:`~upvest_async.errors.ResponseTooLargeError` as soon as it is known to exceed
    ``limit`` bytes (declared ``content-length``, or bytes received; after decompression)."""
    request_id = response.headers.get("upvest-request-id")
    declared = response.content_length
    if declared is not None and declared > limit:
        raise ResponseTooLargeError(f"{what}: response of {declared} bytes exceeds {limit}",
                                    request_id=request_id)
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(65536):
        size += len(chunk)
        if size > limit:
            raise ResponseTooLargeError(f"{what}: response exceeds {limit} bytes",
                                        request_id=request_id)
        chunks.append(chunk)
    return b"".join(chunks)


class Transport:
    """Sends calls for a client: ``policy`` (retries), ``budget`` (client-wide retry budget),
    ``limiter`` (the rate limiter, ``None``: not paced), ``limits`` (timeouts in seconds and
    the response size limit)."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: URL,
        *,
        policy: RetryPolicy,
        budget: RetryBudget,
        limits: Limits,
        stats: ClientStats,
        limiter: RateLimiter | None = None,
        telemetry: Telemetry | None = None,
    ) -> None:
        self._session = session
        self.telemetry = telemetry
        self._base_url = base_url
        self._base_path = base_url.path.rstrip("/")
        self.policy = policy
        self.budget = budget
        self.limiter = limiter
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
        template: str | None = None,
    ) -> RawResponse:
        """Perform one call and return its 2xx response.

        POST/PUT/PATCH/DELETE carry ``idempotency_key`` (a uuid4 is generated once per call
        when omitted), identical on every attempt. Raises an
        :class:`~upvest_async.errors.APIStatusError` subclass for a non-2xx answer after
        retries, :class:`~upvest_async.errors.APITimeoutError` or
        :class:`~upvest_async.errors.APIConnectionError` when no answer came, or
        :class:`~upvest_async.errors.LocalRateLimitError` when a non-blocking rate limiter
        refused to wait; each carries ``attempts``. ``template``: ``path``'s URL template
        (``/accounts/{account_id}/positions``), the name of its spans (``None``: derived from
        ``path`` by :func:`upvest_async.telemetry.url_template`).
        """
        method = method.upper()
        headers, policy, timeout = resolve_options(options or {}, self.policy,
                                                   self.limits.timeout)
        body: bytes | None = None
        if json_body is not None:
            # (json: allow_nan=False refuses NaN and infinities, which orjson writes as null)
            body = json.dumps(json_body, separators=(",", ":"), allow_nan=False).encode()
            headers["content-type"] = "application/json"
        if method in MUTATING_METHODS:
            headers["idempotency-key"] = idempotency_key or str(uuid.uuid4())
        url = self.url(path, params)

        async def send(seconds: float, deadline: float | None, attempt: int) -> RawResponse:
            return await self._attempt(method, path, url, headers, body, seconds, attempt,
                                       deadline)

        telemetry = self.telemetry
        response = await call_with_retries(
            f"{method} {path}", send, policy=policy, budget=self.budget,
            limiter=self.limiter, stats=self._stats, timeout=timeout,
            trace=None if telemetry is None else telemetry.call(method, path, url, template),
        )
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
        deadline: float | None = None,
    ) -> RawResponse:
        started = time.monotonic()
        what = f"{method} {path}"
        try:
            async with self._session.request(
                method, url, data=body, headers=headers, allow_redirects=False,
                timeout=client_timeout(self.limits, timeout),
            ) as response:
                content = await read_limited(response, self.limits.max_response_bytes, what)
                status = response.status
                response_headers = {k.lower(): v for k, v in response.headers.items()}
        except TimeoutError as exc:
            raise timeout_error(exc, what, self.limits, timeout, deadline=deadline) from None
        except aiohttp.ClientError as exc:
            raise connection_error(exc, what) from visible_cause(exc)
        if logger.isEnabledFor(logging.DEBUG):
            request_id = response_headers.get("upvest-request-id")
            logger.debug(
                "%s %s -> %d in %.1f ms (attempt %d, request id %s)",
                method, path, status, (time.monotonic() - started) * 1000, attempt_number,
                redact(request_id) if request_id else None,
            )
        if status >= 300:  # redirects are not followed (see the module docs)
            raise status_error(
                status=status, method=method, path=path, body=content,
                headers=response_headers, attempts=attempt_number,
            )
        return RawResponse(
            method=method, path=path, status=status, headers=response_headers, body=content,
            attempts=attempt_number,
        )


def visible_cause(exc: aiohttp.ClientError) -> aiohttp.ClientError | None:
    """The aiohttp error to chain as ``__cause__``: none for an invalid answer, whose message
    quotes the server's bytes (which may echo a secret)."""
    return None if isinstance(exc, aiohttp.ClientResponseError) else exc


def connection_error(exc: aiohttp.ClientError, what: str) -> APIConnectionError:
    """The :class:`~upvest_async.errors.APIConnectionError` for an aiohttp failure of
    ``what``, saying what happened in words (connection refused by ``host:port``, name not
    resolved, connection reset, closed without an answer, not valid HTTP) and the aiohttp
    class name in brackets."""
    name = type(exc).__name__
    if isinstance(exc, aiohttp.ClientConnectorError):
        where = f"{exc.host}:{exc.port}"
        code = getattr(exc.os_error, "errno", None)
        if isinstance(exc, aiohttp.ClientConnectorDNSError):
            reason = f"the name {exc.host} was not resolved"
        elif isinstance(exc, aiohttp.ClientConnectorCertificateError | aiohttp.ClientSSLError):
            reason = f"the TLS handshake with {where} failed"
        elif code == errno.ECONNREFUSED:
            reason = f"connection refused by {where} (nothing listens there)"
        elif code in (errno.ETIMEDOUT, errno.EHOSTUNREACH, errno.ENETUNREACH):
            reason = f"{where} cannot be reached ({errno.errorcode.get(code, code)})"
        else:
            reason = f"cannot connect to {where}"
    elif isinstance(exc, aiohttp.ServerDisconnectedError):
        reason = "the server closed the connection without an answer"
    elif isinstance(exc, aiohttp.ClientResponseError) and exc.status == 400 and exc.message:
        # aiohttp's parser: "Got more than 8190 bytes when reading Header value is too long."
        reason = f"invalid HTTP answer ({' '.join(str(exc.message).split())[:120]})"
    elif isinstance(exc, aiohttp.ClientPayloadError):
        reason = "the answer's body was cut short"
    elif isinstance(exc, aiohttp.ClientOSError) and getattr(exc, "errno", None) in (
        errno.ECONNRESET, errno.EPIPE
    ):
        reason = "the connection was reset"
    else:
        reason = "the request failed"
    return APIConnectionError(f"{what} failed: {redact(reason)} ({name})")
