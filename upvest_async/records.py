"""Positions as validated records: the API's JSON objects, checked by the converter's own
``Position`` path (:mod:`upvest_async.converter`), then written without being rebuilt.

Exports validate millions of positions and write each one back out. Writing a typed
``Position`` back out would give the same values with other digits in some cases (``"007"``
reads as ``Decimal("7")``), so the export keeps the API's strings: :func:`position_records`
decodes the page to ``Position``\\ s (the only rules there are; a malformed position raises
the same :class:`~upvest_async.ResponseValidationError`, message and field path
``$[3].quantity``) and keeps the JSON objects they were read from.

Writing (:func:`render_jsonl`, :func:`render_csv`) uses the API's strings unchanged. Records
whose ``isin``\\ s are plain (nothing JSON escapes, nothing CSV quotes) go through a template:
every other value of a valid record is a uuid or decimal string, which needs no escaping
either. Any other record goes through ``orjson`` and :mod:`csv`. Both give the bytes that
unstructuring the typed ``Position`` gives, for canonical input. Source: S12 and E16 of
``docs/guides/api-readings.md``.
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
from .models.positions import Position, PositionRecord

__all__ = ["PositionRecords", "position_records", "render_csv", "render_jsonl"]

# Characters an isin may hold to be written through the templates: nothing JSON escapes
# (quote, backslash, controls), nothing CSV quotes (comma, quote, CR, LF), no surrogates.
_PLAIN = re.compile(r'[^"\\,\x00-\x1f\x7f\ud800-\udfff]*+')
_INSTRUMENT = itemgetter("instrument")
_ISIN = methodcaller("get", "isin")


class PositionRecords(list[PositionRecord]):
    """A list of validated :class:`~upvest_async.models.positions.PositionRecord`\\ s.

    ``canonical``: every record was validated and its ``isin`` needs no escaping, so the
    templates of :func:`render_jsonl` and :func:`render_csv` write them (false for a list built
    by hand: then each record goes through ``orjson`` or :mod:`csv`)."""

    canonical: bool = False


def position_records(data: list[Any], *, request_id: str | None = None) -> PositionRecords:
    """``data`` (a decoded ``data`` array) as validated records: the same objects, once
    ``structure(data, list[Position])`` accepted them.

    Raises :class:`~upvest_async.ResponseValidationError` for the first malformed item, as
    ``structure(data, list[Position])`` does (message and field path, ``$[3].quantity``).
    """
    structure(data, list[Position], request_id=request_id)
    records = PositionRecords(data)
    isins = "".join(filter(None, map(_ISIN, map(_INSTRUMENT, data))))
    records.canonical = _PLAIN.fullmatch(isins) is not None
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
        # Plain values need no escaping: the same bytes as orjson.dumps of the projection.
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
    except TypeError:
        # A lone surrogate (``"\\ud800"``, which the JSON fallback of parse_json decodes):
        # orjson cannot encode one, the standard library escapes it back exactly.
        return json.dumps(row, separators=(",", ":")) + "\n"
