"""Retries that never duplicate, proven against the fault-injecting sandbox on loopback.

Every test goes through the public client methods and the real sandbox (signatures, tokens,
idempotency store); the faults come from :class:`upvest_async.sandbox.Faults`. Waits are
measured with the sandbox's clock (journal ``at``), never by sleeping in the test, and only as
lower bounds.
"""

from __future__ import annotations

import asyncio
import email.utils
import itertools
import logging
import re
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.clients import client_for

from upvest_async import (
    BadRequestError,
    IdempotencyKeyReusedError,
    InternalServerError,
    RateLimitError,
    RetryBudget,
    RetryPolicy,
    UpvestClient,
)
from upvest_async.converter import unstructure
from upvest_async.errors import APIStatusError
from upvest_async.retries import is_retryable
from upvest_async.sandbox import FAULT_KINDS, Faults, JournalEntry, Sandbox, Tenant

#: Short backoffs so that fault storms take milliseconds.
FAST = RetryPolicy(backoff_base=0.01, backoff_max=0.05)
USER = "4b9732bd-7496-4e91-8a5f-6360479d7fed"
ORDERS = "/portfolios/orders"
EXECUTIONS = "/portfolios/rebalancings/executions"
NONCE = re.compile(r';nonce="([^"]+)"')


def entries(sandbox: Sandbox, path: str, method: str | None = None) -> list[JournalEntry]:
    """Journal entries of ``path`` (exact) in arrival order (the journal is in answer order)."""
    found = [e for e in sandbox.state.journal
             if e.path == path and (method is None or e.method == method)]
    return sorted(found, key=lambda e: e.at)


def api_entries(sandbox: Sandbox) -> list[JournalEntry]:
    return [e for e in sandbox.state.journal if e.path != "/auth/token"]


def a_position(sandbox: Sandbox, index: int = 0) -> tuple[str, str]:
    account = sandbox.tenant.account_ids[index % len(sandbox.tenant.account_ids)]
    return account, sandbox.tenant.positions(account)[0]["instrument"]["uuid"]


class WatchedBudget(RetryBudget):
    """A :class:`RetryBudget` that remembers its lowest level."""

    def __init__(self, capacity: int = 500) -> None:
        super().__init__(capacity)
        self.lowest = capacity

    def acquire(self, exc: BaseException | None) -> int | None:
        cost = super().acquire(exc)
        self.lowest = min(self.lowest, self.level)
        return cost


# The fault configuration itself


def test_faults_are_validated() -> None:
    assert not Faults().active
    assert Faults(script=["none"]).script == ("none",)
    with pytest.raises(ValueError, match="between 0 and 1"):
        Faults(server_error_rate=1.5)
    with pytest.raises(ValueError, match="add up to"):
        Faults(server_error_rate=0.6, reset_rate=0.5)
    with pytest.raises(ValueError, match="unknown fault kinds"):
        Faults(script=("418",))
    with pytest.raises(ValueError):
        Faults(lost_response_mode="sometimes")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Faults(rate_limit_retry_after=-1)


async def test_faults_are_deterministic_from_the_seed() -> None:
    faults = Faults(seed=42, server_error_rate=0.2, rate_limit_rate=0.1, reset_rate=0.1,
                    rate_limit_retry_after=0)
    seen = []
    for _ in range(2):
        async with Sandbox(accounts=2, positions_per_account=5, seed=3, faults=faults) as sandbox:
            async with client_for(sandbox, max_retries=20, retry_policy=FAST) as client:
                account, instrument = a_position(sandbox)
                for _ in range(30):  # one after the other: the arrival order is fixed
                    await client.positions.retrieve(account, instrument)
            seen.append([e.fault for e in api_entries(sandbox)])
            assert sum(sandbox.counters.faults.values()) == sum(f is not None for f in seen[-1])
    assert seen[0] == seen[1] and any(seen[0])


# Lost responses: nothing is created twice, every caller holds the original id


