"""Positions as the API sends them (dicts of its JSON): one example to vary, the edges of the
decimal pattern, the values a decimal field refuses, and a hypothesis strategy of valid
positions (any canonical uuid in either case, any decimal the pattern admits)."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

ACCOUNT = "c5161455-4d27-4781-bc74-f05532e49a77"
INSTRUMENT = "ccb86937-8a39-4160-8d33-85bf9e902321"
QUANTITIES = ("quantity", "available_for_trading", "locked_for_trading", "pending_settlement")

#: The edges of ``^-?[0-9]{0,63}(\.[0-9]{1,27})?$``, and forms it admits that look unusual.
EDGE_DECIMALS = [
    "9" * 63, "-" + "9" * 63, "0." + "0" * 26 + "1", "-0." + "0" * 26 + "1",
    "9" * 63 + "." + "9" * 27, "-" + "9" * 63 + "." + "9" * 27, "-0", "0", "1.50", "-12.000",
    "007", ".5", "-.5", "0.0", "1" + "0" * 62,
]
#: Refused: beyond the pattern, other notations, JSON numbers and other types.
BAD_DECIMALS: list[Any] = [
    "9" * 64, "-" + "9" * 64, "1." + "0" * 28, "", "-", ".", "-.", "1e5", "1E5", " 1", "1 ",
    "+1", "1.", "--1", "1..2", "\u0663", "\uff11", "NaN", "Infinity", "0x1", "1_0", "1,5",
    1, 0, -1, 1.5, 10**70, None, True, [], {}, ["1"],
]


def position(**changes: Any) -> dict[str, Any]:
    item: dict[str, Any] = {
        "account_id": ACCOUNT,
        "instrument": {"uuid": INSTRUMENT, "isin": "US0378331005"},
        "quantity": "10.4", "available_for_trading": "5.4", "locked_for_trading": "5",
        "pending_settlement": "0",
    }
    item.update(changes)
    return item


decimal_texts = st.one_of(
    st.sampled_from(EDGE_DECIMALS),
    st.from_regex(r"-?[0-9]{0,63}(\.[0-9]{1,27})?", fullmatch=True).filter(
        lambda text: text not in ("", "-")),
)
uuid_texts = st.one_of(st.uuids().map(str), st.uuids().map(lambda u: str(u).upper()))
isins = st.one_of(st.none(), st.text(max_size=14))


@st.composite
def valid_positions(draw: st.DrawFn) -> dict[str, Any]:
    instrument: dict[str, Any] = {"uuid": draw(uuid_texts)}
    if draw(st.booleans()):
        instrument["isin"] = draw(isins)
    quantity = draw(decimal_texts)
    return {
        "account_id": draw(st.sampled_from([ACCOUNT, ACCOUNT.upper()]) | uuid_texts),
        "instrument": instrument,
        "quantity": quantity,
        "available_for_trading": draw(st.just(quantity) | decimal_texts),
        "locked_for_trading": draw(st.just("0") | decimal_texts),
        "pending_settlement": draw(st.just("0") | decimal_texts),
    }
