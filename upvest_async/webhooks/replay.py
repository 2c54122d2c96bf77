"""Replay protection: each accepted signature's (key id, nonce) is remembered until it expires.

Bounded: expired entries are purged first; when the cache is still full, a new signature is
refused with ``replay-cache-full`` (transient, the sender retries) rather than forgetting an
unexpired one, which would let it be replayed.
"""

from __future__ import annotations

import heapq

from .errors import WebhookVerificationError

__all__ = ["DEFAULT_REPLAY_CACHE_SIZE", "ReplayCache"]

#: Signatures remembered at most, by default (a minute of 1,600 requests per second).
DEFAULT_REPLAY_CACHE_SIZE = 100_000


class ReplayCache:
    """Remembers ``(key_id, nonce)`` pairs until a Unix time (seconds), at most ``max_entries``.

    In memory, one process: :meth:`WebhookVerifier.verify
    <upvest_async.webhooks.WebhookVerifier.verify>` keeps one, and so does a
    :class:`~upvest_async.webhooks.MemoryEventStore`. Receivers on several replicas record
    nonces in their shared store instead (``upvest_async.storage.SQLEventStore``), so a replay
    is refused on every replica.
    """

    def __init__(self, max_entries: int = DEFAULT_REPLAY_CACHE_SIZE) -> None:
        if not isinstance(max_entries, int) or max_entries < 1:
            raise ValueError("max_entries must be a positive integer")
        self.max_entries = max_entries
        self._until: dict[tuple[str, str], float] = {}
        self._heap: list[tuple[float, tuple[str, str]]] = []

    def __len__(self) -> int:
        return len(self._until)

    def _purge(self, now: float) -> None:
        heap, until = self._heap, self._until
        while heap and heap[0][0] <= now:
            expiry, key = heapq.heappop(heap)
            if until.get(key) == expiry:
                del until[key]

    def add(self, key_id: str, nonce: str, *, keep_until: float, now: float) -> None:
        """Record a signature; raises :class:`WebhookVerificationError` ``replayed`` when it was
        recorded before and has not expired, ``replay-cache-full`` when there is no room."""
        self._purge(now)
        key = (key_id, nonce)
        if key in self._until:
            raise WebhookVerificationError("replayed")
        if len(self._until) >= self.max_entries:
            raise WebhookVerificationError("replay-cache-full")
        self._until[key] = keep_until
        heapq.heappush(self._heap, (keep_until, key))

    def discard(self, key_id: str, nonce: str) -> None:
        """Forget a signature (a receiver does so when it answered non-200, so that the
        sender's retry of the same signed request is accepted)."""
        self._until.pop((key_id, nonce), None)