async def test_lost_responses_create_every_resource_exactly_once() -> None:
    n = 40
    faults = Faults(seed=5, lost_response_rate=0.5)  # drop and 504, half and half
    async with Sandbox(accounts=12, positions_per_account=5, seed=11, faults=faults) as sandbox:
        store, accounts = sandbox.portfolios, sandbox.tenant.account_ids
        # max_retries 20: a replay can be lost too (50 %), 21 losses in a row are negligible.
        async with client_for(sandbox, max_retries=20, retry_policy=FAST) as client:
            # Distinct content per call, so a duplicate under another key would be counted.
            order_calls = [
                client.portfolios.orders.create(
                    user_id=USER, account_id=accounts[i % len(accounts)],
                    cash_amount=f"{i + 1}.25", side="BUY",
                )
                for i in range(n)
            ]
            targets = list(itertools.combinations(accounts, 2))[:n]
            keys = [str(uuid.uuid4()) for _ in targets]
            execution_calls = [
                client.portfolios.rebalancings.executions.create(
                    accounts=list(pair), idempotency_key=key
                )
                for pair, key in zip(targets, keys, strict=True)
            ]
            results = await asyncio.gather(*order_calls, *execution_calls)
            assert client.retry_budget.refusals == 0
        orders, executions = results[:n], results[n:]

        counters = sandbox.counters
        assert len(store.orders) == n and counters.created["order"] == n
        assert len(store.executions) == n and counters.created["execution"] == n
        assert counters.duplicates == 0
        assert counters.idempotent_replays > 0
        assert counters.faults["lost-drop"] > 0 and counters.faults["lost-504"] > 0
        # Every caller holds the resource the store created for its call.
        by_amount = {order["cash_amount"]: order["id"] for order in store.orders.values()}
        assert [str(order.id) for order in orders] == [by_amount[f"{i + 1}.25"] for i in range(n)]
        assert [str(e.id) for e in executions] == [store.created_by_key[key] for key in keys]
        for order in orders:
            stored = store.orders[str(order.id)]
            assert (str(order.account_id), str(order.cash_amount), order.status.value) == (
                stored["account_id"], stored["cash_amount"], stored["status"]
            )
        # Each call kept one key on all its attempts (the generated ones included).
        for path in (ORDERS, EXECUTIONS):
            attempts = entries(sandbox, path, "POST")
            assert len({e.headers["idempotency-key"] for e in attempts}) == n
            assert len(attempts) > n  # lost answers were retried
        assert {e.headers["idempotency-key"] for e in entries(sandbox, EXECUTIONS)} == set(keys)


async def test_a_timed_out_slow_write_is_not_created_twice() -> None:
    # The handler runs and stores its answer, which is then held back longer than the client
    # waits: the retry (same key) gets the stored answer.
    faults = Faults(script=("slow",), slow_seconds=0.5)
    async with Sandbox(accounts=2, positions_per_account=5, seed=4, faults=faults) as sandbox:
        async with client_for(sandbox, retry_policy=FAST, timeout=0.2) as client:
            order = await client.portfolios.orders.create(
                user_id=USER, account_id=sandbox.tenant.account_ids[0], cash_amount="10",
                side="BUY",
            )
        assert list(sandbox.portfolios.orders) == [str(order.id)]
        assert sandbox.counters.faults["slow"] == 1
        assert sandbox.counters.idempotent_replays == 1 and sandbox.counters.duplicates == 0


async def test_overlapping_attempts_of_a_write_create_it_once() -> None:
    # The first attempt times out while its handler still runs (key claimed, in progress):
    # the retry gets 409 idempotency_key_in_progress, waits, and then the stored answer.
    async with Sandbox(accounts=2, positions_per_account=5, seed=4) as sandbox:
        sandbox.state.mutation_delay = 1.0
        policy = RetryPolicy(backoff_base=0.01, backoff_max=0.05, in_progress_wait=0.2)
        async with client_for(sandbox, max_retries=10, retry_policy=policy, timeout=0.2) as client:
            order = await client.portfolios.orders.create(
                user_id=USER, account_id=sandbox.tenant.account_ids[0], cash_amount="10",
                side="BUY",
            )
        assert list(sandbox.portfolios.orders) == [str(order.id)]
        attempts = entries(sandbox, ORDERS)
        assert 409 in [e.status for e in attempts] and attempts[-1].status == 200
        assert len({e.headers["idempotency-key"] for e in attempts}) == 1
        assert sandbox.counters.duplicates == 0


