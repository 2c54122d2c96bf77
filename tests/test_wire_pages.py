"""Positions pages decoded by msgspec (``upvest_async.pagination.wire``) against the JSON path
they replace: for every body, with the compiled builder and without it, the same page (meta
and typed positions) or the same error with the same message and field path. Hypothesis
builds bodies of the API's shape, with extra keys, missing and mistyped fields, odd escapes,
and bytes flipped, inserted or cut."""

from __future__ import annotations

import gc
import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from upvest_async import ResponseValidationError
from upvest_async.models import Position
from upvest_async.pagination import pages as pages_module
from upvest_async.pagination import parse_page
from upvest_async.pagination import positions as positions_module
from upvest_async.pagination.wire import WirePosition, decode_positions_page

from .test_records import QUANTITIES, SEED_POSITIONS, decimals, position, positions, uuids
from .test_typed_fast_path import assert_same_objects, canonical_positions

META = {"offset": 0, "limit": 1000, "count": 1, "total_count": 1}


@pytest.fixture(scope="module", autouse=True, params=["compiled", "python"])
def builder(request: pytest.FixtureRequest) -> Iterator[str]:
    """Every test twice: wire positions built by the compiled builder (``_build.c``), and by
    the Python one (as without the extension). The JSON path is the reference for both."""
    if request.param == "compiled" and positions_module._COMPILED is None:
        pytest.skip("the extension is not built here")
    with pytest.MonkeyPatch.context() as patch:
        if request.param == "python":
            patch.setattr(positions_module, "_COMPILED", None)
        yield request.param


def body_of(data: Any, meta: Any = None, **extra: Any) -> bytes:
    document = {"meta": META if meta is None else meta, "data": data, **extra}
    return json.dumps(document).encode()


def outcome(body: bytes, *, wire: bool) -> tuple[Any, Any]:
    original = pages_module.decode_positions_page
    if not wire:
        pages_module.decode_positions_page = lambda body: None  # type: ignore[assignment]
    try:
        page = parse_page(body, Position, request_id="req-1")
        return page, None
    except ResponseValidationError as exc:
        return None, (type(exc), str(exc), exc.path, exc.request_id)
    finally:
        pages_module.decode_positions_page = original


def assert_agree(body: bytes) -> None:
    reference, reference_error = outcome(body, wire=False)
    page, error = outcome(body, wire=True)
    assert error == reference_error
    if reference is not None:
        assert page.meta == reference.meta
        assert_same_objects(page.items, reference.items)


def test_a_page_of_the_seed_shape_is_decoded_by_msgspec_to_the_same_page() -> None:
    body = body_of(SEED_POSITIONS, {**META, "count": len(SEED_POSITIONS),
                                    "total_count": len(SEED_POSITIONS)})
    wire = decode_positions_page(body)
    assert wire is not None
    raw_meta, items = wire
    assert json.loads(raw_meta)["count"] == len(SEED_POSITIONS)
    assert [type(item) for item in items] == [WirePosition] * len(SEED_POSITIONS)
    assert not any(map(gc.is_tracked, items))  # nothing for the cyclic GC to scan
    assert_agree(body)


@pytest.mark.parametrize("body", [
    body_of([position()], links={"next": None}),                      # another top-level key
    body_of([{**position(), "currency": "EUR"}]),                      # another field
    body_of([position(instrument={"uuid": position()["instrument"]["uuid"], "isin": "X",
                                  "name": "Apple"})]),
    body_of([position(quantity=10)]),                                  # a number
    body_of([position(instrument={"isin": "US0378331005"})]),           # no uuid
    body_of([{k: v for k, v in position().items() if k != "quantity"}]),
    body_of([position(instrument=None)]),
    body_of({"not": "a list"}),
    json.dumps({"data": [position()]}).encode(),                       # no meta
    json.dumps([position()]).encode(),                                 # not an object
    b"\xef\xbb\xbf" + body_of([position()]),                           # a byte order mark
    body_of([position(instrument={"uuid": position()["instrument"]["uuid"],
                                  "isin": "\udc00"})]),                # a lone surrogate
    body_of([position()]).replace(b'"US0378331005"', b'"US03\xff78331005"'),  # not UTF-8
    body_of([position()]) + b" x",                                     # trailing bytes
    body_of([position()], {**META, "offset": 1e999}).replace(b"Infinity", b"1e999"),
    body_of([position()], {"offset": 0, "limit": 1000, "count": True, "total_count": 1}),
    body_of([position()], {**META, "sort": ["account_id"]}),          # a list in meta
    body_of([position()], {**META, "links": {"next": None}}),          # an object in meta
])
def test_any_other_body_is_left_to_the_json_path_with_its_own_outcome(body: bytes) -> None:
    wire = decode_positions_page(body)
    assert wire is None or pages_module._flat_meta(wire[0], None) is None
    assert_agree(body)


