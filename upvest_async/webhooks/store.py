"""Which events were already handled: the ``EventStore`` protocol and an in-memory default.

Upvest delivers at least once (a request answered non-200 is retried whole, and duplicates
happen), so a receiver drops events whose ``id`` it handled before. Production wants a
**durable** store shared by every receiver process: the in-memory one forgets everything on a
restart and evicts its oldest ids when full, so a redelivery after either is handled again.
Best is a table with a unique event id, written in the same database transaction as the
handler's own effect (then a crash between the two cannot handle an event twice).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Protocol, runtime_checkable

__all__ = ["DEFAULT_STORE_SIZE", "EventStore", "MemoryEventStore"]

#: Event ids a :class:`MemoryEventStore` keeps by default.
DEFAULT_STORE_SIZE = 100_000


@runtime_checkable
class EventStore(Protocol):
    """Records the ids (canonical uuid text) of events handled successfully."""

    async def has(self, event_id: str) -> bool:
        """Whether the event ``event_id`` was handled before."""
        ...

    async def add(self, event_id: str) -> None:
        """Record that the event ``event_id`` was handled (called after the handler returned).
        An exception here makes the receiver answer non-200, so the delivery is retried."""
        ...


class MemoryEventStore:
    """An :class:`EventStore` in memory, bounded: beyond ``max_entries`` ids the oldest are
    forgotten. For tests, development and ``webhooks listen``; see the module docs for why
    production wants a durable one."""

    def __init__(self, max_entries: int = DEFAULT_STORE_SIZE) -> None:
        if not isinstance(max_entries, int) or max_entries < 1:
            raise ValueError("max_entries must be a positive integer")
        self.max_entries = max_entries
        self._ids: OrderedDict[str, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, event_id: object) -> bool:
        return event_id in self._ids

    async def has(self, event_id: str) -> bool:
        """Whether ``event_id`` was recorded (and not evicted since)."""
        return event_id in self._ids

    async def add(self, event_id: str) -> None:
        """Record ``event_id``, forgetting the oldest id when full."""
        self._ids[event_id] = None
        self._ids.move_to_end(event_id)
        while len(self._ids) > self.max_entries:
            self._ids.popitem(last=False)
