"""The converter's rules (``upvest_async.converter``) and its one path for positions, against
the API's examples and hypothesis-generated pages: decimal strings (the edges of the pattern:
63 integer digits, 27 decimals, negatives), uuids, timestamps, and the malformed values that
are refused, each naming its field (``$[3].quantity``)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.fixtures import EXAMPLES
from support.positions import (
    ACCOUNT,
    BAD_DECIMALS,
    EDGE_DECIMALS,
    INSTRUMENT,
    QUANTITIES,
    position,
    valid_positions,
)

from upvest_async import Instrument, Position, ResponseValidationError
from upvest_async.converter import (
    api_decimal,
    parse_timestamp,
    structure,
    timestamp_text,
    unstructure,
)
from upvest_async.models import PortfoliosAllocation

#: Refused uuids: every form but the canonical 8-4-4-4-12 text (upvest_async.ids).
BAD_UUIDS: list[Any] = [
    "{" + ACCOUNT + "}", "urn:uuid:" + ACCOUNT, ACCOUNT.replace("-", ""), " " + ACCOUNT,
    ACCOUNT + "\n", ACCOUNT[:-1], ACCOUNT + "0", "", "x", 5, None, [], {},
    ACCOUNT.replace("c", "\uff43", 1),
]
GOOD_TIMESTAMPS = {
    "2021-07-21T14:10:00Z": datetime(2021, 7, 21, 14, 10, tzinfo=UTC),
    "2021-07-21T14:10:00.00Z": datetime(2021, 7, 21, 14, 10, tzinfo=UTC),
    "2021-07-21T14:10:00.123456789Z": datetime(2021, 7, 21, 14, 10, 0, 123456, tzinfo=UTC),
    "2021-07-21t14:10:00z": datetime(2021, 7, 21, 14, 10, tzinfo=UTC),
    "2021-07-21T16:10:00+02:00": datetime(2021, 7, 21, 14, 10, tzinfo=UTC),
    "2021-07-21T14:10:00-00:30": datetime(2021, 7, 21, 14, 40, tzinfo=UTC),
}
BAD_TIMESTAMPS: list[Any] = [
    "2021-07-21T14:10:00", "2021-07-21", "2021-07-21T14:10Z", "2021-07-21 14:10:00Z",
    "20210721T141000Z", "2021-W29-3T14:10:00Z", "2021-07-21T14:10:00+0200",
    "2021-07-21T14:10:00.Z", "2021-07-21T14:10:00,5Z", "2021-13-01T00:00:00Z",
    "2021-02-30T00:00:00Z", "2021-07-21T24:00:00Z", "\uff12021-07-21T14:10:00Z",
    " 2021-07-21T14:10:00Z", "2021-07-21T14:10:00Z\n", 1626876600, None, "",
]


def error_of(data: Any, cls: Any = list[Position]) -> ResponseValidationError:
    with pytest.raises(ResponseValidationError) as caught:
        structure(data, cls)
    return caught.value


# --- the API's examples -------------------------------------------------------------------------


def test_the_api_examples_of_positions_decode_to_their_values() -> None:
    examples = {e["endpoint"]: e["body"] for e in EXAMPLES if e["endpoint"] in {"E16", "E17"}}
    items = [*examples["E16"]["data"], examples["E17"]]
    positions = structure(orjson.loads(orjson.dumps(items)), list[Position])
    assert positions[-1] == structure(examples["E17"], Position)
    for item, decoded in zip(items, positions, strict=True):
        assert type(decoded) is Position and type(decoded.instrument) is Instrument
        assert decoded.account_id == uuid.UUID(item["account_id"])
        assert decoded.instrument.uuid == uuid.UUID(item["instrument"]["uuid"])
        assert decoded.instrument.isin == item["instrument"].get("isin")
        for name in QUANTITIES:
            value = getattr(decoded, name)
            assert type(value) is Decimal and value.as_tuple() == Decimal(item[name]).as_tuple()
        assert unstructure(decoded) == {
            **item, "instrument": {k: v for k, v in item["instrument"].items() if v is not None}
        }


# --- decimals ---------------------------------------------------------------------------------


@pytest.mark.parametrize("text", EDGE_DECIMALS)
@pytest.mark.parametrize("field", QUANTITIES)
def test_edge_decimals_are_read_with_their_exact_digits(field: str, text: str) -> None:
    (decoded,) = structure([position(**{field: text})], list[Position])
    value = getattr(decoded, field)
    assert value.as_tuple() == Decimal(text).as_tuple()  # the digits and exponent sent
    assert api_decimal(text).as_tuple() == Decimal(text).as_tuple()


@pytest.mark.parametrize("bad", BAD_DECIMALS, ids=repr)
@pytest.mark.parametrize("field", QUANTITIES)
def test_a_malformed_decimal_is_refused_naming_its_field(field: str, bad: Any) -> None:
    error = error_of([position(), position(), position(**{field: bad})])
    assert error.path == f"$[2].{field}"
    assert error_of(position(**{field: bad}), Position).path == f"$.{field}"
    with pytest.raises(ValueError, match="expected a decimal string"):
        api_decimal(bad)


def test_a_json_number_where_a_decimal_string_belongs_is_refused() -> None:
    body = b'[{"account_id": "%s", "instrument": {"uuid": "%s"}, "quantity": 10.4,' \
        b' "available_for_trading": "1", "locked_for_trading": "0",' \
        b' "pending_settlement": "0"}]' % (ACCOUNT.encode(), INSTRUMENT.encode())
    assert error_of(orjson.loads(body)).path == "$[0].quantity"
    assert error_of(json.loads(body, parse_float=Decimal)).path == "$[0].quantity"


def test_decimals_are_written_back_as_plain_strings() -> None:
    decoded = structure(position(quantity="-" + "9" * 63 + "." + "9" * 27,
                                 available_for_trading="1.50"), Position)
    written = unstructure(decoded)
    assert written["quantity"] == "-" + "9" * 63 + "." + "9" * 27
    assert written["available_for_trading"] == "1.50"


# --- uuids -------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", BAD_UUIDS, ids=repr)
@pytest.mark.parametrize("field", ["account_id", "instrument.uuid"])
def test_a_non_canonical_uuid_is_refused_naming_its_field(field: str, bad: Any) -> None:
    item = (position(account_id=bad) if field == "account_id"
            else position(instrument={"uuid": bad}))
    assert error_of([position(), item]).path == f"$[1].{field}"


def test_upper_case_uuids_are_the_same_uuids() -> None:
    decoded = structure([position(account_id=ACCOUNT.upper(),
                                  instrument={"uuid": INSTRUMENT.upper()})], list[Position])
    assert decoded[0].account_id == uuid.UUID(ACCOUNT)
    assert decoded[0].instrument == Instrument(uuid.UUID(INSTRUMENT), None)


@pytest.mark.parametrize(("change", "path"), [
    ({"instrument": {"uuid": INSTRUMENT, "isin": 5}}, "$[0].instrument.isin"),
    ({"instrument": {"isin": "US0378331005"}}, "$[0].instrument.uuid"),
    ({"instrument": "x"}, "$[0].instrument"),
    ({"instrument": None}, "$[0].instrument"),
])
def test_malformed_instruments_name_their_field(change: dict[str, Any], path: str) -> None:
    assert error_of([position(**change)]).path.startswith(path)


@pytest.mark.parametrize("missing", ["account_id", "instrument", *QUANTITIES])
def test_a_missing_field_is_named(missing: str) -> None:
    item = position()
    del item[missing]
    error = error_of([position(), item])
    assert error.path == f"$[1].{missing}" and "missing" in str(error)


@pytest.mark.parametrize("data", [None, "positions", 5, {"data": []}, [None], ["x"], [[]]])
def test_a_page_that_is_not_a_list_of_objects_is_refused(data: Any) -> None:
    error_of(data)


def test_extra_fields_are_ignored_and_parts_are_shared() -> None:
    first, second = structure([position(extra=1), position(instrument={"uuid": INSTRUMENT,
                                                                      "isin": "US0378331005"})],
                              list[Position])
    assert first == second
    assert first.account_id is second.account_id  # (immutable: shared within a page)
    again = structure([position()], list[Position])[0]
    assert again.instrument is first.instrument  # (and an instrument across pages)


# --- timestamps ----------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), GOOD_TIMESTAMPS.items())
def test_rfc_3339_timestamps_are_read_with_their_offset(text: str, expected: datetime) -> None:
    value = parse_timestamp(text)
    assert value == expected and value.tzinfo is not None


@pytest.mark.parametrize("bad", BAD_TIMESTAMPS, ids=repr)
def test_other_timestamps_are_refused_naming_their_field(bad: Any) -> None:
    body = {"id": ACCOUNT, "name": "n", "allocation": [], "created_at": "2021-07-21T14:10:00Z",
            "updated_at": bad}
    assert error_of(body, PortfoliosAllocation).path == "$.updated_at"


def test_timestamps_are_written_in_utc_with_z() -> None:
    when = datetime(2021, 7, 21, 16, 10, 0, 500, tzinfo=timezone(timedelta(hours=2)))
    assert timestamp_text(when) == "2021-07-21T14:10:00.000500Z"
    assert parse_timestamp(timestamp_text(when)) == when


# --- hypothesis: generated pages ---------------------------------------------------------------

@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(valid_positions(), max_size=20))
def test_generated_pages_decode_to_their_values(items: list[dict[str, Any]]) -> None:
    body = orjson.dumps({"meta": {}, "data": items})
    decoded = structure(orjson.loads(body)["data"], list[Position])
    assert len(decoded) == len(items)
    for item, value in zip(items, decoded, strict=True):
        assert type(value) is Position
        assert value.account_id == uuid.UUID(item["account_id"])
        assert type(value.account_id) is uuid.UUID
        assert value.instrument.uuid == uuid.UUID(item["instrument"]["uuid"])
        assert value.instrument.isin == item["instrument"].get("isin")
        for name in QUANTITIES:
            assert getattr(value, name).as_tuple() == Decimal(item[name]).as_tuple()


bad_values = st.one_of(
    st.sampled_from(BAD_DECIMALS),
    st.text(max_size=8).filter(lambda text: not text.lstrip("-").replace(".", "", 1).isdigit()),
    st.floats(allow_nan=False), st.integers(),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(valid_positions(), min_size=1, max_size=10), st.data())
def test_generated_pages_with_one_malformed_value_name_it(
    items: list[dict[str, Any]], data: st.DataObject,
) -> None:
    index = data.draw(st.integers(0, len(items) - 1))
    field = data.draw(st.sampled_from([*QUANTITIES, "account_id", "instrument.uuid"]))
    if field in QUANTITIES:
        bad = data.draw(bad_values)
        items[index][field] = bad
    else:
        bad = data.draw(st.sampled_from(BAD_UUIDS))
        if field == "account_id":
            items[index]["account_id"] = bad
        else:
            items[index]["instrument"]["uuid"] = bad
    error = error_of(items)
    assert error.path == f"$[{index}].{field}"

