"""The client under a rate limit as Upvest's, end to end against the throttling sandbox:
exports and batch triggers complete exactly, a deadline reached while throttled is a typed
timeout, the non-blocking mode sends nothing, a cancelled waiter leaves the queue, the counters
and the command line's summaries (:mod:`upvest_async.ratelimit`, the retries guide)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest
from support.clients import client_for

from upvest_async import (
    APITimeoutError,
    LocalRateLimitError,
    RateLimiter,
    RateLimitError,
    RetryPolicy,
)
from upvest_async.converter import unstructure
from upvest_async.jobs import trigger_many
from upvest_async.sandbox import Sandbox

CLI = [sys.executable, "-m", "upvest_async"]
FAST = RetryPolicy(backoff_base=0.01, backoff_max=0.05)


async def test_an_export_under_the_limit_is_exact_and_learns_the_rate() -> None:
    async with Sandbox(accounts=30, positions_per_account=3, seed=11, rate_limit=25) as sandbox:
        accounts = sandbox.tenant.account_ids
        async with client_for(sandbox, retry_policy=FAST) as client:
            exported = [unstructure(p) async for p in client.positions.export(accounts)]
            stats = client.stats
        assert exported == [p for a in accounts for p in sandbox.tenant.positions(a)]
        assert sandbox.counters.throttled > 0  # the limit was reached ...
        assert stats.throttled == sandbox.counters.throttled  # ... every 429 was re-sent
        assert stats.learned_rate is not None and stats.learned_rate < 100
        assert client.retry_budget.level == client.retry_budget.capacity  # 429s cost nothing


async def test_a_batch_under_the_limit_triggers_each_account_once() -> None:
    async with Sandbox(accounts=40, positions_per_account=1, seed=12, rate_limit=20) as sandbox:
        accounts = sandbox.tenant.account_ids
        async with client_for(sandbox, retry_policy=FAST, max_retries=0) as client:
            results = await trigger_many(client, accounts, concurrency=32,
                                         batch_id="throttled")
        assert [r.status for r in results] == ["triggered"] * 40
        assert sandbox.counters.throttled > 0
        assert len(sandbox.portfolios.executions) == 40 and sandbox.counters.duplicates == 0


async def test_a_single_call_stops_after_max_throttled_retries() -> None:
    async with Sandbox(accounts=2, positions_per_account=2, seed=13, rate_limit=0.5,
                       rate_burst=1) as sandbox:
        account = sandbox.tenant.account_ids[0]
        policy = RetryPolicy(backoff_base=0.01, backoff_max=0.01, max_throttled_retries=2)
        async with client_for(sandbox, retry_policy=policy) as client:
            with pytest.raises(RateLimitError) as caught:  # the token took the only token
                await client.positions.retrieve(account, "US0378331005")
        assert caught.value.attempts == 3 and caught.value.status == 429
        assert not isinstance(caught.value, LocalRateLimitError)


async def test_a_deadline_reached_while_throttled_is_a_typed_timeout() -> None:
    async with Sandbox(accounts=2, positions_per_account=2, seed=13, rate_limit=0.2,
                       rate_burst=1) as sandbox:
        account = sandbox.tenant.account_ids[0]
        async with client_for(sandbox, retry_policy=FAST) as client:
            with pytest.raises(APITimeoutError) as caught:
                await client.with_options(deadline=1.0, max_throttled_retries=None).positions \
                    .retrieve(account, "US0378331005")
        error = caught.value
        assert error.limit == "deadline" and error.seconds == 1.0 and error.throttled >= 1
        assert "while throttled" in str(error)


async def test_the_non_blocking_mode_raises_the_wait_and_sends_nothing() -> None:
    async with Sandbox(accounts=2, positions_per_account=2, seed=14) as sandbox:
        account = sandbox.tenant.account_ids[0]
        limiter = RateLimiter(max_requests_per_second=1, block=False)
        async with client_for(sandbox, rate_limiter=limiter) as client:
            # The call takes the first turn; the access token request it needs, the next.
            with pytest.raises(LocalRateLimitError) as caught:
                await client.positions.retrieve(account, "US0378331005")
        error = caught.value
        assert isinstance(error, RateLimitError) and error.attempts == 0
        assert error.retry_after is not None and 0.5 < error.retry_after <= 1.0
        assert "non-blocking" in str(error) and error.path == "/auth/token"
        assert not sandbox.state.journal  # nothing was sent


async def test_a_call_cancelled_while_waiting_for_its_turn_leaves_the_queue() -> None:
    async with Sandbox(accounts=2, positions_per_account=2, seed=15) as sandbox:
        account = sandbox.tenant.account_ids[0]
        instrument = sandbox.tenant.positions(account)[0]["instrument"]["uuid"]
        limiter = RateLimiter(max_requests_per_second=5)
        async with client_for(sandbox, rate_limiter=limiter) as client:
            await client.positions.retrieve(account, instrument)
            waiting = [asyncio.create_task(client.positions.retrieve(account, instrument))
                       for _ in range(3)]
            await asyncio.sleep(0.05)
            waiting[1].cancel()
            done = await asyncio.gather(*waiting, return_exceptions=True)
            assert isinstance(done[1], asyncio.CancelledError)
            assert not isinstance(done[0], BaseException)
            assert not isinstance(done[2], BaseException)
            assert not limiter._queue
        assert sum(e.path.startswith("/accounts") for e in sandbox.state.journal) == 3


async def test_clients_of_one_client_id_share_a_limiter() -> None:
    async with Sandbox(accounts=1, positions_per_account=1, seed=16) as sandbox:
        async with client_for(sandbox) as one, client_for(sandbox) as two, \
                client_for(sandbox, base_url=f"{sandbox.base_url}/") as slash:
            assert one.rate_limiter is two.rate_limiter is slash.rate_limiter  # one origin
            assert one.with_options(timeout=3).rate_limiter is one.rate_limiter
        own = RateLimiter()
        async with client_for(sandbox, rate_limiter=own) as three:
            assert three.rate_limiter is own


def test_the_commands_report_the_throttling(tmp_path: Path) -> None:
    out, summary = tmp_path / "p.jsonl", tmp_path / "s.json"
    result = subprocess.run(
        [*CLI, "export-positions", "--embedded-sandbox", "--sandbox-accounts", "25",
         "--sandbox-positions", "2", "--sandbox-rate-limit", "20", "--out", str(out),
         "--summary-json", str(summary), "--concurrency", "16"],
        capture_output=True, text=True, timeout=120, check=False,
        env={k: v for k, v in __import__("os").environ.items()
             if not k.startswith("UPVEST_API_")},
    )
    assert result.returncode == 0, result.stderr
    assert len(out.read_text().splitlines()) == 50
    figures = json.loads(summary.read_text())
    assert figures["throttled"] > 0 and figures["learned_rate"] is not None
    assert "answered 429, paced at" in result.stderr.splitlines()[-1]


@pytest.mark.parametrize("value", ["0", "-1", "nan", "abc"])
def test_a_bad_ceiling_is_a_usage_error(tmp_path: Path, value: str) -> None:
    result = subprocess.run(
        [*CLI, "export-positions", "--embedded-sandbox", "--out", str(tmp_path / "p.jsonl"),
         "--max-requests-per-second", value],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 2 and "--max-requests-per-second" in result.stderr
    assert not (tmp_path / "p.jsonl").exists()
