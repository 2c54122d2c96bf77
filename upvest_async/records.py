"""Positions as validated records: the API's JSON objects, checked as the typed
:class:`~upvest_async.models.Position` checks them, then written without being rebuilt.

Exports validate millions of positions and write each one back out. Building a ``Position``
(uuids, ``Decimal``\\ s) only to unstructure it again is work thrown away, so the export
decodes a page with ``orjson`` and checks the raw objects:

- **fast check** (:func:`check_records`): one pass per page that accepts only the canonical
  shape (lower-case 8-4-4-4-12 uuids, the seed's decimal pattern, an ``isin`` string or
  none). Everything it accepts the typed model accepts too, with the same values.
- **otherwise the typed path itself**: the page goes through the ``Position`` converter. A
  malformed position raises its :class:`~upvest_async.ResponseValidationError`, with the same
  message and field path (``$[3].quantity``) as decoding to ``Position``; a page it accepts
  (say an upper-case uuid) is kept as records too, marked not canonical.

Writing (:func:`render_jsonl`, :func:`render_csv`) uses the API's strings unchanged: canonical
records through a template (their characters need no escaping), any other through ``orjson``
and :mod:`csv`. Both give the bytes that unstructuring the typed ``Position`` gives, for every
canonical input. Source: seed 002 (S12, E16).
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Sequence
from operator import itemgetter, methodcaller
from typing import Any

import orjson

from .converter import structure, unstructure
from .ids import LOWER_UUID_SOURCE
from .models.positions import Position, PositionRecord

__all__ = ["PositionRecords", "check_records", "position_records", "render_csv",
           "render_jsonl"]

_UUID = LOWER_UUID_SOURCE  # the lower-case canonical uuid only (upvest_async.ids)
# A subset of the converter's decimal pattern (the ``.5`` form goes to the typed path), written
# possessively: no backtracking, so one pass over a whole page's decimals joined by ``|``.
_DECIMAL = r"-?+[0-9]{1,63}+(?:\.[0-9]{1,27}+)?+"
_UUIDS = re.compile(rf"(?:{_UUID}\|)*+{_UUID}")
_DECIMALS = re.compile(rf"(?:{_DECIMAL}\|)*+{_DECIMAL}")
# Characters an isin may hold to be written through the templates: nothing JSON escapes
# (quote, backslash, controls), nothing CSV quotes (comma, quote, CR, LF), no surrogates.
_PLAIN = re.compile(r'[^"\\,\x00-\x1f\x7f\ud800-\udfff]*+')
_INSTRUMENT = itemgetter("instrument")
_ACCOUNT = itemgetter("account_id")
_UUID_FIELD = itemgetter("uuid")
_QUANTITIES = itemgetter(
    "quantity", "available_for_trading", "locked_for_trading", "pending_settlement"
)
_ISIN = methodcaller("get", "isin")
_TEXT_OR_NONE = {str, type(None)}
#: Canonical uuid strings met valid before (only ever valid ones), cleared past the limit.
_KNOWN_UUIDS: set[str] = set()
_KNOWN_LIMIT = 200_000


class PositionRecords(list[PositionRecord]):
    """A list of validated :class:`~upvest_async.models.positions.PositionRecord`\\ s.

    ``canonical``: every record passed the fast check, so the templates of
    :func:`render_jsonl` and :func:`render_csv` write them (false for a list built by hand:
    then each record goes through ``orjson`` or :mod:`csv`)."""

    canonical: bool = False


def check_records(data: list[Any]) -> bool:
    """Whether every item of ``data`` has the canonical shape (see the module docs): if so,
    decoding it to ``Position`` succeeds with the same values. ``False`` says nothing about
    validity (the typed path decides)."""
    if not data:
        return True
    try:
        if set(map(type, data)) != {dict}:
            return False
        instruments = list(map(_INSTRUMENT, data))
        if set(map(type, instruments)) != {dict}:
            return False
        isins = list(map(_ISIN, instruments))
        if not set(map(type, isins)) <= _TEXT_OR_NONE:
            return False
        # uuids already seen valid are not checked again (a tenant's positions share a few
        # accounts and instruments); a set raises TypeError for an unhashable value.
        fresh = set(map(_ACCOUNT, data)).union(map(_UUID_FIELD, instruments))
        fresh -= _KNOWN_UUIDS
        uuids = "|".join(fresh)
        numbers = "|".join(map("|".join, map(_QUANTITIES, data)))
        texts = "".join(filter(None, isins))
    except (KeyError, TypeError):
        return False
    if not (
        numbers.count("|") == 4 * len(data) - 1 and _DECIMALS.fullmatch(numbers) is not None
        and _PLAIN.fullmatch(texts) is not None
    ):
        return False
    if fresh:
        if uuids.count("|") != len(fresh) - 1 or _UUIDS.fullmatch(uuids) is None:
            return False
        if len(_KNOWN_UUIDS) > _KNOWN_LIMIT:
            _KNOWN_UUIDS.clear()
        _KNOWN_UUIDS.update(fresh)
    return True


def position_records(data: list[Any], *, request_id: str | None = None) -> PositionRecords:
    """``data`` (a decoded ``data`` array) as validated records.

    Raises :class:`~upvest_async.ResponseValidationError` for the first malformed item,
    exactly as ``structure(data, list[Position])`` does (message and field path,
    ``$[3].quantity``).
    """
    records = PositionRecords(data)
    records.canonical = check_records(data)
    if not records.canonical:
        structure(data, list[Position], request_id=request_id)
    return records


def render_jsonl(records: Sequence[PositionRecord] | Sequence[Position]) -> str:
    """One JSON object per line (``\\n``, compact): the API's field names (in the model's
    order) and values; an ``isin`` that is missing or null is left out (as the typed model
    writes it)."""
    if not (isinstance(records, PositionRecords) and records.canonical):
        return "".join([_dumps(row) for row in _rows(records)])
    lines = []
    for r in records:
        i = r["instrument"]
        isin = i.get("isin")
        # Canonical values need no escaping: the same bytes as orjson.dumps of the projection.
        lines.append(
            f'{{"account_id":"{r["account_id"]}","instrument":{{"uuid":"{i["uuid"]}"}},'
            f'"quantity":"{r["quantity"]}","available_for_trading":'
            f'"{r["available_for_trading"]}","locked_for_trading":"{r["locked_for_trading"]}",'
            f'"pending_settlement":"{r["pending_settlement"]}"}}\n'
            if isin is None else
            f'{{"account_id":"{r["account_id"]}","instrument":{{"uuid":"{i["uuid"]}",'
            f'"isin":"{isin}"}},"quantity":"{r["quantity"]}","available_for_trading":'
            f'"{r["available_for_trading"]}","locked_for_trading":"{r["locked_for_trading"]}",'
            f'"pending_settlement":"{r["pending_settlement"]}"}}\n'
        )
    return "".join(lines)


def render_csv(records: Sequence[PositionRecord] | Sequence[Position]) -> str:
    """CSV rows (no header; ``\\r\\n`` line ends, :mod:`csv`'s quoting): ``account_id``,
    ``instrument.uuid``, ``instrument.isin`` (empty when missing), the four quantities."""
    if isinstance(records, PositionRecords) and records.canonical:
        return "".join([
            f'{r["account_id"]},{i["uuid"]},{i.get("isin") or ""},{r["quantity"]},'
            f'{r["available_for_trading"]},{r["locked_for_trading"]},'
            f'{r["pending_settlement"]}\r\n'
            for r in records for i in (r["instrument"],)
        ])
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    for row in _rows(records):
        instrument = row["instrument"]
        writer.writerow([
            row["account_id"], instrument["uuid"], instrument.get("isin") or "",
            row["quantity"], row["available_for_trading"], row["locked_for_trading"],
            row["pending_settlement"],
        ])
    return buffer.getvalue()


def _rows(records: Iterable[Any]) -> Iterable[dict[str, Any]]:
    """Each record (or typed ``Position``) as the output object: model order, known fields."""
    for record in records:
        if isinstance(record, Position):
            yield unstructure(record)
            continue
        instrument = record["instrument"]
        isin = instrument.get("isin")
        yield {
            "account_id": record["account_id"],
            "instrument": {"uuid": instrument["uuid"]} if isin is None else {
                "uuid": instrument["uuid"], "isin": isin},
            "quantity": record["quantity"],
            "available_for_trading": record["available_for_trading"],
            "locked_for_trading": record["locked_for_trading"],
            "pending_settlement": record["pending_settlement"],
        }


def _dumps(row: dict[str, Any]) -> str:
    try:
        return orjson.dumps(row).decode("utf-8") + "\n"
    except TypeError:  # a lone surrogate (only json.loads decodes one): escaped, still exact
        return json.dumps(row, separators=(",", ":")) + "\n"
