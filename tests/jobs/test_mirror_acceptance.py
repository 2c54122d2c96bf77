"""Issue 21's acceptance, with real processes: a sandbox tenant loaded by ``upvest-async mirror
load``, ``upvest-async mirror serve`` replicas (subprocesses configured by the sandbox's
``UPVEST_API_*`` variables, on free loopback ports) sharing one database, and signed batches
delivered as Upvest delivers them: to replicas chosen at random, 30 % of them also sent to a
second replica at the same moment, older batches after newer ones touching the same
positions, one replica killed with SIGKILL half-way (its deliveries retried on the others, as
Upvest retries anything but a 200), and one batch changed after signing (refused, nothing
changed). Afterwards ``upvest_positions`` equals the export overlaid with the newest event of
each position, and ``upvest_webhook_events`` holds every event id exactly once. The same on
SQLite with one replica (killed and started again). Then the sandbox's own delivery (orders
filling, ``POSITION.UPDATED``): once quiet, the mirror equals a fresh export.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import re
import signal
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import sqlalchemy as sa
from support.clients import client_for
from support.mirror import CLI, Rows, clean_env, exported, mirrored, position_event, values_of

from upvest_async.sandbox import Sandbox
from upvest_async.sandbox.webhooks.signer import sign_webhook
from upvest_async.storage import open_database, positions_table, webhook_events_table

PATH = "/webhooks/upvest"
USER = "4b9732bd-7496-4e91-8a5f-6360479d7fed"
READY = re.compile(r"Ready: (http://\S+)")


class Replica:
    """One ``mirror serve`` process; ``url`` once it is ready."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.url = ""
        self.alive = True
        self.lines: list[str] = []
        self._reader: asyncio.Task[None] | None = None

    async def ready(self, timeout: float = 30.0) -> None:
        assert self.process.stderr is not None
        stream = self.process.stderr
        async with asyncio.timeout(timeout):
            while not self.url:
                line = (await stream.readline()).decode()
                if not line:
                    raise AssertionError(f"replica exited: {''.join(self.lines)}")
                self.lines.append(line)
                found = READY.search(line)
                if found:
                    self.url = found.group(1)
        self._reader = asyncio.create_task(self._drain(stream))

    async def _drain(self, stream: asyncio.StreamReader) -> None:
        while line := await stream.readline():
            self.lines.append(line.decode())

    def kill(self) -> None:
        self.alive = False
        self.process.send_signal(signal.SIGKILL)

    async def stop(self) -> int:
        """SIGTERM, and the exit status."""
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        status = await asyncio.wait_for(self.process.wait(), 20)
        if self._reader is not None:
            await self._reader
        return status


@contextlib.asynccontextmanager
async def replicas(count: int, url: str, sandbox: Sandbox) -> AsyncIterator[list[Replica]]:
    started = [Replica(await asyncio.create_subprocess_exec(
        *CLI, "mirror", "serve", "--db", url, "--port", "0", "--path", PATH,
        env=clean_env(**sandbox.env()), stderr=asyncio.subprocess.PIPE))
        for _ in range(count)]
    try:
        await asyncio.gather(*(replica.ready() for replica in started))
        yield started
    finally:
        for replica in started:
            if replica.process.returncode is None:
                replica.process.kill()
                await replica.process.wait()