async def test_duplicates_under_different_keys_are_counted() -> None:
    # What a client that changes its key on retry would cause: the sandbox sees it.
    async with Sandbox(accounts=2, positions_per_account=5, seed=4) as sandbox:
        async with client_for(sandbox) as client:
            account = sandbox.tenant.account_ids[0]
            for _ in range(3):
                await client.portfolios.orders.create(
                    user_id=USER, account_id=account, cash_amount="10", side="BUY"
                )
            await client.portfolios.rebalancings.executions.create(accounts=[account])
        assert sandbox.counters.created["order"] == 3
        assert sandbox.counters.duplicates == 2


# Paging under 5xx, 429 and resets


async def test_export_of_50k_positions_under_faults_is_complete_and_in_order() -> None:
    faults = Faults(seed=8, server_error_rate=0.2, rate_limit_rate=0.1, rate_limit_retry_after=0,
                    reset_rate=0.1)
    async with Sandbox(accounts=25, positions_per_account=2000, seed=21,
                       faults=faults) as sandbox:
        accounts = sandbox.tenant.account_ids
        async with client_for(sandbox, max_retries=15, retry_policy=FAST) as client:
            exported = [unstructure(p) async for p in client.positions.export(accounts)]
        expected = [p for account in accounts for p in sandbox.tenant.positions(account)]
        assert len(exported) == 50_000
        assert exported == expected
        injected = sandbox.counters.faults
        assert injected["429"] > 0 and injected["reset"] > 0
        assert injected["500"] + injected["502"] + injected["503"] > 0
        assert client.retry_budget.refusals == 0


# Retry-After


async def test_retry_after_seconds_are_honoured() -> None:
    faults = Faults(script=("429",), rate_limit_retry_after=1)
    async with Sandbox(accounts=2, positions_per_account=5, seed=4, faults=faults) as sandbox:
        async with client_for(sandbox, retry_policy=FAST) as client:
            await client.portfolios.orders.create(
                user_id=USER, account_id=sandbox.tenant.account_ids[0], cash_amount="10",
                side="BUY",
            )
        first, second = entries(sandbox, ORDERS)
        assert (first.status, first.fault, second.status, second.fault) == (429, "429", 200, None)
        assert second.at - first.at >= 1.0  # the sandbox clock, not a sleep in the test
        assert first.headers["idempotency-key"] == second.headers["idempotency-key"]


async def test_retry_after_http_date_is_honoured() -> None:
    faults = Faults(script=("429-date", "429-date"), rate_limit_retry_after=1)
    async with Sandbox(accounts=2, positions_per_account=5, seed=4, faults=faults) as sandbox:
        account, instrument = a_position(sandbox)
        async with client_for(sandbox, retry_policy=FAST) as client:
            with pytest.raises(RateLimitError) as caught:
                await client.with_options(max_throttled_retries=0).positions.retrieve(
                    account, instrument)
            header = caught.value.headers["retry-after"]
            assert not header.isdigit() and email.utils.parsedate_to_datetime(header).tzinfo
            assert caught.value.retry_after is not None and caught.value.attempts == 1
            await client.positions.retrieve(account, instrument)
        path = f"/accounts/{account}/positions/uuid:{instrument}"
        _, rate_limited, answered = entries(sandbox, path)
        assert (rate_limited.status, answered.status) == (429, 200)
        assert answered.at - rate_limited.at >= 1.0


async def test_retry_after_is_capped_by_the_policy(caplog: pytest.LogCaptureFixture) -> None:
    faults = Faults(script=("429",), rate_limit_retry_after=3600)
    async with Sandbox(accounts=2, positions_per_account=5, seed=4, faults=faults) as sandbox:
        account, instrument = a_position(sandbox)
        policy = RetryPolicy(backoff_base=0.01, backoff_max=0.05, retry_after_max=0.05)
        async with client_for(sandbox, retry_policy=policy) as client:
            with caplog.at_level(logging.INFO, logger="upvest_async"):
                await client.positions.retrieve(account, instrument)
        [record] = [r for r in caplog.records if r.getMessage().startswith("retrying")]
        assert "next in 0.05 s" in record.getMessage() and record.levelno == logging.INFO


# What is never retried


