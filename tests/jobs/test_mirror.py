"""The positions mirror (``upvest_async.jobs.mirror``) on real SQLite files and a real
PostgreSQL: a load equals a fresh export of the sandbox, replaces the accounts it covers (and
only them), leaves the table as it was when it fails, and events are applied by the ordering
rule whatever their order (property-based)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.clients import client_for
from support.mirror import Rows, exported, mirrored, position_event
from support.postgres import PostgresCluster, free_port

from upvest_async import APIConnectionError, APIStatusError, UpvestClient
from upvest_async.jobs.mirror import PositionsMirror
from upvest_async.sandbox import Faults, Sandbox
from upvest_async.storage import (
    Database,
    DatabaseUnavailableError,
    open_database,
    positions_table,
)
from upvest_async.webhooks import parse_batch


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    """The database of ``database_url``, open (its tables created)."""
    async with open_database(database_url) as db:
        yield db


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    async with Sandbox(accounts=4, positions_per_account=150, seed=21) as running:
        yield running


@pytest.fixture
async def client(sandbox: Sandbox) -> AsyncIterator[UpvestClient]:
    async with client_for(sandbox, max_retries=0) as opened:
        yield opened


async def test_a_load_equals_a_fresh_export(database: Database, sandbox: Sandbox,
                                             client: UpvestClient) -> None:
    accounts = sandbox.account_ids
    mirror = PositionsMirror(database)
    seen: list[tuple[str, int]] = []
    before = datetime.now(UTC)
    summary = await mirror.load(client, accounts, concurrency=4,
                                on_account=lambda a, n: seen.append((a, n)))
    rows = await mirrored(database)
    assert rows == await exported(client, accounts)
    assert summary.accounts == len(accounts) == len(seen)
    assert summary.positions == len(rows) == sum(n for _, n in seen) == 4 * 150
    assert [a for a, _ in seen] == accounts and summary.deleted == summary.kept == 0
    assert summary.as_of is not None and summary.as_of <= before  # the clock margin
    async with database.transaction() as tx:
        stamps = set((await tx.execute(sa.select(positions_table.c.as_of))).scalars())
    assert len(stamps) == 1
    stamp = stamps.pop()
    assert stamp.tzinfo is not None and stamp == summary.as_of
    quantities = [row[1] for row in rows.values()]
    assert all(isinstance(q, Decimal) for q in quantities)


async def test_a_load_replaces_only_the_accounts_it_covers(
        database: Database, sandbox: Sandbox, client: UpvestClient) -> None:
    first, second, *rest = sandbox.account_ids
    mirror = PositionsMirror(database)
    await mirror.load(client, [first, second])
    old = datetime.now(UTC) - timedelta(days=1)
    gone, stays = str(uuid.uuid4()), str(uuid.uuid4())
    async with database.transaction() as tx:
        await tx.execute(sa.insert(positions_table), [
            _row(first, gone, old), _row(second, stays, old)])
    summary = await mirror.load(client, [first, rest[0]])
    rows = await mirrored(database)
    assert (first, gone) not in rows and (second, stays) in rows and summary.deleted == 1
    expected = await exported(client, [first, second, rest[0]])
    assert {k: v for k, v in rows.items() if k != (second, stays)} == expected


async def test_a_load_writes_decimals_and_ids_as_an_event_writes_them(
        database: Database, sandbox: Sandbox, client: UpvestClient) -> None:
    """The API's own values, in each database's one form: ``"007"`` and ``"7"`` are one
    number, an upper-case uuid is the lower-case one (SQLite holds text)."""
    account = sandbox.account_ids[0]
    odd = [{"account_id": account.upper(),
            "instrument": {"uuid": str(uuid.uuid4()).upper(), "isin": "US0378331005"},
            "quantity": quantity, "available_for_trading": quantity,
            "locked_for_trading": "-0", "pending_settlement": ".25"}
           for quantity in ("007", "-.5", "10.40", "0.000000000000000000000000001")]
    sandbox.tenant.set_positions(account, odd)
    mirror = PositionsMirror(database)
    await mirror.load(client, [account])
    loaded = await mirrored(database)
    assert sorted(v[1] for v in loaded.values()) == sorted(
        Decimal(p["quantity"]) for p in odd)
    assert {k[1] for k in loaded} == {p["instrument"]["uuid"].lower() for p in odd}
    async with database.transaction() as tx:
        texts = (await tx.exec_driver_sql(
            "SELECT CAST(quantity AS TEXT), CAST(locked_for_trading AS TEXT), "
            "CAST(pending_settlement AS TEXT) FROM upvest_positions")).all()
        await tx.execute(sa.delete(positions_table))
    # The same positions written by events: the same text.
    payload = [position_event((account, p["instrument"]["uuid"].lower()), p["quantity"],
                              BASE, locked="-0", pending=".25") for p in odd]
    for event in parse_batch(json.dumps({"payload": payload}).encode()):
        async with database.transaction() as tx:
            await mirror.apply(event, tx)
    async with database.transaction() as tx:
        again = (await tx.exec_driver_sql(
            "SELECT CAST(quantity AS TEXT), CAST(locked_for_trading AS TEXT), "
            "CAST(pending_settlement AS TEXT) FROM upvest_positions")).all()
    assert sorted(texts) == sorted(again)
    assert ("7", "0", "0.25") in texts


async def test_a_failed_load_leaves_the_table_as_it_was(
        database: Database, sandbox: Sandbox, client: UpvestClient) -> None:
    accounts = sandbox.account_ids
    mirror = PositionsMirror(database)
    await mirror.load(client, accounts[:2])
    before = await mirrored(database)
    sandbox.state.faults = Faults(script=("none",) * 3 + ("500",) * 50)
    with pytest.raises(APIStatusError):
        await mirror.load(client, accounts, concurrency=1)
    assert await mirrored(database) == before
    sandbox.state.faults = Faults()
    summary = await mirror.load(client, accounts)
    assert await mirrored(database) == await exported(client, accounts)
    assert summary.positions == 4 * 150


async def test_an_api_that_cannot_be_reached_fails_the_load_as_the_apis_error(
        database: Database, sandbox: Sandbox, client: UpvestClient) -> None:
    mirror = PositionsMirror(database)
    await mirror.load(client, sandbox.account_ids[:1])
    before = await mirrored(database)
    async with client_for(sandbox, base_url=f"http://127.0.0.1:{free_port()}",
                          max_retries=0) as unreachable:
        with pytest.raises(APIConnectionError):  # not the database's unavailability
            await mirror.load(unreachable, sandbox.account_ids)
    assert await mirrored(database) == before


async def test_a_load_that_loses_its_database_connection_leaves_the_table_as_it_was(
        postgres_url: str, postgres_cluster: PostgresCluster) -> None:
    name = postgres_url.rsplit("/", 1)[1]
    async with Sandbox(accounts=6, positions_per_account=100, seed=9,
                       latency_ms=100) as sandbox, client_for(sandbox) as client, \
            open_database(postgres_url) as database:
        mirror = PositionsMirror(database)
        await mirror.load(client, sandbox.account_ids[:1])
        before = await mirrored(database)
        sent = sandbox.counters.requests
        load = asyncio.create_task(mirror.load(client, sandbox.account_ids, concurrency=1))
        while sandbox.counters.requests < sent + 3:  # noqa: ASYNC110 (half-way through)
            await asyncio.sleep(0.01)
        admin = await postgres_cluster.connect(name)
        try:
            ended = await admin.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = $1 AND pid <> pg_backend_pid()", name)
        finally:
            await admin.close()
        assert ended >= 1
        with pytest.raises(DatabaseUnavailableError):
            await load
        assert await mirrored(database) == before


async def test_an_event_older_than_the_load_changes_nothing_a_newer_one_wins(
        database: Database, sandbox: Sandbox, client: UpvestClient) -> None:
    account = sandbox.account_ids[0]
    mirror = PositionsMirror(database)
    summary = await mirror.load(client, [account])
    assert summary.as_of is not None
    rows = await mirrored(database)
    (key, values), *_ = rows.items()
    isin = values[0]
    older = position_event(key, "1.5", summary.as_of - timedelta(seconds=1), isin=isin)
    newer = position_event(key, "2.25", summary.as_of + timedelta(seconds=1), isin=isin)
    oldest = position_event(key, "3", summary.as_of + timedelta(milliseconds=500), isin=isin)
    other = {**older, "id": str(uuid.uuid4()), "type": "SOMETHING.NEW",
             "object": {"unknown": True}}
    for event in parse_batch(json.dumps({"payload": [older, other]}).encode()):
        async with database.transaction() as tx:
            await mirror.apply(event, tx)
    assert await mirrored(database) == rows
    for event in parse_batch(json.dumps({"payload": [newer, oldest]}).encode()):
        async with database.transaction() as tx:
            await mirror.apply(event, tx)
    after = await mirrored(database)
    assert after[key] == (values[0], Decimal("2.25"), Decimal("2.25"), Decimal("0"),
                          Decimal("0"))
    assert {k: v for k, v in after.items() if k != key} == \
        {k: v for k, v in rows.items() if k != key}
    # A load now keeps the newer event (the row is newer than the load's as_of)...
    async with database.transaction() as tx:
        await tx.execute(sa.update(positions_table).where(
            positions_table.c.instrument_uuid == uuid.UUID(key[1])).values(
                as_of=datetime.now(UTC) + timedelta(hours=1)))
    summary = await mirror.load(client, [account])
    assert (await mirrored(database))[key][1] == Decimal("2.25") and summary.kept == 1


# The ordering rule, property-based: any order of the same events leaves the same table, the
# newest event of each position (ties: the greater values), or the loaded row when it is
# newer than every event.

ACCOUNT = "0e0a5d44-57a6-4b7e-9f4e-2d9e40a0b7a1"
INSTRUMENTS = ["5b6f1a2e-3c4d-4e5f-8a9b-0c1d2e3f4a5b", "7c8d9e0f-1a2b-4c3d-9e4f-5a6b7c8d9e0f"]
BASE = datetime(2026, 12, 1, 10, tzinfo=UTC)

events = st.lists(
    st.tuples(st.sampled_from(INSTRUMENTS), st.integers(0, 4),
              st.decimals(min_value=0, max_value=1000, places=3, allow_nan=False)),
    min_size=1, max_size=8,
)


def expected_rows(chosen: list[tuple[str, int, Decimal]], dialect: str) -> Rows:
    """The newest event of each position; of events equally new, the greater quantity (a
    number on PostgreSQL, its decimal text on SQLite)."""
    best: dict[str, tuple[int, Decimal | str, Decimal]] = {}
    for instrument, second, quantity in chosen:
        order = quantity if dialect == "postgresql" else str(quantity)
        mine = (second, order, quantity)
        if instrument not in best or mine > best[instrument]:
            best[instrument] = mine
    return {(ACCOUNT, instrument): (None, q, q, Decimal(0), Decimal(0))
            for instrument, (_, _, q) in best.items()}


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(chosen=events, order=st.randoms(use_true_random=False))
async def test_events_in_any_order_leave_the_same_table(
        database: Database, chosen: list[tuple[str, int, Decimal]], order: Any) -> None:
    async with database.transaction() as tx:
        await tx.execute(sa.delete(positions_table))
    mirror = PositionsMirror(database)
    payload = [position_event((ACCOUNT, instrument), str(quantity),
                              BASE + timedelta(seconds=second), isin=None)
               for instrument, second, quantity in chosen]
    order.shuffle(payload)
    for event in parse_batch(json.dumps({"payload": payload}).encode()):
        async with database.transaction() as tx:
            await mirror.apply(event, tx)
    assert await mirrored(database) == expected_rows(chosen, database.dialect)


def _row(account: str, instrument: str, as_of: datetime) -> dict[str, Any]:
    return {"account_id": uuid.UUID(account), "instrument_uuid": uuid.UUID(instrument),
            "isin": None,
            "quantity": Decimal("1"), "available_for_trading": Decimal("1"),
            "locked_for_trading": Decimal("0"), "pending_settlement": Decimal("0"),
            "as_of": as_of}
