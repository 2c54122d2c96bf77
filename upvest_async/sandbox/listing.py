"""Offset/limit paging of the sandbox's list endpoints and their ``meta`` + ``data``
envelope (S4, S5)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from .problems import Problem, json_response

__all__ = ["list_response", "paging"]


_MAX_LIMIT = 1000
_DEFAULT_LIMIT = 100


def paging(request: web.Request) -> tuple[int, int]:
    """Parse ``offset`` (>= 0, default 0) and ``limit`` (0..1000, default 100); 400 otherwise."""
    values = []
    for name, default, upper in (("offset", 0, None), ("limit", _DEFAULT_LIMIT, _MAX_LIMIT)):
        raw = request.query.get(name)
        if raw is None:
            values.append(default)
            continue
        if not raw.isdigit():
            raise Problem(400, f"{name} must be a non-negative integer")
        value = int(raw)
        if upper is not None and value > upper:
            raise Problem(400, f"{name} must be at most {upper}")
        values.append(value)
    return values[0], values[1]


def list_response(
    items: list[dict[str, Any]], total: int, offset: int, limit: int, sort: str
) -> web.Response:
    return json_response({
        "meta": {"offset": offset, "limit": limit, "count": len(items), "total_count": total,
                 "sort": sort, "order": "ASC"},
        "data": items,
    })
