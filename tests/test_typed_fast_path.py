"""The typed fast path for positions (``upvest_async.pagination.positions``) against the
converter: the same acceptance, equal objects of the same types, the same errors with the
same field paths, on the API's examples and on hypothesis-generated pages."""

from __future__ import annotations

import json
import pickle
import uuid
from decimal import Decimal
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from upvest_async import converter as converter_module
from upvest_async.converter import converter
from upvest_async.models import Position
from upvest_async.models.positions import Instrument
from upvest_async.pagination import parse_page
from upvest_async.pagination import positions as fast_module
from upvest_async.pagination.positions import structure_positions

from .test_records import (
    EDGE_DECIMALS,
    QUANTITIES,
    SEED_POSITIONS,
    outcome,
    position,
    positions,
    typed,
)

# The generated cattrs function, without any fast path: the reference for values.
generic = converter.copy()
generic.register_structure_hook(Position, generic.gen_structure_attrs_fromdict(Position))


def assert_same_objects(fast: list[Position], reference: list[Position]) -> None:
    assert fast == reference
    assert len(fast) == len(reference)
    for a, b in zip(fast, reference, strict=True):
        assert type(a) is type(b) is Position
        assert repr(a) == repr(b) and hash(a) == hash(b)
        assert type(a.instrument) is Instrument and a.instrument == b.instrument
        assert repr(a.instrument) == repr(b.instrument)
        assert type(a.account_id) is uuid.UUID and type(a.instrument.uuid) is uuid.UUID
        for name in QUANTITIES:
            x, y = getattr(a, name), getattr(b, name)
            assert type(x) is Decimal and x.as_tuple() == y.as_tuple()  # same digits, exponent
        assert converter.unstructure(a) == converter.unstructure(b)


def assert_agree(data: list[Any]) -> None:
    reference, reference_error = outcome(typed, data)
    fast, fast_error = outcome(structure_positions, data)
    assert fast_error == reference_error
    if reference_error is None:
        assert_same_objects(fast, reference)
        assert_same_objects(fast, generic.structure(data, list[Position]))


canonical_decimals = st.one_of(
    st.sampled_from([value for value in EDGE_DECIMALS if not value.lstrip("-").startswith(".")]),
    st.from_regex(r"-?[0-9]{1,63}(\.[0-9]{1,27})?", fullmatch=True),
)
# Small pools, so that pages share accounts and instruments (the memos), and an instrument
# comes with another isin on another page.
account_ids = st.sampled_from([str(uuid.UUID(int=n * 7919)) for n in range(1, 5)]) | st.uuids(
).map(str)
instrument_ids = st.sampled_from([str(uuid.UUID(int=n * 104729)) for n in range(1, 5)]) | (
    st.uuids().map(str))


@st.composite
def canonical_positions(draw: st.DrawFn) -> dict[str, Any]:
    instrument: dict[str, Any] = {"uuid": draw(instrument_ids)}
    choice = draw(st.integers(0, 3))
    if choice < 2:
        instrument["isin"] = draw(st.sampled_from(["US0378331005", "DE0005140008"]))
    elif choice == 2:
        instrument["isin"] = draw(st.none() | st.text(max_size=12))
    quantity = draw(canonical_decimals)
    values = {name: draw(st.just(quantity) | canonical_decimals) for name in QUANTITIES[1:]}
    item = position(account_id=draw(account_ids), instrument=instrument, quantity=quantity,
                    **values)
    if draw(st.booleans()):
        item["extra"] = draw(st.sampled_from([1, "x", None, {"nested": [1]}]))
    return item


def test_seed_examples_take_the_fast_path_and_equal_the_converter() -> None:
    assert fast_module._canonical_positions(SEED_POSITIONS) is not None
    assert_agree(SEED_POSITIONS)
    body = json.dumps({"meta": {"offset": 0, "limit": 5, "count": 5, "total_count": 5},
                       "data": SEED_POSITIONS}).encode()
    assert_same_objects(parse_page(body, Position).items, typed(SEED_POSITIONS))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(canonical_positions(), min_size=1, max_size=8))
def test_canonical_pages_take_the_fast_path_with_the_converters_values(
    data: list[dict[str, Any]],
) -> None:
    assert fast_module._canonical_positions(data) is not None
    assert_agree(data)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(canonical_positions() | positions(), max_size=6))
def test_any_page_is_decoded_or_refused_as_the_converter_does(data: list[Any]) -> None:
    assert_agree(data)


@pytest.mark.parametrize("value", EDGE_DECIMALS)
@pytest.mark.parametrize("field", QUANTITIES)
def test_edge_decimals_in_every_field(field: str, value: str) -> None:
    # 63 integer digits, 27 decimals, negatives, "-0", trailing zeros, ".5" (typed path only)
    assert_agree([position(), position(**{field: value}), position(**{field: value})])


