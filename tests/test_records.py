"""Validated records (what the export writes) against the typed ``Position`` path: the same
acceptance, the same errors with the same field paths, and the bytes written."""

from __future__ import annotations

import csv
import io
import json
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.clients import client_for
from support.fixtures import EXAMPLES
from support.positions import ACCOUNT, INSTRUMENT, QUANTITIES, position

from upvest_async import ResponseValidationError
from upvest_async.converter import structure
from upvest_async.json_body import parse_json
from upvest_async.models import Position
from upvest_async.pagination import parse_page
from upvest_async.records import (
    PositionRecords,
    position_records,
    render_csv,
    render_jsonl,
)

SEED_POSITIONS = [
    position
    for example in EXAMPLES if example["endpoint"] in {"E16", "E17"}
    for position in (example["body"]["data"] if example["endpoint"] == "E16"
                     else [example["body"]])
]
def outcome(decode: Any, data: list[Any]) -> tuple[Any, tuple[str, str | None] | None]:
    try:
        return decode(data), None
    except ResponseValidationError as exc:
        return None, (str(exc), exc.path)


def typed(data: list[Any]) -> list[Position]:
    positions: list[Position] = structure(data, list[Position])
    return positions


def fast(data: list[Any]) -> PositionRecords:
    return position_records(data)


def canonical_text(item: dict[str, Any]) -> bool:
    """Whether the typed model writes this (valid) item's strings back unchanged."""
    texts = [item["account_id"], item["instrument"]["uuid"]]
    if any(str(uuid.UUID(text)) != text for text in texts):
        return False
    return all(format(Decimal(item[name]), "f") == item[name] for name in QUANTITIES)


def assert_agree(data: list[Any]) -> None:
    positions, typed_error = outcome(typed, data)
    records, fast_error = outcome(fast, data)
    assert fast_error == typed_error
    if typed_error is not None:
        return
    assert records == data  # the API's objects themselves, not rebuilt
    for record, model in zip(records, positions, strict=True):
        assert uuid.UUID(record["account_id"]) == model.account_id
        assert uuid.UUID(record["instrument"]["uuid"]) == model.instrument.uuid
        assert record["instrument"].get("isin") == model.instrument.isin
        for name in QUANTITIES:
            assert Decimal(record[name]) == getattr(model, name)
    # Written: the API's strings, in the model's shape, through either renderer.
    # JSONL lines end at "\n" only: an isin may hold U+2028, which str.splitlines() splits at
    text = render_jsonl(records)
    assert text == "" or text.endswith("\n")
    lines = text.split("\n")[:-1]
    rows = list(csv.reader(io.StringIO(render_csv(records), newline="")))
    assert len(lines) == len(rows) == len(data)
    for line, row, item in zip(lines, rows, data, strict=True):
        written = json.loads(line)
        instrument = {"uuid": item["instrument"]["uuid"]}
        if item["instrument"].get("isin") is not None:
            instrument["isin"] = item["instrument"]["isin"]
        assert written == {"account_id": item["account_id"], "instrument": instrument,
                           **{name: item[name] for name in QUANTITIES}}
        assert list(written) == ["account_id", "instrument", *QUANTITIES]
        assert row == [item["account_id"], item["instrument"]["uuid"],
                       item["instrument"].get("isin") or "", *(item[n] for n in QUANTITIES)]
    if all(canonical_text(item) for item in data):
        assert render_jsonl(records) == render_jsonl(positions)
        assert render_csv(records) == render_csv(positions)
        # and the careful renderers (a list built by hand) give the same bytes as the templates
        assert render_jsonl(list(records)) == render_jsonl(records)
        assert render_csv(list(records)) == render_csv(records)


def test_seed_examples_agree_and_take_the_template() -> None:
    assert len(SEED_POSITIONS) == 5
    assert fast(SEED_POSITIONS).canonical
    assert_agree(SEED_POSITIONS)
    body = json.dumps({"meta": {"offset": 0, "limit": 5, "count": 5, "total_count": 5},
                       "data": SEED_POSITIONS}).encode()
    assert render_jsonl(parse_page(body, Position).items) == render_jsonl(fast(SEED_POSITIONS))


