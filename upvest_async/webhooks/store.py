"""Where a receiver records what it handled: the ``EventStore`` protocol and an in-memory store.

Upvest delivers at least once (a request answered non-200 is retried whole, and duplicates
happen, also to two receiver processes at the same moment). A :class:`WebhookReceiver`
handles each delivery in ONE transaction of its store: the signature's (key id, nonce) is
claimed (a replay is refused), each event id is claimed (an id handled before is skipped),
your handler runs for each new event with the transaction, and everything commits together;
the receiver answers 200 only after the commit. Any failure rolls everything back (the
claims too), and Upvest's retry handles the events again.

- :class:`MemoryEventStore`: in memory, one process; transactions run one at a time. For
  tests, development and ``webhooks listen``: it forgets everything on a restart and evicts its
  oldest ids when full.
- :class:`upvest_async.storage.SQLEventStore` (the ``mirror`` extra): SQLite or PostgreSQL,
  shared by every replica, your handler's writes in the same database transaction.
- Your own: any class with the three methods of :class:`EventStore`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Protocol, TypeVar, runtime_checkable

from ..models.webhooks import WebhookEvent
from .errors import StoreUnavailableError, WebhookVerificationError
from .replay import DEFAULT_REPLAY_CACHE_SIZE, ReplayCache

__all__ = ["DEFAULT_STORE_SIZE", "EventStore", "MemoryEventStore", "MemoryTransaction"]

#: Event ids a :class:`MemoryEventStore` keeps by default.
DEFAULT_STORE_SIZE = 100_000

T = TypeVar("T")


@runtime_checkable
class EventStore(Protocol[T]):
    """A store of handled event ids and accepted signatures, with transactions of type ``T``
    (what your handler receives as ``tx``: ``AsyncConnection`` for
    :class:`upvest_async.storage.SQLEventStore`, :class:`MemoryTransaction` for
    :class:`MemoryEventStore`).

    Contract: what is claimed in a transaction is recorded if and only if the transaction
    commits; a claim of an id another open transaction claimed waits for that one to end (or
    fails with :class:`~upvest_async.webhooks.StoreUnavailableError`), then answers as if
    they had run one after the other.
    """

    def transaction(self) -> AbstractAsyncContextManager[T]:
        """One transaction: committed when the block ends normally, rolled back when it
        raises. Raises :class:`~upvest_async.webhooks.StoreUnavailableError` for a transient
        failure (nothing recorded)."""
        ...

    async def claim_signature(self, tx: T, key_id: str, nonce: str, *,
                              keep_until: float) -> bool:
        """Record an accepted signature until ``keep_until`` (Unix seconds); ``False`` when
        this (key id, nonce) is recorded already (a replay)."""
        ...

    async def claim_events(self, tx: T, events: Sequence[WebhookEvent]) -> set[uuid.UUID]:
        """Record ``events`` (distinct ids; their ``id``, ``type``, ``created_at``) as handled,
        in the order given (the receiver sorts them by id, so that two deliveries sharing
        events claim them in the same order); returns the ids claimed now (the others were
        handled before)."""
        ...


class MemoryTransaction:
    """The transaction of a :class:`MemoryEventStore`: the event ids (canonical uuid text) and
    signatures it claimed, recorded when it commits."""

    def __init__(self) -> None:
        self.event_ids: list[str] = []
        self.signatures: list[tuple[str, str]] = []


class MemoryEventStore:
    """An :class:`EventStore` in memory, for one process; transactions run one at a time.

    ``max_entries``: event ids kept (beyond, the oldest are forgotten); ``handled``: ids
    (uuid text, either case) of events handled before, e.g. read back from a previous run's
    log;
    ``max_signatures``: accepted signatures kept until they expire (when full of unexpired
    ones, a delivery fails with :class:`~upvest_async.webhooks.StoreUnavailableError`, answered
    503, rather than forgetting one that could be replayed); ``clock``: Unix time in seconds.
    Raises ``ValueError`` for a size that is not a positive integer.
    """

    def __init__(self, max_entries: int = DEFAULT_STORE_SIZE, *,
                 handled: Iterable[str] = (),
                 max_signatures: int = DEFAULT_REPLAY_CACHE_SIZE,
                 clock: Callable[[], float] = time.time) -> None:
        if isinstance(max_entries, bool) or not isinstance(max_entries, int) \
                or max_entries < 1:
            raise ValueError("max_entries must be a positive integer")
        self.max_entries = max_entries
        self.clock = clock
        self._ids: OrderedDict[str, None] = OrderedDict()
        for event_id in handled:
            self._remember(event_id.lower())
        self._signatures = ReplayCache(max_signatures)
        self._lock = asyncio.Lock()

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, event_id: object) -> bool:
        return event_id in self._ids

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[MemoryTransaction]:
        """One transaction (waits for the one running); see :class:`EventStore`."""
        async with self._lock:
            tx = MemoryTransaction()
            try:
                yield tx
            except BaseException:
                for key_id, nonce in tx.signatures:
                    self._signatures.discard(key_id, nonce)
                raise
            for event_id in tx.event_ids:
                self._remember(event_id)

    def _remember(self, event_id: str) -> None:
        self._ids[event_id] = None
        self._ids.move_to_end(event_id)
        while len(self._ids) > self.max_entries:
            self._ids.popitem(last=False)

    async def claim_signature(self, tx: MemoryTransaction, key_id: str, nonce: str, *,
                              keep_until: float) -> bool:
        """See :class:`EventStore`."""
        try:
            self._signatures.add(key_id, nonce, keep_until=keep_until, now=self.clock())
        except WebhookVerificationError as exc:
            if exc.reason == "replayed":
                return False
            raise StoreUnavailableError("the store's signatures are full of unexpired "
                                        "ones") from None
        tx.signatures.append((key_id, nonce))
        return True

    async def claim_events(self, tx: MemoryTransaction,
                           events: Sequence[WebhookEvent]) -> set[uuid.UUID]:
        """See :class:`EventStore`."""
        claimed: set[uuid.UUID] = set()
        for event in events:
            event_id = str(event.id)
            if event_id not in self._ids and event_id not in tx.event_ids:
                tx.event_ids.append(event_id)
                claimed.add(event.id)
        return claimed
