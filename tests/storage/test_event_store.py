"""SQLEventStore behind the webhook receiver, on a real SQLite file and a real PostgreSQL, with
each "replica" a receiver of its own on its own Database (its own connections), as processes
behind one URL are: a duplicate is handled once, concurrent deliveries of one event to two
replicas handle it once, a failing handler records nothing, a replica killed (SIGKILL)
mid-handler gives its claim to the next delivery, a replay is refused on another replica, and
a database that is down is a 503 with nothing recorded."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
import sqlalchemy as sa
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncConnection
from support.keys import p521_key
from support.postgres import PostgresCluster
from support.webhooks_signer import KEY_ID, batch, event, position, sign

from upvest_async.storage import (
    Database,
    SQLEventStore,
    open_database,
    signatures_table,
    webhook_events_table,
)
from upvest_async.webhooks import RECEIVER_KEY, WebhookEvent, WebhookVerifier, webhook_app

KEY = p521_key()
PATH = "/hooks/upvest"
effects = sa.Table("test_effects", sa.MetaData(), sa.Column("event_id", sa.Text(),
                                                             nullable=False))


class Replica:
    """A receiver on its own Database; its handler writes one effect row per event through
    the store's transaction (after ``delay`` seconds), or raises for ``fail``."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.store = SQLEventStore(db)
        self.calls: list[str] = []
        self.fail: set[str] = set()
        self.delay = 0.0
        verifier = WebhookVerifier({KEY_ID: KEY.public_key()})
        self.app = webhook_app(self.on_event, verifier, store=self.store, path=PATH)
        self.url = ""

    async def on_event(self, e: WebhookEvent, tx: AsyncConnection) -> None:
        self.calls.append(str(e.id))
        await tx.execute(effects.insert().values(event_id=str(e.id)))
        if self.delay:
            await asyncio.sleep(self.delay)
        if str(e.id) in self.fail:
            raise RuntimeError("handler failed")

    async def post(self, body: bytes, headers: dict[str, str] | None = None) -> int:
        headers = headers or signed(body)
        async with aiohttp.ClientSession() as session, \
                session.post(self.url, data=body, headers=headers) as response:
            return response.status


def signed(body: bytes) -> dict[str, str]:
    return sign(body, key=KEY, created=int(time.time()), path=PATH)


def events(n: int) -> list[dict[str, Any]]:
    return [event("POSITION.UPDATED", position(str(i + 1))) for i in range(n)]


@pytest.fixture
async def replicas() -> AsyncIterator[Callable[..., Awaitable[Replica]]]:
    """Start a replica on the database of a URL (with ``open_database`` options)."""
    async with contextlib.AsyncExitStack() as stack:

        async def start(url: str, **options: Any) -> Replica:
            db = await stack.enter_async_context(open_database(url, **options))
            async with db.transaction() as conn:
                await conn.run_sync(lambda c: effects.create(c, checkfirst=True))
            replica = Replica(db)
            runner = web.AppRunner(replica.app, access_log=None)
            await runner.setup()
            stack.push_async_callback(runner.cleanup)
            await web.TCPSite(runner, "127.0.0.1", 0).start()
            replica.url = f"http://127.0.0.1:{runner.addresses[0][1]}{PATH}"
            return replica

        yield start


async def counts(db: Database) -> tuple[dict[str, int], int, int]:
    """Effects per event id, rows of upvest_webhook_events, rows of the signatures."""
    async with db.engine.connect() as conn:
        rows = (await conn.execute(sa.select(effects.c.event_id))).scalars().all()
        recorded = await conn.scalar(sa.select(sa.func.count()).select_from(
            webhook_events_table))
        nonces = await conn.scalar(sa.select(sa.func.count()).select_from(signatures_table))
    per: dict[str, int] = {}
    for event_id in rows:
        per[event_id] = per.get(event_id, 0) + 1
    return per, int(recorded or 0), int(nonces or 0)


async def test_a_duplicate_is_handled_once_and_recorded(replicas: Any, database_url: str
                                                       ) -> None:
    replica = await replicas(database_url)
    sent = events(3)
    assert await replica.post(batch(*sent)) == 200
    assert await replica.post(batch(sent[1], *events(1), sent[1])) == 200
    per, recorded, nonces = await counts(replica.db)
    assert sorted(per.values()) == [1, 1, 1, 1] and recorded == 4 and nonces == 2
    assert replica.app[RECEIVER_KEY].stats.duplicates == 2
    async with replica.db.engine.connect() as conn:
        row = (await conn.execute(sa.select(webhook_events_table).where(
            webhook_events_table.c.event_id == uuid.UUID(sent[0]["id"])))).one()
    assert row.type == "POSITION.UPDATED" and row.created_at.isoformat() == \
        "2026-12-01T10:00:00+00:00" and row.handled_at.tzinfo is not None


