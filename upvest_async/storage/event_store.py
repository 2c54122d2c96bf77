"""``SQLEventStore``: the :class:`~upvest_async.webhooks.EventStore` of a database (SQLite or
PostgreSQL), shared by every receiver replica.

In one delivery's transaction (:meth:`SQLEventStore.transaction`, an ``AsyncConnection``):
the signature's ``(key_id, nonce)`` is inserted into ``upvest_webhook_signatures`` and each
event's id into ``upvest_webhook_events``, both with ``INSERT ... ON CONFLICT DO NOTHING``
(the unique key is the claim), your handler writes its effect through the same connection,
and all of it commits together.

Across replicas (PostgreSQL, ``READ COMMITTED``): an insert of an id another replica has
inserted but not committed waits for that transaction. When it commits, the insert does
nothing (the event is skipped as handled); when it rolls back (a handler failed, or the
replica died and its connection closed), the insert claims the id and this replica handles the
event. The wait is bounded by ``lock_timeout`` (then 503, and Upvest retries), and a replica
that hangs mid-transaction loses its claims after the lease
(``idle_in_transaction_session_timeout``). On SQLite, transactions run one at a time
(``BEGIN IMMEDIATE``).

Expired signatures are deleted at most once per ``purge_interval`` seconds, in a transaction
of their own before a delivery's.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from ..models.webhooks import WebhookEvent
from .database import Database
from .schema import signatures_table, webhook_events_table

__all__ = ["DEFAULT_PURGE_INTERVAL", "SQLEventStore"]

#: Seconds between two deletions of expired signatures.
DEFAULT_PURGE_INTERVAL = 60.0


def _insert(dialect: str, table: sa.Table) -> Any:
    return (postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table))


class SQLEventStore:
    """An :class:`~upvest_async.webhooks.EventStore` on an open
    :class:`~upvest_async.storage.Database` (see the module docs); its transactions are
    ``AsyncConnection`` objects, so a handler ``async def on_event(event, tx)`` writes its
    effect with ``await tx.execute(...)`` in the same commit.

    ``clock``: Unix time in seconds (``handled_at``, expiry of signatures);
    ``purge_interval``: seconds between two deletions of expired signatures.
    """

    def __init__(self, database: Database, *, clock: Callable[[], float] = time.time,
                 purge_interval: float = DEFAULT_PURGE_INTERVAL) -> None:
        self.database = database
        self.clock = clock
        self.purge_interval = purge_interval
        self._purged_at: float | None = None
        dialect = database.dialect
        self._claim_events = _insert(dialect, webhook_events_table).on_conflict_do_nothing(
            index_elements=["event_id"]).returning(webhook_events_table.c.event_id)
        self._claim_signature = _insert(dialect, signatures_table).on_conflict_do_nothing(
            index_elements=["key_id", "nonce"]).returning(signatures_table.c.nonce)

    def __repr__(self) -> str:
        return f"SQLEventStore({self.database.url.target})"

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)

    async def purge(self) -> int:
        """Delete the signatures whose ``keep_until`` has passed (a transaction of its own);
        returns how many. Raises :class:`~upvest_async.storage.DatabaseUnavailableError`."""
        now = self.clock()
        self._purged_at = now  # (set first: deliveries arriving meanwhile do not purge too)
        async with self.database.transaction() as conn:
            result = await conn.execute(
                signatures_table.delete().where(
                    signatures_table.c.keep_until < datetime.fromtimestamp(now, UTC)))
        return max(result.rowcount, 0)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """One database transaction (:meth:`Database.transaction
        <upvest_async.storage.Database.transaction>`), after deleting expired signatures when
        ``purge_interval`` has passed. Raises
        :class:`~upvest_async.storage.DatabaseUnavailableError` (nothing committed)."""
        if self._purged_at is None or self.clock() - self._purged_at >= self.purge_interval:
            await self.purge()
        async with self.database.transaction() as conn:
            yield conn

    async def claim_signature(self, tx: AsyncConnection, key_id: str, nonce: str, *,
                              keep_until: float) -> bool:
        """Insert ``(key_id, nonce)`` kept until ``keep_until`` (Unix seconds); ``False``
        when it is there already (a replay)."""
        row = await tx.execute(self._claim_signature, {
            "key_id": key_id, "nonce": nonce,
            "keep_until": datetime.fromtimestamp(keep_until, UTC)})
        return row.first() is not None

    async def claim_events(self, tx: AsyncConnection,
                           events: Sequence[WebhookEvent]) -> set[uuid.UUID]:
        """Insert the events' rows (``event_id``, ``type``, ``created_at``, ``handled_at``
        now) in the order given, in one statement; returns the ids inserted now (the others
        were there already: handled before, possibly by another replica)."""
        if not events:
            return set()
        now = self._now()
        rows = await tx.execute(self._claim_events, [
            {"event_id": event.id, "type": str(event.type), "created_at": event.created_at,
             "handled_at": now} for event in events])
        return set(rows.scalars())
