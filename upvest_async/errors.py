"""The exception hierarchy of upvest-async.

Everything raised on purpose derives from :class:`UpvestError`. ``str(error)`` is one line and
never contains a secret (client secret, access token, private key or passphrase).

- :class:`ConfigurationError`: bad client configuration, raised at construction
  (:class:`SigningKeyError` for an unusable private key).
- :class:`InvalidInputError`: bad input to a method, refused before anything is sent.
- :class:`APIStatusError`: the API answered with a non-2xx status; one subclass per status,
  carrying the RFC 9457 problem details of the body (parsed by :mod:`upvest_async.problems`).
- :class:`APIConnectionError` / :class:`APITimeoutError`: no usable response was received.
- :class:`InvalidResponseError`: what the server sent cannot be used:
  :class:`ResponseValidationError` (a 2xx body that is not strict JSON or does not match the
  documented model), :class:`ResponseTooLargeError` (a body over the client's limit) and
  :class:`PaginationError` (list pages that do not fit together).

Text a server provided (problem details, bodies, headers, request ids, quoted values) passes
through :func:`upvest_async.redaction.redact` before it is placed in an error, so a server that
echoes the client secret or an access token does not make it appear in a message.
"""

from __future__ import annotations

import email.utils
import re
import time
from collections.abc import Mapping
from typing import Any, Literal

from .redaction import redact, redact_bytes

__all__ = [
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "ConfigurationError",
    "ConflictError",
    "IdempotencyKeyInProgressError",
    "IdempotencyKeyReusedError",
    "InternalServerError",
    "InvalidInputError",
    "InvalidResponseError",
    "LocalRateLimitError",
    "NotAcceptableError",
    "NotFoundError",
    "PaginationError",
    "PermissionDeniedError",
    "RateLimitError",
    "ResponseTooLargeError",
    "ResponseValidationError",
    "SigningKeyError",
    "StoreUnavailableError",
    "UnprocessableEntityError",
    "UpvestError",
    "parse_retry_after",
]


class UpvestError(Exception):
    """Base class of every error this package raises on purpose."""


class ConfigurationError(UpvestError):
    """The client configuration is unusable (missing or malformed setting)."""


class SigningKeyError(ConfigurationError):
    """The HTTP-signing private key cannot be used.

    Raised at client construction for garbage PEM, a wrong or missing passphrase, a key that is
    not an EC key, or an EC key that is not on curve P-521 (secp521r1). The message never contains
    the key or the passphrase.
    """


class InvalidInputError(UpvestError, ValueError):
    """Input to an SDK method breaks a documented rule; it was refused before anything was
    sent. (What a server sends is checked by :class:`InvalidResponseError`'s subclasses.)

    Attributes: ``field`` (the API's field or parameter name) and ``rule`` (the rule broken).
    """

    def __init__(self, field: str, rule: str) -> None:
        self.field = field
        self.rule = rule
        super().__init__(f"{field}: {rule}")


class StoreUnavailableError(UpvestError):
    """An :class:`~upvest_async.webhooks.EventStore` could not complete a delivery's transaction
    for a reason that says nothing about the delivery: the database is down or the connection
    was lost, a lock wait timed out, a deadlock or serialization failure, a full in-memory
    store. Nothing of the transaction was recorded; the receiver answers 503 and Upvest
    retries. :class:`upvest_async.storage.DatabaseUnavailableError` is one. (Defined here,
    among the leaves, so that the database layer can derive from it without importing the
    webhook receiver; :mod:`upvest_async.webhooks` exports it.)"""


class APIConnectionError(UpvestError):
    """The request could not be completed: connection refused, reset or closed early, or an
    answer that is not HTTP (e.g. a header line longer than 8190 bytes).

    ``attempts``: how many attempts the call made before giving up; ``token_request``: the
    error is that of the access token request (``POST /auth/token``), which was already retried
    (its ``attempts``) for every call waiting for that token.
    """

    attempts: int = 1
    token_request: bool = False


#: The limits an :class:`APITimeoutError` names.
TimeoutLimit = Literal["connect", "read", "total", "deadline"]


