"""The one retry loop of the package, for API calls and access token requests alike.

:func:`call_with_retries` runs the attempts of one call under ``tenacity``: it takes a turn
from the rate limiter (:mod:`upvest_async.ratelimit`) before each attempt, re-sends after 429
answers and retryable failures as the retry policy decides (:mod:`upvest_async.retries`),
keeps the call within its deadline, logs each retry, and tells the call's trace
(:mod:`upvest_async.telemetry`) what happened. What one attempt sends is the caller's:
:class:`~upvest_async.transport.Transport` for API calls, the token manager for
``POST /auth/token``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

import attrs
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception
from tenacity.stop import stop_base

from .errors import APIConnectionError, APIStatusError, APITimeoutError, LocalRateLimitError
from .ratelimit import Permit, RateLimiter, RateLimitWait
from .retries import RetryBudget, RetryPolicy, describe, is_retryable, is_throttle
from .stats import ClientStats

if TYPE_CHECKING:
    from .telemetry import CallTrace

__all__ = ["call_with_retries"]

T = TypeVar("T")

logger = logging.getLogger("upvest_async")


def _log_retry(what: str, state: RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome else None
    delay = state.next_action.sleep if state.next_action else 0.0
    request_id = getattr(exc, "request_id", None)
    if request_id:
        answer = f"request id {request_id}"
    elif isinstance(exc, APIStatusError):
        answer = "no request id in the answer"
    else:
        answer = "no answer"
    # Under a rate limit a 429 is expected, and paced: INFO, not a warning (the stats, the
    # progress bars and the summaries count them).
    logger.log(
        logging.INFO if is_throttle(exc) else logging.WARNING,
        "retrying %s after %s (attempt %d, next in %.2f s, %s)",
        what, describe(exc), state.attempt_number, delay, answer,
    )


def _retryable(exc: BaseException) -> bool:
    # A failed access token request was already retried by the token manager.
    return is_retryable(exc) and not getattr(exc, "token_request", False)


@attrs.define
class _Call:
    """What one call has been through so far: its attempts, 429 answers and other failures,
    and the retry budget it spent."""

    started: float
    attempts: int = 0
    throttled: int = 0
    failures: int = 0
    spent: int = 0
    budget_exhausted: bool = False
    out_of_time: bool = False


async def call_with_retries(
    what: str,
    send: Callable[[float, float | None, int], Awaitable[T]],
    *,
    policy: RetryPolicy,
    budget: RetryBudget | None,
    limiter: RateLimiter | None,
    stats: ClientStats,
    timeout: float,
    retryable: Callable[[BaseException], bool] = _retryable,
    trace: CallTrace | None = None,
) -> T:
    """Run one call (``what``, e.g. ``"GET /accounts/.../positions"``): the one retry loop of
    the package, for API calls and access token requests alike.

    Before every attempt it takes a turn from ``limiter`` (waiting, unless the wait would end
    past the deadline or the limiter does not block), then awaits ``send(seconds, deadline,
    attempt)``: ``seconds`` for this attempt (``timeout``, or less when the call's deadline
    is nearer; ``deadline`` is then the call's deadline, for the error's message) and the
    attempt number from 1. A 429 without ``Retry-After`` (Upvest's, see
    :mod:`upvest_async.ratelimit`) makes the limiter cut its rate; one with a ``Retry-After``
    is the server's own instruction, followed by this call's wait, and teaches the limiter
    nothing. Failures that :func:`~upvest_async.retries.is_retryable` accepts
    are retried under ``policy``: 429 answers up to ``max_throttled_retries`` times, free of
    the retry ``budget``; other failures up to ``max_retries`` times, each paid from the
    budget; never past ``deadline``.

    Raises the last attempt's error with ``attempts`` set;
    :class:`~upvest_async.errors.APITimeoutError` (``limit="deadline"``, ``throttled`` = the
    429s) when the deadline ends a throttled call or leaves no time for another attempt;
    :class:`~upvest_async.errors.LocalRateLimitError` from a non-blocking limiter.

    ``trace``: the call's OpenTelemetry spans (:mod:`upvest_async.telemetry`), told of every
    wait, attempt, back-off and the end; ``None``: not traced.
    """
    clock = time.monotonic
    call = _Call(started=clock())
    deadline_at = None if policy.deadline is None else call.started + policy.deadline
    method, _, path = what.partition(" ")

    def out_of_time() -> APITimeoutError:
        assert policy.deadline is not None
        throttled = (f" while throttled ({call.throttled} answer"
                     f"{'' if call.throttled == 1 else 's'} 429)" if call.throttled else "")
        return APITimeoutError(
            f"{what}: deadline of {policy.deadline:g} s exceeded{throttled} (no time left for "
            "another attempt)",
            limit="deadline", seconds=policy.deadline, throttled=call.throttled,
        )

    async def attempt() -> T:
        call.attempts += 1
        if call.attempts > 1:
            stats.retries += 1
        permit: Permit | None = None
        if limiter is not None:
            waited_from = clock()
            try:
                permit = await limiter.acquire(deadline_at=deadline_at)
            except RateLimitWait as refused:
                if refused.reason == "deadline":
                    raise out_of_time() from None
                raise LocalRateLimitError(method=method, path=path, wait=refused.seconds,
                                          attempts=call.attempts - 1) from None
            waited = clock() - waited_from
            stats.rate_limit_wait += waited
            if trace is not None:
                trace.waited(waited)
        seconds, deadline = timeout, None
        if deadline_at is not None:
            left = deadline_at - clock()
            if left < seconds:
                seconds, deadline = left, policy.deadline
            if seconds <= 0:
                raise out_of_time()
        if trace is not None:
            trace.attempt_started(call.attempts)
        try:
            result = await send(seconds, deadline, call.attempts)
        except BaseException as exc:
            if trace is not None:
                trace.attempt_ended(exc=exc)
            if not isinstance(exc, APIStatusError):
                raise
            if is_throttle(exc):
                call.throttled += 1
                stats.throttled += 1
                # With a Retry-After the server said when: this call waits as told.
                if (limiter is not None and permit is not None
                        and exc.headers.get("retry-after") is None):
                    limiter.throttled(permit)
                    stats.learned_rate = limiter.rate
            raise
        if trace is not None:
            trace.attempt_ended(result)
        if limiter is not None and permit is not None:
            limiter.succeeded(permit)
            stats.learned_rate = limiter.rate
        return result

    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if is_throttle(exc):
            return policy.delay(exc, call.throttled)
        return policy.delay(exc, call.failures + 1)

    class Stop(stop_base):
        def __call__(self, state: RetryCallState) -> bool:
            exc = state.outcome.exception() if state.outcome else None
            if deadline_at is not None and clock() + state.upcoming_sleep >= deadline_at:
                call.out_of_time = True
                return True
            if is_throttle(exc):
                bound = policy.max_throttled_retries
                return bound is not None and call.throttled > bound
            call.failures += 1
            if call.failures > policy.max_retries:
                return True
            if budget is not None:
                cost = budget.acquire(exc)
                if cost is None:
                    call.budget_exhausted = True
                    return True
                call.spent += cost
            return False

    retrying = AsyncRetrying(
        stop=Stop(),
        wait=wait,
        retry=retry_if_exception(retryable),
        before_sleep=lambda state: _before_sleep(what, state, trace),
        reraise=True,
    )
    try:
        try:
            result: T = await retrying(attempt)
        except (APIStatusError, APIConnectionError) as exc:
            if not exc.token_request and not isinstance(exc, LocalRateLimitError):
                exc.attempts = call.attempts  # (a refused wait counted the attempts sent)
            if call.out_of_time and is_throttle(exc):
                raise out_of_time() from None
            if call.budget_exhausted:
                logger.warning("retry budget exhausted: %s fails fast", what)
            raise
    except BaseException as exc:
        if trace is not None:
            trace.end(exc)
        raise
    if trace is not None:
        trace.end()
    if budget is not None:
        budget.succeeded(call.spent)
    return result


def _before_sleep(what: str, state: RetryCallState, trace: CallTrace | None) -> None:
    _log_retry(what, state)
    if trace is not None:
        trace.backoff(state.next_action.sleep if state.next_action else 0.0,
                      state.outcome.exception() if state.outcome else None)
