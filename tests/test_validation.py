"""Property: bad input to any public method raises InvalidInputError and sends nothing.

The client points at a closed port with no retries, and its counters must stay at zero: a
request that slipped out would surface as APIConnectionError instead of InvalidInputError.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.keys import p521_key, pem

from upvest_async import InvalidInputError, UpvestClient
from upvest_async.validation import (
    CASH_AMOUNT_PATTERN,
    ISIN_PATTERN,
    UPVEST_ID_PATTERN,
    WEIGHT_PATTERN,
    check_timestamp,
)

ID = "c5161455-4d27-4781-bc74-f05532e49a77"
ITEM = {"instrument_id": "US0378331005", "instrument_id_type": "ISIN", "weight": "0.5"}


def _is_uuid(value: object) -> bool:
    if isinstance(value, uuid.UUID):
        return True
    try:
        return isinstance(value, str) and len(value) == 36 and bool(uuid.UUID(value))
    except ValueError:
        return False


junk = st.one_of(st.none(), st.integers(), st.floats(), st.booleans(), st.text(max_size=40),
                 st.binary(max_size=8), st.lists(st.integers(), max_size=2),
                 st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))
bad_uuid = st.one_of(junk, st.uuids().map(lambda u: str(u)[:-1] + "x")).filter(
    lambda v: v is not None and not _is_uuid(v))
bad_optional_uuid = bad_uuid
bad_cash = st.one_of(
    st.floats(), st.text(max_size=12).filter(lambda t: not CASH_AMOUNT_PATTERN.fullmatch(t)),
    st.decimals(max_value=Decimal(-1)), st.just(""), st.just(".5"), st.none(),
)
bad_weight = st.one_of(
    st.text(max_size=10).filter(lambda t: not WEIGHT_PATTERN.fullmatch(t)),
    st.sampled_from(["100.0", "101", "0.123456", "-1", ".5", ""]), st.floats(),
)
bad_item = st.one_of(
    bad_weight.map(lambda w: {**ITEM, "weight": w}),
    st.text(max_size=14).filter(lambda t: not ISIN_PATTERN.fullmatch(t)).map(
        lambda t: {**ITEM, "instrument_id": t}),
    st.text(max_size=40).filter(lambda t: not UPVEST_ID_PATTERN.fullmatch(t)).map(
        lambda t: {**ITEM, "instrument_id": t, "instrument_id_type": "UPVEST"}),
    st.just({**ITEM, "unexpected": 1}),
    st.just({"weight": "0.5"}),
    st.sampled_from(["isin", "Isin", "", 3]).map(
        lambda t: {**ITEM, "instrument_id_type": t}),
)
bad_items = st.one_of(
    st.lists(bad_item, min_size=1, max_size=3).map(lambda items: [ITEM, *items]),
    st.just([]), st.just("US0378331005"), st.just({"instrument_id": "x"}), st.integers(),
)
bad_enum = st.one_of(st.text(max_size=8).filter(lambda t: not re.fullmatch(r"[A-Z][A-Z0-9_]*", t)),
                     st.integers(), st.none())
bad_optional_enum = bad_enum.filter(lambda v: v is not None)
bad_bool = st.one_of(st.integers(), st.text(max_size=3), st.floats())
bad_timestamp = st.one_of(
    st.text(max_size=12).filter(lambda t: not _parses(t)), st.datetimes(), st.integers())
bad_uuid_list = st.one_of(st.lists(bad_uuid, min_size=1, max_size=2).map(lambda v: [ID, *v]),
                          st.just(ID), st.integers())
bad_page_size = st.one_of(st.integers(max_value=0), st.integers(min_value=1001), st.floats(),
                          st.text(max_size=3))
bad_offset = st.one_of(st.integers(max_value=-1), st.floats(), st.text(max_size=3))
bad_instrument = st.one_of(junk, st.sampled_from(["isin:us0378331005", "US037833100",
                                                  "uuid:xyz", "urn:isin:", "isin:"])).filter(
    lambda v: not (isinstance(v, str) and ISIN_PATTERN.fullmatch(v)))


def _parses(text: str) -> bool:
    try:
        return datetime.fromisoformat(text).tzinfo is not None
    except ValueError:
        return False


# (method, valid keyword arguments, {argument: strategy of invalid values})
Call = Callable[..., Any]
CASES: list[tuple[str, Callable[[UpvestClient], Call], dict[str, Any],
                  dict[str, st.SearchStrategy[Any]]]] = [
    ("positions.list", lambda c: c.positions.list, {"account_id": ID},
     {"account_id": bad_uuid, "page_size": bad_page_size, "offset": bad_offset}),
    ("positions.retrieve", lambda c: c.positions.retrieve,
     {"account_id": ID, "instrument_id": "isin:US0378331005"},
     {"account_id": bad_uuid, "instrument_id": bad_instrument}),
    ("allocations.list", lambda c: c.portfolios.allocations.list, {},
     {"instrument_ids": bad_uuid_list, "sort": bad_optional_enum, "order": bad_optional_enum,
      "start_date": bad_timestamp}),
    ("allocations.create", lambda c: c.portfolios.allocations.create, {"allocation": [ITEM]},
     {"allocation": bad_items, "name": st.integers(), "idempotency_key": bad_uuid}),
    ("allocations.retrieve", lambda c: c.portfolios.allocations.retrieve,
     {"allocation_id": ID}, {"allocation_id": bad_uuid}),
    ("allocations.update", lambda c: c.portfolios.allocations.update,
     {"allocation_id": ID, "allocation": [ITEM]},
     {"allocation_id": bad_uuid, "allocation": bad_items}),
    ("configurations.list", lambda c: c.portfolios.configurations.list, {},
     {"account_id": bad_optional_uuid, "allocation_id": bad_optional_uuid,
      "sort": bad_optional_enum,
      "end_date": bad_timestamp}),
    ("configurations.create", lambda c: c.portfolios.configurations.create,
     {"account_id": ID, "allocation_id": ID},
     {"account_id": bad_uuid, "allocation_id": bad_uuid,
      "rebalancing_strategy_ids": bad_uuid_list}),
    ("configurations.retrieve", lambda c: c.portfolios.configurations.retrieve,
     {"account_id": ID}, {"account_id": bad_uuid}),
    ("configurations.update", lambda c: c.portfolios.configurations.update,
     {"account_id": ID, "allocation_id": ID},
     {"account_id": bad_uuid, "allocation_id": bad_uuid,
      "rebalancing_strategy_ids": bad_uuid_list}),
    ("orders.list", lambda c: c.portfolios.orders.list, {},
     {"account_id": bad_optional_uuid, "allocation_id": bad_optional_uuid,
      "order": bad_optional_enum,
      "start_date": bad_timestamp, "max_items": st.integers(max_value=-1)}),
    ("orders.create", lambda c: c.portfolios.orders.create,
     {"user_id": ID, "account_id": ID, "cash_amount": "100.00", "side": "BUY"},
     {"user_id": bad_uuid, "account_id": bad_uuid, "cash_amount": bad_cash, "side": bad_enum,
      "currency": bad_enum, "post_tax": bad_bool, "idempotency_key": bad_uuid}),
    ("orders.retrieve", lambda c: c.portfolios.orders.retrieve,
     {"portfolio_order_id": ID}, {"portfolio_order_id": bad_uuid}),
    ("orders.cancel", lambda c: c.portfolios.orders.cancel, {"portfolio_order_id": ID},
     {"portfolio_order_id": bad_uuid, "idempotency_key": bad_uuid}),
    ("liquidation_requests.create", lambda c: c.portfolios.liquidation_requests.create,
     {"account_id": ID, "user_id": ID}, {"account_id": bad_uuid, "user_id": bad_uuid}),
    ("executions.create (accounts)", lambda c: c.portfolios.rebalancings.executions.create,
     {"accounts": [ID]}, {"accounts": bad_uuid_list, "allocations": st.just([ID])}),
    ("executions.create (allocations)", lambda c: c.portfolios.rebalancings.executions.create,
     {"allocations": [ID]}, {"allocations": bad_uuid_list, "accounts": st.just([ID])}),
    ("executions.create (neither)", lambda c: c.portfolios.rebalancings.executions.create,
     {}, {"accounts": st.just([]), "allocations": st.just([])}),
    ("executions.retrieve", lambda c: c.portfolios.rebalancings.executions.retrieve,
     {"execution_id": ID}, {"execution_id": bad_uuid}),
]

KEY_PEM = pem(p521_key())


async def _call(method: Call, kwargs: dict[str, Any]) -> None:
    result = method(**kwargs)
    if asyncio.iscoroutine(result):
        await result
    else:  # a paginator: validation happened at the call, iterating would send
        async for _ in result:
            raise AssertionError("unreachable")


@settings(max_examples=400, deadline=None)
@given(data=st.data())
def test_bad_input_raises_validation_error_and_sends_nothing(data: st.DataObject) -> None:
    name, method_of, valid, bad = data.draw(st.sampled_from(CASES), label="method")
    argument = data.draw(st.sampled_from(sorted(bad)), label="argument")
    value = data.draw(bad[argument], label="value")
    client = UpvestClient(client_id=ID, client_secret="s", key_id="k", private_key=KEY_PEM,
                          base_url="http://127.0.0.1:9", max_retries=0, timeout=2)

    async def run() -> None:
        async with client:
            try:
                await _call(method_of(client), {**valid, argument: value})
            except InvalidInputError as error:
                assert error.field and error.rule
            else:
                raise AssertionError(f"{name}({argument}={value!r}) was accepted")

    asyncio.run(run())
    assert client.stats.requests == 0 and client.stats.token_requests == 0


def test_validation_error_names_the_field_and_rule() -> None:
    client = UpvestClient(client_id=ID, client_secret="s", key_id="k", private_key=KEY_PEM)

    async def run() -> InvalidInputError:
        try:
            await client.portfolios.allocations.create(
                allocation=[ITEM, {**ITEM, "weight": "0.123456"}])
        except InvalidInputError as error:
            return error
        raise AssertionError("accepted")

    error = asyncio.run(run())
    assert error.field == "allocation[1].weight"
    assert "at most 5 decimals" in error.rule and "0.123456" in str(error)


@pytest.mark.parametrize(("text", "sent"), [
    ("2021-07-21T14:10:00Z", "2021-07-21T14:10:00Z"),
    ("2021-07-21T16:10:00.5+02:00", "2021-07-21T14:10:00.500000Z"),
    ("2021-07-21t14:10:00z", "2021-07-21T14:10:00Z"),
])
def test_a_filter_timestamp_is_read_by_the_rfc_3339_rule_and_sent_in_utc(
    text: str, sent: str,
) -> None:
    assert check_timestamp("start_date", text) == sent


@pytest.mark.parametrize("text", [
    "2021-07-21 14:10:00Z", "20210721T141000Z", "2021-W29-3T14:10:00Z", "2021-07-21T14:10Z",
    "2021-07-21T14:10:00+0200", "2021-07-21T14:10:00", "2021-07-21",
])
def test_a_filter_timestamp_outside_rfc_3339_is_refused(text: str) -> None:
    with pytest.raises(InvalidInputError, match="start_date"):
        check_timestamp("start_date", text)
