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

:func:`parse_json_exact` is the same strict parser for bodies whose numbers must keep their
digits (webhook events, written out again as received): numbers with a fraction or exponent
become :class:`~decimal.Decimal`, and the nesting limit is the caller's, checked exactly
(:func:`nesting_depth`), so that a caller can choose one that everything downstream of it (its
serialisers, its handlers, recursive code of its users) is known to handle. It raises
:class:`NotJSONError` (a ``ValueError``) with the reason, for its caller to wrap.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from decimal import Decimal
from typing import Any

import orjson

from .errors import ResponseValidationError

__all__ = ["MAX_DEPTH", "NotJSONError", "nesting_depth", "parse_json", "parse_json_exact"]

#: The deepest nesting of arrays and objects :func:`parse_json` accepts (orjson's limit; its
#: standard library fallback may refuse somewhat less deep bodies, for lack of stack).
MAX_DEPTH = 1024


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:20]} is out of range")
    return value



# The standard library's decoders where orjson cannot serve: they name the reason a body is
# refused, read the lone-surrogate escapes orjson refuses, and keep numbers exact (Decimal).
_decoder = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_finite_float)
_exact_decoder = json.JSONDecoder(parse_constant=_reject_constant, parse_float=Decimal)

# A JSON string (RFC 8259 section 7), unrolled so that matching takes linear time.
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")
_STEP = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")  # +1 and, read as signed bytes, -1


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


def nesting_depth(body: bytes) -> int:
    """How deeply arrays and objects nest in ``body``, a JSON text: 0 for a scalar, 1 for
    ``[]`` or ``{"a": 1}``, 2 for ``[[]]`` or ``{"a": {}}``, and so on (brackets inside
    strings do not count). Exact for valid JSON (RFC 8259); for other bytes some number.
    Linear time, no recursion: safe on bodies nested any depth."""
    skeleton = _STRING.sub(b"", body).translate(_STEP, _NOT_BRACKET)
    return max(itertools.accumulate(memoryview(skeleton).cast("b")), default=0)


def parse_json_exact(body: bytes, *, max_depth: int) -> Any:
    """Decode ``body`` as strict JSON (the rules of :func:`parse_json`) keeping every number
    exact: an integer as :class:`int`, a number with a fraction or exponent as
    :class:`~decimal.Decimal` of the digits received (``1.250`` stays ``Decimal("1.250")``,
    never a ``float``). Lone-surrogate escapes (``"\\ud800"``) are accepted, as
    :func:`parse_json` accepts them.

    ``max_depth``: the deepest nesting of arrays and objects accepted (see
    :func:`nesting_depth`); a body nested deeper is refused, whatever the stack depth of the
    caller. Raises :class:`NotJSONError` (``reason``: ``"nested deeper than 64 levels"``,
    ``"invalid UTF-8 at byte 7"``, a syntax error ...), and no other exception.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise NotJSONError(f"invalid UTF-8 at byte {exc.start}") from None
    try:
        value = _exact_decoder.decode(text)
    except RecursionError:  # deeper than the stack allows (far beyond any sensible max_depth)
        raise NotJSONError("nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, constants, integers over 4300 digits
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
        at = f" at character {exc.pos}" if isinstance(exc, json.JSONDecodeError) else ""
        raise NotJSONError(f"{reason[:80]}{at}") from None
    # Measured on the bytes once they decoded: valid JSON, so the string pattern finds every
    # string (on other bytes it could take quadratic time).
    if isinstance(value, (dict, list)) and nesting_depth(body) > max_depth:
        raise NotJSONError(f"nested deeper than {max_depth} levels")
    return value


class NotJSONError(ValueError):
    """A body refused by :func:`parse_json_exact`; ``reason`` says why, for people (it never
    quotes the body)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _not_json(what: str, reason: str, request_id: str | None) -> ResponseValidationError:
    return ResponseValidationError(f"{what}: body is not JSON ({reason})", request_id=request_id)
