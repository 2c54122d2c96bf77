"""The compiled positions builder (``upvest_async/pagination/_build.c``) against the Python
builder it mirrors (``_from_columns`` in ``upvest_async.pagination.positions``): for any list
of wire positions, both refuse it (``None``: the general path decides) or both give equal
objects of the same types; no reference is leaked or lost on either outcome; and hostile
input (other types, non-string values, lone surrogates, a bad config) is refused or a
``TypeError``, never a crash.

``tests/test_wire_pages.py`` checks the whole page path (msgspec and this builder) against the
JSON path, with the extension and without it.
"""

from __future__ import annotations

import copy
import gc
import os
import pickle
import subprocess
import sys
import tracemalloc
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from upvest_async import converter as converter_module
from upvest_async.models import Position
from upvest_async.pagination import positions as builder_module
from upvest_async.pagination.wire import WireInstrument, WirePosition

from .test_records import ACCOUNT, EDGE_DECIMALS, INSTRUMENT, QUANTITIES, decimals, isins, uuids
from .test_typed_fast_path import assert_same_objects

COMPILED = builder_module._COMPILED
pytestmark = pytest.mark.skipif(COMPILED is None, reason="the extension is not built here")


def compiled(data: list[Any], config: tuple[Any, ...] | None = None) -> list[Position] | None:
    assert COMPILED is not None
    build, default = COMPILED
    result: list[Position] | None = build(data, default if config is None else config)
    return result


def python(data: list[Any]) -> list[Position] | None:
    original = builder_module._COMPILED
    builder_module._COMPILED = None
    try:
        return builder_module._canonical_wire_positions(data)
    finally:
        builder_module._COMPILED = original


def forget() -> None:
    """Empty the memos, so that each example starts from the same state."""
    converter_module._uuids.clear()
    converter_module._decimals.clear()
    builder_module._INSTRUMENTS.clear()


@pytest.fixture(autouse=True)
def fresh_memos() -> Iterator[None]:
    forget()
    yield
    forget()


def wire(account: str = ACCOUNT, instrument: str = INSTRUMENT, isin: Any = "US0378331005",
         quantity: Any = "10", available: Any = None, locked: Any = "0",
         pending: Any = "0") -> WirePosition:
    return WirePosition(account, WireInstrument(instrument, isin), quantity,
                        quantity if available is None else available, locked, pending)


def test_the_extension_is_built_where_it_is_required() -> None:
    # CI sets this (noxfile.py): there, a build that silently fell back would fail here.
    if os.environ.get("UPVEST_ASYNC_REQUIRE_EXTENSIONS"):
        assert COMPILED is not None
    page = [wire(), wire(instrument=str(uuid.UUID(int=7)), quantity="-1.5", locked="2")]
    assert_same_objects(compiled(page), python(page))  # type: ignore[arg-type]


# Strings only (msgspec gives nothing else), many near the canonical forms.
texts = st.one_of(
    st.sampled_from(["\ud800", "\u0661", "\uff11", "1\u00a0", "é", "0" * 64, "-" * 2, "."]),
    st.text(alphabet="0123456789-.abcdefABCDEF", max_size=40),
)
wire_uuids = uuids.filter(lambda value: type(value) is str) | texts | st.sampled_from(
    [str(uuid.UUID(int=n * 104729)) for n in range(1, 4)])
wire_decimals = decimals.filter(lambda value: type(value) is str) | texts | st.sampled_from(
    EDGE_DECIMALS)


@st.composite
def wire_positions(draw: st.DrawFn) -> WirePosition:
    quantity = draw(wire_decimals)
    return wire(
        account=draw(st.sampled_from([ACCOUNT]) | wire_uuids),
        instrument=draw(wire_uuids),
        isin=draw(isins.filter(lambda value: value is None or type(value) is str)),
        quantity=quantity,
        available=draw(st.just(quantity) | wire_decimals),
        locked=draw(wire_decimals), pending=draw(wire_decimals),
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(wire_positions(), max_size=6), st.booleans())
def test_both_builders_refuse_the_same_lists_and_build_the_same_objects(
    data: list[WirePosition], compiled_first: bool
) -> None:
    forget()
    if compiled_first:
        fast = compiled(data)
        forget()
        reference = python(data)
    else:
        reference = python(data)
        forget()
        fast = compiled(data)
    assert (fast is None) == (reference is None)
    if reference is not None:
        assert fast is not None
        assert_same_objects(fast, reference)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(wire_positions(), max_size=4), min_size=2, max_size=4))
def test_pages_after_pages_agree_whatever_the_memos_hold(pages: list[list[WirePosition]]) -> None:
    # The memos are kept from page to page (as in an export), each builder with its own.
    forget()
    references = [python(page) for page in pages]
    forget()
    for page, reference in zip(pages, references, strict=True):
        fast = compiled(page)
        assert (fast is None) == (reference is None)
        if reference is not None:
            assert fast is not None
            assert_same_objects(fast, reference)


def test_values_met_first_by_the_converter_are_reused_with_its_values() -> None:
    # The converter memoises any valid string (".5", an upper-case uuid): a hit is valid.
    converter_module.structure(
        {"account_id": ACCOUNT.upper(), "instrument": {"uuid": INSTRUMENT},
         "quantity": ".5", "available_for_trading": ".5", "locked_for_trading": "0",
         "pending_settlement": "0"}, Position)
    page = [wire(account=ACCOUNT.upper(), quantity=".5")]
    fast = compiled(page)
    assert fast is not None and fast[0].quantity == Decimal("0.5")
    assert fast[0].account_id == uuid.UUID(ACCOUNT)