@pytest.mark.parametrize("depth", [100, 1_000, 100_000])
@pytest.mark.parametrize("where", ["meta", "isin", "extra"])
def test_deep_nesting_anywhere_is_the_json_paths_typed_error(depth: int, where: str) -> None:
    nested = b"[" * depth + b"]" * depth
    bodies = {
        "meta": b'{"meta":' + nested + b',"data":[]}',
        "isin": body_of([position()]).replace(b'"US0378331005"', nested),
        "extra": body_of([position()], links=None).replace(b"null", nested),
    }
    body = bodies[where]
    decode_positions_page(body)  # never raises (msgspec raised RecursionError from 1,000)
    assert_agree(body)
    page, error = outcome(body, wire=True)
    if where == "extra" and depth <= 1024:  # an ignored key, nested within orjson's limit
        assert error is None and len(page.items) == 1
    else:
        assert error is not None and error[0] is ResponseValidationError


def test_duplicate_keys_and_escaped_names_decode_as_json_does() -> None:
    item = json.dumps(position())[:-1] + ', "quantity": "7", "\\u0071uantity": "8"}'
    body = ('{"meta": ' + json.dumps(META) + ', "data": [' + item + "]}").encode()
    assert decode_positions_page(body) is not None
    assert_agree(body)
    page, _ = outcome(body, wire=True)
    assert str(page.items[0].quantity) == "8"


def test_a_malformed_value_is_the_typed_paths_error_at_its_path() -> None:
    body = body_of([position(), position(locked_for_trading="1e5")],
                   {**META, "count": 2, "total_count": 2})
    page, error = outcome(body, wire=True)
    assert page is None and error[2] == "$[1].locked_for_trading"
    assert_agree(body)


def test_an_empty_page_is_empty() -> None:
    body = body_of([], {**META, "count": 0, "total_count": 0})
    assert_agree(body)
    page, _ = outcome(body, wire=True)
    assert page.items == []


@st.composite
def items(draw: st.DrawFn) -> Any:
    """Mostly positions of the exact API shape (valid, or with one malformed value), some of
    any shape at all (extra fields, missing ones, other types: test_records' strategy)."""
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return draw(positions())
    item: dict[str, Any] = draw(canonical_positions())
    item.pop("extra", None)
    if kind == 1:
        item[draw(st.sampled_from(QUANTITIES))] = draw(decimals)
    elif kind == 2:
        item[draw(st.sampled_from(["account_id", "instrument"]))] = draw(uuids)
    return item


@st.composite
def documents(draw: st.DrawFn) -> bytes:
    data: Any = draw(st.lists(items(), max_size=6)) if draw(st.integers(0, 9)) else draw(
        st.sampled_from([None, {}, "x"]))
    extra = draw(st.sampled_from([{}, {}, {}, {"links": {}}]))
    count = len(data) if isinstance(data, list) else 0
    meta = draw(st.sampled_from([
        {"offset": 0, "limit": 1000, "count": count, "total_count": count},
        {"offset": 0, "limit": 1000, "count": count, "total_count": count},
        {"offset": 0, "limit": 1000, "count": count, "total_count": count},
        {"offset": 0, "limit": 1000, "count": count, "total_count": count, "sort": "x"},
        {"offset": "0", "limit": 1000, "count": count, "total_count": count},
    ]))
    body = json.dumps({"meta": meta, "data": data, **extra},
                      ensure_ascii=draw(st.booleans())).encode("utf-8", "surrogatepass")
    edit = draw(st.sampled_from(["none"] * 6 + ["flip", "insert", "cut"]))
    if edit != "none" and body:
        at = draw(st.integers(0, len(body) - 1))
        byte = bytes([draw(st.integers(0, 255))])
        body = {"flip": body[:at] + byte + body[at + 1:], "insert": body[:at] + byte + body[at:],
                "cut": body[:at]}[edit]
    return body


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents())
def test_msgspec_and_the_json_path_agree_on_any_body(body: bytes) -> None:
    assert_agree(body)
