"""The sandbox throttles as Upvest does: one token bucket per ``upvest-client-id``, a 429
problem+json answer without ``Retry-After`` before anything else happens, changeable while
running, counted.

The bucket arithmetic (:class:`ClientBuckets`) is tested on explicit times; the sandbox is tested
as a real server on 127.0.0.1, sent raw signed requests by a plain aiohttp session (the client's
own retries and pacing would hide the 429s), mostly with a fake ``state.clock`` so that refills
are exact and no test sleeps but one.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from support.sandbox_requests import FORM_TYPE, ITEMS, signed, token_form
from yarl import URL

from upvest_async.sandbox import Faults, Sandbox
from upvest_async.sandbox.throttling import ClientBuckets, check_burst, check_rate, default_burst

CLI = [sys.executable, "-m", "upvest_async"]
TOKEN = "/auth/token"


# -- the buckets, on explicit times ---------------------------------------------------------


def test_a_bucket_starts_full_and_serves_its_burst() -> None:
    buckets = ClientBuckets(2.0, 3.0)
    assert [buckets.take("a", 10.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("a", 10.0) == pytest.approx(0.5)  # seconds until one token at 2/s
    assert buckets.level("a", 10.0) == 0.0


def test_a_bucket_refills_at_the_rate_up_to_its_capacity() -> None:
    buckets = ClientBuckets(2.0, 3.0)
    for _ in range(3):
        buckets.take("a", 0.0)
    assert buckets.take("a", 0.25) == pytest.approx(0.25)  # half a token: refused
    assert buckets.level("a", 0.25) == pytest.approx(0.5)  # the refusal took nothing
    assert buckets.take("a", 0.5) == 0.0
    assert buckets.take("a", 0.5) > 0
    assert buckets.level("a", 100.0) == 3.0  # never more than the capacity
    assert [buckets.take("a", 100.0) for _ in range(4)][-1] == pytest.approx(0.5)


def test_each_key_has_its_own_bucket() -> None:
    buckets = ClientBuckets(1.0, 1.0)
    assert buckets.take("a", 0.0) == 0.0
    assert buckets.take("a", 0.0) == pytest.approx(1.0)
    assert buckets.take("b", 0.0) == 0.0  # b is untouched by a
    assert buckets.take(None, 0.0) == 0.0  # requests without a client id: one more bucket
    assert buckets.take(None, 0.0) > 0
    assert len(buckets) == 3


def test_rate_change_keeps_the_level_clipped_and_refills_at_the_new_rate() -> None:
    buckets = ClientBuckets(1.0, 4.0)
    for _ in range(4):
        buckets.take("a", 0.0)
    buckets.take("b", 0.0)  # b holds 3
    buckets.set_rate(10.0, 2.0, 1.0)  # a: 1 token counted at the old rate; b: 4 clipped to 2
    assert (buckets.rate, buckets.burst) == (10.0, 2.0)
    assert buckets.level("a", 1.0) == pytest.approx(1.0)
    assert buckets.level("b", 1.0) == pytest.approx(2.0)
    assert buckets.level("a", 1.05) == pytest.approx(1.5)  # 10 tokens/s from the change on
    assert buckets.level("new", 1.0) == 2.0
    buckets.set_rate(0.5, None, 2.0)  # the default capacity: max(1, 0.5 / 10)
    assert buckets.burst == 1.0 and buckets.level("a", 2.0) == 1.0


def test_a_refused_rate_change_changes_nothing() -> None:
    buckets = ClientBuckets(5.0)
    buckets.take("a", 0.0)
    with pytest.raises(ValueError):
        buckets.set_rate(0.0, None, 1.0)
    with pytest.raises(ValueError):
        buckets.set_rate(5.0, 0.5, 1.0)
    assert (buckets.rate, buckets.burst, buckets.level("a", 0.0)) == (5.0, 1.0, 0.0)


def test_the_default_burst_is_a_tenth_of_the_rate_at_least_one() -> None:
    assert default_burst(50.0) == 5.0 and default_burst(5.0) == 1.0
    assert ClientBuckets(100).burst == 10.0 and ClientBuckets(0.1).burst == 1.0


def test_float_error_of_the_refill_does_not_refuse_a_whole_token() -> None:
    buckets = ClientBuckets(10.0, 1.0)
    now = 0.0
    for _ in range(100):
        assert buckets.take("a", now) == 0.0
        now += 0.1  # not exact in binary: the sum drifts, yet every step is a whole token


def test_full_buckets_are_forgotten_when_there_are_many() -> None:
    buckets = ClientBuckets(1.0, 1.0)
    for key in range(10_000):
        buckets.take(str(key), 0.0)
    assert len(buckets) == 10_000
    buckets.take("late", 5.0)  # every earlier bucket is full again at 5.0: dropped
    assert len(buckets) == 1 and buckets.level("0", 5.0) == 1.0


@pytest.mark.parametrize(("value", "error"), [
    (0, ValueError), (-1.0, ValueError), (math.nan, ValueError), (math.inf, ValueError),
    (True, TypeError), ("5", TypeError), (None, TypeError),
])
def test_rates_must_be_positive_finite_numbers(value: object, error: type[Exception]) -> None:
    with pytest.raises(error, match="rate_limit"):
        check_rate("rate_limit", value)
    with pytest.raises(error):
        ClientBuckets(value)  # type: ignore[arg-type]


def test_a_burst_is_at_least_one_token() -> None:
    assert check_burst(1) == 1.0 and check_rate("r", 3) == 3.0
    with pytest.raises(ValueError, match="at least 1"):
        check_burst(0.5)
    with pytest.raises(TypeError):
        check_burst(False)


# -- the sandbox, over HTTP -----------------------------------------------------------------


class FakeClock:
    """Seconds that move only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Answer:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as opened:
        yield opened