async def test_concurrent_deliveries_to_two_replicas_handle_each_event_once(
    replicas: Any, database_url: str,
) -> None:
    first, second = await replicas(database_url), await replicas(database_url)
    first.delay = second.delay = 0.2  # both deliveries are in flight at the same time
    sent = events(3)
    body = batch(*sent)
    statuses = await asyncio.gather(first.post(body), second.post(body),
                                    first.post(batch(*reversed(sent))))
    assert statuses == [200, 200, 200]
    per, recorded, _ = await counts(first.db)
    assert per == {e["id"]: 1 for e in sent} and recorded == 3
    assert len(first.calls) + len(second.calls) == 3


async def test_a_failing_handler_records_nothing_and_the_retry_handles_it(
    replicas: Any, database_url: str,
) -> None:
    replica = await replicas(database_url)
    sent = events(3)
    body = batch(*sent)
    headers = signed(body)
    replica.fail = {sent[2]["id"]}
    assert await replica.post(body, headers) == 500
    assert await counts(replica.db) == ({}, 0, 0)  # the effects, claims and nonce rolled back
    replica.fail = set()
    assert await replica.post(body, headers) == 200  # Upvest's retry: the same signature
    per, recorded, nonces = await counts(replica.db)
    assert per == {e["id"]: 1 for e in sent} and recorded == 3 and nonces == 1
    assert await replica.post(body, headers) == 401  # now a replay


async def test_a_replay_is_refused_on_another_replica(replicas: Any, database_url: str
                                                     ) -> None:
    first, second = await replicas(database_url), await replicas(database_url)
    body = batch(*events(2))
    headers = signed(body)
    assert await first.post(body, headers) == 200
    assert await second.post(body, headers) == 401
    assert second.calls == [] and second.app[RECEIVER_KEY].stats.rejected == 1


async def test_one_signed_request_to_two_replicas_at_once_is_handled_by_one(
    replicas: Any, database_url: str,
) -> None:
    first, second = await replicas(database_url), await replicas(database_url)
    first.delay = second.delay = 0.2
    sent = events(2)
    body = batch(*sent)
    headers = signed(body)
    statuses = sorted(await asyncio.gather(first.post(body, headers),
                                           second.post(body, headers)))
    assert statuses == [200, 401]  # the second waited for the first's nonce: a replay
    per, recorded, nonces = await counts(first.db)
    assert per == {e["id"]: 1 for e in sent} and recorded == 2 and nonces == 1


CHILD = """
import asyncio, sys, time
import sqlalchemy as sa
from upvest_async.storage import SQLEventStore, open_database
from upvest_async.webhooks import parse_batch

async def main(url, body, lease):
    async with open_database(url, lease=lease) as db:
        store = SQLEventStore(db)
        async with store.transaction() as tx:
            assert await store.claim_signature(tx, "child", "n", keep_until=time.time() + 60)
            for e in parse_batch(body.encode()):
                assert await store.claim_events(tx, [e]) == {e.id}
                await tx.execute(sa.text("INSERT INTO test_effects (event_id) VALUES (:i)"),
                                 {"i": str(e.id)})
            print("claimed", flush=True)
            await asyncio.sleep(120)  # hangs mid-handler, holding its claims

asyncio.run(main(sys.argv[1], sys.argv[2], float(sys.argv[3])))
"""


async def hold_claims(url: str, body: bytes, lease: float = 60.0) -> asyncio.subprocess.Process:
    """A replica in another process that claimed the events of ``body`` and hangs."""
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD, url, body.decode(), str(lease),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert child.stdout is not None and child.stderr is not None
    try:
        async with asyncio.timeout(30):
            line = await child.stdout.readline()
    except TimeoutError:
        child.kill()
        raise
    if line != b"claimed\n":
        child.kill()
        raise AssertionError((line + await child.stderr.read()).decode())
    return child