async def test_400_and_422_are_not_retried() -> None:
    async with Sandbox(accounts=2, positions_per_account=5, seed=4) as sandbox:
        account = sandbox.tenant.account_ids[0]
        async with client_for(sandbox, max_retries=5, retry_policy=FAST) as client:
            # "HOLD" passes the SDK's enum-token check, the API refuses it.
            with pytest.raises(BadRequestError) as bad:
                await client.portfolios.orders.create(
                    user_id=USER, account_id=account, cash_amount="10", side="HOLD"
                )
            assert bad.value.attempts == 1 and not is_retryable(bad.value)
            assert len(entries(sandbox, ORDERS)) == 1

            key = str(uuid.uuid4())
            await client.portfolios.orders.create(
                user_id=USER, account_id=account, cash_amount="10", side="BUY",
                idempotency_key=key,
            )
            with pytest.raises(IdempotencyKeyReusedError) as reused:
                await client.portfolios.orders.create(
                    user_id=USER, account_id=account, cash_amount="11", side="BUY",
                    idempotency_key=key,
                )
            assert reused.value.status == 422 and reused.value.attempts == 1
            assert [e.status for e in entries(sandbox, ORDERS)] == [400, 200, 422]
        assert sandbox.counters.created["order"] == 1


# The retry budget


async def test_the_budget_stops_a_storm(caplog: pytest.LogCaptureFixture) -> None:
    calls, max_retries = 20, 5
    budget = RetryBudget(capacity=50)  # pays for 10 retries (5 tokens each)
    async with Sandbox(accounts=2, positions_per_account=5, seed=4,
                       faults=Faults(server_error_rate=1.0)) as sandbox:
        account, instrument = a_position(sandbox)
        async with client_for(sandbox, max_retries=max_retries, retry_policy=FAST,
                                  retry_budget=budget) as client:
            with caplog.at_level(logging.WARNING, logger="upvest_async"):
                results = await asyncio.gather(
                    *(client.positions.retrieve(account, instrument) for _ in range(calls)),
                    return_exceptions=True,
                )
            assert all(isinstance(r, InternalServerError) for r in results)
            attempts = len(api_entries(sandbox))
            assert attempts == sum(r.attempts for r in results if isinstance(r, APIStatusError))
            assert attempts <= calls + 50 // 5 < calls * (max_retries + 1)
            assert budget.level < budget.retry_cost and budget.refusals > 0
            assert sum(r.attempts == 1 for r in results if isinstance(r, APIStatusError)) >= 10
            assert any("retry budget exhausted" in r.getMessage() for r in caplog.records)

            # The storm is over: successes refill the bucket.
            sandbox.state.faults = Faults()
            drained = budget.level
            for _ in range(10):
                await client.positions.retrieve(account, instrument)
            assert budget.level == drained + 10 * budget.success_reward


async def test_the_budget_never_empties_at_30_percent_failures() -> None:
    calls = 200
    budget = WatchedBudget()  # the default capacity and costs
    faults = Faults(seed=13, server_error_rate=0.3)
    async with Sandbox(accounts=4, positions_per_account=5, seed=4, faults=faults) as sandbox:
        # max_retries 10: with 200 calls at once and 30 % failures, 6 failures in a row for
        # some call is a 15 % event; 11 in a row is negligible.
        async with client_for(sandbox, max_retries=10, retry_policy=FAST,
                                  retry_budget=budget) as client:
            await asyncio.gather(*(
                client.positions.retrieve(*a_position(sandbox, i)) for i in range(calls)
            ))
        attempts = api_entries(sandbox)
        failed = sum(e.fault is not None for e in attempts)
        assert 0.2 < failed / len(attempts) < 0.4 and failed > 40
        assert budget.refusals == 0 and budget.lowest > budget.capacity // 2
        assert budget.level == budget.capacity


# Signatures and logs


