"""Input checks run before anything is sent; each failure is a :class:`InvalidInputError`
naming the API's field and the rule.

The codes in the comments (E17, S7, Q18, ...) are defined in ``docs/guides/api-readings.md``.
"""

from __future__ import annotations

import enum
import re
import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime
from decimal import Decimal

from .converter import parse_timestamp, timestamp_text
from .errors import InvalidInputError
from .ids import UUID_PATTERN, user_uuid_text

__all__ = [
    "ISIN_PATTERN",
    "check_allocation_items",
    "check_bool",
    "check_cash_amount",
    "check_choice",
    "check_enum_token",
    "check_timestamp",
    "check_uuid",
    "check_uuid_list",
    "check_weight",
    "instrument_path_id",
    "isin_check_digit_ok",
]

#: ISIN syntax (ISO 6166), S12.
ISIN_PATTERN = re.compile(r"[A-Z]{2}[A-Z0-9]{9}[0-9]")
#: A uuid of the API's instrument id patterns (E17 path, S7 ``UPVEST`` items): the version digit
#: 0 to 5 and the variant digit 0, 8, 9, a or b, as there; the dashes the API leaves optional
#: are required (the one rule for ids, :mod:`upvest_async.ids`).
_INSTRUMENT_UUID = (r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-5][0-9a-fA-F]{3}-[089abAB][0-9a-fA-F]{3}"
                    r"-[0-9a-fA-F]{12}")
#: E17 path ``instrument_id``: ``isin:`` or ``uuid:`` URN (optionally ``urn:`` first), Q18.
_INSTRUMENT_PATH_ID = re.compile(
    rf"(?P<urn>urn:)?(?:isin:[A-Z]{{2}}[A-Z0-9]{{9}}[0-9]|uuid:(?P<uuid>{_INSTRUMENT_UUID}))"
)


def check_uuid(field: str, value: object) -> str:
    """Return ``value`` as a canonical lower-case uuid string, or raise :class:`InvalidInputError`.

    Accepts a :class:`uuid.UUID`, or a string in the canonical 8-4-4-4-12 layout, either case
    (the rule for ids a user gives, :func:`upvest_async.ids.user_uuid`): no braces, no
    ``urn:uuid:``, no white space, no digits without dashes.
    """
    try:
        return user_uuid_text(value)
    except (TypeError, ValueError):
        raise InvalidInputError(
            field, f"must be a UUID (8-4-4-4-12 hex digits), got {value!r:.60}") from None


def isin_check_digit_ok(isin: str) -> bool:
    """Whether the last digit of ``isin`` is its ISO 6166 (Luhn) check digit."""
    digits = "".join(str(int(char, 36)) for char in isin[:-1])
    total = 0
    for index, char in enumerate(reversed(digits)):
        number = int(char) * (2 if index % 2 == 0 else 1)
        total += number // 10 + number % 10
    return (10 - total % 10) % 10 == int(isin[-1])


def instrument_path_id(value: object) -> str:
    """Normalise an instrument id for the E17 path: ``isin:<ISIN>`` or ``uuid:<UUID>``.

    Accepts the API's URN forms (``isin:US0378331005``, ``urn:isin:...``, ``uuid:...``,
    ``urn:uuid:...``), a bare ISIN (prefixed with ``isin:``) or a bare UUID /
    :class:`uuid.UUID` (prefixed with ``uuid:``). A UUID, bare or in a URN, follows the rule for
    ids a user gives (:mod:`upvest_async.ids`: the 8-4-4-4-12 layout, either case) and is sent
    in lower case; in a URN its version digit is also 0 to 5 and its variant digit 0, 8, 9, a
    or b (the API's pattern, reading Q18). Raises :class:`InvalidInputError` otherwise.
    """
    if isinstance(value, uuid.UUID):
        return f"uuid:{user_uuid_text(value)}"
    if isinstance(value, str):
        if ISIN_PATTERN.fullmatch(value):
            return f"isin:{value}"
        match = _INSTRUMENT_PATH_ID.fullmatch(value)
        if match is not None:
            if match["uuid"] is None:
                return match.group()
            return f"{match['urn'] or ''}uuid:{user_uuid_text(match['uuid'])}"
        if UUID_PATTERN.fullmatch(value):
            return f"uuid:{user_uuid_text(value)}"
    raise InvalidInputError(
        "instrument_id",
        f"must be an ISIN, a UUID, or an isin:/uuid: URN, got {value!r:.60}",
    )


# --- request fields (E1 to E15) ----------------------------------------------------------------

#: ``weight`` of an allocation item (S7): 0..99.99999 or exactly 100, at most 5 decimals (Q7).
WEIGHT_PATTERN = re.compile(r"(100|[0-9]{1,2}(\.[0-9]{1,5})?)")
#: ``cash_amount`` of a portfolio order (E10); the SDK also refuses ``""`` and ``".5"`` (Q8).
CASH_AMOUNT_PATTERN = re.compile(r"[0-9]{1,63}(\.[0-9]{1,27})?")
#: An Upvest instrument uuid in an allocation item (S7, the API's own uuid regex, Q18, with the
#: dashes required: the rule for ids, :mod:`upvest_async.ids`); sent in lower case.
UPVEST_ID_PATTERN = re.compile(_INSTRUMENT_UUID)
#: Syntax accepted for request enum values: the known ones, and future ones the API may add.
_ENUM_TOKEN = re.compile(r"[A-Z][A-Z0-9_]*")


