"""The tables on SQLite and PostgreSQL: created when missing, checked when present (another
shape is a SchemaError naming the table and what differs), exact values both ways."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
import sqlalchemy as sa

from upvest_async import ConfigurationError
from upvest_async.storage import (
    SCHEMA_VERSION,
    SchemaError,
    metadata,
    open_database,
    positions_table,
    schema_version_table,
)

TABLES = {"upvest_positions", "upvest_webhook_events", "upvest_webhook_signatures",
          "upvest_schema_version"}


def row(**changes: object) -> dict[str, object]:
    values: dict[str, object] = {
        "account_id": uuid.UUID("c5161455-4d27-4781-bc74-f05532e49a77"),
        "instrument_uuid": uuid.uuid4(), "isin": "US0378331005",
        "quantity": Decimal("123456789012345678901234.123456789012"),
        "available_for_trading": Decimal("1E+3"), "locked_for_trading": Decimal("-0"),
        "pending_settlement": Decimal("0.000000000001"),
        "as_of": datetime(2026, 12, 1, 11, 0, 0, 5, tzinfo=timezone(timedelta(hours=1))),
    }
    return {**values, **changes}


async def test_tables_are_created_once_and_values_are_exact(database_url: str) -> None:
    async with open_database(database_url) as db:
        async with db.engine.connect() as conn:
            names = await conn.run_sync(lambda c: set(sa.inspect(c).get_table_names()))
            assert names >= TABLES
            assert await conn.scalar(sa.select(schema_version_table.c.version)) == \
                SCHEMA_VERSION
        written = row()
        async with db.transaction() as conn:
            await conn.execute(positions_table.insert(), [written, row(isin=None)])
    # Opened again: checked, not re-created.
    async with open_database(database_url) as db, db.engine.connect() as conn:
        rows = (await conn.execute(sa.select(positions_table).where(
            positions_table.c.instrument_uuid == written["instrument_uuid"]))).mappings()
        got = dict(rows.one())
        assert await conn.scalar(sa.select(sa.func.count()).select_from(
            schema_version_table)) == 1
    assert got["quantity"] == written["quantity"]
    assert str(got["quantity"]) == "123456789012345678901234.123456789012"
    assert str(got["available_for_trading"]) == "1000"  # fixed-point on both databases
    assert str(got["locked_for_trading"]) == "0"
    assert str(got["pending_settlement"]) == "1E-12"  # Decimal's repr; the stored text is exact
    assert isinstance(got["account_id"], uuid.UUID) and got["account_id"] == written["account_id"]
    assert got["as_of"] == written["as_of"] and got["as_of"].tzinfo == UTC


async def test_timestamps_compare_as_instants_in_sql(database_url: str) -> None:
    base = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
    async with open_database(database_url) as db, db.transaction() as conn:
        await conn.execute(positions_table.insert(), [
            row(as_of=base + timedelta(microseconds=i * 700_001)) for i in range(20)])
        cut = (base + timedelta(seconds=7)).astimezone(timezone(timedelta(hours=-5)))
        newer = await conn.scalar(sa.select(sa.func.count()).select_from(positions_table)
                                  .where(positions_table.c.as_of > cut))
    assert newer == sum(1 for i in range(20) if i * 700_001 > 7_000_000)


@pytest.mark.parametrize(("column", "value", "error"), [
    ("quantity", 1.5, TypeError), ("quantity", "1.5", TypeError),
    ("quantity", Decimal("NaN"), ValueError), ("quantity", Decimal("Infinity"), ValueError),
    ("account_id", "c5161455-4d27-4781-bc74-f05532e49a77", TypeError),
    ("as_of", datetime(2026, 1, 1), ValueError), ("as_of", "2026-01-01T00:00:00Z", TypeError),
])
async def test_inexact_values_are_refused_before_anything_is_sent(
    database_url: str, column: str, value: object, error: type[Exception]
) -> None:
    async with open_database(database_url) as db:
        with pytest.raises(sa.exc.StatementError) as caught:
            async with db.transaction() as conn:
                await conn.execute(positions_table.insert(), [row(**{column: value})])
        assert isinstance(caught.value.orig, error)
        async with db.engine.connect() as conn:
            assert await conn.scalar(sa.select(sa.func.count()).select_from(
                positions_table)) == 0


@pytest.mark.parametrize(("ddl", "expected"), [
    ("CREATE TABLE upvest_webhook_events (event_id TEXT PRIMARY KEY, kind TEXT)",
     "table upvest_webhook_events has another schema: missing column(s) created_at, "
     "handled_at, type; unexpected column(s) kind"),
    ("CREATE TABLE upvest_positions (account_id TEXT, instrument_uuid TEXT, isin TEXT, "
     "quantity REAL NOT NULL, available_for_trading TEXT NOT NULL, locked_for_trading TEXT "
     "NOT NULL, pending_settlement TEXT NOT NULL, as_of TEXT NOT NULL, "
     "PRIMARY KEY (account_id, instrument_uuid))",
     "table upvest_positions: column "),
    ("CREATE TABLE upvest_webhook_signatures (key_id TEXT, nonce TEXT PRIMARY KEY, "
     "keep_until TEXT NOT NULL)", "table upvest_webhook_signatures: "),
])
async def test_a_table_of_another_schema_is_a_schema_error(
    database_url: str, ddl: str, expected: str
) -> None:
    async with open_database(database_url) as db, db.transaction() as conn:
        for table in reversed(metadata.sorted_tables):
            await conn.execute(sa.text(f"DROP TABLE {table.name}"))
        await conn.execute(sa.text(ddl))
    with pytest.raises(SchemaError) as caught:
        async with open_database(database_url):
            pass
    assert isinstance(caught.value, ConfigurationError)
    assert str(caught.value).startswith(expected), str(caught.value)


async def test_another_schema_version_is_a_schema_error(database_url: str) -> None:
    async with open_database(database_url) as db, db.transaction() as conn:
        await conn.execute(schema_version_table.update().values(version=SCHEMA_VERSION + 1))
    with pytest.raises(SchemaError, match="upvest_schema_version says version 2"):
        async with open_database(database_url):
            pass


async def test_replicas_starting_together_create_the_tables_once(database_url: str) -> None:
    async def start() -> None:
        async with open_database(database_url):
            pass

    await asyncio.gather(*(start() for _ in range(4)))
    async with open_database(database_url) as db, db.engine.connect() as conn:
        assert await conn.scalar(sa.select(sa.func.count()).select_from(
            schema_version_table)) == 1
