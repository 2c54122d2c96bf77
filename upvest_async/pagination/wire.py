"""A positions page (S12, E16) decoded by msgspec into plain string fields, in one C pass.

:func:`decode_positions_page` accepts only the exact shape of the seed's list response:
``{"meta": {...}, "data": [position, ...]}`` with no other key, each position with exactly
the fields of :class:`~upvest_async.models.Position` (``instrument`` with ``uuid`` and an
optional ``isin``), every value a string (``isin`` a string or ``null``). Anything else (another
key, a number where a string belongs, a missing field, any JSON msgspec refuses) gives
``None``, and the caller decodes the body as before, with the usual errors. What it accepts
decodes to the same values as :func:`~upvest_async.json_body.parse_json` gives (msgspec and
orjson agree on strict UTF-8, escapes and duplicate keys: the last one wins), and since no
other field is allowed, nothing is dropped. Its structs hold strings only and are not tracked
by the cyclic garbage collector (``gc=False``), so a page waiting for delivery costs the
collector nothing.

The strings are not checked here: :func:`~upvest_async.pagination.positions.structure_positions`
validates and converts them as it does decoded JSON.
"""

from __future__ import annotations

from typing import Any

import msgspec

__all__ = ["WireInstrument", "WirePosition", "as_json_items", "decode_positions_page"]


class WireInstrument(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """``instrument`` of a position, as sent."""

    uuid: str
    isin: str | None = None


class WirePosition(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """A position, as sent (field names and order of :class:`~upvest_async.models.Position`)."""

    account_id: str
    instrument: WireInstrument
    quantity: str
    available_for_trading: str
    locked_for_trading: str
    pending_settlement: str


class _Envelope(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    meta: msgspec.Raw
    data: list[WirePosition]


_decoder = msgspec.json.Decoder(_Envelope)


def decode_positions_page(body: bytes) -> tuple[bytes, list[WirePosition]] | None:
    """``(meta, data)``: the ``meta`` object's own bytes (to decode as any other JSON) and the
    positions; ``None`` when ``body`` is not exactly of the shape above (see the module
    docs)."""
    try:
        envelope = _decoder.decode(body)
    except Exception:
        # DecodeError and ValidationError, but also RecursionError for deep nesting (even
        # 1,000 levels inside ``meta``): whatever it is, the JSON path decides, and raises
        # its own typed error.
        return None
    return bytes(envelope.meta), envelope.data


def as_json_items(data: list[WirePosition]) -> list[dict[str, Any]]:
    """``data`` as the JSON objects :func:`~upvest_async.json_body.parse_json` gives for them
    (an ``isin`` that was missing reads as ``null``, which the model treats alike)."""
    items: list[dict[str, Any]] = msgspec.to_builtins(data)
    return items
