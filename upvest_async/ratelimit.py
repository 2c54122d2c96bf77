"""The client-side rate limiter: requests paced to the rate the API allows, learned from its 429s.

Upvest limits the access rate of each client (``upvest-client-id``) and answers a request over
the limit with ``429 Too Many Requests``, a problem details body, no ``Retry-After`` and no
rate-limit headers, asking clients to back off exponentially
(https://docs.upvest.co/documentation/concepts/api_concepts/throttling). The limit
itself is not published. A bulk job that sends as fast as its concurrency allows therefore
keeps the tenant's bucket empty and spends its retries against it. This module paces the
requests instead.

**Design.** A :class:`RateLimiter` is a token bucket of capacity one whose fill rate is the
*pacing rate*: a request may be sent when the previous one was sent ``1 / rate`` seconds ago
(virtual scheduling, first come first served). The rate follows CUBIC (RFC 9438 section 4),
as botocore's "adaptive" retry mode does:

- until the first 429 (and without a known ceiling) nothing is paced;
- on a 429 the rate is cut to ``beta`` (0.85) times the current rate (the first time, the
  measured send rate: requests sent in the last second, or since the first request), and
  that rate is remembered as ``w_max``; throttled answers to requests sent *before* the last
  cut are ignored (they report the old rate, as TCP reacts once per window), so a burst of
  429s is one cut;
- while requests succeed the rate climbs back along ``C * (t - K)**3 + w_max``
  (``C = 0.4``, ``K = cbrt(w_max * (1 - beta) / C)``, ``t`` seconds since the cut):
  quickly at first, flat near the rate that was last throttled, then probing above it. It
  never exceeds ``max_requests_per_second`` nor twice the measured send rate (a client that
  sends less than it may does not build up an allowance it never tested), and never falls
  below ``min_requests_per_second``.

What it does better than botocore's implementation: it is asyncio-native (no thread lock is
ever held across a wait: aiobotocore#912 blocked the event loop on one), waiters keep their
order and re-read the rate when they wake (a cut applies at once to requests already
queued), a cancelled waiter gives its turn back, a wait is refused at once when it would end
past the call's deadline, and ``block=False`` raises instead of queueing
(:class:`~upvest_async.errors.LocalRateLimitError` with the expected wait, the fail-fast mode
botocore#3179 asks for). Every cut is logged at DEBUG on the ``upvest_async`` logger, and the
climb each time it has moved by a tenth.

Several processes of one client id share the API's limit without sharing anything else: each
backs off on its own 429s, and CUBIC's multiplicative cuts converge to fair shares as TCP
flows sharing a link do.

The retry loop (:mod:`upvest_async.transport`) takes a :class:`Permit` before every attempt,
the access token requests included, and reports each outcome (:meth:`RateLimiter.throttled`,
:meth:`RateLimiter.succeeded`). Only a 429 *without* ``Retry-After`` (Upvest's) is a throttle
here: one with a ``Retry-After`` is the server's own instruction, which the throttled call
follows (up to ``RetryPolicy.retry_after_max``), and teaches the limiter nothing.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Hashable

import attrs

__all__ = ["Permit", "RateLimitWait", "RateLimiter", "shared_rate_limiter"]

logger = logging.getLogger("upvest_async")

#: CUBIC's multiplicative decrease (RFC 9438 section 4.6; TCP and botocore use 0.7) and
#: scaling constant (section 5.1). 0.85 because a request's arrival at the API jitters (the
#: client's and the server's event loops, the network), so some 429s come below the real
#: limit: a shallower cut costs less each time (measured: ``benchmarks/README.md``, "Rate
#: limits").
BETA = 0.85
SCALE = 0.4
#: Seconds over which the send rate is measured (the time since the first request, when
#: shorter, but at least ``MEASURE_MIN``: a client's first burst is not a rate of its own).
MEASURE_WINDOW = 1.0
MEASURE_MIN = 0.1
#: The lowest pacing rate, requests per second (one request every 2 seconds).
DEFAULT_MIN_RATE = 0.5


@attrs.frozen
class Permit:
    """Leave to send one request, granted at ``sent_at`` (the limiter's clock, seconds)."""

    sent_at: float


class RateLimitWait(Exception):
    """Raised by :meth:`RateLimiter.acquire` instead of waiting: the wait (``seconds``) would
    end past the caller's deadline (``reason == "deadline"``) or the limiter does not block
    (``reason == "non-blocking"``). The transport turns it into a typed public error."""

    def __init__(self, seconds: float, reason: str) -> None:
        self.seconds = seconds
        self.reason = reason
        super().__init__(f"the rate limiter asks for a wait of {seconds:.3f} s ({reason})")


class _Ticket:
    __slots__ = ()


def _positive(name: str, value: float | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not (
        math.isfinite(value) and value > 0
    ):
        raise ValueError(f"{name} must be a positive number of requests per second")
    return float(value)


class RateLimiter:
    """Paces the requests of one or more clients to the rate the API allows (see the module
    docs for the algorithm).

    ``max_requests_per_second``: a known ceiling (a limit Upvest told you); requests are paced
    to it from the first one. ``adaptive``: learn the allowed rate from 429 answers (cut on a
    throttle, climb back while calls succeed); without it and without a ceiling nothing is
    paced. ``block``: wait for a turn (default); ``False`` raises
    :class:`~upvest_async.errors.LocalRateLimitError` with the expected wait instead of
    queueing. ``min_requests_per_second``: the floor of the learned rate (0.5).

    One limiter may serve several clients (pass it as ``UpvestClient(rate_limiter=...)``);
    by default all clients of one client id and API origin in a process share one
    (:func:`shared_rate_limiter`). It works across event loops: no lock is held across an
    ``await``. Raises :class:`ValueError` for a rate that is not a positive finite number.
    """

    def __init__(
        self,
        *,
        max_requests_per_second: float | None = None,
        adaptive: bool = True,
        block: bool = True,
        min_requests_per_second: float = DEFAULT_MIN_RATE,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        self.max_requests_per_second = _positive(
            "max_requests_per_second", max_requests_per_second
        )
        minimum = _positive("min_requests_per_second", min_requests_per_second)
        assert minimum is not None
        if self.max_requests_per_second is not None:
            minimum = min(minimum, self.max_requests_per_second)
        self.min_requests_per_second = minimum
        self.adaptive = bool(adaptive)
        self.block = bool(block)
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._rate: float | None = self.max_requests_per_second
        self._next_at = -math.inf
        self._last_at = -math.inf
        self._queue: collections.deque[_Ticket] = collections.deque()
        self._sent: collections.deque[float] = collections.deque()
        self._first_at: float | None = None
        self._w_max = self._rate or 0.0
        self._k = 0.0
        self._cut_at = -math.inf
        self._logged_rate: float | None = None
        #: 429 answers reported, and the rate cuts they caused.
        self.throttles = 0
        self.cuts = 0

    def __repr__(self) -> str:
        rate = "unlimited" if self._rate is None else f"{self._rate:.2f}/s"
        return (f"RateLimiter(rate={rate}, ceiling={self.max_requests_per_second}, "
                f"adaptive={self.adaptive}, block={self.block})")

    @property
    def rate(self) -> float | None:
        """The current pacing rate in requests per second; ``None``: not paced."""
        return self._rate

    def measured_rate(self) -> float:
        """Requests granted in the last second, per second (since the first request, when
        that was less than a second ago, but over at least 0.1 s)."""
        with self._lock:
            return self._measure(self._clock())

    async def acquire(self, *, deadline_at: float | None = None) -> Permit:
        """Wait for this request's turn and return its :class:`Permit`.

        ``deadline_at``: the limiter's clock time (seconds) by which the request must be sent;
        a turn later than that raises :class:`RateLimitWait` at once (``reason="deadline"``),
        without waiting. A non-blocking limiter raises it (``reason="non-blocking"``) whenever
        the request would have to wait. A waiter that is cancelled leaves the queue.
        """
        ticket: _Ticket | None = None
        try:
            while True:
                with self._lock:
                    now = self._clock()
                    interval = 1.0 / self._rate if self._rate else 0.0
                    position = self._queue.index(ticket) if ticket is not None else len(
                        self._queue)
                    start = max(self._next_at, now)
                    due = start + position * interval
                    if position == 0 and due <= now:
                        if ticket is not None:
                            self._queue.popleft()
                            ticket = None
                        self._next_at = start + interval
                        self._last_at = now
                        self._record(now)
                        return Permit(sent_at=now)
                    wait = due - now
                    if not self.block:
                        raise RateLimitWait(wait, "non-blocking")
                    if deadline_at is not None and due > deadline_at:
                        raise RateLimitWait(wait, "deadline")
                    if ticket is None:
                        ticket = _Ticket()
                        self._queue.append(ticket)
                # Behind others whose turn has come but who have not woken yet: yield briefly.
                await self._sleep(wait if wait > 0 else min(interval, 0.001) or 0.001)
        finally:
            if ticket is not None:
                with self._lock:
                    if ticket in self._queue:
                        self._queue.remove(ticket)

    def throttled(self, permit: Permit) -> None:
        """The request sent under ``permit`` was answered 429: cut the rate, unless the rate
        was already cut after that request was sent."""
        with self._lock:
            self.throttles += 1
            if not self.adaptive or permit.sent_at < self._cut_at:
                return
            now = self._clock()
            measured = self._measure(now)
            base = measured if self._rate is None else self._rate
            base = max(base, self.min_requests_per_second)
            self._w_max = base
            self._k = (base * (1 - BETA) / SCALE) ** (1 / 3)  # RFC 9438 section 4.2
            self._cut_at = now
            self.cuts += 1
            self._set(base * BETA, "cut after a 429")

    def succeeded(self, permit: Permit) -> None:
        """The request sent under ``permit`` was answered without throttling: let the rate
        climb along the CUBIC curve."""
        if not self.adaptive or self._rate is None or self._cut_at == -math.inf:
            return
        with self._lock:
            now = self._clock()
            t = now - self._cut_at
            target = SCALE * (t - self._k) ** 3 + self._w_max
            ceiling = 2.0 * max(self._measure(now), self.min_requests_per_second)
            if self.max_requests_per_second is not None:
                ceiling = min(ceiling, self.max_requests_per_second)
            rate = min(target, ceiling)
            if self._rate is not None and rate > self._rate:
                self._set(rate, None)

    def _set(self, rate: float, why: str | None) -> None:
        rate = max(rate, self.min_requests_per_second)
        if self.max_requests_per_second is not None:
            rate = min(rate, self.max_requests_per_second)
        self._rate = rate
        # The next turn is spaced at the new rate from the last one granted: a change applies
        # at once, to the requests already waiting too.
        self._next_at = self._last_at + 1.0 / rate
        if not logger.isEnabledFor(logging.DEBUG):
            return
        logged = self._logged_rate
        if why is not None or logged is None or abs(rate - logged) >= 0.1 * logged:
            logger.debug("rate limiter: %s, %s -> %.2f requests/s", why or "climb",
                         "unlimited" if logged is None else f"{logged:.2f}", rate)
            self._logged_rate = rate

    def _record(self, now: float) -> None:
        """Note a request granted at ``now``; only the last second's are kept (a client that
        is never throttled calls nothing else that would forget them)."""
        self._sent.append(now)
        if self._first_at is None:
            self._first_at = now
        self._forget(now)

    def _forget(self, now: float) -> None:
        sent = self._sent
        while sent and sent[0] <= now - MEASURE_WINDOW:
            sent.popleft()

    def _measure(self, now: float) -> float:
        self._forget(now)
        since = MEASURE_WINDOW if self._first_at is None else now - self._first_at
        return len(self._sent) / min(MEASURE_WINDOW, max(MEASURE_MIN, since))


_SHARED: weakref.WeakValueDictionary[Hashable, RateLimiter] = weakref.WeakValueDictionary()
_SHARED_LOCK = threading.Lock()


def shared_rate_limiter(key: Hashable) -> RateLimiter:
    """The adaptive :class:`RateLimiter` of ``key`` (the client uses ``(client_id, origin)``,
    the origin being the base URL's scheme, host and port), shared by every client of this
    process that asks for it while any of them is alive, so that several clients of one
    client id learn one rate."""
    with _SHARED_LOCK:
        limiter = _SHARED.get(key)
        if limiter is None:
            limiter = RateLimiter()
            _SHARED[key] = limiter
        return limiter