@pytest.mark.parametrize("bad", ["9" * 64, "1." + "0" * 28, "", "-", "1e5", " 1", "+1", "1.",
                                 "NaN", "1_0", "1|2", "\u0663", 1, 1.5, None, True, [], {}])
@pytest.mark.parametrize("field", QUANTITIES)
def test_a_malformed_quantity_after_valid_pages_is_the_same_error(field: str, bad: Any) -> None:
    structure_positions([position(), position(quantity="12.5")])  # the memos know these
    data = [position(), position(**{field: bad})]
    _, error = outcome(structure_positions, data)
    assert error is not None and error[1] == f"$[1].{field}"
    assert_agree(data)


@pytest.mark.parametrize(("change", "path"), [
    ({"account_id": "not-a-uuid"}, "$[1].account_id"),
    ({"account_id": 5}, "$[1].account_id"),
    ({"instrument": {"uuid": "nope", "isin": None}}, "$[1].instrument.uuid"),
    ({"instrument": {"uuid": str(uuid.uuid4()), "isin": 5}}, "$[1].instrument.isin"),
    ({"instrument": {"isin": "US0378331005"}}, "$[1].instrument.uuid"),
    ({"instrument": None}, "$[1].instrument"),
])
def test_malformed_fields_name_their_path(change: dict[str, Any], path: str) -> None:
    data = [position(), position(**change)]
    _, error = outcome(structure_positions, data)
    assert error is not None and (error[1] or "").startswith(path)
    assert_agree(data)


def test_non_canonical_forms_go_through_the_converter_with_its_values() -> None:
    upper = str(uuid.uuid4()).upper()
    data = [position(account_id=upper, quantity=".5"), position(quantity="-.25")]
    assert fast_module._canonical_positions(data) is None
    assert_agree(data)
    # and once the converter's memos know them, a page with them still agrees
    assert_agree([*data, position(account_id=upper)])


def test_one_instrument_with_another_isin_keeps_each_pages_isin() -> None:
    instrument = str(uuid.uuid4())
    for isin in ("US0378331005", None, "DE0005140008", None):
        page = [position(instrument={"uuid": instrument, "isin": isin}),
                position(instrument={"uuid": instrument})]
        assert fast_module._canonical_positions(page) is not None
        assert_agree(page)
        assert structure_positions(page)[0].instrument.isin == isin


def test_memo_limits_cleared_midway_still_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fast_module, "_MEMO_LIMIT", 3)
    monkeypatch.setattr(fast_module, "_DECIMAL_LIMIT", 2)
    monkeypatch.setattr(fast_module, "_INSTRUMENTS", {})  # (not the other tests' instruments)
    for n in range(6):
        page = [position(account_id=str(uuid.UUID(int=n * 3 + k + 1)),
                         instrument={"uuid": str(uuid.UUID(int=1000 + n + k))},
                         quantity=f"{n}.{k}", locked_for_trading=str(k))
                for k in range(4)]
        assert fast_module._canonical_positions(page) is not None
        assert_agree(page)
    assert len(fast_module._INSTRUMENTS) <= 3 + 4


def test_positions_built_fast_behave_as_attrs_frozen_instances() -> None:
    [fast] = structure_positions([position()])
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        fast.quantity = Decimal(1)  # type: ignore[misc]
    assert attrs.evolve(fast, quantity=Decimal("1")).quantity == Decimal("1")
    assert pickle.loads(pickle.dumps(fast)) == fast
    assert attrs.asdict(fast) == attrs.asdict(typed([position()])[0])
    unstructure = converter_module.unstructure
    assert unstructure(fast) == unstructure(typed([position()])[0])


def test_an_empty_page_and_a_page_of_non_objects() -> None:
    assert structure_positions([]) == []
    pages: list[list[Any]] = [[None], [[]], ["x"], [position(), 5]]
    for data in pages:
        assert_agree(data)


def test_the_slots_are_used_here_and_the_constructors_give_the_same_objects(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert fast_module._SETTERS is not None and fast_module._INSTRUMENT_SETTERS is not None
    assert fast_module._UUID_SETTERS is not None
    page = [position(instrument={"uuid": str(uuid.uuid4()), "isin": None}),
            position(account_id=str(uuid.uuid4()), quantity="-" + "9" * 63 + "." + "9" * 27)]
    built_through_slots = structure_positions(page)
    for name in ("_SETTERS", "_INSTRUMENT_SETTERS", "_UUID_SETTERS"):
        monkeypatch.setattr(fast_module, name, None)
    monkeypatch.setattr(fast_module, "_INSTRUMENTS", {})
    assert fast_module._canonical_positions(page) is not None
    assert_same_objects(structure_positions(page), built_through_slots)
    assert_agree(page)
