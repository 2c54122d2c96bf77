"""Issue 12's acceptance, end to end: the sandbox sends, the SDK's receiver verifies with the
sandbox's JWKS (through ``client.webhooks``), and a local copy of every position, exported once
and kept current by ``POSITION.UPDATED``, equals a fresh export once the sandbox is quiet, also
under duplicate deliveries and a receiver failing 30 % of requests; each event reaches
``on_event`` exactly once. Then the attacks: a receiver behind an escaped path with a query,
event types nobody knows, and the signing key rotated (old key withdrawn) while events flow.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.typedefs import Middleware
from support.clients import client_for

from upvest_async import Position, UpvestClient, WebhookEvent
from upvest_async.jobs import trigger_many
from upvest_async.sandbox import Sandbox, WebhookFaults
from upvest_async.webhooks import RECEIVER_KEY, WebhookEventType, webhook_app

USER = "4b9732bd-7496-4e91-8a5f-6360479d7fed"
PATH = "/hooks/upvest"
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "keep_positions_current.py"
Key = tuple[uuid.UUID, uuid.UUID]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@contextlib.asynccontextmanager
async def serving(app: web.Application) -> AsyncIterator[str]:
    """Serve ``app`` on 127.0.0.1 (any port); yields ``http://127.0.0.1:<port>``."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def export(client: UpvestClient) -> dict[Key, Position]:
    """Every position of the tenant, by (account id, instrument uuid)."""
    accounts = [c.account_id async for c in client.portfolios.configurations.list()]
    return {(p.account_id, p.instrument.uuid): p async for p in client.positions.export(accounts)}


def flaky(counts: collections.Counter[str]) -> Middleware:
    """A middleware failing 30 % of the requests, deterministically (6 of every 20): half of
    them before the receiver sees them (503), half after it handled them (500)."""
    before, after = {1, 7, 14}, {4, 11, 17}

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        number = counts["requests"] % 20
        counts["requests"] += 1
        if number in before:
            counts["before"] += 1
            return web.Response(status=503)
        response = await handler(request)
        if number in after:
            counts["after"] += 1
            return web.Response(status=500)
        return response

    return middleware


async def trade(client: UpvestClient, accounts: list[uuid.UUID], tag: int = 0) -> None:
    """BUY and SELL orders for every account, and a rebalancing of the first two."""
    for i, account in enumerate(accounts):
        for side, cash in (("BUY", "1500.25"), ("SELL", "400"), ("BUY", "0.05")):
            await client.portfolios.orders.create(
                user_id=USER, account_id=account, cash_amount=f"{cash}{i}{tag}", side=side)
    results = await trigger_many(client, accounts[:2])
    assert all(result.status == "triggered" for result in results), results


@pytest.mark.parametrize("faulty", [False, True], ids=["reliable", "faulty"])
async def test_a_local_copy_kept_current_by_webhooks_equals_a_fresh_export(faulty: bool) -> None:
    faults = WebhookFaults(seed=4, duplicate_rate=0.3, lost_answer_rate=0.3) if faulty else None
    async with Sandbox(accounts=4, positions_per_account=30, seed=12, order_fill_seconds=0.05,
                       webhook_backoff_scale=0.001, webhook_faults=faults,
                       webhook_batch_size=4) as sandbox, \
            client_for(sandbox) as client:
        local = await export(client)
        calls: collections.Counter[str] = collections.Counter()

        async def on_event(event: WebhookEvent, tx: object) -> None:
            calls[str(event.id)] += 1
            if isinstance(event.object, Position):
                local[(event.object.account_id, event.object.instrument.uuid)] = event.object

        app = webhook_app(on_event, client.webhooks.verifier, path=PATH)
        failures: collections.Counter[str] = collections.Counter()
        if faulty:
            app.middlewares.append(flaky(failures))
        async with serving(app) as base:
            sandbox.webhooks.subscribe(base + PATH)
            await trade(client, sorted({account for account, _ in local}))
            await sandbox.webhooks_idle(30)
            fresh = await export(client)
        stats, receiver = sandbox.webhook_stats, app[RECEIVER_KEY].stats

    assert local == fresh
    changed = sum(1 for key, position in fresh.items() if position != local.get(key))
    assert changed == 0 and receiver.handled == len(calls) == stats.emitted > 0
    assert set(calls.values()) == {1}  # each event reached on_event exactly once
    assert stats.delivered == stats.emitted and stats.pending == 0
    assert receiver.rejected == 0 and client.webhooks.keys.fetches == 1
    if not faulty:
        assert stats.retried == receiver.duplicates == stats.duplicates == 0
    else:  # the faults really happened, and were absorbed
        assert stats.duplicates and stats.lost_answers and failures["before"]
        assert failures["after"] and receiver.duplicates and stats.retried, (failures, stats)
        assert failures["requests"] >= 20 and receiver.requests == failures["requests"] - failures[
            "before"]


