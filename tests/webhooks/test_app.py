"""The aiohttp receiver over a real loopback server (with the in-memory store): verification
answers, dedupe, ordering, 200 only when all events were handled and committed, a failure
rolling the whole delivery back (the retry handles every event), replays refused, size limit,
and concurrent duplicate deliveries. The database stores: tests/storage/test_event_store.py."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from support.keys import p521_key
from support.webhooks_signer import KEY_ID, batch, event, position, sign

from upvest_async import MemoryEventStore, WebhookEvent, WebhookVerifier, webhook_app
from upvest_async.webhooks import (
    RECEIVER_KEY,
    EventStore,
    MemoryTransaction,
    StoreUnavailableError,
    WebhookReceiver,
    parse_batch,
)

KEY = p521_key()
PATH = "/hooks/upvest"


class Server:
    def __init__(self, on_event: Callable[[WebhookEvent, Any], Awaitable[None]], **options: Any):
        self.verifier = WebhookVerifier({KEY_ID: KEY.public_key()})
        self.app = webhook_app(on_event, self.verifier, path=PATH, **options)
        self.receiver: WebhookReceiver[Any] = self.app[RECEIVER_KEY]
        self.url = ""

    async def post(self, session: aiohttp.ClientSession, body: bytes,
                   headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        if headers is None:
            headers = sign(body, key=KEY, created=int(time.time()), path=PATH)
        async with session.post(self.url, data=body, headers=headers) as response:
            return response.status, await response.read()


@pytest.fixture
async def serve() -> AsyncIterator[Callable[..., Awaitable[Server]]]:
    runners: list[web.AppRunner] = []

    async def start(on_event: Callable[[WebhookEvent, Any], Awaitable[None]], **options: Any
                    ) -> Server:
        server = Server(on_event, **options)
        runner = web.AppRunner(server.app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        runners.append(runner)
        server.url = f"http://127.0.0.1:{runner.addresses[0][1]}{PATH}"
        return server

    yield start
    for runner in runners:
        await runner.cleanup()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as opened:
        yield opened


def events(n: int) -> list[dict[str, Any]]:
    return [event("POSITION.UPDATED", position(str(i + 1))) for i in range(n)]


async def test_handles_in_order_and_drops_duplicates(serve: Any, session: Any) -> None:
    seen: list[str] = []

    async def on_event(e: WebhookEvent, tx: object) -> None:
        seen.append(str(e.id))

    server = await serve(on_event)
    first = events(3)
    assert (await server.post(session, batch(*first)))[0] == 200
    assert seen == [e["id"] for e in first]
    again = [first[1], *events(2), first[1]]
    assert (await server.post(session, batch(*again)))[0] == 200
    assert seen == [e["id"] for e in first] + [e["id"] for e in again[1:3]]
    assert server.receiver.stats.duplicates == 2 and server.receiver.stats.handled == 5


async def test_failure_answers_500_rolls_back_and_the_retry_handles_every_event(
    serve: Any, session: Any
) -> None:
    calls: list[str] = []
    fail = {"id": ""}

    async def on_event(e: WebhookEvent, tx: object) -> None:
        calls.append(str(e.id))
        if str(e.id) == fail["id"]:
            raise RuntimeError("database is down: secret-detail")

    server = await serve(on_event)
    sent = events(4)
    fail["id"] = sent[2]["id"]
    body = batch(*sent)
    headers = sign(body, key=KEY, created=int(time.time()), path=PATH)
    status, answer = await server.post(session, body, headers)
    assert status == 500 and b"secret-detail" not in answer and b"Traceback" not in answer
    assert calls == [e["id"] for e in sent[:3]]
    assert server.receiver.stats.handled == 0 and server.receiver.stats.failed == 1
    assert len(server.receiver.store) == 0  # type: ignore[arg-type]  # nothing recorded
    fail["id"] = ""
    # Upvest retries the same signed request: its nonce was never recorded (rolled back),
    # and neither were the events before the failure: the retry handles all of them.
    status, _ = await server.post(session, body, headers)
    assert status == 200
    assert calls == [e["id"] for e in sent[:3]] + [e["id"] for e in sent]
    assert server.receiver.stats.handled == 4
    # Now it was acknowledged, the same signature again is a replay.
    assert (await server.post(session, body, headers))[0] == 401


async def test_verification_failures_leak_nothing(serve: Any, session: Any) -> None:
    called: list[WebhookEvent] = []

    async def on_event(e: WebhookEvent, tx: object) -> None:
        called.append(e)

    server = await serve(on_event)
    body = batch(*events(1))
    forged = sign(body, key=KEY, created=int(time.time()), path="/elsewhere")
    status, answer = await server.post(session, body, forged)
    assert status == 401 and answer == b'{"status": 401, "title": "Unauthorized"}'
    assert (await server.post(session, body, {}))[0] == 401
    bad_batch = b'{"payload": "nope"}'
    status, answer = await server.post(session, bad_batch)
    assert status == 400 and b"payload" not in answer
    assert called == [] and server.receiver.stats.rejected == 3


async def test_oversize_body_is_refused(serve: Any, session: Any) -> None:
    async def on_event(e: WebhookEvent, tx: object) -> None:
        raise AssertionError("not reached")

    server = await serve(on_event, max_body_bytes=2048)
    body = batch(*events(30))
    assert len(body) > 2048
    assert (await server.post(session, body))[0] == 413

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b"x" * 1024

    async with session.post(server.url, data=chunks()) as response:  # no content-length
        assert response.status == 413


async def test_concurrent_duplicate_deliveries_run_on_event_once(
    serve: Any, session: Any
) -> None:
    counts: dict[str, int] = {}

    async def on_event(e: WebhookEvent, tx: object) -> None:
        counts[str(e.id)] = counts.get(str(e.id), 0) + 1
        await asyncio.sleep(0.02)

    server = await serve(on_event)
    sent = events(3)
    body = batch(*sent)
    results = await asyncio.gather(*(server.post(session, body) for _ in range(6)))
    assert [status for status, _ in results] == [200] * 6
    assert counts == {e["id"]: 1 for e in sent}


@pytest.mark.parametrize(("error", "status"), [
    (OSError("disk full"), 500), (StoreUnavailableError("down"), 503)])
async def test_a_failing_store_is_a_retryable_failure(
    serve: Any, session: Any, error: Exception, status: int
) -> None:
    class Broken(MemoryEventStore):
        async def claim_events(self, tx: MemoryTransaction,
                               events: Sequence[WebhookEvent]) -> set[uuid.UUID]:
            raise error

    async def on_event(e: WebhookEvent, tx: object) -> None:
        return None

    store = Broken()
    assert isinstance(store, EventStore)
    server = await serve(on_event, store=store)
    body = batch(*events(1))
    headers = sign(body, key=KEY, created=int(time.time()), path=PATH)
    assert (await server.post(session, body, headers))[0] == status
    assert len(store) == 0 and server.receiver.stats.failed == 1
    Broken.claim_events = MemoryEventStore.claim_events  # type: ignore[method-assign]
    assert (await server.post(session, body, headers))[0] == 200  # the nonce was not kept


async def test_memory_store_is_bounded_and_transactional() -> None:
    store = MemoryEventStore(max_entries=2, handled=["A" * 8 + "-0000-4000-8000-" + "0" * 12])
    assert "a" * 8 + "-0000-4000-8000-" + "0" * 12 in store
    parsed = parse_batch(batch(*events(3)))
    with pytest.raises(RuntimeError):
        async with store.transaction() as tx:
            assert await store.claim_events(tx, parsed[:1]) == {parsed[0].id}
            assert await store.claim_events(tx, parsed[:1]) == set()  # claimed in this one
            assert await store.claim_signature(tx, "k", "n", keep_until=time.time() + 60)
            raise RuntimeError("handler failed")
    assert len(store) == 1 and str(parsed[0].id) not in store  # rolled back
    async with store.transaction() as tx:
        assert await store.claim_signature(tx, "k", "n", keep_until=time.time() + 60)
        assert await store.claim_events(tx, parsed) == {e.id for e in parsed}
    assert len(store) == 2 and str(parsed[0].id) not in store and str(parsed[2].id) in store
    async with store.transaction() as tx:
        assert not await store.claim_signature(tx, "k", "n", keep_until=time.time() + 60)
        assert await store.claim_events(tx, parsed[2:]) == set()


async def test_memory_store_refuses_new_signatures_when_full_of_live_ones() -> None:
    store = MemoryEventStore(max_signatures=1)
    async with store.transaction() as tx:
        assert await store.claim_signature(tx, "k", "1", keep_until=time.time() + 60)
    with pytest.raises(StoreUnavailableError):
        async with store.transaction() as tx:
            await store.claim_signature(tx, "k", "2", keep_until=time.time() + 60)
    async with store.transaction() as tx:  # a replay is still refused (not "full")
        assert not await store.claim_signature(tx, "k", "1", keep_until=time.time() + 60)


async def test_unavailable_keys_answer_503(session: Any) -> None:
    from upvest_async.webhooks import WebhookVerificationError

    class Down:
        async def get_key(self, key_id: str) -> Any:
            raise WebhookVerificationError("keys-unavailable")

    async def on_event(e: WebhookEvent, tx: object) -> None:
        raise AssertionError("not reached")

    app = web.Application()
    receiver = WebhookReceiver(on_event, WebhookVerifier(Down()))
    app.router.add_post(PATH, receiver.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        body = batch(*events(1))
        url = f"http://127.0.0.1:{runner.addresses[0][1]}{PATH}"
        headers = sign(body, key=KEY, created=int(time.time()), path=PATH)
        async with session.post(url, data=body, headers=headers) as response:
            assert response.status == 503
    finally:
        await runner.cleanup()