async def send(
    session: aiohttp.ClientSession, sandbox: Sandbox, method: str, path: str,
    headers: dict[str, str], body: bytes = b"",
) -> Answer:
    url = URL(sandbox.base_url + path, encoded=True)
    async with session.request(method, url, headers=headers, data=body or None) as response:
        return Answer(response.status, {k.lower(): v for k, v in response.headers.items()},
                      await response.read())


def token_request(sandbox: Sandbox, scope: str = "positions:read") -> tuple[dict[str, str], bytes]:
    body = token_form(sandbox, scope)
    return signed(sandbox, "POST", TOKEN, body=body, extra={"content-type": FORM_TYPE}), body


async def get_token(
    session: aiohttp.ClientSession, sandbox: Sandbox, scope: str = "positions:read"
) -> Answer:
    headers, body = token_request(sandbox, scope)
    return await send(session, sandbox, "POST", TOKEN, headers, body)


async def positions(session: aiohttp.ClientSession, sandbox: Sandbox, token: str) -> Answer:
    path = f"/accounts/{sandbox.tenant.account_ids[0]}/positions"
    headers = signed(sandbox, "GET", path, extra={"authorization": f"Bearer {token}"})
    return await send(session, sandbox, "GET", path, headers)


async def unsigned(
    session: aiohttp.ClientSession, sandbox: Sandbox, client_id: str | None
) -> Answer:
    headers = {} if client_id is None else {"upvest-client-id": client_id}
    return await send(session, sandbox, "GET", "/portfolios/allocations", headers)


def throttled_sandbox(clock: FakeClock | None = None, **options: Any) -> Sandbox:
    sandbox = Sandbox(accounts=2, positions_per_account=30, seed=3, **options)
    if clock is not None:
        sandbox.state.clock = clock
    return sandbox


async def test_the_burst_is_served_then_429_problem_json_without_retry_after(
    session: aiohttp.ClientSession,
) -> None:
    clock = FakeClock()
    async with throttled_sandbox(clock, rate_limit=1.0, rate_burst=3) as sandbox:
        assert (sandbox.rate_limit, sandbox.rate_burst) == (1.0, 3.0)
        token = (await get_token(session, sandbox)).json()["access_token"]
        assert [(await positions(session, sandbox, token)).status for _ in range(2)] == [200, 200]
        refused = await positions(session, sandbox, token)
        assert refused.status == 429
        assert refused.headers["content-type"] == "application/problem+json"
        problem = refused.json()
        assert problem["type"] == "too_many_requests" and problem["status"] == 429
        assert problem["title"] == "Too Many Requests"
        assert problem["instance"] == f"/accounts/{sandbox.tenant.account_ids[0]}/positions"
        assert problem["request_id"] == refused.headers["upvest-request-id"]
        assert "retry-after" not in refused.headers
        assert not [name for name in refused.headers if "ratelimit" in name or "rate-limit" in name]

        counters = sandbox.counters
        assert (counters.requests, counters.token_requests, counters.throttled) == (4, 1, 1)
        assert counters.throttled_by_client == {sandbox.credentials.client_id: 1}
        assert counters.faults["429"] == 0  # the limit is not an injected fault
        entry = sandbox.state.journal[-1]
        assert (entry.status, entry.throttled, entry.fault, entry.nonce) == (429, True, None, None)
        assert not any(e.throttled for e in list(sandbox.state.journal)[:-1])