EDGE_DECIMALS = [
    "9" * 63, "-" + "9" * 63, "0." + "0" * 26 + "1", "-" + "9" * 63 + "." + "9" * 27, "-0",
    "0", "1.50", "-12.000", "007", ".5", "-.5", "0.0",
]
BAD_DECIMALS: list[Any] = [
    "9" * 64, "1." + "0" * 28, "", "-", "1e5", " 1", "1 ", "+1", "1.", "--1", "\u0663",
    "NaN", "0x1", "1_0", 1, 1.5, None, True, [], {},
]
decimals = st.one_of(
    st.sampled_from(EDGE_DECIMALS),
    st.from_regex(r"-?[0-9]{0,63}(\.[0-9]{1,27})?", fullmatch=True),
    st.sampled_from(BAD_DECIMALS),
)
uuids = st.one_of(
    st.uuids().map(str),
    st.uuids().map(lambda u: str(u).upper()),
    st.uuids().map(lambda u: u.hex),
    st.uuids().map(lambda u: "{" + str(u) + "}"),
    st.uuids().map(lambda u: "urn:uuid:" + str(u)),
    st.sampled_from(["", "x", ACCOUNT[:-1], ACCOUNT + "0", "\n" + ACCOUNT.replace("-", "")[1:],
                     5, None, [], {}]),
)
isins = st.one_of(
    st.just("US0378331005"), st.none(), st.text(max_size=14),
    st.sampled_from(['A"B', "A,B", "A\\B", "A\nB", "\u00e9\u2028", "\ud800", 5, [], {}]),
)


@st.composite
def positions(draw: st.DrawFn) -> Any:
    if draw(st.integers(0, 30)) == 0:
        return draw(st.sampled_from([None, [], "position", 5, {}]))
    instrument: Any = {"uuid": draw(uuids)}
    choice = draw(st.integers(0, 4))
    if choice < 3:
        instrument["isin"] = draw(isins)
    elif choice == 3:
        instrument = draw(st.sampled_from([None, [], "instrument", {}]))
    item = position(account_id=draw(uuids), instrument=instrument,
                    **{name: draw(decimals) for name in QUANTITIES})
    if draw(st.booleans()):
        item["extra"] = draw(st.sampled_from([1, "x", None]))
    if draw(st.integers(0, 10)) == 0:
        del item[draw(st.sampled_from([*QUANTITIES, "account_id", "instrument"]))]
    return item


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(positions(), max_size=4))
def test_records_and_typed_positions_agree(data: list[Any]) -> None:
    assert_agree(data)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.uuids(), st.sampled_from(EDGE_DECIMALS), st.booleans()),
                min_size=1, max_size=5))
def test_valid_canonical_edge_values_take_the_template_and_write_the_same_bytes(
    rows: list[tuple[uuid.UUID, str, bool]],
) -> None:
    data = [
        position(instrument={"uuid": str(u)} if no_isin else {"uuid": str(u), "isin": None},
                 quantity=value, available_for_trading=value)
        for u, value, no_isin in rows
    ]
    assert fast(data).canonical
    assert_agree(data)


@pytest.mark.parametrize("bad", BAD_DECIMALS, ids=repr)
@pytest.mark.parametrize("field", QUANTITIES)
def test_a_malformed_quantity_is_the_same_error_at_the_same_path(field: str, bad: Any) -> None:
    data = [position(), position(**{field: bad})]
    _, error = outcome(fast, data)
    assert error is not None and error[1] == f"$[1].{field}"
    assert_agree(data)


@pytest.mark.parametrize(("change", "path"), [
    ({"account_id": "not-a-uuid"}, "$[0].account_id"),
    ({"instrument": {"uuid": INSTRUMENT, "isin": 5}}, "$[0].instrument.isin"),
    ({"instrument": {"isin": "US0378331005"}}, "$[0].instrument.uuid"),
    ({"instrument": "US0378331005"}, "$[0].instrument.uuid"),
])
def test_malformed_fields_name_their_path(change: dict[str, Any], path: str) -> None:
    _, error = outcome(fast, [position(**change)])
    assert error is not None and error[1] == path
    assert_agree([position(**change)])


