"""Counters a client keeps about its own traffic (for summaries and benchmarks)."""

from __future__ import annotations

import attrs

__all__ = ["ClientStats"]


@attrs.define
class ClientStats:
    """Counts since the client was created.

    ``requests``: HTTP requests sent, every attempt and token request included.
    ``token_requests``: requests to ``/auth/token``. ``pages``: list pages received.
    ``retries``: attempts after the first of a call (re-sends after a 429 included).
    ``throttled``: attempts answered 429 (rate limited). ``rate_limit_wait``: seconds calls
    spent waiting for their turn in the rate limiter, added up over all calls.
    ``learned_rate``: the rate limiter's current pacing rate in requests per second, as of the
    last answer (``None``: not paced; see :mod:`upvest_async.ratelimit`).
    """

    requests: int = 0
    token_requests: int = 0
    pages: int = 0
    retries: int = 0
    throttled: int = 0
    rate_limit_wait: float = 0.0
    learned_rate: float | None = None
