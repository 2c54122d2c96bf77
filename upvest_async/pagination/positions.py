"""Typed positions from a decoded page, a whole column at a time.

A page of the positions list (S12, E16) holds up to 1,000 positions. Decoding each one through
a Python function (``Position(...)``, one ``Decimal`` and one uuid lookup per field) costs more
than parsing the JSON. :func:`structure_positions` instead validates and converts a page's
*columns*: the distinct uuid and decimal strings not met before are checked with one regular
expression each (the canonical forms of :mod:`upvest_async.records`: lower-case 8-4-4-4-12
uuids, the seed's decimal pattern without the ``.5`` form), converted once (``uuid.UUID``,
``Decimal``) and shared through the converter's memos (strings only ever from valid input, so a
hit is valid and its value is the converter's). The ``Position`` objects are then made without
running their ``__init__`` (``object.__new__`` and the slots' own descriptors), which gives the
same attribute values as ``Position(...)`` with the same types: ``==``, ``hash`` and ``repr``
cannot tell them apart.

A page that is not entirely canonical (a missing key, an upper-case uuid, ``".5"``, a number
where a string belongs, a malformed value) goes through the converter's hook for ``Position``
item by item, so what is accepted, the values, the errors and their field paths
(``$[3].quantity``) are exactly the typed path's.

The :class:`~.wire.WirePosition`\\ s of a page msgspec decoded are built by the compiled twin of
the column builder, ``_build.c`` (an optional C extension of the limited API, one ``abi3``
wheel for every Python), when it is there: the same canonical forms, memos and objects, a
position at a time in one C pass, about twice as fast as the whole Python builder. Without it
(installed where nothing could be compiled, or ``UPVEST_ASYNC_NO_EXTENSIONS=1``) the Python
builder is used, with the same results (``tests/test_compiled_builder.py``).
"""

from __future__ import annotations

import os
import re
import types
import uuid
from collections import deque
from collections.abc import Collection, Iterable, Sequence
from decimal import Decimal
from itertools import repeat
from operator import attrgetter, itemgetter
from typing import Any

import attrs

from .. import converter as _converter
from ..ids import LOWER_UUID_SOURCE
from ..models.positions import Instrument, Position
from .wire import WireInstrument, WirePosition, as_json_items

__all__ = ["structure_positions"]

_UUID = LOWER_UUID_SOURCE  # the lower-case canonical uuid only (upvest_async.ids)
_DECIMAL = r"-?+[0-9]{1,63}+(?:\.[0-9]{1,27}+)?+"
_UUIDS = re.compile(rf"(?:{_UUID}\|)*+{_UUID}")
_DECIMALS = re.compile(rf"(?:{_DECIMAL}\|)*+{_DECIMAL}")
_ACCOUNT = itemgetter("account_id")
_INSTRUMENT = itemgetter("instrument")
_QUANTITIES = tuple(map(itemgetter, ("quantity", "available_for_trading", "locked_for_trading",
                                     "pending_settlement")))
_NAMES = ("account_id", "instrument", "quantity", "available_for_trading",
          "locked_for_trading", "pending_settlement")
_UUID_FIELD = itemgetter("uuid")
_ACCOUNT_ATTR = attrgetter("account_id")
_INSTRUMENT_ATTR = attrgetter("instrument")
_UUID_ATTR = attrgetter("uuid")
_QUANTITY_ATTRS = tuple(map(attrgetter, ("quantity", "available_for_trading",
                                         "locked_for_trading", "pending_settlement")))
_TEXT_OR_NONE = {str, type(None)}
_MEMO_LIMIT = _converter._MEMO_LIMIT
_DECIMAL_LIMIT = 4096  # (the converter's own limit)
_new = object.__new__
#: Instruments by uuid string (only ever canonical, valid ones), cleared past the limit.
_INSTRUMENTS: dict[str, Instrument] = {}
_ISIN_OF = attrgetter("isin")


