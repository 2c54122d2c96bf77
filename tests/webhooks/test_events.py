"""Parsing verified webhook bodies into typed events, and unwrap's two error types."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.keys import p521_key
from support.webhooks_signer import KEY_ID, batch, event, position, sign

from upvest_async import (
    PortfoliosAllocation,
    PortfoliosOrder,
    Position,
    RebalancingExecutionOrder,
    WebhookEvent,
    WebhookEventType,
    WebhookPayloadError,
    WebhookVerificationError,
    WebhookVerifier,
)
from upvest_async.webhooks import dumps_json, parse_batch

NOW = 1_800_000_000
KEY = p521_key()
ORDER = {
    "id": str(uuid.uuid4()), "account_id": str(uuid.uuid4()), "cash_amount": "100.50",
    "currency": "EUR", "status": "PROCESSING", "post_tax": False, "orders": [],
    "created_at": "2026-12-01T10:00:00Z", "updated_at": "2026-12-01T10:00:01.123456Z",
    "type": "BUY",
}
ALLOCATION = {
    "id": str(uuid.uuid4()), "name": "Growth",
    "allocation": [{"instrument_id": "US0378331005", "weight": "1"}],
    "created_at": "2026-12-01T10:00:00Z", "updated_at": "2026-12-01T10:00:00Z",
}
EXECUTION_ORDER = {
    "id": str(uuid.uuid4()), "execution_id": str(uuid.uuid4()), "account_id": str(uuid.uuid4()),
    "portfolio_order_id": str(uuid.uuid4()), "status": "SOMETHING_NEW",
    "created_at": "2026-12-01T10:00:00+01:00", "updated_at": "2026-12-01T10:00:00Z",
}


def test_typed_objects_in_order() -> None:
    events = [
        event("POSITION.UPDATED", position("3.25", available_for_instruction="1",
                                           settled_quantity="2")),
        event("PORTFOLIO_ORDER.FILLED", ORDER),
        event("PORTFOLIO_ALLOCATION.CHANGED", ALLOCATION),
        event("REBALANCING_EXECUTION_ORDER.NEW", EXECUTION_ORDER),
        event("ACCOUNT.SOMETHING_NEW", {"amount": 1.10, "n": [1, 2]}),
    ]
    parsed = parse_batch(batch(*events).replace(b'"amount": 1.1,', b'"amount": 1.10,'))
    assert [str(e.id) for e in parsed] == [e["id"] for e in events]
    assert isinstance(parsed[0].object, Position) and parsed[0].object.quantity == Decimal("3.25")
    assert isinstance(parsed[1].object, PortfoliosOrder)
    assert parsed[1].object.cash_amount == Decimal("100.50")
    assert isinstance(parsed[2].object, PortfoliosAllocation)
    assert isinstance(parsed[3].object, RebalancingExecutionOrder)
    assert parsed[3].object.status == "SOMETHING_NEW"
    assert parsed[4].type == "ACCOUNT.SOMETHING_NEW" and parsed[4].object == {
        "amount": Decimal("1.10"), "n": [1, 2]}
    assert parsed[0].type is WebhookEventType.POSITION_UPDATED
    assert isinstance(parsed[0], WebhookEvent) and parsed[0].created_at.tzinfo is not None
    # What listen writes: the API's own values, numbers as received.
    assert json.loads(dumps_json(parsed[4].raw), parse_float=Decimal) == parsed[4].raw
    assert '"amount":1.10' in dumps_json(parsed[4].raw)


@pytest.mark.parametrize(("body", "path"), [
    (b"not json", "$"),
    (b"\xff\xfe", "$"),
    (b"[]", "$"),
    (b'{"payload": {}}', "$"),
    (b'{"payload": [1]}', "$.payload[0]"),
    (b'{"payload": [{"a": NaN}]}', "$"),
    (b"[" * 100_000, "$"),
    (batch(event("POSITION.UPDATED", position("ten"))), "$.payload[0].object.quantity"),
    (batch(event("PORTFOLIO_ORDER.NEW", {**ORDER, "id": 5})), "$.payload[0].object.id"),
    (batch({**event("X", {}), "id": "not-a-uuid"}), "$.payload[0].id"),
    (batch({**event("X", {}), "created_at": "2026-12-01T10:00:00"}), "$.payload[0].created_at"),
    (batch({k: v for k, v in event("X", {}).items() if k != "object"}), "$.payload[0].object"),
    (batch({**event("X", {}), "type": ""}), "$.payload[0].type"),
])
def test_invalid_batches(body: bytes, path: str) -> None:
    with pytest.raises(WebhookPayloadError) as caught:
        parse_batch(body)
    assert caught.value.path == path


def test_unwrap_offline_verifies_then_parses() -> None:
    verifier = WebhookVerifier({KEY_ID: KEY.public_key()}, clock=lambda: NOW)
    body = batch(event("POSITION.UPDATED", position()))
    events = asyncio.run(verifier.unwrap(body, sign(body, key=KEY, created=NOW), path="/hooks"))
    assert isinstance(events[0].object, Position)
    bad = b'{"payload": 3}'
    with pytest.raises(WebhookPayloadError):
        asyncio.run(verifier.unwrap(bad, sign(bad, key=KEY, created=NOW), path="/hooks"))
    with pytest.raises(WebhookVerificationError):
        asyncio.run(verifier.unwrap(body, {}, path="/hooks"))


@settings(max_examples=50, deadline=None)
@given(st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(
        ["payload", "id", "type", "object", "created_at", "webhook_id", "quantity"]), inner,
        max_size=6),
    max_leaves=12,
))
def test_any_json_parses_or_raises_payload_error(document: Any) -> None:
    with contextlib.suppress(WebhookPayloadError):
        parse_batch(json.dumps({"payload": [document]}).encode())
