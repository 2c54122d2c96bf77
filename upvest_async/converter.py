"""The package's one ``cattrs`` converter between JSON-shaped data and the attrs models, and
the home of the rules for the API's decimal strings and timestamps (the rule for uuids is
:mod:`upvest_async.ids`).

- **Decimals** (:func:`api_decimal`): a JSON *string* matching the API's pattern
  ``^-?[0-9]{0,63}(\\.[0-9]{1,27})?$`` (:data:`DECIMAL_SOURCE`: up to 63 integer digits, up to
  27 decimals, negatives allowed, ASCII digits only) becomes a :class:`Decimal` of exactly those
  digits; the pattern also admits ``""`` and ``"-"``, which are refused as not a number (quirk
  Q8 of ``docs/guides/api-readings.md``). A JSON number where a decimal string belongs is
  refused too (a float cannot carry the digits). Written back as plain decimal strings
  (``format(value, "f")``), never through ``float``.
- **uuids** become :class:`uuid.UUID`, read only from the canonical 8-4-4-4-12 text (either
  case; :func:`upvest_async.ids.api_uuid`): no white space, braces, ``urn:uuid:``, missing
  dashes or non-ASCII digits. An *optional* uuid sent as ``""`` reads as ``None`` (Q10).
- **Timestamps** (:func:`parse_timestamp`): RFC 3339 ``date-time`` (RFC 3339, section 5.6:
  ``2021-07-21T14:10:00.00Z``, any number of fractional digits, Q16) with its offset, as a
  timezone-aware :class:`datetime`; anything else (no offset, no seconds, a week date, the
  basic format, a space for ``T``) is refused. Written back in UTC with ``Z``
  (:func:`timestamp_text`).
- Open enums accept unknown values; unknown fields in responses are ignored.
- ``str``, ``int`` and ``bool`` fields take exactly that JSON type (no ``"5"`` for ``5``, no
  ``1`` for ``True``, no number for a string).

Every model has one decoding path: this converter's hook for it. A value these rules refuse is
a :class:`~upvest_async.errors.ResponseValidationError` from :func:`structure`, naming the
field (``$[3].quantity``).

**Positions** are decoded by the million in exports, so their hook is written out by hand
(:func:`_structure_positions`, for ``list[Position]``, a page, and ``Position`` alone): the rules
above, in one loop over the page, with the decimal and account uuid strings of the page parsed
once each (a page holds one account, and many ``"0"``\\ s) and the instruments through a
bounded cache of :func:`_instrument` (immutable objects, shared by the positions of every
account that holds the instrument). When an item is malformed, cattrs' own generated function
for ``Position`` (the same field hooks) is run on the page only to raise the error with its
field path.
"""

from __future__ import annotations

import enum
import functools
import re
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypeVar

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

from .errors import ResponseValidationError
from .ids import api_uuid
from .models.positions import Instrument, Position

__all__ = ["DECIMAL_SOURCE", "api_decimal", "converter", "parse_timestamp", "structure",
           "timestamp_text", "unstructure"]

T = TypeVar("T")

#: The API's decimal string (a regular expression source, for ``fullmatch``): optional ``-``,
#: up to 63 ASCII integer digits, then optionally ``.`` and 1 to 27 digits. Possessive (no
#: backtracking); the same language as ``-?[0-9]{0,63}(\.[0-9]{1,27})?``.
DECIMAL_SOURCE = r"-?+[0-9]{0,63}+(?:\.[0-9]{1,27}+)?+"
_DECIMAL = re.compile(DECIMAL_SOURCE)
# RFC 3339, section 5.6, ``date-time`` (its letters are case-insensitive, section 5.6's note).
_TIMESTAMP = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?(?:[Zz]|[+-][0-9]{2}:[0-9]{2})"
)
#: Instruments kept by :func:`_instrument`, the least recently used dropped first (about 450
#: bytes each with their key strings: at most about 14 MiB).
_INSTRUMENTS_CACHED = 32_768