async def test_a_receiver_behind_an_escaped_path_with_a_query() -> None:
    async with Sandbox(accounts=1, positions_per_account=5, seed=3, order_fill_seconds=0.02,
                       webhook_backoff_scale=0.001) as sandbox, client_for(sandbox) as client:
        seen: list[WebhookEvent] = []

        async def on_event(event: WebhookEvent, tx: object) -> None:
            seen.append(event)

        app = webhook_app(on_event, client.webhooks.verifier, path="/hooks/a b,ä?")
        async with serving(app) as base:  # %3F: a "?" inside the decoded path
            sandbox.webhooks.subscribe(base + "/hooks/a%20b%2C%C3%A4%3F?tenant=x%2Fy&v=1&v=2")
            await trade(client, [uuid.UUID(sandbox.tenant.account_ids[0])])
            await sandbox.webhooks_idle(3)
        assert app[RECEIVER_KEY].stats.rejected == 0
    assert seen and len(seen) == sandbox.webhook_stats.emitted
    assert any(isinstance(event.object, Position) for event in seen)


async def test_event_types_nobody_knows_pass_untyped() -> None:
    async with Sandbox(accounts=1, positions_per_account=1, webhook_backoff_scale=0.001) as \
            sandbox, client_for(sandbox) as client:
        seen: list[WebhookEvent] = []

        async def on_event(event: WebhookEvent, tx: object) -> None:
            seen.append(event)

        async with serving(webhook_app(on_event, client.webhooks.verifier)) as base:
            sandbox.webhooks.subscribe(base + "/webhooks/upvest")
            sandbox.webhooks.emit("ACCOUNT_GROUP.FROZEN", {"id": "g1", "amount": "1.10"})
            sandbox.webhooks.emit("POSITION.MERGED", {"weird": [1, {"x": None}]})
            await sandbox.webhooks_idle(10)
    assert [str(event.type) for event in seen] == ["ACCOUNT_GROUP.FROZEN", "POSITION.MERGED"]
    assert all(event.type not in set(WebhookEventType.__members__.values()) for event in seen)
    assert seen[0].object == {"id": "g1", "amount": "1.10"}  # parsed JSON, the API's own text
    assert seen[1].object == {"weird": [1, {"x": None}]}


async def test_key_rotation_mid_stream_refreshes_the_keys_once() -> None:
    async with Sandbox(accounts=3, positions_per_account=10, seed=5, order_fill_seconds=0.05,
                       webhook_backoff_scale=0.001) as sandbox, client_for(sandbox) as client:
        local = await export(client)
        calls: collections.Counter[str] = collections.Counter()
        kids: set[str] = set()

        async def on_event(event: WebhookEvent, tx: object) -> None:
            calls[str(event.id)] += 1
            if isinstance(event.object, Position):
                local[(event.object.account_id, event.object.instrument.uuid)] = event.object

        verifier = client.webhooks.verifier
        app = webhook_app(on_event, verifier, path=PATH)
        accounts = sorted({account for account, _ in local})
        async with serving(app) as base:
            sandbox.webhooks.subscribe(base + PATH)
            await trade(client, accounts)
            while not sandbox.webhook_stats.delivered:  # noqa: ASYNC110
                await asyncio.sleep(0.005)
            assert not sandbox.webhooks.idle()  # orders still to fill, events still to come
            kids.add(sandbox.webhooks.keys.current.kid)
            new_kid = sandbox.rotate_webhook_key(keep_old=False)  # while events flow
            await trade(client, accounts, tag=1)
            await sandbox.webhooks_idle(30)
            fresh = await export(client)
        keys = client.webhooks.keys
    assert local == fresh and set(calls.values()) == {1}
    assert len(calls) == sandbox.webhook_stats.emitted
    assert keys.fetches == 2 and keys.keys is not None  # one refresh on the unknown key id
    assert keys.keys.key_ids == [new_kid] and not kids & set(keys.keys.key_ids)


async def test_the_example_program_keeps_its_copy_current() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(EXAMPLE), "--faults",
        env={k: v for k, v in os.environ.items() if not k.startswith("UPVEST_API_")},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(60):
            stdout, stderr = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    output = stdout.decode()
    assert process.returncode == 0, output + stderr.decode()
    assert "local copy equals a fresh export: yes" in output
    assert "duplicates skipped" in output and " 0 position updates" not in output