async def test_a_replica_killed_mid_handler_gives_its_claims_to_the_next_delivery(
    replicas: Any, database_url: str,
) -> None:
    replica = await replicas(database_url)
    sent = events(2)
    body = batch(*sent)
    child = await hold_claims(database_url, body)
    try:
        delivery = asyncio.ensure_future(replica.post(body))
        await asyncio.sleep(0.5)
        assert not delivery.done()  # waits on the other replica's uncommitted claim
        os.kill(child.pid, signal.SIGKILL)
        await child.wait()
        assert await delivery == 200
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()
    per, recorded, nonces = await counts(replica.db)
    assert per == {e["id"]: 1 for e in sent} and recorded == 2 and nonces == 1


async def test_a_hung_replica_loses_its_claims_after_the_lease(postgres_url: str,
                                                               replicas: Any) -> None:
    replica = await replicas(postgres_url, lock_timeout=30)
    sent = events(1)
    body = batch(*sent)
    child = await hold_claims(postgres_url, body, lease=1.0)
    try:
        started = time.monotonic()
        assert await replica.post(body) == 200
        assert 0.5 < time.monotonic() - started < 20
    finally:
        child.kill()
        await child.wait()
    assert (await counts(replica.db))[0] == {sent[0]["id"]: 1}


async def test_a_claim_waiting_over_lock_timeout_is_a_503(postgres_url: str,
                                                         replicas: Any) -> None:
    replica = await replicas(postgres_url, lock_timeout=0.3)
    body = batch(*events(1))
    child = await hold_claims(postgres_url, body)
    try:
        headers = signed(body)
        assert await replica.post(body, headers) == 503
        assert await counts(replica.db) == ({}, 0, 0)
    finally:
        child.kill()
        await child.wait()
    assert await replica.post(body, headers) == 200  # the retry, once the claim is gone


async def test_a_busy_sqlite_database_is_a_503(sqlite_url: str, replicas: Any) -> None:
    replica = await replicas(sqlite_url, busy_timeout=0.3)
    body = batch(*events(1))
    child = await hold_claims(sqlite_url, batch(*events(1)))
    try:
        assert await replica.post(body, signed(body)) == 503
    finally:
        child.kill()
        await child.wait()
    assert await counts(replica.db) == ({}, 0, 0)


async def test_a_stopped_database_is_a_503_and_nothing_is_recorded(
    postgres_cluster: PostgresCluster, replicas: Any,
) -> None:
    cluster = PostgresCluster(postgres_cluster.bindir)
    try:
        cluster.start()
        replica = await replicas(cluster.url("postgres"))
        sent = events(2)
        body = batch(*sent)
        headers = signed(body)
        cluster.stop_server()
        assert await replica.post(body, headers) == 503
        cluster.start_server()
        assert await counts(replica.db) == ({}, 0, 0)
        assert await replica.post(body, headers) == 200
        assert (await counts(replica.db))[0] == {e["id"]: 1 for e in sent}
    finally:
        cluster.stop()


async def test_a_connection_lost_mid_handler_is_a_503(postgres_url: str,
                                                      replicas: Any) -> None:
    replica = await replicas(postgres_url)
    sent = events(2)
    body = batch(*sent)
    headers = signed(body)
    original = replica.on_event

    async def lose_connection(e: WebhookEvent, tx: AsyncConnection) -> None:
        await original(e, tx)
        await tx.execute(sa.text("SELECT pg_terminate_backend(pg_backend_pid())"))

    replica.app[RECEIVER_KEY].on_event = lose_connection
    assert await replica.post(body, headers) == 503
    assert await counts(replica.db) == ({}, 0, 0)
    replica.app[RECEIVER_KEY].on_event = original
    assert await replica.post(body, headers) == 200


async def test_expired_signatures_are_purged(database_url: str) -> None:
    now = [1_000_000.0]
    async with open_database(database_url) as db:
        store = SQLEventStore(db, clock=lambda: now[0], purge_interval=10)
        async with store.transaction() as tx:
            assert await store.claim_signature(tx, "k", "old", keep_until=now[0] + 5)
            assert await store.claim_signature(tx, "k", "new", keep_until=now[0] + 50)
            assert not await store.claim_signature(tx, "k", "old", keep_until=now[0] + 5)
        now[0] += 20
        async with store.transaction():
            pass
        async with db.engine.connect() as conn:
            left = (await conn.execute(sa.select(signatures_table.c.nonce))).scalars().all()
        assert left == ["new"] and json.dumps(repr(store))
