"""What the positions mirror's tests share: the table's rows and an export's, in one shape,
and ``POSITION.UPDATED`` events as Upvest sends them."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from upvest_async import UpvestClient
from upvest_async.storage import Database, positions_table

#: ``(account_id, instrument_uuid)`` -> ``(isin, quantity, available_for_trading,
#: locked_for_trading, pending_settlement)``.
Key = tuple[str, str]
Values = tuple[str | None, Decimal, Decimal, Decimal, Decimal]
Rows = dict[Key, Values]

WEBHOOK_ID = "9df39835-be87-4243-9018-f2500b39cee6"


async def mirrored(database: Database) -> Rows:
    """Every row of ``upvest_positions``."""
    table = positions_table
    async with database.transaction() as tx:
        result = await tx.execute(sa.select(
            table.c.account_id, table.c.instrument_uuid, table.c.isin, table.c.quantity,
            table.c.available_for_trading, table.c.locked_for_trading,
            table.c.pending_settlement))
        return {(str(row[0]), str(row[1])): (row[2], *row[3:]) for row in result}


async def exported(client: UpvestClient, accounts: Iterable[str]) -> Rows:
    """A fresh export of ``accounts``, in the table's shape."""
    return {
        (str(p.account_id), str(p.instrument.uuid)): (
            p.instrument.isin, p.quantity, p.available_for_trading, p.locked_for_trading,
            p.pending_settlement)
        async for p in client.positions.export(list(accounts))
    }


def stamp(moment: datetime) -> str:
    """``created_at`` as Upvest writes it (UTC, milliseconds, ``Z``)."""
    text = moment.astimezone(UTC).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


def position_event(key: Key, quantity: str, created_at: datetime, *,
                   isin: str | None = "US0378331005", event_id: str | None = None,
                   locked: str = "0", pending: str = "0") -> dict[str, Any]:
    """A ``POSITION.UPDATED`` event of the position ``key``: ``quantity`` (also available for
    trading), ``locked`` and ``pending``."""
    instrument: dict[str, Any] = {"uuid": key[1]}
    if isin is not None:
        instrument["isin"] = isin
    return {
        "id": event_id or str(uuid.uuid4()), "type": "POSITION.UPDATED",
        "created_at": stamp(created_at), "webhook_id": WEBHOOK_ID,
        "object": {"account_id": key[0], "instrument": instrument, "quantity": quantity,
                   "available_for_trading": quantity, "locked_for_trading": locked,
                   "pending_settlement": pending},
    }


def values_of(event: dict[str, Any]) -> Values:
    """The row an event writes."""
    obj = event["object"]
    return (obj["instrument"].get("isin"), Decimal(obj["quantity"]),
            Decimal(obj["available_for_trading"]), Decimal(obj["locked_for_trading"]),
            Decimal(obj["pending_settlement"]))


#: The command line as a user runs it (the installed package's ``python -m upvest_async``).
CLI = [sys.executable, "-m", "upvest_async"]


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("UPVEST_API_") and not k.startswith("PG")}
    return {**env, "COLUMNS": "400", **extra}
