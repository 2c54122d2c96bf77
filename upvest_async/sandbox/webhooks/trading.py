"""How a filled portfolio order changes an account's positions in the sandbox.

A deliberate simplification of Upvest's trading (documented so tests can predict it):

- every instrument has a fixed price in EUR, deterministic from its uuid (:func:`price`,
  10.00 to 499.99), and every order fills completely at that price, whatever its currency;
- the order's allocation (its ``allocation_id``, with the allocation's items at fill time)
  names the instruments; each gets the share ``weight / sum(weights)`` of the order. An ISIN
  the tenant knows maps to its instrument; an unknown ISIN becomes a new instrument (uuid5 of
  the ISIN), an unknown UPVEST id one without ISIN;
- ``BUY``: ``cash_amount`` buys ``share * cash_amount / price`` of each instrument, rounded
  down to 9 decimals; a new instrument becomes a new position;
- ``SELL``: sells the same quantities, at most what is ``available_for_trading``; an
  instrument not held is skipped;
- ``LIQUIDATION``: sells everything available of the allocation's instruments;
- ``REBALANCING``: the value available in the allocation's instruments is redistributed to
  their target shares (value-neutral at the fixed prices; nothing held, nothing changes);
- ``quantity`` and ``available_for_trading`` move together; ``locked_for_trading`` and
  ``pending_settlement`` are left alone. Positions outside the allocation are never touched.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping, Sequence
from decimal import ROUND_DOWN, Decimal, InvalidOperation
from typing import Any

__all__ = ["QUANTUM", "format_quantity", "instrument_for", "order_changes", "price"]

#: Quantities are rounded down to 9 decimals (the tenant's finest).
QUANTUM = Decimal("1e-9")
_ISIN_NAMESPACE = uuid.UUID("6f1c1f0e-6a8c-4b1e-9a59-5a0f0c2f9d11")


def price(instrument_uuid: str) -> Decimal:
    """The sandbox's fixed price of an instrument, EUR, 10.00 to 499.99."""
    number = int.from_bytes(hashlib.sha256(instrument_uuid.encode()).digest()[:8])
    return Decimal(1000 + number % 49000).scaleb(-2)


def format_quantity(value: Decimal) -> str:
    """A quantity as the API writes it: plain decimal notation, no trailing zeros."""
    return format(value.normalize(), "f") if value else "0"


def instrument_for(item: Mapping[str, Any], known: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
    """The instrument (``uuid``, ``isin``?) of an S7 allocation item; ``known`` maps ISINs and
    uuids to the tenant's instruments."""
    ident = str(item["instrument_id"])
    if item.get("instrument_id_type", "ISIN") == "UPVEST":
        canonical = str(uuid.UUID(ident))
        return dict(known.get(canonical, {"uuid": canonical}))
    found = known.get(ident)
    if found is not None:
        return dict(found)
    return {"uuid": str(uuid.uuid5(_ISIN_NAMESPACE, ident)), "isin": ident}


def _decimal(value: object) -> Decimal:
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return Decimal(0)


def _with_available(position: dict[str, Any], available: Decimal) -> dict[str, Any]:
    locked = _decimal(position["locked_for_trading"])
    pending = _decimal(position["pending_settlement"])
    return {**position, "instrument": dict(position["instrument"]),
            "quantity": format_quantity(available + locked + pending),
            "available_for_trading": format_quantity(available)}


def _new_position(account_id: str, instrument: dict[str, Any]) -> dict[str, Any]:
    return {"account_id": account_id, "instrument": instrument, "quantity": "0",
            "available_for_trading": "0", "locked_for_trading": "0", "pending_settlement": "0"}


def order_changes(
    order: Mapping[str, Any],
    items: Sequence[Mapping[str, Any]],
    held: Mapping[str, dict[str, Any]],
    known: Mapping[str, dict[str, Any]],
) -> list[dict[str, Any]]:
    """The positions a fill of ``order`` changes, after the change, in allocation order.

    ``items``: the S7 items of the order's allocation; ``held``: the account's positions by
    instrument uuid; ``known``: the tenant's instruments by ISIN and uuid. Unchanged positions
    are not returned.
    """
    targets: list[tuple[dict[str, Any], Decimal]] = []
    for item in items:
        instrument = instrument_for(item, known)
        if all(t[0]["uuid"] != instrument["uuid"] for t in targets):
            targets.append((instrument, _decimal(item["weight"])))
    total_weight = sum((w for _, w in targets), Decimal(0))
    if not targets or total_weight <= 0:
        return []
    kind = order.get("type")
    account_id = str(order["account_id"])
    current = {
        i["uuid"]: held.get(i["uuid"]) or _new_position(account_id, i) for i, _ in targets
    }
    available = {k: _decimal(p["available_for_trading"]) for k, p in current.items()}
    wanted: dict[str, Decimal] = {}
    cash = _decimal(order.get("cash_amount", "0"))
    value = Decimal(0)
    if kind == "REBALANCING":
        value = sum((available[i["uuid"]] * price(i["uuid"]) for i, _ in targets), Decimal(0))
    for instrument, weight in targets:
        key = instrument["uuid"]
        share = weight / total_weight
        if kind == "BUY":
            wanted[key] = available[key] + (cash * share / price(key)).quantize(QUANTUM, ROUND_DOWN)
        elif kind == "SELL":
            if key not in held:
                continue
            sold = (cash * share / price(key)).quantize(QUANTUM, ROUND_DOWN)
            wanted[key] = max(available[key] - sold, Decimal(0))
        elif kind == "LIQUIDATION":
            if key in held:
                wanted[key] = Decimal(0)
        elif kind == "REBALANCING" and value > 0:
            wanted[key] = (value * share / price(key)).quantize(QUANTUM, ROUND_DOWN)
    return [
        _with_available(current[key], amount) for key, amount in wanted.items()
        if (amount != available[key] if key in held else amount > 0)
    ]
