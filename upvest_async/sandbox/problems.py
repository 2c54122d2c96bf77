"""Problem details (RFC 9457) as the sandbox answers them: the ``Problem`` exception
handlers raise, and the ``application/problem+json`` responses (S3)."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from .context import REQUEST_ID_KEY

__all__ = ["Problem", "json_response", "problem_for", "problem_response"]


_TYPES = {
    400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
    405: "method_not_allowed", 406: "not_acceptable", 409: "conflict",
    422: "unprocessable_entity", 429: "too_many_requests", 500: "internal_server_error",
    503: "service_unavailable", 504: "gateway_timeout",
}
_TITLES = {
    400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
    405: "Method Not Allowed", 406: "Not Acceptable", 409: "Conflict",
    422: "Unprocessable Entity", 429: "Too Many Requests", 500: "Internal Server Error",
    503: "Service Unavailable", 504: "Gateway Timeout",
}


class Problem(Exception):
    """Raised inside handlers to answer with problem details.

    ``type_slug``: the problem ``type``; ``None`` means the status's slug from ``_TYPES`` (S3).
    """

    def __init__(
        self,
        status: int,
        detail: str,
        headers: dict[str, str] | None = None,
        *,
        type_slug: str | None = None,
    ) -> None:
        self.status = status
        self.detail = detail
        self.headers = headers or {}
        self.type_slug = type_slug
        super().__init__(detail)


def problem_response(
    status: int,
    detail: str,
    request_id: str,
    instance: str,
    headers: dict[str, str] | None = None,
    type_slug: str | None = None,
) -> web.Response:
    body = {
        "type": type_slug or _TYPES.get(status, "error"),
        "status": status,
        "title": _TITLES.get(status, "Error"),
        "detail": detail,
        "instance": instance,
        "request_id": request_id,
    }
    return web.Response(
        status=status, body=json.dumps(body).encode(), content_type="application/problem+json",
        headers=headers,
    )


def problem_for(request: web.Request, problem: Problem) -> web.Response:
    """The problem-details response of ``problem`` raised while handling ``request``."""
    return problem_response(
        problem.status, problem.detail, request[REQUEST_ID_KEY], request.rel_url.raw_path,
        problem.headers, problem.type_slug,
    )


def json_response(data: Any) -> web.Response:
    """A 200 ``application/json`` response of ``data`` (compact separators)."""
    return web.Response(body=json.dumps(data, separators=(",", ":")).encode(),
                        content_type="application/json")
