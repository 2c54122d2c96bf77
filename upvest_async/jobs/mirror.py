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
  connection, which the database drops with the connection.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import attrs
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from ..models import Position
from ..models.webhooks import WebhookEvent, WebhookEventType
from ..resources.positions import DEFAULT_EXPORT_CONCURRENCY
from ..storage import Database, DatabaseUnavailableError, positions_table
from ..storage.database import transient_reason
from ..validation import check_uuid

if TYPE_CHECKING:
    from ..client import UpvestClient

__all__ = ["DEFAULT_CLOCK_MARGIN", "LoadSummary", "PositionsMirror"]

#: Seconds a load's ``as_of`` is set before its first request (see the module docs).
DEFAULT_CLOCK_MARGIN = 5.0

#: Rows written to the load's temporary table at once.
_BATCH_ROWS = 10_000

_KEY = ("account_id", "instrument_uuid")
_VALUES = ("isin", "quantity", "available_for_trading", "locked_for_trading",
           "pending_settlement")
_NUMBERS = ("quantity", "available_for_trading", "locked_for_trading", "pending_settlement")
_COLUMNS = (*_KEY, *_VALUES)

Row = tuple[uuid.UUID, uuid.UUID, str | None, Decimal, Decimal, Decimal, Decimal]


@attrs.define
class LoadSummary:
    """Figures of one load: ``accounts`` and ``positions`` exported, ``deleted`` (rows of those
    accounts the export no longer lists), ``kept`` (exported positions whose row was newer
    than the load and stayed), ``as_of`` (the load's, see the module docs), ``seconds`` (wall
    clock, the final transaction included)."""

    accounts: int = 0
    positions: int = 0
    deleted: int = 0
    kept: int = 0
    as_of: datetime | None = None
    seconds: float = 0.0

    @property
    def positions_per_second(self) -> float:
        """Positions loaded per second of wall clock."""
        return self.positions / self.seconds if self.seconds > 0 else 0.0


def _row(position: Position) -> Row:
    instrument = position.instrument
    return (position.account_id, instrument.uuid, instrument.isin, position.quantity,
            position.available_for_trading, position.locked_for_trading,
            position.pending_settlement)


def _insert(table: sa.Table, dialect: str) -> Any:
    """The dialect's ``INSERT`` (with ``ON CONFLICT``) of ``table``."""
    return (postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table))


def _newer(table: sa.Table, excluded: Any) -> sa.ColumnElement[bool]:
    """The ordering rule: the incoming row (``excluded``) is newer than ``table``'s."""
    mine = sa.tuple_(*(table.c[name] for name in _NUMBERS))
    theirs = sa.tuple_(*(excluded[name] for name in _NUMBERS))
    return sa.or_(excluded.as_of > table.c.as_of,
                  sa.and_(excluded.as_of == table.c.as_of, theirs > mine))


def _upsert(statement: Any) -> Any:
    """``statement`` (an insert into ``upvest_positions``) with the ordering rule on
    conflict."""
    excluded = statement.excluded
    return statement.on_conflict_do_update(
        index_elements=[positions_table.c[name] for name in _KEY],
        set_={name: excluded[name] for name in (*_VALUES, "as_of")},
        where=_newer(positions_table, excluded),
    )


def _staging() -> tuple[sa.Table, sa.Table]:
    """The load's temporary tables (of its own connection): the positions exported, typed as
    ``upvest_positions``'s columns, and the accounts covered."""
    metadata = sa.MetaData()
    rows = sa.Table(
        "upvest_positions_load", metadata,
        *(sa.Column(name, positions_table.c[name].type) for name in _COLUMNS),
        prefixes=["TEMPORARY"],
    )
    accounts = sa.Table(
        "upvest_positions_load_accounts", metadata,
        sa.Column("account_id", positions_table.c.account_id.type, primary_key=True),
        prefixes=["TEMPORARY"],
    )
    return rows, accounts


class _Accounts:
    """Counts a load's accounts and positions, calling ``on_account`` for each account in
    order: the export yields the accounts' positions in the order given, so an account is
    done when a position of a later one arrives, or the export ends."""

    def __init__(self, accounts: list[str], summary: LoadSummary,
                 on_account: Callable[[str, int], None] | None) -> None:
        self.accounts = accounts
        self.index = {uuid.UUID(account): number for number, account in enumerate(accounts)}
        self.summary = summary
        self.on_account = on_account
        self.done = 0
        self.count = 0

    def seen(self, account: uuid.UUID) -> None:
        """One more position, of ``account``."""
        number = self.index[account]
        if number != self.done:
            self.finish(number)
        self.count += 1
        self.summary.positions += 1

    def finish(self, upto: int) -> None:
        """The accounts before number ``upto`` are done."""
        while self.done < upto:
            self.summary.accounts += 1
            if self.on_account is not None:
                self.on_account(self.accounts[self.done], self.count)
            self.done, self.count = self.done + 1, 0


