"""``upvest-async mirror load`` and ``mirror serve`` as a user runs them (subprocesses, an
environment the test builds): argument errors are one line and exit 2 with nothing written;
a load fills the table (SQLite and PostgreSQL); a load killed with SIGKILL half-way leaves
the table as it was; ``serve`` stops cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import subprocess
from decimal import Decimal
from pathlib import Path

import pytest
from support.mirror import CLI, Rows, clean_env, mirrored
from support.postgres import free_port

from upvest_async.sandbox import Sandbox, SandboxCredentials, Tenant
from upvest_async.storage import open_database

TENANT = Tenant(accounts=3, positions_per_account=40, seed=5)
SANDBOX = ["--embedded-sandbox", "--sandbox-accounts", "3", "--sandbox-positions", "40",
           "--sandbox-seed", "5"]
ACCOUNT = TENANT.account_ids[0]


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=120,
                          env=clean_env() if env is None else env)


def tenant_rows(tenant: Tenant) -> Rows:
    rows: Rows = {}
    for position in tenant.iter_positions():
        key = (position["account_id"], position["instrument"]["uuid"])
        rows[key] = (position["instrument"].get("isin"),
                     *(Decimal(position[name]) for name in (
                         "quantity", "available_for_trading", "locked_for_trading",
                         "pending_settlement")))
    return rows


@pytest.mark.parametrize(("args", "option", "rule"), [
    ([], "--account", "give exactly one of --account ID ..., --accounts-file F and "
                      "--all-accounts (none was given)"),
    (["--account", ACCOUNT, "--all-accounts"], "--all-accounts",
     "(--account and --all-accounts)"),
    (["--accounts-file", "ACCOUNTS", "--account", ACCOUNT], "--accounts-file",
     "(--account and --accounts-file)"),
    (["--accounts-file", "ACCOUNTS", "--all-accounts"], "--all-accounts",
     "(--accounts-file and --all-accounts)"),
    (["--account", "not-a-uuid"], "--account", "value #1: 'not-a-uuid' is not an account id"),
    (["--accounts-file", "MISSING"], "--accounts-file", "cannot read"),
], ids=["none", "account+all", "file+account", "file+all", "bad-id", "missing-file"])
def test_load_needs_exactly_one_way_of_naming_the_accounts(
        tmp_path: Path, args: list[str], option: str, rule: str) -> None:
    accounts = tmp_path / "accounts.txt"
    accounts.write_text(ACCOUNT + "\n")
    db = tmp_path / "mirror.db"
    args = [str(accounts) if a == "ACCOUNTS" else str(tmp_path / "nope") if a == "MISSING"
            else a for a in args]
    result = run("mirror", "load", "--db", f"sqlite:///{db}", *args, *SANDBOX)
    assert result.returncode == 2, result.stderr
    line, = result.stderr.splitlines()
    assert f" mirror load: error: {option}: " in line
    assert rule in line
    assert not db.exists() and result.stdout == ""


@pytest.mark.parametrize(("url", "rule"), [
    ("mysql://u@h:1/d", "unsupported database URL"),
    ("postgresql://u:secret@127.0.0.1:5432/d", "holds a password"),
    ("postgresql://u@127.0.0.1/d", "port is missing"),
    ("sqlite:///:memory:", "must name a database file"),
], ids=["scheme", "password", "no-port", "memory"])
@pytest.mark.parametrize("command", ["load", "serve"])
def test_a_bad_database_url_is_a_usage_error(tmp_path: Path, url: str, rule: str,
                                             command: str) -> None:
    extra = ["--account", ACCOUNT, *SANDBOX] if command == "load" else ["--port", "0"]
    result = run("mirror", command, "--db", url, *extra)
    assert result.returncode == 2, result.stderr
    line, = result.stderr.splitlines()
    assert f" mirror {command}: error: --db: " in line and rule in line
    assert "secret" not in result.stderr


def test_serve_needs_a_configured_api_and_a_path(tmp_path: Path) -> None:
    db = tmp_path / "mirror.db"
    result = run("mirror", "serve", "--db", f"sqlite:///{db}", "--port", "0")
    assert result.returncode == 2 and "UPVEST_API_" in result.stderr, result.stderr
    assert "--embedded-sandbox" not in result.stderr
    result = run("mirror", "serve", "--db", f"sqlite:///{db}", "--port", "0",
                 "--path", "hooks")
    assert result.returncode == 2 and "--path: must start with /" in result.stderr
    credentials = SandboxCredentials.from_seed(0)
    configured = clean_env(
        UPVEST_API_BASE_URL="http://127.0.0.1:9", UPVEST_API_CLIENT_ID=credentials.client_id,
        UPVEST_API_CLIENT_SECRET=credentials.client_secret,
        UPVEST_API_KEY_ID=credentials.key_id,
        UPVEST_API_HTTP_SIGN_PRIVATE_KEY=credentials.private_key_pem(),
        UPVEST_API_HTTP_SIGN_PRIVATE_KEY_PASSPHRASE=credentials.passphrase)
    result = run("mirror", "serve", "--db", f"sqlite:///{db}", "--port", "0",
                 "--host", "no such host", env=configured)
    assert result.returncode == 2 and "--host" in result.stderr
    assert not db.exists()


async def test_load_fills_the_table(database_url: str, tmp_path: Path) -> None:
    url = database_url
    accounts = tmp_path / "accounts.txt"
    accounts.write_text("# two of three\n" + "\n".join(TENANT.account_ids[:2]) + "\n")
    process = await asyncio.create_subprocess_exec(
        *CLI, "mirror", "load", "--db", url, "--accounts-file", str(accounts), *SANDBOX,
        env=clean_env(), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0, err.decode()
    assert "Loaded 80 positions of 2 accounts into upvest_positions of" in err.decode()
    async with open_database(url) as database:
        rows = await mirrored(database)
    expected = {k: v for k, v in tenant_rows(TENANT).items()
                if k[0] in TENANT.account_ids[:2]}
    assert rows == expected


async def test_a_load_killed_half_way_leaves_the_table_as_it_was(database_url: str) -> None:
    url = database_url
    async with Sandbox(accounts=6, positions_per_account=200, seed=8,
                       latency_ms=150) as sandbox:
        first = await asyncio.create_subprocess_exec(
            *CLI, "mirror", "load", "--db", url, "--account", sandbox.account_ids[0],
            "--quiet", env=clean_env(**sandbox.env()), stderr=asyncio.subprocess.PIPE)
        _, err = await asyncio.wait_for(first.communicate(), 60)
        assert first.returncode == 0, err.decode()
        async with open_database(url) as database:
            before = await mirrored(database)
        assert len(before) == 200
        sent = sandbox.counters.requests
        second = await asyncio.create_subprocess_exec(
            *CLI, "mirror", "load", "--db", url, "--all-accounts", "--concurrency", "1",
            "--quiet", env=clean_env(**sandbox.env()), stderr=asyncio.subprocess.PIPE)
        # Wait until it has requested some pages (it writes them to its temporary table).
        for _ in range(600):
            if sandbox.counters.requests >= sent + 4:  # a token, the accounts, two pages
                break
            await asyncio.sleep(0.01)
        second.send_signal(signal.SIGKILL)
        await second.wait()
        assert second.returncode == -signal.SIGKILL
        async with open_database(url) as database:
            assert await mirrored(database) == before


def test_a_database_that_is_down_fails_the_load_before_anything_is_sent() -> None:
    port = free_port()  # nothing listens there
    url = f"postgresql://nobody@127.0.0.1:{port}/upvest"
    result = run("mirror", "load", "--db", url, "--account", ACCOUNT, *SANDBOX)
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip().splitlines() == [
        f"load failed: the database postgresql 127.0.0.1:{port}/upvest is unavailable "
        f"(ConnectionRefusedError); nothing was committed, retry later; upvest_positions of "
        f"{url} is unchanged"]
