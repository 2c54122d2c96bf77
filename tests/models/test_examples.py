"""The response examples of Upvest's API reference (E1 to E17 of docs/guides/api-readings.md)
decode into the models; converter rules (Decimal, enums, timestamps, optional uuids) hold."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from support.fixtures import EXAMPLES

from upvest_async import (
    OrderStatus,
    PortfoliosAllocation,
    PortfoliosConfiguration,
    PortfoliosOrder,
    PortfoliosOrderType,
    Position,
    RebalancingExecution,
    ResponseValidationError,
    TriggeredRebalancing,
)
from upvest_async.converter import structure, unstructure
from upvest_async.pagination import parse_page

LISTS: dict[str, type[Any]] = {
    "E1": PortfoliosAllocation, "E5": PortfoliosConfiguration, "E9": PortfoliosOrder,
    "E16": Position,
}
SINGLE: dict[str, type[Any]] = {
    "E2": PortfoliosAllocation, "E3": PortfoliosAllocation, "E4": PortfoliosAllocation,
    "E6": PortfoliosConfiguration, "E7": PortfoliosConfiguration, "E8": PortfoliosConfiguration,
    "E10": PortfoliosOrder, "E11": PortfoliosOrder, "E12": PortfoliosOrder,
    "E14": TriggeredRebalancing, "E15": RebalancingExecution, "E17": Position,
}


def _comparable(data: Any) -> Any:
    """The example with timestamps normalised and ``""`` optional uuids dropped."""
    if isinstance(data, dict):
        result = {}
        for key, value in data.items():
            if value == "" and key.endswith("_id"):
                continue
            if key.endswith("_at"):
                value = datetime.fromisoformat(value).astimezone(UTC)
            result[key] = _comparable(value)
        return result
    if isinstance(data, list):
        return [_comparable(item) for item in data]
    return data


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: f"{e['endpoint']}:{e['source']}")
def test_seed_examples_decode_and_round_trip(example: dict[str, Any]) -> None:
    endpoint, body = example["endpoint"], example["body"]
    if endpoint in LISTS:
        page = parse_page(json.dumps(body).encode(), LISTS[endpoint])
        assert len(page.items) == len(body["data"])
        assert page.meta.total_count == body["meta"]["total_count"]  # E5's is wrong (Q11)
        decoded: Any = page.items
        original: Any = body["data"]
    else:
        decoded = structure(body, SINGLE[endpoint])
        original = body
    again = unstructure(decoded)
    assert _comparable(json.loads(json.dumps(again))) == _comparable(original)


def test_decimals_are_exact_and_written_back_unchanged() -> None:
    body = {
        "account_id": str(uuid.uuid4()), "instrument": {"uuid": str(uuid.uuid4())},
        "quantity": "11.734334663000000000000000001", "available_for_trading": "-0.50",
        "locked_for_trading": "0.0000000", "pending_settlement": "100",
    }
    position = structure(body, Position)
    assert position.quantity == Decimal("11.734334663000000000000000001")
    assert position.available_for_trading < 0
    assert unstructure(position) == body
    assert position.instrument.isin is None and "isin" not in unstructure(position)["instrument"]


@pytest.mark.parametrize("bad", ["", "-", "1e5", "NaN", "1,5", 1.5, None, "Infinity"])
def test_malformed_decimals_are_response_validation_errors(bad: object) -> None:
    body = {"account_id": str(uuid.uuid4()), "instrument": {"uuid": str(uuid.uuid4())},
            "quantity": bad, "available_for_trading": "1", "locked_for_trading": "0",
            "pending_settlement": "0"}
    with pytest.raises(ResponseValidationError, match=r"\$\.quantity") as caught:
        structure(body, Position, request_id="req-1")
    assert caught.value.request_id == "req-1"


def test_unknown_enum_values_and_fields_are_tolerated() -> None:
    order = next(e["body"] for e in EXAMPLES if e["endpoint"] == "E12")
    changed = {**order, "type": "SAVINGS_PLAN", "brand_new_field": {"x": 1},
               "orders": [{**order["orders"][0], "status": "PARTIALLY_FILLED"}]}
    decoded = structure(changed, PortfoliosOrder)
    assert decoded.type == "SAVINGS_PLAN" and decoded.type.value == "SAVINGS_PLAN"
    assert isinstance(decoded.type, PortfoliosOrderType)
    assert decoded.orders[0].status == "PARTIALLY_FILLED"
    assert isinstance(decoded.orders[0].status, OrderStatus)
    assert unstructure(decoded)["type"] == "SAVINGS_PLAN"


def test_timestamps_are_timezone_aware_and_naive_ones_rejected() -> None:
    body = next(e["body"] for e in EXAMPLES if e["endpoint"] == "E7")
    for stamp in ("2021-07-21T14:10:00.00Z", "2021-07-21T14:10:00.000Z",
                  "2021-07-21T16:10:00+02:00"):
        decoded = structure({**body, "created_at": stamp}, PortfoliosConfiguration)
        assert decoded.created_at == datetime(2021, 7, 21, 14, 10, tzinfo=UTC)
    with pytest.raises(ResponseValidationError, match="created_at"):
        structure({**body, "created_at": "2021-07-21T14:10:00"}, PortfoliosConfiguration)


def test_empty_optional_uuid_reads_as_absent_but_required_one_does_not() -> None:
    order = next(e["body"] for e in EXAMPLES if e["endpoint"] == "E11")
    assert order["allocation_id"] == ""
    assert structure(order, PortfoliosOrder).allocation_id is None
    with pytest.raises(ResponseValidationError, match="account_id"):
        structure({**order, "account_id": ""}, PortfoliosOrder)
