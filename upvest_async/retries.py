"""When and how long to retry: the retry policy, its waits, and the client-wide retry budget.

The loop itself is ``tenacity``'s (see :mod:`upvest_async.transport`); this module holds the
decisions. What is retried: 429, 500, 502, 503, 504, a 409 whose problem type says the
idempotency key is still being processed, connection faults (refused, reset, server
disconnected) and timeouts. Never other 4xx. Every retry reuses the call's body and
``idempotency-key``, so a retried write cannot create a second resource.

A 429 is *throttling*, not a failure: its re-sends have their own bound
(``max_throttled_retries``), apart from ``max_retries``, take nothing from the retry budget,
and back off exponentially on the number of 429s so far, as Upvest asks
(https://docs.upvest.co/documentation/concepts/api_concepts/throttling); the pace
itself is the rate limiter's (:mod:`upvest_async.ratelimit`).
"""

from __future__ import annotations

import random
import threading
from typing import Any

import attrs

from .errors import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    IdempotencyKeyInProgressError,
    LocalRateLimitError,
    RateLimitError,
    parse_retry_after,
)

__all__ = ["RETRYABLE_STATUSES", "RetryBudget", "RetryPolicy", "is_retryable", "is_throttle"]

#: Statuses retried: rate limited and transient server errors.
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})


def is_throttle(exc: BaseException | None) -> bool:
    """Whether ``exc`` is the API's 429 answer (not a refusal of the client's own limiter)."""
    return isinstance(exc, RateLimitError) and not isinstance(exc, LocalRateLimitError)


def is_retryable(exc: BaseException) -> bool:
    """Whether a failed attempt may be retried (see the module docs)."""
    if isinstance(exc, LocalRateLimitError):
        return False  # nothing was sent: the caller chose not to wait
    if isinstance(exc, IdempotencyKeyInProgressError):
        return True
    if isinstance(exc, APIStatusError):
        return exc.status in RETRYABLE_STATUSES
    return isinstance(exc, APIConnectionError)


@attrs.frozen
class RetryPolicy:
    """How one call retries. Defaults and why:

    - ``max_retries=2``: retries after failed attempts (5xx, connection faults, timeouts,
      409 in progress), as in openai-python and stripe-python; enough to ride out a blip
      without tripling a real outage's load. 429s do not count here.
    - ``max_throttled_retries=10``: re-sends after 429 answers. ``None``: no bound but the
      deadline (the bulk jobs use this: they wait as long as their deadline allows and never
      fail an account for throttling alone).
    - ``backoff_base=0.25`` / ``backoff_max=8.0`` (seconds): exponential backoff with full
      jitter, a random wait in ``[0, min(backoff_max, backoff_base * 2**attempt)]`` (AWS
      "full jitter"), so thousands of concurrent callers do not retry in lockstep.
    - ``retry_after_max=60.0`` (seconds): a ``Retry-After`` (delta-seconds or HTTP-date) is
      honoured up to this cap; beyond it the call would rather fail than hang.
    - ``in_progress_wait=1.0`` (seconds): pause before re-asking about an idempotency key that
      is still being processed (409) when the answer gives no ``Retry-After``.
    - ``deadline=None`` (seconds): an overall limit for the call including every attempt and
      wait (the rate limiter's included); no retry starts if its wait would end past it.
      ``None``: bounded by the attempts.
    """

    max_retries: int = attrs.field(default=2, validator=attrs.validators.ge(0))
    max_throttled_retries: int | None = attrs.field(
        default=10, validator=attrs.validators.optional(attrs.validators.ge(0))  # type: ignore[arg-type]
    )
    backoff_base: float = attrs.field(default=0.25, validator=attrs.validators.ge(0))
    backoff_max: float = attrs.field(default=8.0, validator=attrs.validators.ge(0))
    retry_after_max: float = attrs.field(default=60.0, validator=attrs.validators.ge(0))
    in_progress_wait: float = attrs.field(default=1.0, validator=attrs.validators.ge(0))
    deadline: float | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.gt(0))
    )

    def delay(self, exc: BaseException | None, retry: int) -> float:
        """Seconds to wait before retry number ``retry`` (1 for the first) of its kind: the
        count of 429s so far for a throttled attempt, of other failures otherwise. A
        ``Retry-After`` is honoured up to ``retry_after_max``; else full jitter."""
        if isinstance(exc, APIStatusError):
            after = parse_retry_after(exc.headers.get("retry-after"))
            if after is not None:
                return min(after, self.retry_after_max)
        backoff = random.uniform(
            0.0, min(self.backoff_max, self.backoff_base * 2 ** min(retry - 1, 60))
        )
        if isinstance(exc, IdempotencyKeyInProgressError):
            return max(self.in_progress_wait, backoff)
        return backoff


class RetryBudget:
    """A client-wide token bucket that stops retry storms (in the spirit of the AWS SDKs'
    "standard" retry quota).

    It starts full with ``capacity`` tokens. A retry takes ``retry_cost`` tokens
    (``timeout_cost`` after a timeout); when the bucket cannot pay, the call stops retrying and
    raises its last error at once. A call that ends in success refunds everything its retries
    took and, when it needed no retry, adds ``success_reward``. So a client whose calls keep
    succeeding on retry (even with 30 % of attempts failing) never empties it, while a storm
    in which nearly every attempt fails drains it after ``capacity / retry_cost`` retries.
    """

    def __init__(
        self,
        capacity: int = 500,
        *,
        retry_cost: int = 5,
        timeout_cost: int = 10,
        success_reward: int = 1,
    ) -> None:
        if capacity < 0 or retry_cost < 0 or timeout_cost < 0 or success_reward < 0:
            raise ValueError("retry budget amounts must be >= 0")
        self.capacity = capacity
        self.retry_cost = retry_cost
        self.timeout_cost = timeout_cost
        self.success_reward = success_reward
        self._level = capacity
        self._lock = threading.Lock()
        #: Retries refused because the bucket was empty.
        self.refusals = 0

    def __repr__(self) -> str:
        return f"RetryBudget(level={self._level}/{self.capacity})"

    @property
    def level(self) -> int:
        """Tokens left."""
        return self._level

    def acquire(self, exc: BaseException | None) -> int | None:
        """Take the cost of retrying after ``exc``; ``None`` (and nothing taken) when the
        bucket cannot pay."""
        cost = self.timeout_cost if isinstance(exc, APITimeoutError) else self.retry_cost
        with self._lock:
            if cost > self._level:
                self.refusals += 1
                return None
            self._level -= cost
            return cost

    def succeeded(self, spent: int) -> None:
        """A call succeeded after its retries took ``spent`` tokens."""
        refill = spent if spent else self.success_reward
        with self._lock:
            self._level = min(self.capacity, self._level + refill)


def describe(exc: Any) -> str:
    """A short text for logs: ``status 503`` or the exception class name."""
    if isinstance(exc, APIStatusError):
        return f"status {exc.status}"
    return type(exc).__name__