def _slot_setters(cls: type[Any], names: tuple[str, ...]) -> tuple[Any, ...] | None:
    """The ``__set__`` of the slots ``names`` of ``cls`` when its instances hold nothing else
    (``__weakref__`` aside), so that setting them is all its ``__init__`` does for valid
    input; ``None`` otherwise."""
    if set(getattr(cls, "__slots__", ())) - {"__weakref__"} != set(names):
        return None
    descriptors = [cls.__dict__.get(name) for name in names]
    if not all(isinstance(d, types.MemberDescriptorType) for d in descriptors):
        return None
    return tuple(d.__set__ for d in descriptors)  # type: ignore[union-attr]


def _attrs_setters(cls: type[Any], names: tuple[str, ...]) -> tuple[Any, ...] | None:
    """:func:`_slot_setters` for a plain slotted attrs class whose fields are ``names`` in this
    order (the order the columns are given in), with no validators, converters or
    ``__attrs_post_init__`` (a cached hash would be one more slot)."""
    fields = attrs.fields(cls)
    if tuple(f.name for f in fields) != names or hasattr(cls, "__attrs_post_init__") or any(
        f.validator or f.converter or not f.init for f in fields
    ):
        return None
    return _slot_setters(cls, names)


def _build(cls: type[Any], setters: tuple[Any, ...] | None,
           columns: Sequence[Iterable[Any]], count: int) -> list[Any]:
    """``count`` instances of ``cls`` from its field values by column: through the slots'
    setters when there are any, else through ``cls`` itself."""
    if setters is None:
        return list(map(cls, *columns))
    objects = list(map(_new, repeat(cls, count)))
    for setter, values in zip(setters, columns, strict=True):
        deque(map(setter, objects, values), maxlen=0)
    return objects


def _uuid_setters() -> tuple[Any, ...] | None:
    """The slots of ``uuid.UUID`` (``int``, ``is_safe``), when a uuid built through them is
    indistinguishable from ``uuid.UUID(text)`` (checked once, here)."""
    setters = _slot_setters(uuid.UUID, ("int", "is_safe"))
    if setters is None:  # pragma: no cover (another Python's uuid)
        return None
    text = "c5161455-4d27-4781-bc74-f05532e49a77"
    built = _build(uuid.UUID, setters, ([int(text.replace("-", ""), 16)],
                                        [uuid.SafeUUID.unknown]), 1)[0]
    expected = uuid.UUID(text)
    same = (built == expected and built.is_safe is expected.is_safe
            and repr(built) == repr(expected) and hash(built) == hash(expected)
            and built.__getstate__() == expected.__getstate__())
    return setters if same else None


def _new_uuids(texts: Sequence[str]) -> list[uuid.UUID]:
    """``uuid.UUID(text)`` of each canonical (already checked) uuid string."""
    ints = map(int, map(str.replace, texts, repeat("-"), repeat("")), repeat(16))
    if _UUID_SETTERS is None:  # pragma: no cover
        return list(map(uuid.UUID, texts))
    return _build(uuid.UUID, _UUID_SETTERS, (ints, repeat(uuid.SafeUUID.unknown)), len(texts))


_SETTERS = _attrs_setters(Position, _NAMES)
_INSTRUMENT_SETTERS = _attrs_setters(Instrument, ("uuid", "isin"))
_UUID_SETTERS = _uuid_setters()


