"""The package's one ``cattrs`` converter between JSON-shaped data and the attrs models.

- Decimal strings (seed pattern ``^-?[0-9]{0,63}(\\.[0-9]{1,27})?$``) become :class:`Decimal` and
  are written back as plain decimal strings (``format(value, "f")``), never through ``float``.
  The pattern also admits ``""`` (quirk Q8): the SDK rejects it as not a number.
- uuids become :class:`uuid.UUID`, read only from the canonical 8-4-4-4-12 text (either case;
  :func:`upvest_async.ids.api_uuid`): no white space, braces, ``urn:uuid:``, missing dashes or
  non-ASCII digits, which ``uuid.UUID(text)`` would read as another uuid. An *optional* uuid
  sent as ``""`` reads as ``None`` (Q10).
- Timestamps (RFC 3339, any number of fractional digits, Q16) become timezone-aware
  :class:`datetime`; a timestamp without offset is rejected.
- Open enums accept unknown values; unknown fields in responses are ignored.
- ``str``, ``int`` and ``bool`` fields take exactly that JSON type (no ``"5"`` for ``5``, no
  ``1`` for ``True``, no number for a string).
"""

from __future__ import annotations

import enum
import re
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypeVar

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

from .errors import ResponseValidationError
from .ids import api_uuid
from .models.positions import Instrument, Position

__all__ = ["converter", "structure", "unstructure"]

T = TypeVar("T")

_DECIMAL = re.compile(r"-?[0-9]{0,63}(\.[0-9]{1,27})?")

converter = cattrs.Converter()


def _unstructure_attrs(cls: type[Any]) -> Any:
    """Leave out optional fields that are ``None``, as the API leaves them out; fields whose
    default is a real value (``instrument_id_type="ISIN"``) are always written."""
    overrides: dict[str, Any] = {
        field.name: override(omit_if_default=True)
        for field in attrs.fields(cls)
        if field.default is None
    }
    return make_dict_unstructure_fn(cls, converter, **overrides)


converter.register_unstructure_hook_factory(attrs.has, _unstructure_attrs)


def _preview(value: Any) -> str:
    """A short quote of a bad value: scalars only (a container may be huge or deeply nested)."""
    if isinstance(value, int) and abs(value) >= 10**40:
        return "a large integer"  # (repr of a huge int is slow, or raises)
    if isinstance(value, str | int | float) or value is None:
        return f"{value!r:.40}"
    return type(value).__name__


def _structure_decimal(value: Any, _: Any) -> Decimal:
    if not isinstance(value, str) or not value or not _DECIMAL.fullmatch(value) or value == "-":
        raise ValueError(f"expected a decimal string, got {_preview(value)}")
    return Decimal(value)


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


def _structure_datetime(value: Any, _: Any) -> datetime:
    if not isinstance(value, str):
        raise ValueError(f"expected an RFC 3339 timestamp, got {type(value).__name__}")
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError(f"timestamp {_preview(value)} has no UTC offset")
    return parsed


def _unstructure_datetime(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


converter.register_structure_hook(Decimal, _structure_decimal)
converter.register_unstructure_hook(Decimal, lambda value: format(value, "f"))
converter.register_structure_hook(uuid.UUID, _structure_uuid)
converter.register_unstructure_hook(uuid.UUID, str)
converter.register_structure_hook_func(
    lambda cls: cls == (uuid.UUID | None), _structure_optional_uuid
)
converter.register_unstructure_hook_func(
    lambda cls: isinstance(cls, type) and issubclass(cls, enum.Enum), lambda member: member.value
)
converter.register_structure_hook(datetime, _structure_datetime)
for _kind in (str, int, bool):
    converter.register_structure_hook(_kind, _exact(_kind))
converter.register_unstructure_hook(datetime, _unstructure_datetime)


def _structure_optional_text(value: Any, _: Any) -> str | None:
    """A string or ``None``; never ``str()`` of a number or an object (cattrs' default)."""
    if value is None or type(value) is str:
        return value
    raise ValueError(f"expected a string, got {type(value).__name__}")


# An instrument's isin is text as sent: a number or an object there is malformed.
converter.register_structure_hook(
    Instrument,
    make_dict_structure_fn(Instrument, converter,
                           isin=override(struct_hook=_structure_optional_text)),
)


# Positions are decoded by the million in exports, so they get a hand-written fast path. It
# applies the same hooks as the generated cattrs function (uuid, decimal pattern, optional isin)
# and only takes inputs that function would take with the same result; anything else (a
# missing key, a bad value, a non-string isin) goes to the generated function, which then
# raises its usual error with the path, or converts exactly as before. Parsed uuid strings and
# instruments are memoised (both are immutable), so positions of one account share their
# ``account_id`` and positions in the same instrument share their ``Instrument``.
_MEMO_LIMIT = 65_536
_uuids: dict[str, uuid.UUID] = {}
_instruments: dict[tuple[str, str | None], Instrument] = {}
_decimals: dict[str, Decimal] = {}
_generic_instrument = converter.get_structure_hook(Instrument)
_generic_position = converter.get_structure_hook(Position)


def _memo_uuid(value: Any) -> uuid.UUID:
    if type(value) is not str:
        return _structure_uuid(value, None)
    found = _uuids.get(value)
    if found is None:
        if len(_uuids) >= _MEMO_LIMIT:
            _uuids.clear()
        found = _uuids[value] = _structure_uuid(value, None)
    return found


def _new_decimal(value: Any) -> Decimal:
    found = _structure_decimal(value, None)
    if type(value) is str and len(_decimals) < 4096:  # keeps frequent early values ("0")
        _decimals[value] = found
    return found


def _fast_instrument(value: Any) -> Instrument:
    if type(value) is dict:
        key = value["uuid"]
        isin = value.get("isin")
        if type(key) is str and (isin is None or type(isin) is str):
            found = _instruments.get((key, isin))
            if found is None:
                if len(_instruments) >= _MEMO_LIMIT:
                    _instruments.clear()
                found = _instruments[key, isin] = Instrument(_memo_uuid(key), isin)
            return found
    instrument: Instrument = _generic_instrument(value, Instrument)
    return instrument


def _structure_position(value: Any, cls: Any) -> Position:
    # The memo lookups are inlined (this runs once per position). Their keys are only ever
    # strings taken from valid input, so any other value misses and goes through the checks.
    try:
        decimals = _decimals
        account = value["account_id"]
        raw = value["instrument"]
        quantity = value["quantity"]
        available = value["available_for_trading"]
        locked = value["locked_for_trading"]
        pending = value["pending_settlement"]
        q = decimals.get(quantity)
        if q is None:
            q = _new_decimal(quantity)
        a: Decimal | None = q if available == quantity else decimals.get(available)
        if a is None:  # (the same string as quantity, when nothing is locked or pending: q)
            a = _new_decimal(available)
        if (lo := decimals.get(locked)) is None:
            lo = _new_decimal(locked)
        if (p := decimals.get(pending)) is None:
            p = _new_decimal(pending)
        return Position(
            _uuids.get(account) or _memo_uuid(account),
            _instruments.get((raw["uuid"], raw.get("isin"))) or _fast_instrument(raw),
            q, a, lo, p,
        )
    except Exception:
        position: Position = _generic_position(value, cls)
        return position


converter.register_structure_hook(Position, _structure_position)


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