async def test_no_attempt_reuses_a_nonce() -> None:
    faults = Faults(seed=17, server_error_rate=0.2, rate_limit_rate=0.1, reset_rate=0.1,
                    lost_response_rate=0.3, rate_limit_retry_after=0)
    async with Sandbox(accounts=4, positions_per_account=5, seed=4, faults=faults) as sandbox:
        async with client_for(sandbox, max_retries=20, retry_policy=FAST) as client:
            await asyncio.gather(*(
                client.portfolios.orders.create(
                    user_id=USER, account_id=sandbox.tenant.account_ids[i % 4],
                    cash_amount=f"{i + 1}", side="SELL",
                )
                for i in range(30)
            ), *(client.positions.retrieve(*a_position(sandbox, i)) for i in range(30)))
        journal = list(sandbox.state.journal)
        nonces = [e.nonce for e in journal]
        assert None not in nonces and len(set(nonces)) == len(nonces)
        assert sandbox.counters.nonce_replays == 0 and sandbox.counters.bad_signatures == 0
        by_key: defaultdict[str, list[JournalEntry]] = defaultdict(list)
        for entry in entries(sandbox, ORDERS):
            by_key[entry.headers["idempotency-key"]].append(entry)
        assert len(by_key) == 30
        retried = [attempts for attempts in by_key.values() if len(attempts) > 1]
        assert retried
        for attempts in retried:
            inputs = [e.headers["signature-input"] for e in attempts]
            assert len(set(inputs)) == len(inputs)
            assert [NONCE.search(text).group(1) for text in inputs] == [  # type: ignore[union-attr]
                e.nonce for e in attempts
            ]
        assert sandbox.counters.duplicates == 0 and sandbox.counters.created["order"] == 30


async def test_each_retry_is_logged_without_secrets(caplog: pytest.LogCaptureFixture) -> None:
    faults = Faults(script=("503", "429", "reset"), rate_limit_retry_after=0)
    async with Sandbox(accounts=2, positions_per_account=5, seed=4, faults=faults) as sandbox:
        caplog.set_level(logging.DEBUG)
        async with client_for(sandbox, retry_policy=FAST) as client:
            await client.with_options(max_retries=3).portfolios.orders.create(
                user_id=USER, account_id=sandbox.tenant.account_ids[0], cash_amount="10",
                side="BUY",
            )
        attempts = entries(sandbox, ORDERS)
        assert [(e.status, e.fault) for e in attempts] == [
            (503, "503"), (429, "429"), (0, "reset"), (200, None)
        ]
        retries = [r for r in caplog.records
                   if r.name == "upvest_async" and r.getMessage().startswith("retrying")]
        # A 429 is expected under a rate limit: INFO; the others are warnings.
        assert [r.levelno for r in retries] == [logging.WARNING, logging.INFO, logging.WARNING]
        for number, (record, entry, what) in enumerate(
            zip(retries, attempts, ("status 503", "status 429", "APIConnectionError"),
                strict=False), start=1,
        ):
            message = record.getMessage()
            assert message.startswith(f"retrying POST {ORDERS} after {what} (attempt {number},")
            assert re.search(r"next in \d+\.\d\d s", message)
            answer = f"request id {entry.request_id}" if entry.status else "no answer"
            assert message.endswith(f", {answer})")

        secrets = {sandbox.credentials.client_secret, sandbox.credentials.passphrase,
                   *sandbox.state.tokens}
        secrets |= {e.headers["authorization"].removeprefix("Bearer ")
                    for e in sandbox.state.journal if "authorization" in e.headers}
        assert len(secrets) >= 3
        for record in caplog.records:
            text = record.getMessage() + (record.exc_text or "") + repr(record.args)
            assert not any(secret in text for secret in secrets), record.getMessage()
            assert "PRIVATE KEY" not in text


# Tokens


async def test_short_token_lifetime_mid_run_renews_the_token() -> None:
    faults = Faults(seed=23, server_error_rate=0.2)
    async with Sandbox(accounts=4, positions_per_account=5, seed=4, token_lifetime=1,
                       faults=faults) as sandbox:
        async with client_for(sandbox, max_retries=20, retry_policy=FAST) as client:
            for i in range(10):
                await client.positions.retrieve(*a_position(sandbox, i))
            before = {e.headers["authorization"] for e in api_entries(sandbox)}
            seen = len(sandbox.state.journal)
            # Every token issued so far expires on the sandbox's clock.
            sandbox.state.clock = lambda: time.monotonic() + 3600
            for i in range(10):
                await client.positions.retrieve(*a_position(sandbox, i))
        later = [e for e in list(sandbox.state.journal)[seen:] if e.path != "/auth/token"]
        assert sandbox.counters.unauthorized >= 1 and sandbox.counters.token_requests >= 2
        answered = {e.headers["authorization"] for e in later if e.status == 200}
        assert answered and not answered & before
        assert sum(e.fault is not None for e in sandbox.state.journal) > 0


