"""The rate limiter on a virtual clock: pacing, the CUBIC cut and climb, the floor and the
ceiling, recovery when the limit rises, fairness of limiters sharing one server bucket,
cancellation, deadlines and the non-blocking mode (:mod:`upvest_async.ratelimit`)."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import math
import random
from collections.abc import Callable

import attrs
import pytest

from upvest_async import RateLimiter
from upvest_async.ratelimit import BETA, Permit, RateLimitWait, shared_rate_limiter


class VirtualTime:
    """A clock and a ``sleep`` that advance only when :meth:`run` moves time to the next
    timer: hours of traffic are simulated in a fraction of a second, deterministically."""

    def __init__(self) -> None:
        self.now = 0.0
        self._timers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._timers, (self.now + max(0.0, seconds), next(self._seq), future))
        await future

    async def run(self, until: float) -> None:
        """Advance through the timers up to ``until`` seconds: the clock stands at the last
        timer when none is left, else at ``until``."""
        while True:
            for _ in range(3):
                await asyncio.sleep(0)
            while self._timers and self._timers[0][2].done():
                heapq.heappop(self._timers)
            if not self._timers:
                return
            if self._timers[0][0] > until:
                self.now = max(self.now, until)
                return
            when, _, future = heapq.heappop(self._timers)
            self.now = max(self.now, when)
            future.set_result(None)


def limiter_on(time: VirtualTime, **options: object) -> RateLimiter:
    return RateLimiter(clock=time.clock, sleep=time.sleep, **options)  # type: ignore[arg-type]


async def take(time: VirtualTime, limiter: RateLimiter) -> Permit:
    """A turn of ``limiter``, the virtual clock run until it is granted."""
    task = asyncio.create_task(limiter.acquire())
    await time.run(time.now + 3600)
    return await task


@attrs.define
class ServerBucket:
    """The API's limit as the throttling sandbox models it: one token bucket, refilled at
    ``rate`` per second, capacity ``rate / 10`` (at least 1)."""

    rate: float
    level: float = 0.0
    last: float = 0.0

    def take(self, now: float) -> bool:
        capacity = max(1.0, self.rate / 10)
        self.level = min(capacity, self.level + (now - self.last) * self.rate)
        self.last = now
        if self.level >= 1.0:
            self.level -= 1.0
            return True
        return False


@attrs.define
class ClientRun:
    ok: list[float] = attrs.Factory(list)
    throttled: list[float] = attrs.Factory(list)


async def simulate(
    time: VirtualTime,
    limiters: list[RateLimiter],
    server: ServerBucket,
    seconds: float,
    *,
    concurrency: int = 16,
    latency: float = 0.05,
    schedule: Callable[[float], float] | None = None,
    seed: int = 1,
) -> list[ClientRun]:
    """Clients (one per limiter) whose ``concurrency`` workers send requests for
    ``seconds``, each ``latency`` seconds long, against ``server``; a throttled request
    backs off (full jitter on its 429 count, as the retry policy does) and is re-sent."""
    rng = random.Random(seed)
    runs = [ClientRun() for _ in limiters]

    async def worker(limiter: RateLimiter, run: ClientRun) -> None:
        throttles = 0
        while time.now < seconds:
            permit = await limiter.acquire()
            await time.sleep(latency / 2)
            if schedule is not None:
                server.rate = schedule(time.now)
            accepted = server.take(time.now)
            await time.sleep(latency / 2)
            if accepted:
                limiter.succeeded(permit)
                run.ok.append(time.now)
                throttles = 0
            else:
                limiter.throttled(permit)
                run.throttled.append(time.now)
                throttles += 1
                await time.sleep(rng.uniform(0, min(8.0, 0.25 * 2 ** (throttles - 1))))

    tasks = [asyncio.create_task(worker(limiter, run))
             for limiter, run in zip(limiters, runs, strict=True) for _ in range(concurrency)]
    await time.run(seconds + 30)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return runs


def share_throttled(run: ClientRun, start: float, end: float = math.inf) -> float:
    ok = sum(start <= t < end for t in run.ok)
    throttled = sum(start <= t < end for t in run.throttled)
    return throttled / max(1, ok + throttled)


# Pacing, the cut and the climb


async def test_nothing_is_paced_before_the_first_429() -> None:
    time = VirtualTime()
    limiter = limiter_on(time)
    for _ in range(100):
        await limiter.acquire()
    assert time.now == 0 and limiter.rate is None


async def test_an_unthrottled_client_keeps_only_the_last_second_of_requests() -> None:
    time = VirtualTime()
    limiter = limiter_on(time)
    for step in range(10_000):  # an hour of a service never throttled, 3 requests a second
        time.now = step * 0.36
        await limiter.acquire()
    assert len(limiter._sent) <= 3 and limiter.rate is None


async def test_a_known_ceiling_paces_from_the_first_request() -> None:
    time = VirtualTime()
    limiter = limiter_on(time, max_requests_per_second=10)

    async def eleven() -> None:
        for _ in range(11):
            await limiter.acquire()

    task = asyncio.create_task(eleven())
    await time.run(60)
    await task
    assert time.now == pytest.approx(1.0)


async def test_a_429_cuts_once_per_round_of_requests() -> None:
    time = VirtualTime()
    limiter = limiter_on(time)
    permits = [await limiter.acquire() for _ in range(40)]
    time.now = 0.05  # 40 sent in the first 0.05 s: measured over 0.1 s, 400/s
    for permit in permits:  # a whole burst answered 429: one cut
        limiter.throttled(permit)
    assert limiter.rate == pytest.approx(400 * BETA) and limiter.cuts == 1
    assert limiter.throttles == 40
    later = await take(time, limiter)
    time.now = 0.2
    limiter.throttled(later)  # sent after the cut: the cut rate is still too high
    assert limiter.cuts == 2 and limiter.rate == pytest.approx(400 * BETA * BETA)


async def test_the_rate_climbs_back_along_the_cubic_curve() -> None:
    time = VirtualTime()
    limiter = limiter_on(time)
    permits = [await limiter.acquire() for _ in range(50)]
    time.now = 0.5  # 50 sent in 0.5 s: 100/s
    limiter.throttled(permits[0])
    assert limiter.rate == pytest.approx(100 * BETA)
    k = (100 * (1 - BETA) / 0.4) ** (1 / 3)
    rates: list[tuple[float, float]] = []
    while time.now < 10:  # sending as fast as paced, so the 2x cap does not bind
        limiter.succeeded(await take(time, limiter))
        assert limiter.rate is not None
        rates.append((time.now, limiter.rate))
    assert [r for _, r in rates] == sorted(r for _, r in rates)  # never down without a 429
    near_k = [r for t, r in rates if abs(t - 0.5 - k) < 0.2]
    assert near_k and all(99 < r < 101 for r in near_k)  # flat near the rate last throttled
    assert rates[-1][1] > 101  # then probing above it


async def test_every_cut_and_each_tenth_of_a_climb_is_logged_at_debug(
    caplog: pytest.LogCaptureFixture,
) -> None:
    time = VirtualTime()
    limiter = limiter_on(time)
    caplog.set_level(logging.DEBUG, logger="upvest_async")
    permits = [await limiter.acquire() for _ in range(50)]
    time.now = 0.5
    limiter.throttled(permits[0])
    while time.now < 10:
        limiter.succeeded(await take(time, limiter))
    lines = [r.getMessage() for r in caplog.records if "rate limiter" in r.getMessage()]
    assert lines[0] == f"rate limiter: cut after a 429, unlimited -> {100 * BETA:.2f} requests/s"
    assert 2 <= len(lines) <= 10 and all("climb" in line for line in lines[1:])


async def test_the_climb_is_capped_by_twice_what_is_sent() -> None:
    time = VirtualTime()
    limiter = limiter_on(time)
    permits = [await limiter.acquire() for _ in range(50)]
    time.now = 0.5
    limiter.throttled(permits[0])
    time.now = 100.0  # long after the cut, nothing sent in the last second
    limiter.succeeded(await take(time, limiter))
    assert limiter.rate == pytest.approx(100 * BETA)  # one request per second sent: cap 2/s


async def test_the_rate_never_falls_below_the_floor() -> None:
    time = VirtualTime()
    limiter = limiter_on(time, min_requests_per_second=2.0)
    for step in range(30):
        time.now = step * 10.0
        limiter.throttled(await take(time, limiter))
    assert limiter.rate == 2.0


async def test_without_adaptation_a_429_changes_nothing() -> None:
    time = VirtualTime()
    limiter = limiter_on(time, adaptive=False)
    limiter.throttled(await limiter.acquire())
    assert limiter.rate is None and limiter.throttles == 1
    ceiling = limiter_on(time, adaptive=False, max_requests_per_second=5)
    ceiling.throttled(await take(time, ceiling))
    assert ceiling.rate == 5.0


# Against a server that throttles as Upvest does


async def test_one_client_learns_the_limit_and_is_rarely_throttled() -> None:
    time = VirtualTime()
    limiter = limiter_on(time)
    [run] = await simulate(time, [limiter], ServerBucket(rate=50), 120)
    ok_per_second = sum(t >= 5 for t in run.ok) / 115
    assert ok_per_second >= 0.9 * 50
    assert share_throttled(run, 5) <= 0.03


async def test_recovery_when_the_limit_falls_and_rises_again() -> None:
    time = VirtualTime()
    limiter = limiter_on(time)

    def schedule(now: float) -> float:
        return 100.0 if now < 20 else 25.0 if now < 60 else 100.0

    [run] = await simulate(time, [limiter], ServerBucket(rate=100), 120, concurrency=32,
                           schedule=schedule)
    assert share_throttled(run, 25, 60) <= 0.05
    fallen = sum(25 <= t < 60 for t in run.ok) / 35
    assert fallen >= 0.85 * 25
    risen = sum(90 <= t < 120 for t in run.ok) / 30  # back up within 30 s of the rise
    assert risen >= 0.8 * 100


async def test_limiters_sharing_one_server_bucket_converge_to_fair_shares() -> None:
    time = VirtualTime()
    limiters = [limiter_on(time) for _ in range(3)]
    runs = await simulate(time, limiters, ServerBucket(rate=30), 180, concurrency=8)
    shares = [sum(t >= 30 for t in run.ok) / 150 for run in runs]
    assert sum(shares) >= 0.8 * 30
    assert max(shares) <= 1.5 * min(shares), shares


# Queueing, cancellation, deadlines, the non-blocking mode


async def test_waiters_go_in_order_and_a_cut_applies_to_those_already_queued() -> None:
    time = VirtualTime()
    limiter = limiter_on(time, max_requests_per_second=10)
    order: list[int] = []

    async def one(number: int) -> None:
        await limiter.acquire()
        order.append(number)

    tasks = [asyncio.create_task(one(n)) for n in range(6)]
    await time.run(0.25)  # 0, 1 and 2 sent at 0, 0.1 and 0.2
    assert order == [0, 1, 2]
    limiter.throttled(Permit(sent_at=0.2))  # 30 sent in the last s? no: 3 -> floor of cut
    slower = limiter.rate
    assert slower is not None and slower < 10
    await time.run(60)
    await asyncio.gather(*tasks)
    assert order == list(range(6))
    assert time.now >= 0.2 + 3 / slower - 1e-9


async def test_a_cancelled_waiter_gives_its_turn_back() -> None:
    time = VirtualTime()
    limiter = limiter_on(time, max_requests_per_second=1)
    await limiter.acquire()
    waiting = asyncio.create_task(limiter.acquire())
    await time.run(0.5)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert not limiter._queue
    after = asyncio.create_task(limiter.acquire())
    await time.run(60)
    permit = await after
    assert permit.sent_at == pytest.approx(1.0)  # its own turn, not one behind the cancelled


async def test_a_turn_past_the_deadline_is_refused_at_once() -> None:
    time = VirtualTime()
    limiter = limiter_on(time, max_requests_per_second=2)
    await limiter.acquire()
    with pytest.raises(RateLimitWait) as refused:
        await limiter.acquire(deadline_at=0.2)
    assert refused.value.reason == "deadline" and refused.value.seconds == pytest.approx(0.5)
    assert time.now == 0 and not limiter._queue
    task = asyncio.create_task(limiter.acquire(deadline_at=0.5))
    await time.run(1)
    assert (await task).sent_at == pytest.approx(0.5)


async def test_the_non_blocking_mode_raises_the_expected_wait() -> None:
    time = VirtualTime()
    limiter = limiter_on(time, max_requests_per_second=4, block=False)
    await limiter.acquire()
    with pytest.raises(RateLimitWait) as refused:
        await limiter.acquire()
    assert refused.value.reason == "non-blocking"
    assert refused.value.seconds == pytest.approx(0.25)
    time.now = 0.25
    await limiter.acquire()


@pytest.mark.parametrize("value", [0, -1, math.nan, math.inf, True, "5"])
def test_a_rate_must_be_a_positive_finite_number(value: object) -> None:
    with pytest.raises(ValueError, match="max_requests_per_second"):
        RateLimiter(max_requests_per_second=value)  # type: ignore[arg-type]


def test_one_limiter_per_client_id_and_base_url() -> None:
    first = shared_rate_limiter(("a", "http://127.0.0.1:1"))
    assert shared_rate_limiter(("a", "http://127.0.0.1:1")) is first
    assert shared_rate_limiter(("a", "http://127.0.0.1:2")) is not first
    assert "unlimited" in repr(first)
