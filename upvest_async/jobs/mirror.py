"""The positions mirror: every position of some accounts in a table of your database,
loaded by an export and kept current by ``POSITION.UPDATED`` webhooks (W1), on SQLite or
PostgreSQL (:mod:`upvest_async.storage`; the ``mirror`` extra).

The table is ``upvest_positions`` (:mod:`upvest_async.storage`): one row per
``(account_id, instrument_uuid)``, the API's own values (decimals exact) and ``as_of``, the
moment the row's data is known to be current (an aware UTC datetime).

**The ordering rule** (one rule for a load and an event alike): a write replaces a row only
when it is newer, that is when its ``as_of`` is later than the row's; when both are equal, the
greater values win, compared column by column in the order ``quantity``,
``available_for_trading``, ``locked_for_trading``, ``pending_settlement`` (as numbers on
PostgreSQL, as their decimal text on SQLite, where decimals are stored as text). The same
writes in any order therefore leave the same row. Why: Upvest delivers at least once, retries
a whole request until it is answered 200 and keeps no order across requests (W2), so an older
event can arrive after a newer one, on another replica, at the same moment; only a rule that
does not depend on arrival order gives every replica the same table.

- An event's ``as_of`` is its ``created_at``: an event older than the row changes nothing
  (delivered late, or already part of the data a load read).
- A load's ``as_of`` is the moment it sent its first request, by this host's clock, less
  ``clock_margin`` seconds: its data was read after that moment, so every event older than it
  is in the data. An ``as_of`` a little early is harmless (events the data already holds are
  applied again, and the newest one still wins); one too late would make events be ignored
  that the data did not hold, so the margin covers the skew between this host's clock and
  Upvest's.
- A load replaces the accounts it covers in one transaction, at its end: each position
  exported replaces the row unless the row is newer (an event applied while the load ran is
  kept); a row of those accounts that the export no longer lists is deleted unless it is newer
  than the load. A load that fails (an API error, the process killed, the database) leaves the
  table as it was: the export is first written to a temporary table of the load's own
  connection (in short transactions: no lock on ``upvest_positions`` while the export runs),
  which the database drops with the connection. The final transaction writes every row
  loaded; receivers wait for it (on PostgreSQL it locks the table against other writers, so
  that no delivery can deadlock with it; a delivery that waits longer than the database's
  lock timeout is answered 503 and retried).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import attrs
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from ..errors import UpvestError
from ..models import Position
from ..models.webhooks import WebhookEvent, WebhookEventType
from ..resources.positions import DEFAULT_EXPORT_CONCURRENCY
from ..storage import Database, DatabaseUnavailableError, positions_table
from ..storage.database import transient_reason
from ..validation import check_uuid
from .mirror_sql import (
    COLUMNS,
    Row,
    Staging,
    dialect_insert,
    sqlite_rows,
    staged_row,
    typed_column,
    upsert,
)

if TYPE_CHECKING:
    from ..client import UpvestClient

__all__ = ["DEFAULT_CLOCK_MARGIN", "LoadSummary", "PositionsMirror"]

#: Seconds a load's ``as_of`` is set before its first request (see the module docs).
DEFAULT_CLOCK_MARGIN = 5.0

#: Rows written to the load's temporary table at once (at least).
_BATCH_ROWS = 10_000
#: Batches waiting for the load's writer task at most (memory: about 1 KiB a row).
_QUEUED = 2



@attrs.define
class LoadSummary:
    """Figures of one load: ``accounts`` and ``positions`` exported, ``deleted`` (rows of those
    accounts the export no longer lists), ``kept`` (exported positions whose row was newer
    than the load and stayed), ``as_of`` (the load's, see the module docs), ``seconds`` (wall
    clock, the final transaction included), ``committed`` (the final transaction committed:
    ``upvest_positions`` holds the load; until then it is unchanged)."""

    accounts: int = 0
    positions: int = 0
    deleted: int = 0
    kept: int = 0
    as_of: datetime | None = None
    seconds: float = 0.0
    committed: bool = False

    @property
    def positions_per_second(self) -> float:
        """Positions loaded per second of wall clock."""
        return self.positions / self.seconds if self.seconds > 0 else 0.0


class PositionsMirror:
    """The positions of accounts in ``upvest_positions`` of ``database`` (an open
    :class:`~upvest_async.storage.Database`, whose tables it created). See the module docs
    for the rule that orders loads and events.

    ``clock_margin``: seconds a load's ``as_of`` is set before its first request (a finite
    number >= 0; a :class:`ValueError` otherwise).
    """

    def __init__(self, database: Database, *,
                 clock_margin: float = DEFAULT_CLOCK_MARGIN) -> None:
        if isinstance(clock_margin, bool) or not isinstance(clock_margin, int | float) \
                or not 0 <= clock_margin < float("inf"):
            raise ValueError(f"clock_margin must be a number of seconds >= 0, got "
                             f"{clock_margin!r}")
        self.database = database
        self.clock_margin = float(clock_margin)
        self._apply = upsert(dialect_insert(positions_table, database.dialect))

    def __repr__(self) -> str:
        return f"PositionsMirror({self.database!r})"

    async def load(
        self,
        client: UpvestClient,
        account_ids: Iterable[str | uuid.UUID],
        *,
        concurrency: int = DEFAULT_EXPORT_CONCURRENCY,
        on_account: Callable[[str, int], None] | None = None,
        summary: LoadSummary | None = None,
    ) -> LoadSummary:
        """Export the positions of ``account_ids`` (``client.positions.export_records``, E16:
        the API's own values, validated as :class:`~upvest_async.Position` validates them;
        in order, ``concurrency`` page requests in flight, 429s re-sent, paced by the
        client's rate limiter) and replace those accounts in ``upvest_positions`` in one
        transaction at the end (see the module docs).

        ``on_account(account_id, positions)`` is called for each account, in order, once its
        positions are written to the load's temporary table (they are in
        ``upvest_positions`` when the load returns). Returns a :class:`LoadSummary`: the one
        given as ``summary``, filled as the load goes (so that a caller interrupted knows
        from its ``committed`` whether the table holds the load), or a new one.

        Raises :class:`~upvest_async.InvalidInputError` for a bad account id or
        ``concurrency`` before anything is sent or written; the export's errors
        (:class:`~upvest_async.APIStatusError`, ...),
        :class:`~upvest_async.storage.DatabaseUnavailableError` (the database cannot be
        reached, the connection was lost, a lock timed out) and SQLAlchemy's other errors,
        each with the table unchanged.
        """
        accounts = [check_uuid("account_id", account) for account in account_ids]
        summary = summary if summary is not None else LoadSummary()
        started = time.monotonic()
        records = client.positions.export_records(accounts, concurrency=concurrency)
        try:
            async with self.database.engine.connect() as conn:
                try:
                    await self._fill(conn, records, accounts, summary, on_account)
                except BaseException:
                    # A failed load's connection is closed, not pooled: its temporary
                    # tables go with it.
                    await conn.invalidate()
                    raise
        except (DatabaseUnavailableError, UpvestError):
            raise  # (an API connection error is the API's, not the database's)
        except Exception as exc:
            reason = transient_reason(exc)
            if reason is None:
                raise
            raise DatabaseUnavailableError(self.database.url.target, reason) from exc
        finally:
            await records.aclose()
        summary.seconds = time.monotonic() - started
        return summary

    async def _fill(self, conn: AsyncConnection, records: Any, accounts: list[str],
                    summary: LoadSummary, on_account: Callable[[str, int], None] | None,
                    ) -> None:
        """Write the export to the temporary tables, then replace the accounts in one
        transaction."""
        staging = Staging(self.database.dialect)
        await conn.run_sync(lambda sync: staging.metadata.create_all(sync))
        await conn.commit()
        await self._stage(conn, staging, [], [uuid.UUID(account) for account in accounts])
        summary.as_of = as_of = datetime.now(UTC) - timedelta(seconds=self.clock_margin)
        # The batches are written by a task of their own, so that the export's next pages
        # are read and checked while the database writes (and on PostgreSQL converts) the
        # last ones; at most _QUEUED batches wait.
        queue: asyncio.Queue[list[Row] | None] = asyncio.Queue(maxsize=_QUEUED)

        async def write() -> None:
            while (rows := await queue.get()) is not None:
                await self._stage(conn, staging, rows, [])

        writer = asyncio.create_task(write())

        async def put(rows: list[Row] | None) -> None:
            putting = asyncio.ensure_future(queue.put(rows))
            await asyncio.wait({putting, writer}, return_when=asyncio.FIRST_COMPLETED)
            if not putting.done():  # the writer failed: its error is the load's
                putting.cancel()
                writer.result()

        try:
            batch: list[Row] = []
            async for account, positions in records:
                batch.extend(map(staged_row, positions))
                if len(batch) >= _BATCH_ROWS:
                    await put(batch)
                    batch = []
                summary.accounts += 1
                summary.positions += len(positions)
                if on_account is not None:
                    on_account(account, len(positions))
            await put(batch)
            await put(None)
            await writer
        finally:
            if not writer.done():
                writer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await writer
        async with conn.begin():
            await self._merge(conn, staging, as_of, summary)
        summary.committed = True
        # The connection is closed, not pooled: its temporary tables go with it, faster than
        # dropping them (a transaction of its own, a commit to wait for).
        await conn.invalidate()

    async def _stage(self, conn: AsyncConnection, staging: Staging, rows: Sequence[Row],
                     accounts: Sequence[uuid.UUID]) -> None:
        """Write ``rows`` and ``accounts`` to the temporary tables (committed: they live on
        this connection only): PostgreSQL's ``COPY``, then the server converts them to the
        typed table; SQLite's ``executemany``."""
        async with conn.begin():
            if rows and staging.typed is not None:
                raw = await conn.get_raw_connection()
                driver = raw.driver_connection
                assert driver is not None
                try:
                    await driver.copy_records_to_table(staging.rows.name, records=rows,
                                                       columns=list(COLUMNS))
                except Exception as exc:  # the driver's own (SQLAlchemy does not wrap it)
                    if driver.is_closed():
                        raise DatabaseUnavailableError(self.database.url.target,
                                                       "connection lost") from exc
                    raise
                await conn.execute(staging.typed.insert().from_select(
                    list(COLUMNS), sa.select(*(typed_column(staging.rows, name)
                                                for name in COLUMNS))))
                # (TRUNCATE, not DELETE: a temporary table is never vacuumed, and the dead
                # rows would be scanned again by every batch)
                await conn.exec_driver_sql(f"TRUNCATE {staging.rows.name}")
            elif rows:
                marks = ", ".join("?" * len(COLUMNS))
                await conn.exec_driver_sql(
                    f"INSERT INTO {staging.rows.name} ({', '.join(COLUMNS)}) "
                    f"VALUES ({marks})", sqlite_rows(rows))
            if accounts:
                await conn.execute(staging.accounts.insert(),
                                   [{"account_id": account} for account in accounts])

    @staticmethod
    async def _merge(conn: AsyncConnection, staging: Staging, as_of: datetime,
                     summary: LoadSummary) -> None:
        """Replace the covered accounts in ``upvest_positions`` (in the caller's
        transaction): upsert every staged row by the ordering rule with ``as_of``, then
        delete the rows of those accounts still older than ``as_of`` (not exported, and not
        newer than the load). When the table holds no row of those accounts (their first
        load), a plain ``INSERT`` does the same (nothing to conflict with, keep or delete:
        no other writer runs meanwhile), without the upsert's conflict checks."""
        table = positions_table
        if conn.dialect.name == "postgresql":
            # Writers wait while the load replaces its rows, so none can deadlock with it
            # (readers do not wait; SQLite's BEGIN IMMEDIATE already runs it alone).
            await conn.exec_driver_sql(
                f"LOCK TABLE {table.name} IN SHARE ROW EXCLUSIVE MODE")
        covered = table.c.account_id.in_(sa.select(staging.accounts.c.account_id))
        first = not await conn.scalar(sa.select(sa.exists().where(covered)))
        stamp = sa.literal(as_of, type_=table.c.as_of.type)
        source = sa.select(*staging.source(), stamp) \
            .where(sa.true())  # (SQLite: INSERT ... SELECT ... ON CONFLICT needs a WHERE)
        if first:
            await conn.execute(sa.insert(table).from_select([*COLUMNS, "as_of"], source))
            return
        insert = dialect_insert(table, conn.dialect.name).from_select([*COLUMNS, "as_of"], source)
        result = await conn.execute(upsert(insert))
        summary.kept = summary.positions - max(result.rowcount, 0)
        deleted = await conn.execute(sa.delete(table).where(covered, table.c.as_of < stamp))
        summary.deleted = max(deleted.rowcount, 0)

    async def apply(self, event: WebhookEvent, tx: AsyncConnection) -> None:
        """Apply one webhook event in the delivery's transaction ``tx`` (the handler of
        :class:`~upvest_async.storage.SQLEventStore`): a ``POSITION.UPDATED`` (W1) upserts its
        position with ``as_of`` = its ``created_at`` by the ordering rule (one statement,
        ``INSERT ... ON CONFLICT DO UPDATE ... WHERE``); any other type changes nothing (the
        store records it). Raises SQLAlchemy's errors (the delivery then fails and is
        retried)."""
        if event.type != WebhookEventType.POSITION_UPDATED or \
                not isinstance(event.object, Position):
            return
        position = event.object
        await tx.execute(self._apply, {
            "account_id": position.account_id, "instrument_uuid": position.instrument.uuid,
            "isin": position.instrument.isin, "quantity": position.quantity,
            "available_for_trading": position.available_for_trading,
            "locked_for_trading": position.locked_for_trading,
            "pending_settlement": position.pending_settlement,
            "as_of": event.created_at.astimezone(UTC),
        })
