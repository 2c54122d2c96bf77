"""Opening a database: one SQLAlchemy ``AsyncEngine`` (asyncpg or aiosqlite) and transactions.

Why SQLAlchemy 2 Core over asyncpg and aiosqlite: one SQL code path for both databases (the
tables and statements are written once; each dialect's ``INSERT ... ON CONFLICT`` is used where
it matters), exact types on both (:mod:`.schema`), and two maintained async drivers.

Transactions (:meth:`Database.transaction`):

- SQLite: ``BEGIN IMMEDIATE`` (the write lock is taken at the start, so transactions of every
  process on the file run one after the other), WAL journal, ``synchronous=FULL`` (a commit
  survives a power loss), and a busy timeout: a transaction waiting longer for the lock fails
  with :class:`~upvest_async.storage.DatabaseUnavailableError`.
- PostgreSQL (``READ COMMITTED``): each session sets ``lock_timeout`` (a statement waiting on a
  row another replica holds gives up after ``lock_timeout`` seconds: the receiver answers 503
  and Upvest retries) and ``idle_in_transaction_session_timeout`` (the lease: a replica that
  hangs mid-transaction for ``lease`` seconds has its session ended by the server, its
  transaction rolled back and its claims released; one that dies has its connection closed and
  rolled back at once).

Errors that say the database is down or the transaction was aborted for a transient reason
(connection refused or lost, lock or busy timeout, deadlock, serialization failure, server
shutting down) are raised as :class:`~upvest_async.storage.DatabaseUnavailableError`; nothing of
the transaction is committed then.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import sqlite3
import time
from collections.abc import AsyncIterator
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from .errors import DatabaseAccessError, DatabaseUnavailableError
from .schema import ensure_schema
from .urls import DatabaseURL, parse_database_url

__all__ = [
    "DEFAULT_BUSY_TIMEOUT",
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_LEASE",
    "DEFAULT_LOCK_TIMEOUT",
    "DEFAULT_POOL_SIZE",
    "Database",
    "access_reason",
    "open_database",
    "transient_reason",
]

#: PostgreSQL: seconds a statement waits for a lock another transaction holds.
DEFAULT_LOCK_TIMEOUT = 10.0
#: PostgreSQL: seconds a transaction may sit idle (a hung replica) before the server ends it.
DEFAULT_LEASE = 60.0
#: SQLite: seconds a transaction waits for the database's write lock.
DEFAULT_BUSY_TIMEOUT = 10.0
#: PostgreSQL: seconds to establish a connection.
DEFAULT_CONNECT_TIMEOUT = 10.0
#: Connections kept open per :class:`Database`.
DEFAULT_POOL_SIZE = 5

# SQLSTATE classes and codes of transient failures (PostgreSQL, Appendix A "Error Codes"):
# 08 connection exception, 40 transaction rollback (deadlock, serialization), 53 insufficient
# resources, 57 operator intervention (shutdown, query canceled), 58 system error; 55P03
# lock_not_available; 25P03 idle_in_transaction_session_timeout.
_TRANSIENT_CLASSES = ("08", "40", "53", "57", "58")
_TRANSIENT_STATES = frozenset({"55P03", "25P03"})
# SQLite primary result codes (https://www.sqlite.org/rescode.html) of a database that is
# busy, locked, unreadable or full.
_TRANSIENT_SQLITE = frozenset({"SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_IOERR", "SQLITE_FULL",
                               "SQLITE_CANTOPEN", "SQLITE_PROTOCOL"})
# Refusals of configuration (retrying does not help): PostgreSQL's SQLSTATE class 28 (invalid
# authorization), 3D000 (no such database), 42501 (insufficient privilege); SQLite's
# read-only, permission and not-a-database codes.
_ACCESS_STATES = {"28": "authentication failed: check the user, and PGPASSWORD or the password "
                        "file", "3D000": "the database does not exist",
                  "42501": "permission denied"}
_ACCESS_SQLITE = {"SQLITE_READONLY": "the file is read-only", "SQLITE_PERM": "permission denied",
                  "SQLITE_AUTH": "not authorised", "SQLITE_NOTADB": "not a SQLite database"}


def _positive(value: float, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) \
            or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
    return float(value)


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    todo: list[BaseException | None] = [exc]
    while todo:
        current = todo.pop()
        if current is None or any(current is s for s in seen):
            continue
        seen.append(current)
        todo += [getattr(current, "orig", None), current.__cause__, current.__context__]
    return seen


def transient_reason(exc: BaseException) -> str | None:
    """A short code when ``exc`` says the database is unavailable or aborted the transaction
    for a transient reason (see the module docs), else ``None``."""
    if isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated:
        return "connection lost"
    if isinstance(exc, sa.exc.TimeoutError):  # every pooled connection busy for 30 s
        return "no connection free in the pool"
    for error in _chain(exc):
        state = getattr(error, "sqlstate", None)
        if isinstance(state, str) and (state in _TRANSIENT_STATES
                                       or state.startswith(_TRANSIENT_CLASSES)):
            return f"SQLSTATE {state}"
        if isinstance(error, sqlite3.Error):
            name = getattr(error, "sqlite_errorname", None) or ""
            if "_".join(name.split("_")[:2]) in _TRANSIENT_SQLITE:  # SQLITE_IOERR_WRITE too
                return name
        if isinstance(error, OSError | TimeoutError):
            return type(error).__name__
        if type(error).__name__ == "ConnectionDoesNotExistError":  # asyncpg: connection lost
            return type(error).__name__
    return None


def access_reason(exc: BaseException) -> str | None:
    """A short text when ``exc`` says the database refused access for a reason of
    configuration (see :class:`~upvest_async.storage.DatabaseAccessError`), else ``None``."""
    for error in _chain(exc):
        state = getattr(error, "sqlstate", None)
        if isinstance(state, str):
            meaning = _ACCESS_STATES.get(state) or (_ACCESS_STATES["28"]
                                                    if state.startswith("28") else None)
            if meaning is not None:
                return f"SQLSTATE {state}: {meaning}"
        if isinstance(error, sqlite3.Error):
            name = getattr(error, "sqlite_errorname", None) or ""
            meaning = _ACCESS_SQLITE.get("_".join(name.split("_")[:2]))
            if meaning is not None:
                return f"{name}: {meaning}"
    return None


class Database:
    """An open database (see :func:`open_database`). ``url``: the
    :class:`~upvest_async.storage.DatabaseURL`; ``dialect``: ``"sqlite"`` or ``"postgresql"``;
    ``engine``: the SQLAlchemy ``AsyncEngine`` (for reads of your own; write through
    :meth:`transaction`)."""

    def __init__(self, url: DatabaseURL, engine: AsyncEngine) -> None:
        self.url = url
        self.engine = engine
        self.dialect: Literal["sqlite", "postgresql"] = url.dialect

    def __repr__(self) -> str:
        return f"Database({self.url.target})"

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """One transaction: yields an ``AsyncConnection``; committed when the block ends
        normally, rolled back when it raises (or is cancelled).

        Raises :class:`~upvest_async.storage.DatabaseUnavailableError` when the database cannot
        be reached, the connection is lost (also during the commit: then the outcome is
        unknown to this process, and the database has either committed everything or nothing),
        or a transient failure aborts the transaction (a statement of the block included);
        :class:`~upvest_async.storage.DatabaseAccessError` when the database refuses access
        (authentication, no such database, permission, a read-only file); any other exception
        of the block (your own ``OSError`` too) propagates unchanged after the rollback.
        """
        raised: BaseException | None = None
        try:
            async with self.engine.begin() as conn:
                try:
                    yield conn
                except BaseException as exc:
                    raised = exc
                    raise
        except Exception as exc:
            if exc is raised and not isinstance(exc, sa.exc.SQLAlchemyError):
                raise  # the block's own failure, not the database's
            reason = transient_reason(exc)
            if reason is not None:
                raise DatabaseUnavailableError(self.url.target, reason) from exc
            refused = access_reason(exc)
            if refused is not None:
                raise DatabaseAccessError(self.url.target, refused) from exc
            raise


def _engine(url: DatabaseURL, *, lock_timeout: float, lease: float, busy_timeout: float,
            connect_timeout: float, pool_size: int) -> AsyncEngine:
    if url.dialect == "postgresql":
        settings = {
            "lock_timeout": str(max(1, round(lock_timeout * 1000))),
            "idle_in_transaction_session_timeout": str(max(1, round(lease * 1000))),
            "application_name": "upvest-async",
        }
        return create_async_engine(
            url.sqlalchemy_url(), pool_size=pool_size, pool_pre_ping=True,
            connect_args={"server_settings": settings, "timeout": connect_timeout},
        )
    engine = create_async_engine(url.sqlalchemy_url(), pool_size=pool_size,
                                 pool_pre_ping=True, connect_args={"timeout": busy_timeout})
    busy_ms = max(1, round(busy_timeout * 1000))

    @event.listens_for(engine.sync_engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN IMMEDIATE ourselves
        cursor = dbapi_connection.cursor()
        try:  # (the WAL journal is the file's, set once by _enable_wal)
            cursor.execute(f"PRAGMA busy_timeout = {busy_ms}")
            cursor.execute("PRAGMA synchronous = FULL")
        finally:
            cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _begin(conn: sa.Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def _enable_wal(path: str, busy_timeout: float) -> None:
    """Switch the SQLite file to the WAL journal (a property of the file, kept). Processes
    opening a new file at once race for the switch, and SQLite answers the losers "database is
    locked" without waiting: retried for up to ``busy_timeout`` seconds. Blocking: run it in a
    thread."""
    deadline = time.monotonic() + busy_timeout
    while True:
        try:
            with contextlib.closing(sqlite3.connect(path, timeout=busy_timeout,
                                                    isolation_level=None)) as conn:
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode != "wal":
                raise sqlite3.OperationalError(f"the journal mode stayed {mode!r}")
            return
        except sqlite3.OperationalError as exc:
            if getattr(exc, "sqlite_errorname", "") != "SQLITE_BUSY" \
                    or time.monotonic() >= deadline:
                raise
            time.sleep(0.02)


@contextlib.asynccontextmanager
async def open_database(
    url: str | DatabaseURL,
    *,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    lease: float = DEFAULT_LEASE,
    busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    pool_size: int = DEFAULT_POOL_SIZE,
) -> AsyncIterator[Database]:
    """Open the database of ``url`` (text, parsed by
    :func:`~upvest_async.storage.parse_database_url`, or a
    :class:`~upvest_async.storage.DatabaseURL`), create or check the tables
    (:func:`~upvest_async.storage.ensure_schema`), and yield the :class:`Database`; its
    connections are closed on exit.

    ``lock_timeout``, ``lease`` (PostgreSQL's ``idle_in_transaction_session_timeout``),
    ``connect_timeout`` (PostgreSQL) and ``busy_timeout`` (SQLite): seconds (see the module
    docs); ``pool_size``: connections kept open. The PostgreSQL password comes from
    ``PGPASSWORD`` or a password file (``~/.pgpass``, ``PGPASSFILE``), never the URL.

    Raises :class:`~upvest_async.storage.DatabaseURLError` (the URL),
    :class:`~upvest_async.storage.DatabaseUnavailableError` (the database cannot be reached),
    :class:`~upvest_async.storage.DatabaseAccessError` (authentication failed, no such
    database, no permission, a read-only or foreign file),
    :class:`~upvest_async.storage.SchemaError` (a table of another shape), ``ValueError``
    (an option out of range), ``ImportError`` naming the ``mirror`` extra when the driver is
    not installed.
    """
    parsed = url if isinstance(url, DatabaseURL) else parse_database_url(url)
    options = {name: _positive(value, name) for name, value in (
        ("lock_timeout", lock_timeout), ("lease", lease), ("busy_timeout", busy_timeout),
        ("connect_timeout", connect_timeout))}
    if isinstance(pool_size, bool) or not isinstance(pool_size, int) or pool_size < 1:
        raise ValueError(f"pool_size must be a positive integer, got {pool_size!r}")
    try:
        engine = _engine(parsed, pool_size=pool_size, **options)
    except ImportError as exc:
        raise ImportError("the database driver is missing: pip install "
                          f"'upvest-async[mirror]' ({exc})") from exc
    try:
        database = Database(parsed, engine)
        if parsed.dialect == "sqlite" and parsed.path is not None:
            try:
                await asyncio.to_thread(_enable_wal, parsed.path, options["busy_timeout"])
            except sqlite3.Error as exc:
                reason = transient_reason(exc)
                if reason is not None:
                    raise DatabaseUnavailableError(parsed.target, reason) from exc
                refused = access_reason(exc) or str(exc)  # (e.g. a file system without WAL)
                raise DatabaseAccessError(parsed.target, refused) from exc
        async with database.transaction() as conn:
            await ensure_schema(conn)
        yield database
    finally:
        await engine.dispose()
