"""One list response decoded (``upvest_async.pagination.pages``): the envelope, then the items
through the converter, typed (``Position``) or as validated records (``PositionRecord``); the
same items, and the same errors with the same field paths, either way."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.positions import BAD_DECIMALS, QUANTITIES, position, valid_positions

from upvest_async import Position, ResponseValidationError
from upvest_async.models.positions import PositionRecord
from upvest_async.pagination import parse_page


def body_of(items: list[Any], **meta: Any) -> bytes:
    document = {"meta": {"offset": 0, "limit": 1000, "count": len(items),
                         "total_count": len(items), **meta}, "data": items}
    return orjson.dumps(document)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(valid_positions(), max_size=20))
def test_a_page_decodes_to_positions_and_to_the_same_records(items: list[Any]) -> None:
    typed = parse_page(body_of(items), Position)
    records = parse_page(body_of(items), PositionRecord)
    assert typed.meta == records.meta and typed.meta.count == len(items)
    assert records.items == items  # the API's own objects
    for record, value in zip(records.items, typed.items, strict=True):
        assert value.account_id == uuid.UUID(record["account_id"])
        assert value.quantity.as_tuple() == Decimal(record["quantity"]).as_tuple()


@pytest.mark.parametrize("item_type", [Position, PositionRecord])
@pytest.mark.parametrize("bad", [*BAD_DECIMALS[:12], 1, 1.5, None], ids=repr)
def test_a_malformed_item_is_named_by_either_decoding(item_type: Any, bad: Any) -> None:
    items = [position(), position(), position(), position(**{QUANTITIES[1]: bad})]
    with pytest.raises(ResponseValidationError) as caught:
        parse_page(body_of(items), item_type, request_id="req-1")
    assert caught.value.path == "$[3].available_for_trading"
    assert caught.value.request_id == "req-1"


@pytest.mark.parametrize("body", [
    b"", b"{", b"[]", b'{"meta": {}}', b'{"data": {}, "meta": {}}', b'{"data": [], "meta": 5}',
    b'{"data": [], "meta": {"offset": "0", "limit": 1, "count": 0, "total_count": 0}}',
    b'{"data": [], "meta": {"offset": 0, "limit": 1, "count": 0, "total_count": 1.0}}',
])
def test_a_malformed_envelope_is_refused(body: bytes) -> None:
    for item_type in (Position, PositionRecord):
        with pytest.raises(ResponseValidationError):
            parse_page(body, item_type)


def test_other_top_level_keys_are_ignored() -> None:
    document = orjson.loads(body_of([position()]))
    document["links"] = {"next": None}
    page = parse_page(orjson.dumps(document), Position)
    assert [p.quantity for p in page.items] == [Decimal("10.4")]