async def test_a_throttled_request_uses_up_nothing(session: aiohttp.ClientSession) -> None:
    """No nonce (the same signed write is accepted later as a first use), no idempotency key,
    no token request handled, no resource created, no replay counted."""
    clock = FakeClock()
    async with throttled_sandbox(clock, rate_limit=1.0, rate_burst=2) as sandbox:
        token_headers, token_body = token_request(sandbox, "portfolios:admin")
        token = (await send(session, sandbox, "POST", TOKEN, token_headers,
                            token_body)).json()["access_token"]
        body = json.dumps({"allocation": ITEMS}).encode()
        path = "/portfolios/allocations"
        headers = signed(sandbox, "POST", path, body=body, extra={
            "authorization": f"Bearer {token}", "content-type": "application/json",
            "idempotency-key": str(uuid.uuid4()),
        })
        again = dict(token_headers)
        assert (await send(session, sandbox, "GET", "/portfolios/allocations",
                           {"upvest-client-id": sandbox.credentials.client_id})).status == 401
        # The bucket is empty: the write, and a replay of the token request (its nonce was
        # used), are both refused before their signatures are looked at.
        assert (await send(session, sandbox, "POST", path, headers, body)).status == 429
        assert (await send(session, sandbox, "POST", TOKEN, again, token_body)).status == 429
        assert sandbox.counters.created["allocation"] == 0
        assert sandbox.counters.token_requests == 1 and sandbox.counters.nonce_replays == 0
        clock.advance(1.0)
        created = await send(session, sandbox, "POST", path, headers, body)
        assert created.status == 200, created.body  # same nonce, same key: first use of both
        assert sandbox.counters.created["allocation"] == 1
        assert sandbox.counters.idempotent_replays == 0
        clock.advance(1.0)
        replayed = await send(session, sandbox, "POST", TOKEN, again, token_body)
        assert replayed.status == 401 and sandbox.counters.nonce_replays == 1  # now it is used


async def test_the_bucket_refills_on_the_sandbox_clock(session: aiohttp.ClientSession) -> None:
    clock = FakeClock()
    async with throttled_sandbox(clock, rate_limit=2.0, rate_burst=1) as sandbox:
        client_id = sandbox.credentials.client_id
        assert (await unsigned(session, sandbox, client_id)).status == 401  # served (refused)
        assert (await unsigned(session, sandbox, client_id)).status == 429
        clock.advance(0.25)
        assert (await unsigned(session, sandbox, client_id)).status == 429  # half a token
        clock.advance(0.25)
        assert (await unsigned(session, sandbox, client_id)).status == 401
        clock.advance(60)
        statuses = [(await unsigned(session, sandbox, client_id)).status for _ in range(3)]
        assert statuses == [401, 429, 429]  # a long pause still gives only the burst
        assert sandbox.counters.throttled == 4


async def test_the_default_clock_refills_in_real_time(session: aiohttp.ClientSession) -> None:
    async with throttled_sandbox(rate_limit=1.0) as sandbox:  # burst 1, a token a second
        token = await get_token(session, sandbox)
        assert token.status == 200
        assert (await get_token(session, sandbox)).status == 429
        await asyncio.sleep(1.05)
        assert (await get_token(session, sandbox)).status == 200


async def test_each_client_id_has_its_own_bucket(session: aiohttp.ClientSession) -> None:
    """The limit applies before the client id is checked, as at a gateway: another tenant's
    requests (refused 401 here, the sandbox knows one client) empty only their own bucket."""
    clock = FakeClock()
    async with throttled_sandbox(clock, rate_limit=1.0, rate_burst=2) as sandbox:
        other = str(uuid.uuid4())
        assert [(await unsigned(session, sandbox, other)).status for _ in range(3)] == [
            401, 401, 429]
        assert (await get_token(session, sandbox)).status == 200
        assert (await get_token(session, sandbox)).status == 200
        assert (await get_token(session, sandbox)).status == 429
        assert [(await unsigned(session, sandbox, None)).status for _ in range(3)] == [
            401, 401, 429]
        assert [(await unsigned(session, sandbox, "")).status for _ in range(1)] == [429]
        assert sandbox.counters.throttled == 4
        assert sandbox.counters.throttled_by_client == {
            other: 1, sandbox.credentials.client_id: 1, "": 2}


