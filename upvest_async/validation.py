"""Input checks run before anything is sent; each failure is a :class:`ValidationError`
naming the API's field and the rule."""

from __future__ import annotations

import re
import uuid

from .errors import ValidationError

__all__ = ["ISIN_PATTERN", "check_uuid", "instrument_path_id", "isin_check_digit_ok"]

#: ISIN syntax (ISO 6166), seed 002 S12.
ISIN_PATTERN = re.compile(r"[A-Z]{2}[A-Z0-9]{9}[0-9]")
#: E17 path ``instrument_id``: ``isin:`` or ``uuid:`` URN (optionally ``urn:`` first), seed 002.
_INSTRUMENT_PATH_ID = re.compile(
    r"(urn:)?(isin:[A-Z]{2}[A-Z0-9]{9}[0-9]"
    r"|uuid:[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-5][0-9a-fA-F]{3}-?[089abAB][0-9a-fA-F]{3}"
    r"-?[0-9a-fA-F]{12})"
)


def check_uuid(field: str, value: object) -> str:
    """Return ``value`` as a canonical lower-case uuid string, or raise :class:`ValidationError`.

    Accepts :class:`uuid.UUID` or a string in the canonical 8-4-4-4-12 form.
    """
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, str) and len(value) == 36:
        try:
            return str(uuid.UUID(value))
        except ValueError:
            pass
    raise ValidationError(field, f"must be a UUID (8-4-4-4-12 hex), got {value!r:.60}")


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

    Accepts the seed's URN forms as given (``isin:US0378331005``, ``urn:isin:...``,
    ``uuid:...``), a bare ISIN (prefixed with ``isin:``) or a bare UUID / :class:`uuid.UUID`
    (prefixed with ``uuid:``). Raises :class:`ValidationError` otherwise.
    """
    if isinstance(value, uuid.UUID):
        return f"uuid:{value}"
    if isinstance(value, str):
        if ISIN_PATTERN.fullmatch(value):
            return f"isin:{value}"
        if _INSTRUMENT_PATH_ID.fullmatch(value):
            return value
        try:
            if len(value) == 36:
                return f"uuid:{uuid.UUID(value)}"
        except ValueError:
            pass
    raise ValidationError(
        "instrument_id",
        f"must be an ISIN, a UUID, or an isin:/uuid: URN, got {value!r:.60}",
    )