@pytest.mark.parametrize("limits", [(1, 0), (2, 1), (3, 2)])
def test_tiny_memo_limits_are_emptied_and_refilled_with_the_same_results(
    limits: tuple[int, int]
) -> None:
    assert COMPILED is not None
    config = list(COMPILED[1])
    config[10:12] = limits  # memo_limit, decimal_limit
    page = [wire(instrument=str(uuid.UUID(int=n % 5)), account=str(uuid.UUID(int=n % 3 + 9)),
                 quantity=str(n % 4), locked=str(n % 7)) for n in range(40)]
    fast = compiled(page, tuple(config))
    assert fast is not None
    assert len(converter_module._uuids) <= limits[0]
    assert len(builder_module._INSTRUMENTS) <= limits[0]
    assert len(converter_module._decimals) <= limits[1]
    forget()
    assert_same_objects(fast, python(page))  # type: ignore[arg-type]


@pytest.mark.parametrize("row", [
    "a string", None, 5, {"account_id": ACCOUNT},
    wire(account=5), wire(instrument=None), wire(isin=5), wire(quantity=Decimal("1")),
    wire(available=10), wire(locked=b"0"), wire(pending=["0"]),
    WirePosition(ACCOUNT, "not an instrument", "1", "1", "0", "0"),  # type: ignore[arg-type]
    wire(account="\ud800"), wire(quantity="\udc00"), wire(instrument="c5161455-4d27-4781-bc74-"
                                                                    "f05532e49a7\udfff"),
    wire(quantity="\u0661"), wire(account=ACCOUNT.upper()), wire(quantity=".5"),
    wire(quantity="1."), wire(quantity="9" * 64), wire(locked="0." + "1" * 28),
])
def test_hostile_rows_are_refused_and_the_general_path_decides(row: Any) -> None:
    class Text(str):
        pass

    for page in ([row], [wire(), row], [wire(), wire(quantity=Text("1")), row]):
        assert compiled(page) is None
    assert compiled([wire(account=Text(ACCOUNT))]) is None
    # (the rows that are WirePositions: the whole page path still agrees, by the JSON path)
    assert builder_module.structure_positions([wire()]) == python([wire()])


def test_a_bad_config_or_argument_is_a_type_error_not_a_crash() -> None:
    assert COMPILED is not None
    build, config = COMPILED
    for args in [([wire()], ()), ([wire()], config[:-1]), ((wire(),), config),
                 ([wire()], (*config[:12], (), *config[13:])),
                 ([wire()], (*config[:2], 5, *config[3:])),
                 ([wire()], (*config[:12], (1,) * 6, *config[13:]))]:
        with pytest.raises(TypeError):
            build(*args)
    with pytest.raises(TypeError):
        build()


def test_no_reference_is_leaked_or_lost_on_either_outcome() -> None:
    zero = Decimal("0")
    converter_module._decimals["0"] = zero
    good = [wire(quantity=str(n % 3), instrument=str(uuid.UUID(int=n % 4))) for n in range(50)]
    bad = [*good, wire(quantity="1e5")]
    compiled(good), compiled(bad)  # fill the memos first: their entries are meant to stay
    watched: list[Any] = [zero, WirePosition, Position, uuid.UUID, Decimal,
                          uuid.SafeUUID.unknown, *good, *(row.instrument for row in good),
                          *(row.quantity for row in good), good[0].account_id,
                          *builder_module._INSTRUMENTS.values(),
                          *converter_module._uuids.values()]
    gc.collect()
    before = [sys.getrefcount(item) for item in watched]
    for _ in range(20):
        assert compiled(good) is not None
        assert compiled(bad) is None
    gc.collect()
    assert [sys.getrefcount(item) for item in watched] == before


def test_memory_is_flat_over_many_pages() -> None:
    # Memos of one entry: every uuid, instrument and decimal is made anew on every page.
    assert COMPILED is not None
    config = (*COMPILED[1][:10], 1, 0, *COMPILED[1][12:])
    page = [wire(quantity=f"{n}.25", available=f"{n}.5", account=str(uuid.UUID(int=n % 2)),
                 instrument=str(uuid.UUID(int=n))) for n in range(1000)]

    def compiled(page: list[WirePosition]) -> None:
        assert build(page, config) is not None

    build = COMPILED[0]
    for _ in range(3):
        compiled(page)
    gc.collect()
    tracemalloc.start()
    try:
        for _ in range(5):
            compiled(page)
        gc.collect()
        first = tracemalloc.get_traced_memory()[0]
        for _ in range(50):
            compiled(page)
        gc.collect()
        growth = tracemalloc.get_traced_memory()[0] - first
    finally:
        tracemalloc.stop()
    assert growth < 64 * 1024, growth  # 50 pages of 1,000 positions: a leak would be MiBs


def test_positions_built_in_c_behave_as_attrs_frozen_instances() -> None:
    built = compiled([wire(isin=None), wire(quantity="-0.000", locked="7")])
    assert built is not None
    for item in built:
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            item.quantity = Decimal(1)  # type: ignore[misc]
        assert pickle.loads(pickle.dumps(item)) == item
        assert copy.deepcopy(item) == item and copy.copy(item) == item
        assert attrs.evolve(item, quantity=Decimal(2)).quantity == Decimal(2)
        assert attrs.asdict(item)["instrument"]["isin"] == item.instrument.isin
        assert gc.is_tracked(item)  # as any instance of the class
        for name in QUANTITIES:
            assert type(getattr(item, name)) is Decimal
    assert str(built[1].quantity) == "-0.000" and built[0].instrument.isin is None


def test_the_extension_can_be_turned_off() -> None:
    code = ("from upvest_async.pagination import positions as p;"
            "print(p._COMPILED is None)")
    env = {**os.environ, "UPVEST_ASYNC_NO_EXTENSIONS": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True).stdout
    assert out.strip() == "True"