class APITimeoutError(APIConnectionError):
    """A time limit fired before the answer was complete.

    Attributes: ``limit``, which one: ``"connect"`` (``connect_timeout``: establishing the
    connection), ``"read"`` (``read_timeout``: the server sent nothing for that long),
    ``"total"`` (``timeout``: one attempt, from sending to the last body byte) or
    ``"deadline"`` (the call's ``deadline``, all attempts and waits included); ``seconds``:
    that limit's value in seconds. ``None`` for both when unknown. ``throttled``: how many
    attempts of the call the API answered 429 (a deadline reached while throttled says so
    in its message: the rate limit, not the API's speed, used the time).
    """

    def __init__(
        self,
        message: str,
        *,
        limit: TimeoutLimit | None = None,
        seconds: float | None = None,
        throttled: int = 0,
    ) -> None:
        self.limit = limit
        self.seconds = seconds
        self.throttled = throttled
        super().__init__(message)


class InvalidResponseError(UpvestError):
    """What a server sent cannot be used: a body over the client's limit
    (:class:`ResponseTooLargeError`), a body that is not strict JSON or does not match the
    documented model (:class:`ResponseValidationError`), or list pages that do not fit
    together (:class:`PaginationError`). The request was sent and answered; the fault lies
    with the answer. ``request_id``: the answer's ``upvest-request-id``, when known.
    """

    request_id: str | None = None


class ResponseTooLargeError(InvalidResponseError):
    """A response body exceeded the client's ``max_response_bytes``; it was not read further
    and the call is not retried. ``request_id``: the answer's ``upvest-request-id``."""

    def __init__(self, message: str, *, request_id: str | None = None) -> None:
        request_id = redact(request_id) if request_id else request_id
        self.request_id = request_id
        suffix = f" (request id {request_id})" if request_id else ""
        super().__init__(f"{message}{suffix}")


class ResponseValidationError(InvalidResponseError):
    """A 2xx response body (an API answer, a list page or the access token answer) cannot be
    decoded (not strict JSON: see :mod:`upvest_async.json_body`) or does not match the
    documented model (a missing field, a wrong type, a malformed access token).

    Attributes: ``path`` (where in the body), ``request_id`` (``upvest-request-id``).
    """

    def __init__(self, message: str, *, path: str = "", request_id: str | None = None) -> None:
        message, path = redact(message), redact(path)
        request_id = redact(request_id) if request_id else request_id
        self.path = path
        self.request_id = request_id
        suffix = f" (request id {request_id})" if request_id else ""
        where = f" at {path}" if path else ""
        super().__init__(f"response body does not match the model{where}: {message}{suffix}")


class APIStatusError(UpvestError):
    """The API answered with a non-2xx status.

    Attributes: ``status`` (HTTP status), ``type``, ``title``, ``detail``, ``instance`` (RFC 9457
    problem details, ``None`` when absent), ``request_id`` (from the body, else the
    ``upvest-request-id`` header), ``body`` (the raw response bytes), ``headers``, ``attempts``
    (how many attempts the call made) and ``token_request`` (the answer of the access token
    request, already retried for every call waiting for that token). Known secrets are
    redacted from ``body``, ``headers`` and the problem details. Made by
    :func:`upvest_async.problems.status_error`, which parses the body's ``problem`` details
    once (``None``: none).
    """

    token_request: bool = False

    def __init__(
        self,
        *,
        status: int,
        method: str,
        path: str,
        body: bytes,
        headers: Mapping[str, str],
        attempts: int = 1,
        problem: Mapping[str, Any] | None = None,
    ) -> None:
        self.status = status
        self.method = method
        self.path = path
        self.body = redact_bytes(body)
        self.headers = {name: redact(value) for name, value in headers.items()}
        self.attempts = attempts
        if problem is None:
            problem = {}

        def text(key: str) -> str | None:
            value = problem.get(key)
            return redact(value) if isinstance(value, str) else None

        self.type = text("type")
        self.title = text("title")
        self.detail = text("detail")
        self.instance = text("instance")
        self.request_id = text("request_id") or self.headers.get("upvest-request-id")
        super().__init__(self._one_line())

    def _one_line(self) -> str:
        summary = self.detail or self.title or self.type or (
            "redirects are not followed" if 300 <= self.status < 400 else "no problem details"
        )
        # One line, and bounded: a server's detail may be long or span lines.
        summary = " ".join("".join(c if c.isprintable() else " " for c in summary[:2000])
                           .split())[:500]
        request = f" (request id {self.request_id})" if self.request_id else ""
        return f"{self.status} on {self.method} {self.path}: {summary}{request}"


class BadRequestError(APIStatusError):
    """400: the request is malformed or breaks a documented rule."""


class AuthenticationError(APIStatusError):
    """401: missing, invalid or expired access token, or a signature the API rejected."""


class PermissionDeniedError(APIStatusError):
    """403: the access token lacks the scope the endpoint needs."""


