"""Decoding JSON bodies: the one function through which every response body the SDK reads
(API answers, list pages, access token answers, problem details) becomes Python data.

The rules are those of RFC 8259, strictly: the body is UTF-8 (section 8.1; no byte order mark),
numbers are finite (section 6: ``NaN``, ``Infinity`` and ``-Infinity`` are not JSON, and
neither is a literal such as ``1e999`` that overflows a float), and nesting is bounded (1024
levels). Bodies are decoded by orjson; a body orjson refuses goes to a strict standard library
decoder, which names the reason (and accepts the lone-surrogate escapes orjson refuses). An
integer beyond 64 bits reads as a float, which every integer field of the models refuses.
Anything else raises :class:`~upvest_async.errors.ResponseValidationError`, never
``ValueError``, ``RecursionError`` or ``UnicodeDecodeError``.
"""

from __future__ import annotations

import json
import math
from typing import Any

import orjson

from .errors import ResponseValidationError

__all__ = ["parse_json"]


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:20]} is out of range")
    return value


_decoder = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_finite_float)


def parse_json(body: bytes, *, what: str, request_id: str | None = None) -> Any:
    """Decode ``body`` (the bytes of ``what``, e.g. ``"GET /accounts/.../positions"``, used in
    the message) as strict JSON (see the module docs).

    Raises :class:`~upvest_async.errors.ResponseValidationError` with the message
    ``"<what>: body is not JSON (<reason>)"`` and ``request_id`` (the ``upvest-request-id`` of
    the response); the reason (invalid UTF-8 at byte N, nested too deeply, a non-finite number,
    a syntax error) is for people and depends on the decoder, and no other exception escapes.
    """
    try:
        return orjson.loads(body)  # strict and fast; what it refuses gets the precise reason
    except orjson.JSONDecodeError:
        pass
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _not_json(what, f"invalid UTF-8 at byte {exc.start}", request_id) from None
    try:
        return _decoder.decode(text)
    except RecursionError:
        raise _not_json(what, "nested too deeply", request_id) from None
    except ValueError as exc:  # JSONDecodeError, non-finite numbers, over-long integers
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
        at = f" at character {exc.pos}" if isinstance(exc, json.JSONDecodeError) else ""
        raise _not_json(what, f"{reason[:80]}{at}", request_id) from None


def _not_json(what: str, reason: str, request_id: str | None) -> ResponseValidationError:
    return ResponseValidationError(f"{what}: body is not JSON ({reason})", request_id=request_id)