async def test_set_rate_limit_while_running(session: aiohttp.ClientSession) -> None:
    clock = FakeClock()
    async with throttled_sandbox(clock) as sandbox:
        client_id = sandbox.credentials.client_id
        assert sandbox.rate_limit is None and sandbox.rate_burst is None
        assert {(await unsigned(session, sandbox, client_id)).status for _ in range(20)} == {401}

        sandbox.set_rate_limit(1.0, 2)
        statuses = [(await unsigned(session, sandbox, client_id)).status for _ in range(3)]
        assert statuses == [401, 401, 429]

        sandbox.set_rate_limit(10.0, burst=5)  # raised: the empty bucket stays empty ...
        assert (sandbox.rate_limit, sandbox.rate_burst) == (10.0, 5.0)
        assert (await unsigned(session, sandbox, client_id)).status == 429
        clock.advance(0.1)  # ... and refills at the new rate
        assert (await unsigned(session, sandbox, client_id)).status == 401
        clock.advance(10)  # full: 5 tokens

        sandbox.set_rate_limit(0.5)  # lowered: clipped to the new capacity, max(1, 0.05)
        assert sandbox.rate_burst == 1.0
        statuses = [(await unsigned(session, sandbox, client_id)).status for _ in range(2)]
        assert statuses == [401, 429]

        sandbox.set_rate_limit(None)
        assert sandbox.rate_limit is None
        assert {(await unsigned(session, sandbox, client_id)).status for _ in range(10)} == {401}
        assert sandbox.counters.throttled == 3


async def test_retry_after_on_request(session: aiohttp.ClientSession) -> None:
    clock = FakeClock()
    async with throttled_sandbox(
        clock, rate_limit=0.4, rate_burst=1, rate_limit_retry_after=True
    ) as sandbox:
        client_id = sandbox.credentials.client_id
        assert "retry-after" not in (await unsigned(session, sandbox, client_id)).headers
        refused = await unsigned(session, sandbox, client_id)
        assert (refused.status, refused.headers["retry-after"]) == (429, "3")  # 2.5 s, up
        clock.advance(2.3)
        refused = await unsigned(session, sandbox, client_id)
        assert (refused.status, refused.headers["retry-after"]) == (429, "1")  # 0.2 s: 1
        sandbox.set_rate_limit(0.4, 1, retry_after=False)
        refused = await unsigned(session, sandbox, client_id)
        assert refused.status == 429 and "retry-after" not in refused.headers
        sandbox.set_rate_limit(0.1, 1, retry_after=True)
        refused = await unsigned(session, sandbox, client_id)  # 0.08 token at 0.1/s: 0.8 s
        assert refused.headers["retry-after"] == "1"
        other = str(uuid.uuid4())
        assert (await unsigned(session, sandbox, other)).status == 401
        assert (await unsigned(session, sandbox, other)).headers["retry-after"] == "10"


async def test_injected_429s_stay_faults(session: aiohttp.ClientSession) -> None:
    clock = FakeClock()
    faults = Faults(script=("429",))
    async with throttled_sandbox(clock, rate_limit=100.0, faults=faults) as sandbox:
        token = (await get_token(session, sandbox)).json()["access_token"]
        injected = await positions(session, sandbox, token)
        assert injected.status == 429 and injected.headers["retry-after"] == "1"
        assert (sandbox.counters.faults["429"], sandbox.counters.throttled) == (1, 0)
        entry = sandbox.state.journal[-1]
        assert (entry.fault, entry.throttled) == ("429", False)


