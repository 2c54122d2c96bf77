"""Counters a client keeps about its own traffic (for summaries and benchmarks)."""

from __future__ import annotations

import attrs

__all__ = ["ClientStats"]


@attrs.define
class ClientStats:
    """Counts since the client was created.

    ``requests``: HTTP requests sent, every attempt and token request included.
    ``token_requests``: requests to ``/auth/token``. ``pages``: list pages received.
    ``retries``: attempts after the first of a call.
    """

    requests: int = 0
    token_requests: int = 0
    pages: int = 0
    retries: int = 0