def _compiled_config() -> tuple[Any, ...] | None:
    """What the compiled builder (``_build.c``) needs, or ``None`` when it cannot be used:
    not compiled (no compiler where the package was installed), turned off with
    ``UPVEST_ASYNC_NO_EXTENSIONS=1``, or classes that the slot setters above refuse."""
    if os.environ.get("UPVEST_ASYNC_NO_EXTENSIONS") or None in (
            _SETTERS, _INSTRUMENT_SETTERS, _UUID_SETTERS):
        return None
    try:
        from . import _build
    except ImportError:
        return None

    descriptors = [tuple(cls.__dict__.get(name) for name in names) for cls, names in (
        (WirePosition, _NAMES), (WireInstrument, ("uuid", "isin")), (Position, _NAMES),
        (Instrument, ("uuid", "isin")), (uuid.UUID, ("int", "is_safe")))]
    if any(type(d) is not types.MemberDescriptorType for group in descriptors for d in group):
        return None  # pragma: no cover (another msgspec, attrs or Python)
    return (_build.build, (
        WirePosition, WireInstrument, Position, Instrument, uuid.UUID, Decimal,
        uuid.SafeUUID.unknown, _converter._uuids, _INSTRUMENTS, _converter._decimals,
        _MEMO_LIMIT, _DECIMAL_LIMIT, *descriptors,
    ))


#: ``(build, config)`` of the compiled builder, or ``None`` (the Python builder is used).
_COMPILED = _compiled_config()


def structure_positions(data: Sequence[Any], request_id: str | None = None) -> list[Position]:
    """``data`` (a decoded ``data`` array, or the :class:`~.wire.WirePosition`\\ s of
    :func:`~.wire.decode_positions_page`) as :class:`Position` objects, exactly as
    ``structure(data, list[Position])`` gives them for the same JSON.

    Raises :class:`~upvest_async.errors.ResponseValidationError` for the first malformed item,
    with the typed path's message and field path (``$[3].quantity``).
    """
    if data and type(data[0]) is WirePosition:
        positions = _canonical_wire_positions(data)  # type: ignore[arg-type]
        if positions is not None:
            return positions
        data = as_json_items(data)  # type: ignore[arg-type]
    else:
        positions = _canonical_positions(data)
        if positions is not None:
            return positions
    hook = _converter._structure_position
    try:
        return [hook(item, Position) for item in data]
    except Exception:
        # The whole list again through the usual path, for its error naming the first item.
        items: list[Position] = _converter.structure(data, list[Position], request_id=request_id)
        return items


def _canonical_positions(data: Sequence[Any]) -> list[Position] | None:
    """The positions of ``data`` (decoded JSON) when every item is canonical (see the module
    docs), else ``None`` (which says nothing about validity)."""
    if not data:
        return []
    try:
        if set(map(type, data)) != {dict}:
            return None
        accounts = list(map(_ACCOUNT, data))
        raws = list(map(_INSTRUMENT, data))
        if set(map(type, raws)) != {dict}:
            return None
        instrument_ids = list(map(_UUID_FIELD, raws))
        isins = list(map(dict.get, raws, repeat("isin")))
        if not set(map(type, isins)) <= _TEXT_OR_NONE:
            return None
        strings = [list(map(column, data)) for column in _QUANTITIES]
        return _from_columns(accounts, instrument_ids, isins, strings)
    except (KeyError, TypeError):  # a missing key, a non-string value, an unhashable value
        return None


def _canonical_wire_positions(data: list[WirePosition]) -> list[Position] | None:
    """:func:`_canonical_positions` for :class:`~.wire.WirePosition`\\ s (whose fields are
    all there and all strings, ``isin`` a string or ``None``: msgspec checked): by the
    compiled builder when there is one (the same checks and values, in one C pass), else
    column by column."""
    if _COMPILED is not None and type(data) is list:
        build, config = _COMPILED
        positions: list[Position] | None = build(data, config)
        return positions
    raws = list(map(_INSTRUMENT_ATTR, data))
    return _from_columns(list(map(_ACCOUNT_ATTR, data)), list(map(_UUID_ATTR, raws)),
                         list(map(_ISIN_OF, raws)),
                         [list(map(column, data)) for column in _QUANTITY_ATTRS])