@pytest.mark.parametrize(("options", "error", "match"), [
    ({"rate_limit": 0}, ValueError, "rate_limit"),
    ({"rate_limit": -5.0}, ValueError, "rate_limit"),
    ({"rate_limit": math.nan}, ValueError, "rate_limit"),
    ({"rate_limit": math.inf}, ValueError, "rate_limit"),
    ({"rate_limit": True}, TypeError, "rate_limit"),
    ({"rate_limit": "50"}, TypeError, "rate_limit"),
    ({"rate_limit": 10, "rate_burst": 0.5}, ValueError, "rate_burst"),
    ({"rate_limit": 10, "rate_burst": True}, TypeError, "rate_burst"),
    ({"rate_burst": 5}, ValueError, "needs a rate_limit"),
    ({"rate_limit": 10, "rate_limit_retry_after": 1}, TypeError, "rate_limit_retry_after"),
])
def test_sandbox_arguments_are_checked(
    options: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        Sandbox(accounts=1, positions_per_account=1, **options)


def test_set_rate_limit_arguments_are_checked_and_change_nothing() -> None:
    sandbox = Sandbox(accounts=1, positions_per_account=1, rate_limit=20.0)
    for args, kwargs, error in [
        ((0,), {}, ValueError), ((math.inf,), {}, ValueError), ((False,), {}, TypeError),
        ((5.0, 0.0), {}, ValueError), ((None, 3.0), {}, ValueError),
        ((5.0,), {"retry_after": "yes"}, TypeError), ((5.0,), {"retry_after": 0}, TypeError),
    ]:
        with pytest.raises(error):
            sandbox.set_rate_limit(*args, **kwargs)
        assert (sandbox.rate_limit, sandbox.rate_burst) == (20.0, 2.0)
        assert sandbox.state.throttle_retry_after is False


# -- the command line -----------------------------------------------------------------------


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("UPVEST_API_")}


@pytest.fixture
def limited_sandbox(tmp_path: Path) -> Iterator[tuple[dict[str, str], str]]:
    env_file = tmp_path / "sandbox.env"
    process = subprocess.Popen(
        [*CLI, "sandbox", "--accounts", "1", "--positions", "5", "--env-file", str(env_file),
         "--rate-limit", "0.5", "--rate-burst", "2", "--rate-limit-retry-after"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env(),
    )
    try:
        deadline = time.monotonic() + 30
        while not env_file.exists() or not env_file.read_text():
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert process.stdout is not None
        variables = dict(line.removeprefix("export ").split("=", 1)
                         for line in env_file.read_text().splitlines())
        yield variables, process.stdout.readline()
    finally:
        process.terminate()
        process.communicate(timeout=10)


async def test_cli_sandbox_rate_limit(
    limited_sandbox: tuple[dict[str, str], str], session: aiohttp.ClientSession
) -> None:
    variables, first_line = limited_sandbox
    assert "(rate limit 0.5 req/s per client id, burst 2, with Retry-After)" in first_line
    url = variables["UPVEST_API_BASE_URL"] + "/portfolios/allocations"
    headers = {"upvest-client-id": variables["UPVEST_API_CLIENT_ID"]}
    answers = []
    for _ in range(3):
        async with session.get(url, headers=headers) as response:
            answers.append((response.status, response.headers.get("retry-after")))
    assert answers[:2] == [(401, None), (401, None)]
    assert answers[2][0] == 429 and answers[2][1] in {"1", "2"}


@pytest.mark.parametrize(("args", "message"), [
    (["--rate-burst", "3"], "need --rate-limit"),
    (["--rate-limit-retry-after"], "need --rate-limit"),
    (["--rate-limit", "0"], "--rate-limit"),
    (["--rate-limit", "inf"], "positive finite"),
    (["--rate-limit", "10", "--rate-burst", "0.5"], "--rate-burst"),
])
def test_cli_sandbox_refuses_bad_rate_limits(args: list[str], message: str) -> None:
    result = subprocess.run([*CLI, "sandbox", *args], capture_output=True, text=True,
                            timeout=60, env=clean_env())
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_bulk_command_embedded_sandbox_rate_limit(tmp_path: Path) -> None:
    out = tmp_path / "positions.jsonl"
    result = subprocess.run(
        [*CLI, "export-positions", "--embedded-sandbox", "--out", str(out),
         "--sandbox-accounts", "2", "--sandbox-positions", "10", "--sandbox-rate-limit", "1000"],
        capture_output=True, text=True, timeout=120, env=clean_env(),
    )
    assert result.returncode == 0, result.stderr
    assert "rate limit 1000 req/s per client id" in result.stderr
    assert len(out.read_text().splitlines()) == 20
    refused = subprocess.run(
        [*CLI, "rebalance", "--out", str(tmp_path / "r.json"), "--all-accounts",
         "--embedded-sandbox", "--sandbox-rate-limit", "-1"],
        capture_output=True, text=True, timeout=60, env=clean_env(),
    )
    assert refused.returncode == 2 and "--sandbox-rate-limit" in refused.stderr