async def test_faults_can_hit_the_token_endpoint() -> None:
    faults = Faults(script=("503", "reset"), fault_token_endpoint=True)
    async with Sandbox(accounts=2, positions_per_account=5, seed=4, faults=faults) as sandbox:
        account, instrument = a_position(sandbox)
        async with client_for(sandbox, retry_policy=FAST) as client:
            await client.positions.retrieve(account, instrument)
        tokens = entries(sandbox, "/auth/token")
        assert [(e.status, e.fault) for e in tokens] == [(503, "503"), (0, "reset"), (200, None)]
        assert sandbox.counters.faults["503"] == 1 and sandbox.counters.faults["reset"] == 1


async def test_token_request_failures_count_as_attempts_of_the_call() -> None:
    faults = Faults(script=("503", "503", "503"), fault_token_endpoint=True)
    async with Sandbox(accounts=2, positions_per_account=5, seed=4, faults=faults) as sandbox:
        account, instrument = a_position(sandbox)
        async with client_for(sandbox, retry_policy=FAST) as client:  # 2 retries
            with pytest.raises(InternalServerError) as caught:
                await client.positions.retrieve(account, instrument)
        assert caught.value.attempts == 3 and caught.value.path == "/auth/token"
        assert len(entries(sandbox, "/auth/token")) == 3 and not api_entries(sandbox)


async def test_requests_refused_by_authentication_draw_no_fault() -> None:
    async with Sandbox(accounts=2, positions_per_account=5, seed=4,
                       faults=Faults(script=("none", "503"))) as sandbox:
        account, instrument = a_position(sandbox)
        async with client_for(sandbox, retry_policy=FAST) as client:
            await client.positions.retrieve(account, instrument)
            sandbox.state.revoke_tokens()
            # 401 (no draw), renewed token, replay: 503 (the script's second entry), retry.
            await client.positions.retrieve(account, instrument)
        assert [(e.status, e.fault) for e in api_entries(sandbox)] == [
            (200, None), (401, None), (503, "503"), (200, None)
        ]
        assert sandbox.counters.faults == {**dict.fromkeys(FAULT_KINDS, 0), "503": 1}


# The command line


@pytest.fixture
def faulty_sandbox(tmp_path: Path) -> Iterator[tuple[Path, subprocess.Popen[str]]]:
    env_file = tmp_path / "sandbox.env"
    process = subprocess.Popen(
        [sys.executable, "-m", "upvest_async", "sandbox", "--accounts", "2", "--positions",
         "1500", "--seed", "5", "--env-file", str(env_file), "--error-rate", "0.2",
         "--rate-limit-rate", "0.1", "--retry-after", "0", "--reset-rate", "0.1",
         "--lost-response-rate", "0.1", "--slow-rate", "0.05", "--slow-seconds", "0.01",
         "--fault-seed", "9"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not env_file.exists() or not env_file.read_text():
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        yield env_file, process
    finally:
        process.terminate()
        process.communicate(timeout=10)


async def test_cli_sandbox_injects_faults(
    faulty_sandbox: tuple[Path, subprocess.Popen[str]],
) -> None:
    env_file, process = faulty_sandbox
    variables = dict(
        line.removeprefix("export ").split("=", 1) for line in env_file.read_text().splitlines()
    )
    tenant = Tenant(accounts=2, positions_per_account=1500, seed=5)
    async with UpvestClient.from_env(variables, max_retries=20, retry_policy=FAST) as client:
        accounts = [str(c.account_id) async for c in client.portfolios.configurations.list()]
        exported = [unstructure(p) async for p in client.positions.export(accounts)]
        for account in accounts:
            for position in tenant.positions(account)[:10]:
                await client.positions.retrieve(account, position["instrument"]["uuid"])
        assert client.stats.retries > 0  # 45 % of 25 GETs fail at least once
    assert accounts == tenant.account_ids
    assert exported == [p for account in accounts for p in tenant.positions(account)]
    assert process.stdout is not None
    lines = [process.stdout.readline(), process.stdout.readline()]
    assert lines[1].startswith("Injecting faults (seed 9): 20% 5xx, 10% 429"), lines


def test_cli_sandbox_refuses_fault_rates_above_one() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "upvest_async", "sandbox", "--error-rate", "0.7",
         "--reset-rate", "0.5"],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2 and "add up to 1.2" in result.stderr