def decimal_text(field: str, value: object, pattern: re.Pattern[str], rule: str) -> str:
    """Return ``value`` (``str`` or :class:`~decimal.Decimal`) as the decimal string to send.

    Floats are refused (they cannot carry an exact decimal). Raises :class:`InvalidInputError`
    naming ``field`` and ``rule`` when the text does not match ``pattern``.
    """
    if isinstance(value, bool | float):
        raise InvalidInputError(field, "use a decimal string or decimal.Decimal, not a float")
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise InvalidInputError(field, rule)
        text = format(value, "f")
    elif isinstance(value, int):
        text = str(value)
    elif isinstance(value, str):
        text = value
    else:
        raise InvalidInputError(field, f"must be a decimal string, got {type(value).__name__}")
    if not pattern.fullmatch(text):
        raise InvalidInputError(field, f"{rule}, got {text!r:.40}")
    return text


def check_weight(field: str, value: object) -> str:
    """An allocation item weight (S7, pattern ``^(100|[0-9]{1,2}(\\.[0-9]{1,5})?)$``)."""
    return decimal_text(field, value, WEIGHT_PATTERN,
                        "must be 0 to 100 with at most 5 decimals (pattern of S7)")


def check_cash_amount(field: str, value: object) -> str:
    """A non-negative cash amount with at most 27 decimals (E10)."""
    return decimal_text(field, value, CASH_AMOUNT_PATTERN,
                        "must be a non-negative decimal with at most 27 decimals")


def check_enum_token(field: str, value: object) -> str:
    """An enum value for a request: a known member, or an upper-case token (values the API may
    add later pass; ``"buy"`` or ``""`` do not)."""
    text = value.value if isinstance(value, enum.Enum) else value
    if not isinstance(text, str) or not _ENUM_TOKEN.fullmatch(text):
        raise InvalidInputError(field, f"must be an upper-case enum value, got {text!r:.40}")
    return text


def check_bool(field: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise InvalidInputError(field, f"must be a bool, got {type(value).__name__}")
    return value


def check_uuid_list(field: str, values: object, *, non_empty: bool = False) -> list[str]:
    """A list of uuids (any iterable but a string); ``non_empty`` requires at least one."""
    if isinstance(values, str | bytes) or not isinstance(values, Iterable):
        raise InvalidInputError(field, "must be a list of UUIDs")
    checked = [check_uuid(f"{field}[{i}]", value) for i, value in enumerate(values)]
    if non_empty and not checked:
        raise InvalidInputError(field, "must contain at least one UUID")
    return checked


def check_timestamp(field: str, value: object) -> str:
    """An RFC 3339 timestamp for a list filter: a timezone-aware ``datetime`` or a string
    that parses as one; sent as ``YYYY-MM-DDTHH:MM:SS[.ffffff]Z``."""
    if isinstance(value, str):
        try:
            value = parse_timestamp(value)  # (RFC 3339 only: the converter's rule)
        except ValueError:
            raise InvalidInputError(
                field, f"must be an RFC 3339 timestamp, got {value!r:.40}"
            ) from None
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise InvalidInputError(field, "must be a timezone-aware datetime or RFC 3339 string")
    return timestamp_text(value)


def check_allocation_items(field: str, items: object) -> list[dict[str, str]]:
    """Allocation items (S7) given as :class:`~upvest_async.models.AllocationItem` or dicts
    with the API's field names; returns the JSON objects to send.

    Rules: at least one item; ``instrument_id`` is an ISIN (``instrument_id_type`` ``ISIN``,
    the default) or an Upvest uuid (``UPVEST``); ``weight`` per :func:`check_weight`;
    unknown dict keys are refused.
    """
    if isinstance(items, str | bytes | Mapping) or not isinstance(items, Iterable):
        raise InvalidInputError(field, "must be a list of allocation items")
    result = []
    for index, item in enumerate(items):
        where = f"{field}[{index}]"
        if isinstance(item, Mapping):
            unknown = set(item) - {"instrument_id", "instrument_id_type", "weight"}
            if unknown:
                raise InvalidInputError(where, f"unknown fields {sorted(unknown)}")
            if "instrument_id" not in item or "weight" not in item:
                raise InvalidInputError(where, "needs instrument_id and weight")
            instrument_id = item["instrument_id"]
            id_type = item.get("instrument_id_type", "ISIN")
            weight = item["weight"]
        elif hasattr(item, "instrument_id") and hasattr(item, "weight"):
            instrument_id, weight = item.instrument_id, item.weight
            id_type = getattr(item, "instrument_id_type", "ISIN")
        else:
            raise InvalidInputError(where, "must be an AllocationItem or a dict")
        id_type_text = check_enum_token(f"{where}.instrument_id_type", id_type)
        if not isinstance(instrument_id, str):
            raise InvalidInputError(f"{where}.instrument_id", "must be a string")
        if id_type_text == "ISIN" and not ISIN_PATTERN.fullmatch(instrument_id):
            raise InvalidInputError(f"{where}.instrument_id",
                                  f"must be an ISIN when instrument_id_type is ISIN, got "
                                  f"{instrument_id!r:.40}")
        if id_type_text == "UPVEST":
            if not UPVEST_ID_PATTERN.fullmatch(instrument_id):
                raise InvalidInputError(f"{where}.instrument_id",
                                      f"must be an Upvest instrument UUID when "
                                      f"instrument_id_type is UPVEST, got {instrument_id!r:.40}")
            instrument_id = user_uuid_text(instrument_id)
        result.append({
            "instrument_id": instrument_id,
            "instrument_id_type": id_type_text,
            "weight": check_weight(f"{where}.weight", weight),
        })
    if not result:
        raise InvalidInputError(field, "must contain at least one item")
    return result


def check_choice(field: str, value: object, allowed: tuple[str, ...]) -> str:
    """A list parameter with a fixed set of values (``sort``, ``order``; S4, Q9)."""
    if value not in allowed:
        raise InvalidInputError(field, f"must be one of {', '.join(allowed)}, got {value!r:.40}")
    return str(value)