converter = cattrs.Converter()


def _preview(value: Any) -> str:
    """A short quote of a bad value: scalars only (a container may be huge or deeply nested)."""
    if isinstance(value, int) and abs(value) >= 10**40:
        return "a large integer"  # (repr of a huge int is slow, or raises)
    if isinstance(value, str | int | float) or value is None:
        return f"{value!r:.40}"
    return type(value).__name__


def api_decimal(value: object) -> Decimal:
    """The :class:`Decimal` of ``value``, a decimal string from an API response (see the module
    docs: :data:`DECIMAL_SOURCE`, not ``""`` or ``"-"``).

    Raises ``ValueError`` naming what was received otherwise, a JSON number included (the
    converter turns it into a :class:`~upvest_async.ResponseValidationError` with the path).
    """
    if not isinstance(value, str) or _DECIMAL.fullmatch(value) is None or value in ("", "-"):
        raise ValueError(f"expected a decimal string, got {_preview(value)}")
    return Decimal(value)


def parse_timestamp(value: object) -> datetime:
    """The timezone-aware :class:`datetime` of ``value``, an RFC 3339 ``date-time`` string (RFC
    3339, section 5.6; any number of fractional digits, kept to the microsecond): from an API
    response, or a user's list filter (:func:`upvest_async.validation.check_timestamp`).
    Raises ``ValueError`` for anything else."""
    if not isinstance(value, str) or _TIMESTAMP.fullmatch(value) is None:
        raise ValueError(f"expected an RFC 3339 timestamp, got {_preview(value)}")
    return datetime.fromisoformat(value.upper())  # (ValueError for a day or hour out of range)