async def load(url: str, sandbox: Sandbox) -> None:
    process = await asyncio.create_subprocess_exec(
        *CLI, "mirror", "load", "--db", url, "--all-accounts", "--quiet",
        env=clean_env(**sandbox.env()), stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()


class Sender:
    """Delivers batches as Upvest does: freshly signed with the sandbox's webhook key for each
    attempt, retried (on a live replica chosen at random) until one answers 200; 30 % of the
    attempts also go to a second replica at the same moment."""

    def __init__(self, sandbox: Sandbox, session: aiohttp.ClientSession,
                 pool: list[Replica], rng: random.Random) -> None:
        self.sandbox = sandbox
        self.session = session
        self.pool = pool
        self.rng = rng
        self.attempts = 0
        self.doubled = 0

    def signed(self, body: bytes) -> dict[str, str]:
        headers = {"content-type": "application/json"}
        headers.update(sign_webhook(self.sandbox.webhooks.keys.current, method="POST",
                                    path=PATH, query="", headers=headers, body=body,
                                    created=int(time.time())))
        return headers

    async def post(self, replica: Replica, body: bytes, headers: dict[str, str]) -> int:
        try:
            async with self.session.post(replica.url, data=body, headers=headers) as answer:
                return answer.status
        except aiohttp.ClientError:
            return 0

    async def deliver(self, body: bytes, first: Replica | None = None) -> None:
        for _ in range(500):
            live = [replica for replica in self.pool if replica.alive]
            if not live and first is None:  # (the only replica is being restarted)
                await asyncio.sleep(0.02)
                continue
            target = first if first is not None else self.rng.choice(live)
            first = None
            headers = self.signed(body)
            sends = [self.post(target, body, headers)]
            if self.rng.random() < 0.3:
                others = [replica for replica in live if replica is not target] or [target]
                sends.append(self.post(self.rng.choice(others), body, headers))
                self.doubled += 1
            self.attempts += 1
            if 200 in await asyncio.gather(*sends):
                return
            await asyncio.sleep(0.02)
        raise AssertionError("a batch was never answered 200")


def make_batches(rows: Rows, since: datetime, rng: random.Random
                 ) -> tuple[list[list[dict[str, Any]]], list[dict[str, Any]]]:
    """Batches of events (each ordered by ``created_at``, as Upvest orders a request) for 20
    exported positions and one new, 4 events each, all newer than ``since``, plus two events
    of a type nobody knows; and the events of a batch that will be changed after signing."""
    keys = rng.sample(sorted(rows), 20)
    account = keys[0][0]
    keys.append((account, str(uuid.uuid4())))  # a position the export does not hold
    events = []
    moment = since + timedelta(seconds=1)
    for _round in range(4):
        for key in keys:
            moment += timedelta(milliseconds=rng.randint(1, 20))
            quantity = f"{rng.randint(0, 10**6)}.{rng.randint(0, 999):03d}"
            isin = rows[key][0] if key in rows else None
            events.append(position_event(key, quantity, moment, isin=isin))
    for _ in range(2):
        moment += timedelta(milliseconds=3)
        events.append({**position_event(keys[0], "1", moment), "type": "SOMETHING.NEW",
                       "object": {"anything": [1, 2.5]}})
    batches: list[list[dict[str, Any]]] = []
    pending = list(events)
    rng.shuffle(pending)
    while pending:
        size = rng.randint(1, 4)
        batch, pending = pending[:size], pending[size:]
        batches.append(sorted(batch, key=lambda event: event["created_at"]))
    moment += timedelta(seconds=1)
    tampered = [position_event(key, "99999", moment, isin=rows.get(key, (None,))[0])
                for key in keys[:3]]
    return batches, tampered


def overlaid(rows: Rows, batches: list[list[dict[str, Any]]]) -> Rows:
    expected = dict(rows)
    newest: dict[tuple[str, str], dict[str, Any]] = {}
    for event in (event for batch in batches for event in batch):
        if event["type"] != "POSITION.UPDATED":
            continue
        key = (event["object"]["account_id"], event["object"]["instrument"]["uuid"])
        if key not in newest or event["created_at"] > newest[key]["created_at"]:
            newest[key] = event
    expected.update({key: values_of(event) for key, event in newest.items()})
    return expected


def inversions(batches: list[list[dict[str, Any]]]) -> int:
    """Batches delivered after a newer batch that touches one of their positions."""
    count = 0
    for later_index, later in enumerate(batches):
        for earlier in batches[:later_index]:
            touched = {e["object"].get("instrument", {}).get("uuid") for e in earlier}
            if any(e["created_at"] < earlier[-1]["created_at"]
                   and e["object"].get("instrument", {}).get("uuid") in touched
                   for e in later):
                count += 1
                break
    return count


async def run_deliveries(url: str, count: int, *, restart: bool) -> None:
    rng = random.Random(21 + count)
    async with Sandbox(accounts=3, positions_per_account=40, seed=21) as sandbox, \
            client_for(sandbox) as client:
        await load(url, sandbox)
        async with open_database(url) as database:
            before = await mirrored(database)
            async with database.transaction() as tx:
                loaded_at = await tx.scalar(sa.select(sa.func.max(positions_table.c.as_of)))
        assert before == await exported(client, sandbox.account_ids)
        assert loaded_at is not None
        batches, tampered = make_batches(before, max(loaded_at, datetime.now(UTC)), rng)
        assert inversions(batches) >= 3
        async with replicas(count, url, sandbox) as pool, aiohttp.ClientSession() as session:
            sender = Sender(sandbox, session, pool, rng)
            half = len(batches) // 2
            queue = list(batches[:half])

            async def worker() -> None:
                while queue:
                    batch = queue.pop(0)
                    await sender.deliver(json.dumps({"payload": batch}).encode())

            await asyncio.gather(*(worker() for _ in range(3)))
            # Half-way: the doomed replica dies while a delivery to it is in flight.
            doomed = pool[0]
            body = json.dumps({"payload": batches[half]}).encode()
            delivery = asyncio.create_task(sender.deliver(body, first=doomed))
            await asyncio.sleep(0.005)
            doomed.kill()
            await doomed.process.wait()
            # ... and the next batch is sent to it too: refused, retried on another replica.
            refused = asyncio.create_task(sender.deliver(
                json.dumps({"payload": batches[half + 1]}).encode(), first=doomed))
            if restart:  # the only replica: start it again, as a supervisor would
                async with replicas(1, url, sandbox) as again:
                    pool.append(again[0])
                    await asyncio.gather(delivery, refused)
                    queue.extend(batches[half + 2:])
                    await asyncio.gather(*(worker() for _ in range(3)))
                    await deliver_tampered(sender, tampered, again[0])
                    assert await again[0].stop() == 0
            else:
                await asyncio.gather(delivery, refused)
                queue.extend(batches[half + 2:])
                await asyncio.gather(*(worker() for _ in range(3)))
                await deliver_tampered(sender, tampered, pool[1])
            assert sender.doubled > 0 and sender.attempts > len(batches)
            for replica in pool[1:] if not restart else []:
                assert await replica.stop() == 0, "".join(replica.lines)
                assert "Stopped" in "".join(replica.lines)
        async with open_database(url) as database:
            rows = await mirrored(database)
            async with database.transaction() as tx:
                recorded = list((await tx.execute(
                    sa.select(webhook_events_table.c.event_id))).scalars())
        assert rows == overlaid(before, batches)
        delivered = {event["id"] for batch in batches for event in batch}
        assert len(recorded) == len(set(recorded)) == len(delivered)
        assert {str(event_id) for event_id in recorded} == delivered
        assert not {event["id"] for event in tampered} & delivered


async def deliver_tampered(sender: Sender, tampered: list[dict[str, Any]],
                           replica: Replica) -> None:
    """A batch whose body is changed after signing: refused (401), nothing changed."""
    body = json.dumps({"payload": tampered}).encode()
    headers = sender.signed(body)
    changed = body.replace(b'"99999"', b'"99998"')
    assert changed != body
    assert await sender.post(replica, changed, headers) == 401


async def test_three_replicas_on_postgresql(postgres_url: str) -> None:
    await run_deliveries(postgres_url, 3, restart=False)


async def test_one_replica_on_sqlite(sqlite_url: str) -> None:
    await run_deliveries(sqlite_url, 1, restart=True)


async def test_the_sandbox_s_own_delivery_keeps_the_mirror_equal_to_an_export(
        database_url: str) -> None:
    url = database_url
    async with Sandbox(accounts=3, positions_per_account=30, seed=12, order_fill_seconds=0.05,
                       webhook_backoff_scale=0.001, webhook_batch_size=4) as sandbox, \
            client_for(sandbox) as client:
        await load(url, sandbox)
        async with replicas(1, url, sandbox) as (replica,):
            sandbox.webhooks.subscribe(replica.url)
            for index, account in enumerate(sandbox.account_ids):
                for side, cash in (("BUY", "1500.25"), ("SELL", "400"), ("BUY", "0.05")):
                    await client.portfolios.orders.create(
                        user_id=USER, account_id=account, cash_amount=f"{cash}{index}",
                        side=side)
            await sandbox.webhooks_idle(30)
            assert await replica.stop() == 0
        stats = sandbox.webhook_stats
        assert stats.delivered == stats.emitted > 0
        fresh = await exported(client, sandbox.account_ids)
        async with open_database(url) as database:
            assert await mirrored(database) == fresh
            async with database.transaction() as tx:
                count = await tx.scalar(sa.select(sa.func.count()).select_from(
                    webhook_events_table))
        assert count == stats.emitted
