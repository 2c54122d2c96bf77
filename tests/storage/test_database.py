"""open_database and transactions on a real SQLite file and a real PostgreSQL: commit and
rollback, SQLite's settings, and every transient failure as DatabaseUnavailableError
(database down, lock timeout, the lease of a hung session, a busy SQLite file)."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from support.postgres import PostgresCluster, free_port

from upvest_async import ConfigurationError
from upvest_async.errors import StoreUnavailableError
from upvest_async.storage import (
    Database,
    DatabaseAccessError,
    DatabaseUnavailableError,
    DatabaseURLError,
    open_database,
    schema_version_table,
)


async def count_versions(db: Database) -> int:
    async with db.engine.connect() as conn:
        return int(await conn.scalar(sa.select(sa.func.count()).select_from(
            schema_version_table)) or 0)


async def test_a_transaction_commits_or_rolls_back_whole(database_url: str) -> None:
    async with open_database(database_url) as db:
        assert db.dialect == database_url.split(":")[0] and repr(db).startswith("Database(")
        with pytest.raises(RuntimeError):
            async with db.transaction() as conn:
                await conn.execute(schema_version_table.insert().values(name="x", version=1))
                raise RuntimeError("handler failed")
        assert await count_versions(db) == 1
        async with db.transaction() as conn:
            await conn.execute(schema_version_table.insert().values(name="x", version=1))
        assert await count_versions(db) == 2


async def test_the_blocks_own_errors_are_not_the_databases(database_url: str) -> None:
    async with open_database(database_url) as db:
        for error in (ConnectionRefusedError("the handler's own call"), TimeoutError()):
            with pytest.raises(type(error)):
                async with db.transaction() as conn:
                    await conn.execute(schema_version_table.insert().values(name="x", version=1))
                    raise error
        assert await count_versions(db) == 1


async def test_sqlite_runs_in_wal_mode_with_immediate_transactions(sqlite_url: str) -> None:
    async with open_database(sqlite_url, busy_timeout=0.3) as db:
        path = sqlite_url.removeprefix("sqlite:///")
        with contextlib.closing(sqlite3.connect(path)) as raw:
            assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        async with db.transaction():
            # BEGIN IMMEDIATE: the write lock is held from the start, even before a write.
            other = sqlite3.connect(path, timeout=0.1, isolation_level=None)
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("BEGIN IMMEDIATE")
            other.close()


async def test_a_busy_sqlite_file_is_unavailable(sqlite_url: str) -> None:
    async with open_database(sqlite_url, busy_timeout=0.2) as first, \
            open_database(sqlite_url, busy_timeout=0.2) as second:
        async with first.transaction():
            started = time.monotonic()
            with pytest.raises(DatabaseUnavailableError) as caught:
                async with second.transaction() as conn:
                    await conn.execute(schema_version_table.insert().values(name="y", version=1))
            assert 0.15 < time.monotonic() - started < 5
        assert caught.value.reason == "SQLITE_BUSY"
        assert isinstance(caught.value, StoreUnavailableError)
        assert await count_versions(second) == 1


async def test_a_closed_port_is_unavailable_quickly() -> None:
    started = time.monotonic()
    with pytest.raises(DatabaseUnavailableError) as caught:
        async with open_database(f"postgresql://postgres@127.0.0.1:{free_port()}/x"):
            pass
    assert time.monotonic() - started < 5
    assert "127.0.0.1" in str(caught.value) and "nothing was committed" in str(caught.value)


async def test_a_lock_wait_over_lock_timeout_is_unavailable(postgres_url: str) -> None:
    async with open_database(postgres_url) as holder, \
            open_database(postgres_url, lock_timeout=0.3) as waiter:
        update = schema_version_table.update().values(version=1)
        async with holder.transaction() as conn:
            await conn.execute(update)  # holds the row's lock until the block ends
            started = time.monotonic()
            with pytest.raises(DatabaseUnavailableError) as caught:
                async with waiter.transaction() as other:
                    await other.execute(update)
            assert 0.25 < time.monotonic() - started < 5
        assert caught.value.reason == "SQLSTATE 55P03"  # lock_not_available


async def test_a_hung_session_loses_its_transaction_after_the_lease(postgres_url: str) -> None:
    async with open_database(postgres_url, lease=0.5) as db:
        with pytest.raises(DatabaseUnavailableError):
            async with db.transaction() as conn:
                await conn.execute(schema_version_table.insert().values(name="z", version=1))
                await asyncio.sleep(1.5)  # idle in transaction: the server ends the session
                await conn.execute(sa.text("SELECT 1"))
        assert await count_versions(db) == 1  # the insert was rolled back
        async with db.transaction() as conn:  # the pool recovers
            await conn.execute(sa.text("SELECT 1"))


async def test_a_connection_lost_mid_transaction_is_unavailable(postgres_url: str) -> None:
    async with open_database(postgres_url) as db:
        with pytest.raises(DatabaseUnavailableError):
            async with db.transaction() as conn:
                await conn.execute(schema_version_table.insert().values(name="z", version=1))
                await conn.execute(sa.text("SELECT pg_terminate_backend(pg_backend_pid())"))
        assert await count_versions(db) == 1


async def test_a_stopped_server_is_unavailable_and_a_restarted_one_serves_again(
    postgres_cluster: PostgresCluster,
) -> None:
    cluster = PostgresCluster(postgres_cluster.bindir)
    try:
        cluster.start()
        async with open_database(cluster.url("postgres")) as db:
            cluster.stop_server()
            with pytest.raises(DatabaseUnavailableError):
                async with db.transaction() as conn:
                    await conn.execute(sa.text("SELECT 1"))
            cluster.start_server()
            async with db.transaction() as conn:
                assert await conn.scalar(sa.text("SELECT 1")) == 1
    finally:
        cluster.stop()


async def test_a_refusal_of_configuration_is_an_access_error(
    postgres_cluster: PostgresCluster, tmp_path: Path,
) -> None:
    for url, reason in [
        (f"postgresql://nobody@127.0.0.1:{postgres_cluster.port}/postgres", "SQLSTATE 28000"),
        (f"postgresql://postgres@127.0.0.1:{postgres_cluster.port}/missing", "SQLSTATE 3D000"),
    ]:
        with pytest.raises(DatabaseAccessError) as caught:
            async with open_database(url):
                pass
        assert caught.value.reason.startswith(reason) and "nobody" not in str(caught.value)
        assert isinstance(caught.value, ConfigurationError)
    garbage = tmp_path / "not-a-database.db"
    garbage.write_bytes(b"this is not a SQLite file" * 100)
    with pytest.raises(DatabaseAccessError, match="SQLITE_NOTADB"):
        async with open_database(f"sqlite:///{garbage}"):
            pass


@pytest.mark.parametrize("option", ["lock_timeout", "lease", "busy_timeout",
                                    "connect_timeout"])
@pytest.mark.parametrize("value", [0, -1, float("nan"), float("inf"), True, "1"])
async def test_options_are_checked(sqlite_url: str, option: str, value: object) -> None:
    with pytest.raises(ValueError, match=option):
        async with open_database(sqlite_url, **{option: value}):  # type: ignore[arg-type]
            pass


async def test_a_bad_url_is_refused_before_connecting() -> None:
    with pytest.raises(DatabaseURLError):
        async with open_database("postgresql://u:pw@127.0.0.1:1/x"):
            pass
    with pytest.raises(ValueError, match="pool_size"):
        async with open_database("sqlite:///x.db", pool_size=0):
            pass