class PositionsMirror:
    """The positions of accounts in ``upvest_positions`` of ``database`` (an open
    :class:`~upvest_async.storage.Database`; its schema made with
    :func:`~upvest_async.storage.ensure_schema`). See the module docs for the rule that
    orders loads and events.

    ``clock_margin``: seconds a load's ``as_of`` is set before its first request (>= 0; a
    :class:`ValueError` otherwise).
    """

    def __init__(self, database: Database, *,
                 clock_margin: float = DEFAULT_CLOCK_MARGIN) -> None:
        if isinstance(clock_margin, bool) or not isinstance(clock_margin, int | float) \
                or not clock_margin >= 0 or clock_margin == float("inf"):
            raise ValueError(f"clock_margin must be a number of seconds >= 0, got "
                             f"{clock_margin!r}")
        self.database = database
        self.clock_margin = float(clock_margin)

    async def load(
        self,
        client: UpvestClient,
        account_ids: Iterable[str | uuid.UUID],
        *,
        concurrency: int = DEFAULT_EXPORT_CONCURRENCY,
        on_account: Callable[[str, int], None] | None = None,
    ) -> LoadSummary:
        """Export the positions of ``account_ids`` (``client.positions.export``, E16:
        ordered, ``concurrency`` page requests in flight, 429s re-sent within the deadline,
        paced by the client's rate limiter) and replace those accounts in
        ``upvest_positions`` in one transaction (see the module docs).

        ``on_account(account_id, positions)`` is called for each account, in order, once its
        positions are read (the last ones once the table is written; they are all in
        ``upvest_positions`` only when the load returns). Returns a :class:`LoadSummary`.

        Raises :class:`~upvest_async.InvalidInputError` for a bad account id or
        ``concurrency`` before anything is sent or written; the export's errors
        (:class:`~upvest_async.APIStatusError`, ...) and the database's
        (:class:`~upvest_async.storage.DatabaseUnavailableError`, SQLAlchemy's errors) with
        the table unchanged.
        """
        accounts = [check_uuid("account_id", account) for account in account_ids]
        summary = LoadSummary()
        started = time.monotonic()
        positions = client.positions.export(accounts, concurrency=concurrency)
        try:
            async with contextlib.aclosing(positions):
                await self._load(positions, accounts, summary, on_account)
        except Exception as exc:
            reason = transient_reason(exc)
            if reason is None:
                raise
            raise DatabaseUnavailableError(self.database.url.target, reason) from exc
        summary.seconds = time.monotonic() - started
        return summary

    async def _load(self, positions: AsyncIterator[Position], accounts: list[str],
                    summary: LoadSummary, on_account: Callable[[str, int], None] | None,
                    ) -> None:
        progress = _Accounts(accounts, summary, on_account)
        async with self.database.engine.connect() as conn:
            try:
                await self._fill(conn, positions, accounts, summary, progress)
            except BaseException:
                # A failed load's connection is closed, not pooled: its temporary tables go.
                await conn.invalidate()
                raise
        progress.finish(len(accounts))

    async def _fill(self, conn: AsyncConnection, positions: AsyncIterator[Position],
                    accounts: list[str], summary: LoadSummary, progress: _Accounts) -> None:
        """Write the export to the temporary tables, then replace the accounts (one
        transaction)."""
        rows_table, accounts_table = _staging()
        dialect = self.database.dialect
        await conn.run_sync(lambda sync: rows_table.metadata.create_all(sync))
        await conn.commit()
        await self._stage(conn, dialect, rows_table, accounts_table, [],
                          [uuid.UUID(account) for account in accounts])
        summary.as_of = as_of = datetime.now(UTC) - timedelta(seconds=self.clock_margin)
        batch: list[Row] = []
        async for position in positions:
            progress.seen(position.account_id)
            batch.append(_row(position))
            if len(batch) >= _BATCH_ROWS:
                await self._stage(conn, dialect, rows_table, accounts_table, batch, [])
                batch = []
        await self._stage(conn, dialect, rows_table, accounts_table, batch, [])
        async with conn.begin():
            await self._merge(conn, rows_table, accounts_table, as_of, summary)
        await conn.run_sync(lambda sync: rows_table.metadata.drop_all(sync))
        await conn.commit()

    @staticmethod
    async def _stage(conn: AsyncConnection, dialect: str, rows_table: sa.Table,
                     accounts_table: sa.Table, rows: Sequence[Row],
                     accounts: Sequence[uuid.UUID]) -> None:
        """Write ``rows`` and ``accounts`` to the temporary tables (committed: they live on
        this connection only)."""
        async with conn.begin():
            if dialect == "postgresql" and rows:
                raw = await conn.get_raw_connection()
                driver = raw.driver_connection
                assert driver is not None
                await driver.copy_records_to_table(rows_table.name, records=rows,
                                                   columns=list(_COLUMNS))
            elif rows:
                await conn.execute(rows_table.insert(),
                                   [dict(zip(_COLUMNS, row, strict=True)) for row in rows])
            if accounts:
                await conn.execute(accounts_table.insert(),
                                   [{"account_id": account} for account in accounts])

    @staticmethod
    async def _merge(conn: AsyncConnection, rows_table: sa.Table, accounts_table: sa.Table,
                     as_of: datetime, summary: LoadSummary) -> None:
        """Replace the covered accounts in ``upvest_positions`` (in the caller's
        transaction)."""
        table = positions_table
        stamp = sa.literal(as_of, type_=table.c.as_of.type)
        source = sa.select(*(rows_table.c[name] for name in _COLUMNS), stamp).where(sa.true())
        insert = _insert(table, conn.dialect.name).from_select([*_COLUMNS, "as_of"], source)
        result = await conn.execute(_upsert(insert))
        summary.kept = summary.positions - max(result.rowcount, 0)
        listed = sa.select(sa.literal(1)).where(
            rows_table.c.account_id == table.c.account_id,
            rows_table.c.instrument_uuid == table.c.instrument_uuid,
        ).exists()
        deleted = await conn.execute(sa.delete(table).where(
            table.c.account_id.in_(sa.select(accounts_table.c.account_id)),
            table.c.as_of < stamp,
            ~listed,
        ))
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
        values: dict[str, Any] = dict(zip(_COLUMNS, _row(position), strict=True))
        values["as_of"] = event.created_at.astimezone(UTC)
        statement = _insert(positions_table, tx.dialect.name).values(**values)
        await tx.execute(_upsert(statement))