def _from_columns(accounts: list[str], instrument_ids: list[str], isins: list[str | None],
                  strings: list[list[str]]) -> list[Position] | None:
    """The positions made of these columns (one value per position each) when all are
    canonical, else ``None``; raises ``TypeError`` for a value that is not a string."""
    count = len(accounts)
    account_column = _accounts(accounts)
    if account_column is None:
        return None
    instruments = _instruments(instrument_ids, isins)
    if instruments is None:
        return None
    values: list[list[Decimal]] = []
    for index, column in enumerate(strings):
        # available_for_trading: often the quantity (nothing locked or pending)
        decimals = (values[0] if index == 1 and column == strings[0]
                    else _decimals(column))
        if decimals is None:
            return None
        values.append(decimals)
    positions: list[Position] = _build(Position, _SETTERS,
                                       (account_column, instruments, *values), count)
    return positions


def _valid(strings: Collection[str], pattern: re.Pattern[str]) -> bool:
    """Whether every string fully matches ``pattern`` (one pass over them joined by ``|``);
    raises ``TypeError`` for a value that is not a string."""
    joined = "|".join(strings)
    return joined.count("|") == len(strings) - 1 and pattern.fullmatch(joined) is not None


def _accounts(accounts: list[str]) -> Iterable[uuid.UUID] | None:
    """The ``account_id`` column as uuids (a page's positions mostly share one account)."""
    memo = _converter._uuids
    distinct = set(accounts)
    fresh = distinct.difference(memo)
    if fresh:
        if not _valid(fresh, _UUIDS):
            return None
        if len(memo) + len(fresh) > _MEMO_LIMIT:
            memo.clear()
            fresh = distinct
        memo.update(zip(fresh, map(uuid.UUID, fresh), strict=True))
    if len(distinct) == 1:
        return repeat(memo[accounts[0]], len(accounts))
    return list(map(memo.__getitem__, accounts))


def _decimals(strings: list[str]) -> list[Decimal] | None:
    """A quantity column as ``Decimal``\\ s; ``None`` when a string not met before is not
    in the canonical decimal pattern. A column of mostly distinct values is converted value
    by value; one of few (``"0"`` mostly) through a table of its distinct values, which also
    go to the converter's memo (while it has room)."""
    memo = _converter._decimals
    distinct = set(strings)
    fresh = distinct.difference(memo)
    if fresh and not _valid(fresh, _DECIMALS):
        return None
    if 2 * len(distinct) > len(strings):
        return list(map(Decimal, strings))
    get = memo.get
    table = {text: Decimal(text) if (known := get(text)) is None else known
             for text in distinct}
    if len(memo) + len(table) <= _DECIMAL_LIMIT:
        memo.update(table)
    return list(map(table.__getitem__, strings))


def _instruments(instrument_ids: list[str], isins: list[str | None]) -> list[Instrument] | None:
    """The ``Instrument`` of each uuid string and isin, shared through a memo by uuid string
    (its keys were valid); ``None`` when a uuid not met before is not canonical."""
    memo = _INSTRUMENTS
    found: list[Instrument | None] = list(map(memo.get, instrument_ids))
    # (all(): a test for None that calls no __eq__; an Instrument is always true)
    if all(found) and list(map(_ISIN_OF, found)) == isins:
        return found  # type: ignore[return-value]
    missing = [index for index, (instrument, isin) in enumerate(zip(found, isins, strict=True))
               if instrument is None or instrument.isin != isin]
    uuids = _converter._uuids
    fresh = {instrument_ids[index] for index in missing}.difference(uuids)
    if fresh and not _valid(fresh, _UUIDS):
        return None
    if len(memo) + len(missing) > _MEMO_LIMIT:
        memo.clear()
    keys = [instrument_ids[index] for index in missing]
    made = dict(zip(fresh, _new_uuids(list(fresh)), strict=True))
    made_or_known = [made.get(key) or uuids[key] for key in keys]
    built: list[Instrument] = _build(Instrument, _INSTRUMENT_SETTERS,
                                     (made_or_known, [isins[index] for index in missing]),
                                     len(missing))
    for index, instrument in zip(missing, built, strict=True):
        found[index] = instrument
    memo.update(zip(keys, built, strict=True))
    return found  # type: ignore[return-value]
