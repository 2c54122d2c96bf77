"""Delivery of the sandbox's webhooks as Upvest's: batches in ``created_at`` order, retries of
the whole request with the Fibonacci back-off (shrunk), blocking, duplicate and lost-answer
faults deterministic from their seed, counters, quiet, clean stops. Receivers verify every
signature (see :mod:`tests.support.webhook_receiver`)."""

from __future__ import annotations

import asyncio
import itertools
import socket
from typing import Any

import pytest
from support.clients import client_for
from support.webhook_receiver import Receiver, jwks_of

from upvest_async.sandbox import Sandbox, WebhookFaults
from upvest_async.sandbox.webhooks import backoff


def sandbox_for(url: str, **options: Any) -> Sandbox:
    return Sandbox(accounts=1, positions_per_account=5, webhook_urls=[url], **options)


async def started(receiver: Receiver, sandbox: Sandbox) -> None:
    async with client_for(sandbox) as client:
        receiver.use_jwks(await jwks_of(client))


async def until(predicate: Any, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():  # noqa: ASYNC110 (state of a server task)
            await asyncio.sleep(0.005)


def emit(sandbox: Sandbox, count: int, start: int = 0, pad: int = 0) -> None:
    for n in range(start, start + count):
        sandbox.webhooks.emit("TEST.EVENT", {"n": n, "pad": "x" * pad})


def test_backoff_is_upvests_fibonacci_capped_at_600_seconds() -> None:
    assert [backoff(i) for i in range(15)] == [
        1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 233, 377, 600, 600]
    assert backoff(10_000) == 600


async def test_batches_are_bounded_ordered_and_a_retry_resends_the_whole_request() -> None:
    async with Receiver(answers=[500]) as receiver, sandbox_for(
        receiver.url, webhook_batch_size=3, webhook_backoff_scale=0.2
    ) as sandbox:
        await started(receiver, sandbox)
        emit(sandbox, 1)
        await until(lambda: len(receiver.deliveries) == 1)  # failed: the queue now waits
        emit(sandbox, 10, start=1)
        await sandbox.webhooks_idle(10)
        first, retry, *rest = receiver.deliveries
        assert (first.answered, retry.answered) == (500, 200)
        assert first.body == retry.body and first.nonce != retry.nonce
        assert all(d.content_type == "application/json" for d in receiver.deliveries)
        assert [len(d.events) for d in rest] == [3, 3, 3, 1]
        events = receiver.events()
        assert [e["object"]["n"] for e in events] == list(range(11))
        stamps = [e["created_at"] for e in events]
        assert stamps == sorted(stamps)
        stats = sandbox.webhook_stats
        assert (stats.emitted, stats.delivered, stats.pending, stats.retried, stats.requests) \
            == (11, 11, 0, 1, 6)
        assert receiver.errors == []


async def test_max_package_size_bounds_the_body_and_a_big_event_goes_alone() -> None:
    async with Receiver(answers=[500]) as receiver, Sandbox(
        accounts=1, positions_per_account=5, webhook_backoff_scale=0.2
    ) as sandbox:
        await started(receiver, sandbox)
        sandbox.webhooks.subscribe(receiver.url, max_package_size=1024)
        emit(sandbox, 1)
        await until(lambda: len(receiver.deliveries) == 1)
        emit(sandbox, 20, start=1, pad=150)
        emit(sandbox, 1, start=21, pad=3000)
        emit(sandbox, 1, start=22)
        await sandbox.webhooks_idle(10)
        packages = receiver.accepted()
        assert [e["object"]["n"] for e in receiver.events()] == list(range(23))
        for package in packages:
            assert len(package.body) <= 1024 or len(package.events) == 1
        big = next(p for p in packages if any(e["object"]["n"] == 21 for e in p.events))
        assert len(big.events) == 1 and len(big.body) > 3000
        assert max(len(p.events) for p in packages) > 1  # they were batched


async def test_failures_are_retried_with_backoff_and_block_later_events() -> None:
    answers = [500, 503, "drop", "slow", 404]
    scale = 0.02
    async with Receiver(answers=list(answers)) as receiver, sandbox_for(
        receiver.url, webhook_backoff_scale=scale, webhook_timeout=0.3
    ) as sandbox:
        await started(receiver, sandbox)
        emit(sandbox, 1)
        await until(lambda: len(receiver.deliveries) >= 1)
        emit(sandbox, 1, start=1)  # waits behind the failing package
        await sandbox.webhooks_idle(20)
        attempts = receiver.deliveries[:6]
        assert all(d.events == attempts[0].events for d in attempts)
        assert [e["object"]["n"] for e in receiver.events()] == [0, 1]
        assert receiver.deliveries[6].events[0]["object"]["n"] == 1
        assert len(receiver.deliveries) == 7
        for retry, (before, after) in enumerate(itertools.pairwise(attempts)):
            assert after.at - before.at >= 0.9 * backoff(retry) * scale
        assert len({d.nonce for d in receiver.deliveries}) == 7
        stats = sandbox.webhook_stats
        assert (stats.retried, stats.delivered, stats.pending) == (5, 2, 0)


async def test_duplicate_fault_sends_each_delivered_package_twice() -> None:
    async with Receiver() as receiver, sandbox_for(
        receiver.url, webhook_backoff_scale=0.001, webhook_batch_size=2,
        webhook_faults=WebhookFaults(seed=1, duplicate_rate=1.0),
    ) as sandbox:
        await started(receiver, sandbox)
        emit(sandbox, 1)
        await sandbox.webhooks_idle(10)
        emit(sandbox, 3, start=1)
        await sandbox.webhooks_idle(10)
        bodies = [d.body for d in receiver.accepted()]
        assert len(bodies) == 2 * sandbox.webhook_stats.duplicates
        assert bodies[0::2] == bodies[1::2]
        assert len({d.nonce for d in receiver.deliveries}) == len(bodies)
        ids = [e["id"] for e in receiver.events()]
        assert len(set(ids)) == 4 and len(ids) == 8
        assert sandbox.webhook_stats.delivered == 4


async def lost_answer_run(seed: int) -> tuple[list[int], int]:
    async with Receiver() as receiver, sandbox_for(
        receiver.url, webhook_backoff_scale=0.001, webhook_batch_size=1,
        webhook_faults=WebhookFaults(seed=seed, lost_answer_rate=0.4),
    ) as sandbox:
        await started(receiver, sandbox)
        emit(sandbox, 25)
        await sandbox.webhooks_idle(20)
        events = receiver.events()
        counts = [sum(1 for e in events if e["object"]["n"] == n) for n in range(25)]
        stats = sandbox.webhook_stats
        assert min(counts) >= 1 and stats.delivered == 25
        assert stats.lost_answers == sum(counts) - 25 == stats.retried
        # The receiver saw the same event again only right after itself (blocking).
        ns = [e["object"]["n"] for e in events]
        assert ns == sorted(ns)
        return counts, stats.lost_answers


async def test_lost_answers_make_redeliveries_deterministic_from_the_seed() -> None:
    first = await lost_answer_run(3)
    assert first[1] > 0
    assert await lost_answer_run(3) == first


async def test_a_receiver_that_never_answers_200_keeps_events_pending_and_stops_cleanly() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with Receiver() as receiver:
        receiver.default = lambda _: 503
        async with Sandbox(accounts=1, positions_per_account=5, webhook_backoff_scale=0.001,
                           webhook_urls=[receiver.url, f"http://127.0.0.1:{port}/x"]) as sandbox:
            await started(receiver, sandbox)
            emit(sandbox, 3)
            with pytest.raises(TimeoutError):
                await sandbox.webhooks_idle(0.3)
            stats = sandbox.webhook_stats
            assert stats.emitted == 6 and stats.pending == 6 and stats.delivered == 0
            assert stats.retried >= 4
            down = [s for s in sandbox.webhooks.subscriptions.values() if str(port) in s.url]
            assert sandbox.webhooks.unsubscribe(down[0].id)
            assert sandbox.webhook_stats.dropped == 3 and sandbox.webhook_stats.pending == 3
        assert len(receiver.deliveries) >= 2 and receiver.errors == []


async def test_orders_still_to_fill_keep_the_sandbox_busy() -> None:
    async with Receiver() as receiver, sandbox_for(
        receiver.url, order_fill_seconds=0.2, webhook_backoff_scale=0.001
    ) as sandbox, client_for(sandbox) as client:
        receiver.use_jwks(await jwks_of(client))
        account = sandbox.tenant.account_ids[0]
        order = await client.portfolios.orders.create(
            user_id="4b9732bd-7496-4e91-8a5f-6360479d7fed", account_id=account,
            cash_amount="10", side="BUY")
        assert not sandbox.webhooks.idle()
        await sandbox.webhooks_idle(10)
        assert (await client.portfolios.orders.retrieve(order.id)).status == "FILLED"
        assert sandbox.webhook_stats.pending == 0
        types = [e["type"] for e in receiver.events()]
        assert types[0] == "PORTFOLIO_ORDER.NEW" and types[-1] == "PORTFOLIO_ORDER.FILLED"


async def test_stopping_during_a_slow_delivery_closes_everything() -> None:
    async with Receiver(answers=["slow"]) as receiver:
        sandbox = sandbox_for(receiver.url, webhook_timeout=30)
        await sandbox.start()
        try:
            await started(receiver, sandbox)
            emit(sandbox, 2)
            await until(lambda: len(receiver.deliveries) == 1)
            assert not sandbox.webhooks.idle()
        finally:
            async with asyncio.timeout(5):
                await sandbox.stop()
        assert sandbox.webhook_stats.pending == 2 and sandbox.webhook_stats.delivered == 0


def test_cli_refuses_a_webhook_url_off_loopback() -> None:
    from click.testing import CliRunner

    from upvest_async.cli.sandbox import sandbox_command

    for url in ("http://example.com/hooks", "https://127.0.0.1:8443/"):
        result = CliRunner().invoke(sandbox_command, ["--webhook-url", url])
        assert result.exit_code == 2, result.output
        assert "Invalid value for --webhook-url" in result.output and url in result.output
