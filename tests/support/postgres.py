"""A real PostgreSQL for the tests: a throwaway cluster on a free loopback port, and a fresh
database per test. Also a fresh SQLite file per test, and ``database_url``: each test that uses
it runs on both.

The cluster: ``initdb`` and ``pg_ctl`` from PATH or ``/usr/lib/postgresql/*/bin``; as root,
run as the ``postgres`` system user (PostgreSQL refuses to run as root) with ``runuser``; data
and socket directories in a temporary directory; ``trust`` authentication, listening on
127.0.0.1 only; stopped at the end of the session (also when the session fails). Without
PostgreSQL installed, the tests that need it FAIL saying how to install it.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

__all__ = [
    "PostgresCluster",
    "database_url",
    "free_port",
    "postgres_cluster",
    "postgres_url",
    "sqlite_url",
]

INSTALL_HINT = ("PostgreSQL's server is not installed (no initdb/pg_ctl on PATH or in "
                "/usr/lib/postgresql/*/bin): apt-get install -y postgresql")


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (nothing listens there)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _bindir() -> Path | None:
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(found).resolve().parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit()
                        else 0, reverse=True)
    return Path(candidates[0]).parent if candidates else None


class PostgresCluster:
    """A PostgreSQL cluster of its own in a temporary directory, on ``port`` of 127.0.0.1.
    ``durable``: PostgreSQL's default durability (``fsync``, ``full_page_writes`` on: a commit
    waits for its WAL flush), as the benchmarks measure; else both off, for the tests."""

    def __init__(self, bindir: Path, *, durable: bool = False) -> None:
        self.bindir = bindir
        self.durable = durable
        self.root = Path(tempfile.mkdtemp(prefix="upvest-pg-"))
        self.data = self.root / "data"
        self.sockets = self.root / "sockets"
        self.log = self.root / "server.log"
        self.port = free_port()
        self.as_root = os.geteuid() == 0

    def _run(self, *args: str) -> None:
        command = [str(self.bindir / args[0]), *args[1:]]
        if self.as_root:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120,
                              check=False)
        if done.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{' '.join(args[:2])} failed ({done.returncode}): "
                               f"{done.stderr.strip()[-2000:]}\n{log}")

    def start(self) -> None:
        """initdb, then start the server and wait until it accepts connections."""
        self.sockets.mkdir()
        if self.as_root:
            shutil.chown(self.root, "postgres", "postgres")
            shutil.chown(self.sockets, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "--auth=trust", "--username=postgres",
                  "--encoding=UTF8", "--locale=C", "--no-sync", "--no-instructions")
        self.start_server()

    def start_server(self) -> None:
        """Start the server of the initialised cluster; wait until it accepts connections."""
        options = (f"-c port={self.port} -c listen_addresses=127.0.0.1 "
                   f"-c unix_socket_directories={self.sockets} -c max_connections=200")
        if not self.durable:
            # Faster on a test machine, and still no commit lost when the server (not the
            # machine) stops: fsync only matters to an operating system crash.
            options += " -c fsync=off -c full_page_writes=off"
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.log),
                  "-w", "-t", "60", "start")

    def stop_server(self) -> None:
        """Stop the server at once (``immediate``: open transactions are lost, as in a crash);
        the cluster stays, :meth:`start_server` starts it again."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def stop(self) -> None:
        """Stop the server and delete its directory."""
        with contextlib.suppress(Exception):
            if (self.data / "postmaster.pid").exists():
                self.stop_server()
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str) -> str:
        """The ``postgresql://`` URL of ``database`` in this cluster."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    async def connect(self, database: str = "postgres") -> asyncpg.Connection:
        """A plain asyncpg connection (for test setup)."""
        return await asyncpg.connect(host="127.0.0.1", port=self.port, user="postgres",
                                     database=database)

    @contextlib.asynccontextmanager
    async def fresh_database(self) -> AsyncIterator[str]:
        """A new empty database for the block (its URL); dropped afterwards."""
        name = f"test_{uuid.uuid4().hex}"
        admin = await self.connect()
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
        try:
            yield self.url(name)
        finally:
            admin = await self.connect()
            try:
                await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            finally:
                await admin.close()


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    """A PostgreSQL cluster for the test session (fails the test without PostgreSQL)."""
    bindir = _bindir()
    if bindir is None:
        pytest.fail(INSTALL_HINT, pytrace=False)
    cluster = PostgresCluster(bindir)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
async def postgres_url(postgres_cluster: PostgresCluster) -> AsyncIterator[str]:
    """``postgresql://postgres@127.0.0.1:PORT/DB`` of a database made for this test."""
    async with postgres_cluster.fresh_database() as url:
        yield url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """``sqlite:///PATH`` of a database file (not created yet) in the test's directory."""
    return f"sqlite:///{tmp_path / 'upvest.db'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str:
    """The URL of a fresh database: the test runs once on SQLite, once on PostgreSQL."""
    name = "sqlite_url" if request.param == "sqlite" else "postgres_url"
    return str(request.getfixturevalue(name))
