"""Per-client rate limiting for the sandbox, as Upvest limits the access rate.

Upvest limits the rate of requests per client (the ``upvest-client-id`` header) and answers
a request over the limit with ``429`` ``application/problem+json`` (type
``too_many_requests``), without ``Retry-After`` and without rate-limit headers
(https://docs.upvest.co/documentation/concepts/api_concepts/throttling).

:class:`ClientBuckets` is the arithmetic: one token bucket per key, refilled at ``rate``
tokens per second up to ``burst`` tokens, starting full. It reads no clock itself: every call
is given ``now`` (seconds on any monotonic clock; the sandbox passes ``state.clock()``), so it
is exact on a fake clock. The sandbox's throttle middleware (:mod:`.middlewares`) applies it.
"""

from __future__ import annotations

import math
from typing import Final

__all__ = ["ClientBuckets", "check_burst", "check_rate", "default_burst"]

#: Tokens a bucket may lack and still serve a request (float error of the refill).
_EPSILON: Final = 1e-9
#: Buckets kept before full ones (equivalent to no bucket) are dropped.
_PRUNE_AT: Final = 10_000


def check_rate(name: str, value: object) -> float:
    """``value`` as a float when it is a positive finite number (a :class:`bool` is not one).

    Raises :class:`TypeError` for a non-number, :class:`ValueError` for zero, a negative
    number, NaN or infinity; ``name`` is the argument's name in the message."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    number = float(value)
    if not math.isfinite(number) or number <= 0:
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return number


def check_burst(value: object) -> float:
    """``value`` as a float when it is a finite number of at least 1 (tokens; a smaller
    bucket could never hold the one token a request takes). Raises :class:`TypeError` or
    :class:`ValueError` as :func:`check_rate` does."""
    burst = check_rate("rate_burst", value)
    if burst < 1.0:
        raise ValueError(f"rate_burst must be at least 1 (token), got {value!r}")
    return burst


def default_burst(rate: float) -> float:
    """The capacity of a bucket when none is given: a tenth of a second's tokens, at least 1."""
    return max(1.0, rate / 10.0)


class ClientBuckets:
    """One token bucket per key (a client id, or ``None`` for requests without one).

    ``rate``: tokens added per second (requests per second per key, > 0); ``burst``: the
    capacity in tokens (>= 1; default :func:`default_burst`). A bucket is created full when
    its key is first seen. Raises :class:`TypeError` / :class:`ValueError` for bad values.
    """

    def __init__(self, rate: float, burst: float | None = None) -> None:
        self._rate = check_rate("rate_limit", rate)
        self._burst = default_burst(self._rate) if burst is None else check_burst(burst)
        #: key -> (tokens, the ``now`` they were counted at)
        self._buckets: dict[str | None, tuple[float, float]] = {}

    @property
    def rate(self) -> float:
        """Tokens added per second to every bucket."""
        return self._rate

    @property
    def burst(self) -> float:
        """The capacity of every bucket, in tokens."""
        return self._burst

    def level(self, key: str | None, now: float) -> float:
        """The tokens in ``key``'s bucket at ``now`` (``burst`` for a key not seen yet)."""
        bucket = self._buckets.get(key)
        if bucket is None:
            return self._burst
        tokens, then = bucket
        return min(self._burst, tokens + max(0.0, now - then) * self._rate)

    def take(self, key: str | None, now: float) -> float:
        """Take one token from ``key``'s bucket at ``now``.

        Returns 0.0 when a token was taken (serve the request), else the seconds until the
        bucket holds one again (> 0; the request is refused and takes nothing)."""
        tokens = self.level(key, now)
        if tokens >= 1.0 - _EPSILON:
            if key not in self._buckets and len(self._buckets) >= _PRUNE_AT:
                self._prune(now)
            self._buckets[key] = (max(0.0, tokens - 1.0), now)
            return 0.0
        self._buckets[key] = (tokens, now)
        return (1.0 - tokens) / self._rate

    def set_rate(self, rate: float, burst: float | None, now: float) -> None:
        """From ``now`` on, refill at ``rate`` up to ``burst`` (default :func:`default_burst`
        of ``rate``). Every bucket keeps the tokens it holds at ``now`` (counted at the old
        rate), clipped to the new capacity. Raises as the constructor does, changing nothing."""
        new_rate = check_rate("rate_limit", rate)
        new_burst = default_burst(new_rate) if burst is None else check_burst(burst)
        levels = {key: self.level(key, now) for key in self._buckets}
        self._rate, self._burst = new_rate, new_burst
        self._buckets = {key: (min(tokens, new_burst), now) for key, tokens in levels.items()}

    def _prune(self, now: float) -> None:
        """Forget the buckets that are full at ``now`` (a new one starts full anyway)."""
        self._buckets = {
            key: bucket for key, bucket in self._buckets.items()
            if self.level(key, now) < self._burst
        }

    def __len__(self) -> int:
        """The number of buckets kept."""
        return len(self._buckets)