class NotFoundError(APIStatusError):
    """404: no such resource."""


class NotAcceptableError(APIStatusError):
    """406: the ``accept`` header asks for a media type the API cannot produce."""


class ConflictError(APIStatusError):
    """409: conflicting state, e.g. a second configuration for one account."""


class UnprocessableEntityError(APIStatusError):
    """422: the request is well-formed but cannot be processed."""


class IdempotencyKeyReusedError(UnprocessableEntityError):
    """422 whose problem type is ``idempotency_key_reused``: the ``idempotency-key`` was
    already used with a *different* request. Nothing was created by this call; use a new key
    for a new operation, or resend the original request to get its original result."""


class IdempotencyKeyInProgressError(ConflictError):
    """409 whose problem type is ``idempotency_key_in_progress``: a request with the same
    ``idempotency-key`` is still being processed. The SDK retries these after a pause."""


class RateLimitError(APIStatusError):
    """429: too many requests. ``retry_after`` is the parsed ``Retry-After`` in seconds."""

    @property
    def retry_after(self) -> float | None:
        """The ``Retry-After`` header in seconds from now (delay-seconds or an HTTP-date, RFC
        9110 section 10.2.3), or ``None`` when it is absent or unreadable."""
        return parse_retry_after(self.headers.get("retry-after"))


class LocalRateLimitError(RateLimitError):
    """Raised before sending by a non-blocking :class:`~upvest_async.RateLimiter`
    (``block=False``): the request would have had to wait for its turn. Nothing was sent
    (``attempts`` counts the attempts that were); ``retry_after`` is the expected wait in
    seconds. A subclass of :class:`RateLimitError`, so one ``except RateLimitError`` handles
    a throttled answer and a refused wait alike."""

    def __init__(self, *, method: str, path: str, wait: float, attempts: int = 0) -> None:
        self._wait = max(0.0, wait)
        super().__init__(
            status=429, method=method, path=path, body=b"", headers={}, attempts=attempts,
            problem={"detail": f"not sent: the client's rate limiter expects a wait of "
                               f"{self._wait:.3f} s (non-blocking mode)"},
        )

    @property
    def retry_after(self) -> float | None:
        """The expected wait in seconds before a request would be sent."""
        return self._wait


class InternalServerError(APIStatusError):
    """5xx: the API failed to handle the request."""


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Parse ``Retry-After`` (RFC 9110, section 10.2.3) into seconds from ``now``.

    Accepts delta-seconds (ASCII digits only) or an HTTP-date; returns ``None`` when absent or
    unparsable (a negative number, a fraction, garbage), and never a negative number. Huge
    values come back as they are (``1e9``): the retry policy caps the wait.
    """
    if value is None:
        return None
    value = value.strip()
    if _DELTA_SECONDS.fullmatch(value):
        return float(value) if len(value) <= 15 else 1e15
    try:
        when = email.utils.parsedate_to_datetime(value)
        if when.tzinfo is None:
            return None
        reference = time.time() if now is None else now
        return max(0.0, when.timestamp() - reference)
    except (TypeError, ValueError, OverflowError, IndexError):
        return None


_DELTA_SECONDS = re.compile(r"[0-9]+", re.ASCII)


class PaginationError(InvalidResponseError):
    """Paging through a list went wrong: a malformed page, or (with ``strict=True``) a list
    that changed while it was read (checks of ``meta``: S4 and S5 of the API readings page,
``docs/guides/api-readings.md``).

    Attributes: ``reason``; ``path``; ``offset`` (the offset of the next item the paginator
    would have delivered: pass it as ``offset=`` to resume); ``total_count`` (the total the
    paginator expected, ``None`` before the first page); ``received_total_count`` (the
    ``total_count`` of the offending response); ``request_id``.
    """

    def __init__(
        self,
        reason: str,
        *,
        path: str,
        offset: int,
        total_count: int | None = None,
        received_total_count: int | None = None,
        request_id: str | None = None,
    ) -> None:
        reason = redact(reason)
        request_id = redact(request_id) if request_id else request_id
        self.reason = reason
        self.path = path
        self.offset = offset
        self.total_count = total_count
        self.received_total_count = received_total_count
        self.request_id = request_id
        if received_total_count is None or received_total_count == total_count:
            totals = f"total_count {total_count}"
        else:
            totals = f"total_count {total_count} -> {received_total_count}"
        suffix = f" (request id {request_id})" if request_id else ""
        super().__init__(f"paging {path} stopped at offset {offset} ({totals}): {reason}{suffix}")
