"""Request bodies of the sandbox's mutating Portfolios endpoints (E2, E4, E6, E8, E10, E11,
E14): JSON parsing, field types, uuid formats and the reference's patterns.

Every failure raises a 400 :class:`~.problems.Problem` whose ``detail`` starts with the field path,
e.g. ``allocation[1].weight: does not match ^(100|[0-9]{1,2}(\\.[0-9]{1,5})?)$``. Rules:

- the body is a JSON object sent as ``content-type: application/json``;
- unknown fields and wrong JSON types (``null`` included) are refused;
- uuid fields are canonical 8-4-4-4-12 hex strings (either case) and are stored lower-case;
- patterns are the reference's, verbatim and matched against the whole value (so, per Q8,
  ``cash_amount`` accepts ``""`` and ``".5"``; per Q7 ``weight`` is not summed).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Collection, Sequence
from typing import Any, Final, NoReturn

import attrs
from aiohttp import web

from .problems import Problem

__all__ = [
    "CASH_AMOUNT_PATTERN",
    "ISIN_PATTERN",
    "UPVEST_ID_PATTERN",
    "WEIGHT_PATTERN",
    "AllocationBody",
    "AllocationItem",
    "ConfigurationBody",
    "ConfigurationPatch",
    "ExecutionBody",
    "LiquidationBody",
    "ObjectReader",
    "OrderBody",
    "canonical_uuid",
    "read_json",
]

#: S7 ``weight`` (Q7: reads like 0..100, examples are fractions of 1).
WEIGHT_PATTERN: Final = re.compile(r"^(100|[0-9]{1,2}(\.[0-9]{1,5})?)$")
#: S10 ``cash_amount`` (Q8: accepts ``""`` and ``".5"``).
CASH_AMOUNT_PATTERN: Final = re.compile(r"^[0-9]{0,63}(\.[0-9]{1,27})?$")
#: S7 ``instrument_id`` when ``instrument_id_type`` is ``ISIN``.
ISIN_PATTERN: Final = re.compile(r"^[A-Z]{2}[A-Z0-9]{9}[0-9]$")
#: S7 ``instrument_id`` when ``instrument_id_type`` is ``UPVEST`` (hyphens optional, Q18).
UPVEST_ID_PATTERN: Final = re.compile(
    r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-5][0-9a-fA-F]{3}-?[089abAB][0-9a-fA-F]{3}"
    r"-?[0-9a-fA-F]{12}$"
)
_CANONICAL_UUID: Final = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)
_INSTRUMENT_ID_PATTERNS: Final = {"ISIN": ISIN_PATTERN, "UPVEST": UPVEST_ID_PATTERN}
_MISSING: Final = object()


def _bad(path: str, rule: str) -> NoReturn:
    raise Problem(400, f"{path}: {rule}")


def canonical_uuid(value: str) -> str | None:
    """``value`` lower-cased when it is a canonical 8-4-4-4-12 uuid string, else ``None``."""
    if _CANONICAL_UUID.fullmatch(value):
        return str(uuid.UUID(value))
    return None


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


async def read_json(request: web.Request) -> Any:
    """The request body parsed as JSON; 400 unless ``content-type`` is ``application/json``
    and the body is valid JSON (``NaN``/``Infinity`` refused)."""
    if request.content_type != "application/json":
        raise Problem(400, "content-type must be application/json")
    raw = await request.read()
    try:
        return json.loads(raw, parse_constant=_reject_constant)
    except ValueError:
        raise Problem(400, "request body: is not valid JSON") from None


class ObjectReader:
    """Reads the fields of one JSON object found at ``path`` (``""`` for the body itself).

    Construction refuses a non-object and any field not in ``fields``. Accessors without a
    ``default`` treat an absent field as an error (``is required``); the ``optional_*`` ones
    return ``None`` for it.
    """

    def __init__(self, value: object, path: str, fields: Collection[str]) -> None:
        self._path = path
        if not isinstance(value, dict):
            _bad(path or "request body", "must be a JSON object")
        for name in value:
            if name not in fields:
                _bad(self.at(name), "unknown field")
        self._value: dict[str, Any] = value

    def at(self, name: str) -> str:
        """The path of field ``name``."""
        return f"{self._path}.{name}" if self._path else name

    def has(self, name: str) -> bool:
        return name in self._value

    def _get(self, name: str, required: bool) -> object:
        if name in self._value:
            return self._value[name]
        if required:
            _bad(self.at(name), "is required")
        return _MISSING

    def _text(
        self,
        name: str,
        value: object,
        pattern: re.Pattern[str] | None,
        choices: Sequence[str] | None,
    ) -> str:
        if not isinstance(value, str):
            _bad(self.at(name), "must be a string")
        if choices is not None and value not in choices:
            _bad(self.at(name), "must be one of " + ", ".join(choices))
        if pattern is not None and not pattern.fullmatch(value):
            _bad(self.at(name), f"does not match {pattern.pattern}")
        return value

    def text(
        self,
        name: str,
        *,
        pattern: re.Pattern[str] | None = None,
        choices: Sequence[str] | None = None,
        default: str | None = None,
    ) -> str:
        """A string field; required unless ``default`` is given."""
        value = self._get(name, required=default is None)
        if value is _MISSING:
            assert default is not None
            return default
        return self._text(name, value, pattern, choices)

    def optional_text(self, name: str, *, pattern: re.Pattern[str] | None = None) -> str | None:
        value = self._get(name, required=False)
        return None if value is _MISSING else self._text(name, value, pattern, None)

    def _uuid(self, path: str, value: object) -> str:
        if not isinstance(value, str):
            _bad(path, "must be a string")
        canonical = canonical_uuid(value)
        if canonical is None:
            _bad(path, "must be a UUID (8-4-4-4-12 hex)")
        return canonical

    def uuid(self, name: str) -> str:
        """A required uuid field, lower-cased."""
        return self._uuid(self.at(name), self._get(name, required=True))

    def optional_uuid(self, name: str) -> str | None:
        value = self._get(name, required=False)
        return None if value is _MISSING else self._uuid(self.at(name), value)

    def boolean(self, name: str, *, default: bool) -> bool:
        value = self._get(name, required=False)
        if value is _MISSING:
            return default
        if not isinstance(value, bool):
            _bad(self.at(name), "must be a boolean")
        return value

    def _array(self, name: str, value: object, non_empty: bool) -> list[Any]:
        if not isinstance(value, list):
            _bad(self.at(name), "must be an array")
        if non_empty and not value:
            _bad(self.at(name), "must not be empty")
        return value

    def uuid_list(self, name: str, *, non_empty: bool = False) -> list[str]:
        """A required array of uuids, lower-cased."""
        items = self._array(name, self._get(name, required=True), non_empty)
        return [self._uuid(f"{self.at(name)}[{i}]", item) for i, item in enumerate(items)]

    def optional_uuid_list(self, name: str) -> list[str] | None:
        return self.uuid_list(name) if self.has(name) else None

    def objects(
        self, name: str, fields: Collection[str], *, non_empty: bool = False
    ) -> list[ObjectReader]:
        """A required array of objects, each read with ``fields``."""
        items = self._array(name, self._get(name, required=True), non_empty)
        return [ObjectReader(item, f"{self.at(name)}[{i}]", fields) for i, item in enumerate(items)]


@attrs.frozen
class AllocationItem:
    """S7: ``instrument_id`` (matching its type), ``instrument_id_type`` (``ISIN`` default or
    ``UPVEST``), ``weight`` (decimal string, reference's pattern, Q7)."""

    instrument_id: str
    instrument_id_type: str
    weight: str

    @classmethod
    def read(cls, item: ObjectReader) -> AllocationItem:
        kind = item.text("instrument_id_type", choices=("ISIN", "UPVEST"), default="ISIN")
        return cls(
            instrument_id=item.text("instrument_id", pattern=_INSTRUMENT_ID_PATTERNS[kind]),
            instrument_id_type=kind,
            weight=item.text("weight", pattern=WEIGHT_PATTERN),
        )

    def to_json(self) -> dict[str, str]:
        return attrs.asdict(self)


@attrs.frozen
class AllocationBody:
    """E2 / E4 body: ``name`` (optional string) and
    ``allocation`` (non-empty array of S7 items)."""

    name: str | None
    allocation: tuple[AllocationItem, ...]

    @classmethod
    def parse(cls, value: object) -> AllocationBody:
        body = ObjectReader(value, "", ("name", "allocation"))
        items = body.objects(
            "allocation", ("instrument_id", "instrument_id_type", "weight"), non_empty=True
        )
        return cls(
            name=body.optional_text("name"),
            allocation=tuple(AllocationItem.read(item) for item in items),
        )


@attrs.frozen
class ConfigurationBody:
    """E6 body: ``account_id``, ``allocation_id`` (uuids,
    required), ``rebalancing_strategy_ids`` (array of uuids, default ``[]``)."""

    account_id: str
    allocation_id: str
    rebalancing_strategy_ids: list[str]

    @classmethod
    def parse(cls, value: object) -> ConfigurationBody:
        body = ObjectReader(value, "", ("account_id", "allocation_id", "rebalancing_strategy_ids"))
        return cls(
            account_id=body.uuid("account_id"),
            allocation_id=body.uuid("allocation_id"),
            rebalancing_strategy_ids=body.optional_uuid_list("rebalancing_strategy_ids") or [],
        )


@attrs.frozen
class ConfigurationPatch:
    """E8 body: ``allocation_id`` and ``rebalancing_strategy_ids``, both
    optional; ``None`` means "leave as it is"."""

    allocation_id: str | None
    rebalancing_strategy_ids: list[str] | None

    @classmethod
    def parse(cls, value: object) -> ConfigurationPatch:
        body = ObjectReader(value, "", ("allocation_id", "rebalancing_strategy_ids"))
        return cls(
            allocation_id=body.optional_uuid("allocation_id"),
            rebalancing_strategy_ids=body.optional_uuid_list("rebalancing_strategy_ids"),
        )


@attrs.frozen
class OrderBody:
    """E10 body: ``user_id``, ``account_id`` (uuids), ``cash_amount``
    (decimal string, reference's pattern, Q8), ``currency`` (``EUR``; absent means ``EUR``, Q14),
    ``side`` (``BUY``/``SELL``), ``post_tax`` (boolean, default ``false``)."""

    user_id: str
    account_id: str
    cash_amount: str
    currency: str
    side: str
    post_tax: bool

    @classmethod
    def parse(cls, value: object) -> OrderBody:
        body = ObjectReader(
            value, "", ("user_id", "account_id", "cash_amount", "currency", "side", "post_tax")
        )
        return cls(
            user_id=body.uuid("user_id"),
            account_id=body.uuid("account_id"),
            cash_amount=body.text("cash_amount", pattern=CASH_AMOUNT_PATTERN),
            currency=body.text("currency", choices=("EUR",), default="EUR"),
            side=body.text("side", choices=("BUY", "SELL")),
            post_tax=body.boolean("post_tax", default=False),
        )


@attrs.frozen
class LiquidationBody:
    """E11 body: ``user_id`` (uuid, required), nothing else."""

    user_id: str

    @classmethod
    def parse(cls, value: object) -> LiquidationBody:
        return cls(user_id=ObjectReader(value, "", ("user_id",)).uuid("user_id"))


@attrs.frozen
class ExecutionBody:
    """E14 body: exactly one of ``accounts`` or ``allocations``, a
    non-empty array of uuids (Q20 read as a strict one-of: both or neither is a 400)."""

    accounts: list[str] | None
    allocations: list[str] | None

    @classmethod
    def parse(cls, value: object) -> ExecutionBody:
        body = ObjectReader(value, "", ("accounts", "allocations"))
        if body.has("accounts") == body.has("allocations"):
            _bad("request body", "exactly one of accounts or allocations is required")
        if body.has("accounts"):
            return cls(accounts=body.uuid_list("accounts", non_empty=True), allocations=None)
        return cls(accounts=None, allocations=body.uuid_list("allocations", non_empty=True))