def test_values_the_typed_model_accepts_in_other_forms_are_written_as_sent() -> None:
    data = [position(account_id=ACCOUNT.upper(), quantity="007", available_for_trading=".5",
                     instrument={"uuid": INSTRUMENT.upper(), "isin": 'A"B,C'}, extra=1)]
    records = fast(data)
    assert not records.canonical
    line = json.loads(render_jsonl(records))
    assert line["account_id"] == ACCOUNT.upper() and line["quantity"] == "007"
    assert line["instrument"] == {"uuid": INSTRUMENT.upper(), "isin": 'A"B,C'}
    # (a uuid in braces is no other form: it is refused, upvest_async.ids)
    with pytest.raises(ResponseValidationError, match=r"\$\[0\]\.instrument\.uuid"):
        fast([position(instrument={"uuid": "{" + INSTRUMENT + "}"})])
    assert "extra" not in line
    assert next(csv.reader(io.StringIO(render_csv(records))))[2] == 'A"B,C'


def test_a_lone_surrogate_isin_is_written_escaped() -> None:
    records = fast(parse_json(json.dumps({"d": [position(
        instrument={"uuid": INSTRUMENT, "isin": "\ud800"})]}).encode(), what="page")["d"])
    assert json.loads(render_jsonl(records))["instrument"]["isin"] == "\ud800"


def test_a_lone_surrogate_escape_decodes_as_json_loads_decodes_it() -> None:
    body = b'{"x": "\\ud800"}'
    assert repr(parse_json(body, what="page")) == repr(json.loads(body))


@pytest.mark.parametrize("body", [b'{"x": NaN}', '{"x": 1}'.encode("utf-16"), b'[1e999]'])
def test_page_bodies_are_strict_json(body: bytes) -> None:
    with pytest.raises(ResponseValidationError, match="not JSON"):
        parse_json(body, what="page")


@pytest.mark.parametrize("body", [b"", b"{", b"[" * 100_000, b"\xff", b"{} {}"])
def test_bodies_that_are_not_json_are_a_response_validation_error(body: bytes) -> None:
    with pytest.raises(ResponseValidationError, match="not JSON"):
        parse_json(body, what="page", request_id="req-1")


async def test_the_export_job_writes_what_the_typed_path_writes_and_fails_closed(
    tmp_path: Path,
) -> None:
    from upvest_async.jobs.export import export_positions, render
    from upvest_async.sandbox import Sandbox

    async with Sandbox(accounts=3, positions_per_account=1200, seed=5) as sandbox:
        good, bad, other = sandbox.tenant.account_ids
        broken = [dict(p) for p in sandbox.tenant.positions(bad)]
        broken[1100] = {**broken[1100], "quantity": "1e5"}  # on the account's second page
        sandbox.tenant.set_positions(bad, broken)
        async with client_for(sandbox) as client:
            for fmt in ("jsonl", "csv"):
                out = tmp_path / f"positions.{fmt}"
                summary = await export_positions(client, [good, bad, other], out, fmt=fmt,
                                                 concurrency=4)
                assert [f.account_id for f in summary.failed] == [bad]
                assert "$[100].quantity" in summary.failed[0].error
                typed_text = "".join(
                    render(typed(sandbox.tenant.positions(account)), fmt)  # type: ignore[arg-type]
                    for account in (good, other)
                )
                assert not out.exists()  # failed accounts: the work stays in <out>.partial
                written = out.with_name(out.name + ".partial").read_bytes().decode("utf-8")
                assert written.removeprefix(
                    "account_id,instrument.uuid,instrument.isin,quantity,available_for_trading,"
                    "locked_for_trading,pending_settlement\r\n") == typed_text
                assert bad not in written and "\"1e5\"" not in written


def test_an_isin_with_a_line_separator_stays_on_its_json_line() -> None:
    data = [position(instrument={"uuid": INSTRUMENT, "isin": "\u00e9\u2028"}), position()]
    assert_agree(data)
    text = render_jsonl(fast(data))
    assert text.count("\n") == 2
    assert json.loads(text.split("\n")[0])["instrument"]["isin"] == "\u00e9\u2028"