def timestamp_text(value: datetime) -> str:
    """``value`` (timezone-aware) as the API writes timestamps: UTC, ``Z``
    (``2021-07-21T14:10:00.123000Z``)."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _unstructure_attrs(cls: type[Any]) -> Any:
    """Leave out optional fields that are ``None``, as the API leaves them out; fields whose
    default is a real value (``instrument_id_type="ISIN"``) are always written."""
    overrides: dict[str, Any] = {
        field.name: override(omit_if_default=True)
        for field in attrs.fields(cls)
        if field.default is None
    }
    return make_dict_unstructure_fn(cls, converter, **overrides)


def _exact(kind: type[Any]) -> Any:
    def structure_exact(value: Any, cls: Any) -> Any:
        if cls is not kind:  # a subclass (an enum): its own constructor checks the value
            return cls(value)
        if type(value) is not kind:
            raise ValueError(f"expected {kind.__name__}, got {type(value).__name__}")
        return value

    return structure_exact


def _structure_uuid(value: Any, _: Any) -> uuid.UUID:
    if isinstance(value, uuid.UUID):
        return value
    return api_uuid(value)  # the canonical layout only (upvest_async.ids)


def _structure_optional_uuid(value: Any, _: Any) -> uuid.UUID | None:
    if value is None or value == "":
        return None
    return _structure_uuid(value, None)


def _optional_text(value: Any) -> str | None:
    """A string or ``None``; never ``str()`` of a number or an object (cattrs' default)."""
    if value is None or type(value) is str:
        return value
    raise ValueError(f"expected a string, got {type(value).__name__}")


converter.register_unstructure_hook_factory(attrs.has, _unstructure_attrs)
converter.register_structure_hook(Decimal, lambda value, _: api_decimal(value))
converter.register_unstructure_hook(Decimal, lambda value: format(value, "f"))
converter.register_structure_hook(uuid.UUID, _structure_uuid)
converter.register_unstructure_hook(uuid.UUID, str)
converter.register_structure_hook_func(
    lambda cls: cls == (uuid.UUID | None), _structure_optional_uuid
)
converter.register_unstructure_hook_func(
    lambda cls: isinstance(cls, type) and issubclass(cls, enum.Enum), lambda member: member.value
)
converter.register_structure_hook(datetime, lambda value, _: parse_timestamp(value))
converter.register_unstructure_hook(datetime, timestamp_text)
for _kind in (str, int, bool):
    converter.register_structure_hook(_kind, _exact(_kind))
# An instrument's isin is text as sent: a number or an object there is malformed.
converter.register_structure_hook(
    Instrument,
    make_dict_structure_fn(Instrument, converter,
                           isin=override(struct_hook=lambda value, _: _optional_text(value))),
)

# --- positions ---------------------------------------------------------------------------------

# cattrs' generated functions for Position and a list of them, with the field hooks above: run
# only on input the hand-written hook refused, to raise the error with its field path.
_position_errors = make_dict_structure_fn(Position, converter)
_errors = converter.copy()
_errors.register_structure_hook(Position, _position_errors)


@functools.lru_cache(maxsize=_INSTRUMENTS_CACHED)
def _instrument(uuid_text: str, isin: str | None) -> Instrument:
    """The :class:`Instrument` of an ``instrument`` object's values, shared while cached (a
    value that raises is not cached)."""
    return Instrument(api_uuid(uuid_text), _optional_text(isin))


class _Decimals(dict[str, Decimal]):
    """The decimal strings of one page, each read once (:func:`api_decimal`) when first met:
    a key is only ever a string that passed the rule."""

    __slots__ = ()

    def __missing__(self, text: str) -> Decimal:
        value = self[text] = api_decimal(text)
        return value


class _Uuids(dict[str, uuid.UUID]):
    """The uuid strings of one page, each read once (:func:`~upvest_async.ids.api_uuid`)."""

    __slots__ = ()

    def __missing__(self, text: str) -> uuid.UUID:
        value = self[text] = api_uuid(text)
        return value


def _positions(items: Iterable[Any]) -> list[Position]:
    """The positions of ``items`` (JSON objects) under the rules of the module docs; raises
    ``Exception`` (of any kind) for a malformed one."""
    # A page is one account's, and many of its quantities are "0" or repeat the quantity.
    decimal = _Decimals()
    account = _Uuids()
    return [
        Position(account[item["account_id"]],
                 _instrument((raw := item["instrument"])["uuid"], raw.get("isin")),
                 decimal[item["quantity"]], decimal[item["available_for_trading"]],
                 decimal[item["locked_for_trading"]], decimal[item["pending_settlement"]])
        for item in items
    ]


def _structure_positions(data: Any, cls: Any) -> Any:
    """The hook for ``list[Position]`` (``cls``) and for ``Position``."""
    try:
        return _positions((data,))[0] if cls is Position else _positions(data)
    except Exception:
        pass
    _errors.structure(data, cls)  # raises the error naming the item and field
    # (Should the generated function ever accept what this hook refused: refused all the same.)
    raise ValueError("malformed positions")


converter.register_structure_hook(Position, _structure_positions)
converter.register_structure_hook_func(lambda cls: cls == list[Position], _structure_positions)


def structure(data: Any, cls: type[T], *, request_id: str | None = None) -> T:
    """Convert JSON-shaped ``data`` into ``cls``.

    Raises :class:`~upvest_async.errors.ResponseValidationError` naming the first offending
    field (``$.data[3].quantity``) and the request id.
    """
    try:
        return converter.structure(data, cls)
    except cattrs.BaseValidationError as exc:
        messages = cattrs.transform_error(exc, path="$")
        first = messages[0] if messages else str(exc)
        message, _, path = first.rpartition(" @ ")
        raise ResponseValidationError(message or first, path=path, request_id=request_id) from None
    except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as exc:
        raise ResponseValidationError(str(exc)[:200], request_id=request_id) from None
    except RecursionError:
        raise ResponseValidationError("nested too deeply", request_id=request_id) from None


def unstructure(value: Any) -> Any:
    """Convert a model back to JSON-shaped data with the API's field names and decimal strings."""
    return converter.unstructure(value)
