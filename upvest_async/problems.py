"""Non-2xx answers: their problem details (RFC 9457) and the
:class:`~upvest_async.errors.APIStatusError` subclass raised for them.

A module of its own above :mod:`upvest_async.errors` and :mod:`upvest_async.json_body`: the
error classes stay free of parsing, and the JSON decoder (which raises
:class:`~upvest_async.errors.ResponseValidationError`) imports them, not the other way round.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .errors import (
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    IdempotencyKeyInProgressError,
    IdempotencyKeyReusedError,
    InternalServerError,
    NotAcceptableError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ResponseValidationError,
    UnprocessableEntityError,
)
from .json_body import parse_json

__all__ = ["parse_problem", "status_error"]

#: The class of each status with one of its own (other 4xx: :class:`APIStatusError`; 5xx:
#: :class:`InternalServerError`).
_BY_STATUS: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    406: NotAcceptableError,
    409: ConflictError,
    422: UnprocessableEntityError,
    429: RateLimitError,
}

#: Problem ``type`` values that select a more specific class than the status alone.
_BY_PROBLEM_TYPE: dict[tuple[int, str], type[APIStatusError]] = {
    (409, "idempotency_key_in_progress"): IdempotencyKeyInProgressError,
    (422, "idempotency_key_reused"): IdempotencyKeyReusedError,
}


def parse_problem(body: bytes) -> dict[str, Any]:
    """The problem-details object of an error body (RFC 9457, section 3); ``{}`` when it is
    not one (not JSON by :func:`upvest_async.json_body.parse_json`'s rules, or not an
    object)."""
    if not body:
        return {}
    try:
        parsed = parse_json(body, what="error body")
    except ResponseValidationError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def status_error(
    *,
    status: int,
    method: str,
    path: str,
    body: bytes,
    headers: Mapping[str, str],
    attempts: int = 1,
) -> APIStatusError:
    """The :class:`~upvest_async.errors.APIStatusError` for a non-2xx answer: the subclass of
    its status, or of its problem ``type`` (matched on the last path segment, so a URL works as
    well as a bare slug). The body is parsed once."""
    problem = parse_problem(body)
    cls: type[APIStatusError] = InternalServerError if status >= 500 else _BY_STATUS.get(
        status, APIStatusError)
    problem_type = problem.get("type")
    if isinstance(problem_type, str):
        slug = problem_type.rstrip("/").rsplit("/", 1)[-1]
        cls = _BY_PROBLEM_TYPE.get((status, slug), cls)
    return cls(status=status, method=method, path=path, body=body, headers=headers,
               attempts=attempts, problem=problem)
