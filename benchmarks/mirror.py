"""Benchmark: the positions mirror (issue 21) against a sandbox in a child process.

    python benchmarks/mirror.py [--latency-ms 50] [--accounts 50] [--positions 2000]
        [--concurrency 16] [--repeat 3] [--events 20000] [--batch 100] [--senders 8]
        [--only load|events]

Prints two tables:

1. ``upvest-async mirror load`` against ``upvest-async export-positions --quiet`` (JSONL) of
   the same accounts, side by side: whole processes (interpreter start-up and imports
   included), started with the sandbox's ``UPVEST_API_*`` variables, runs interleaved, best of
   ``--repeat``; wall seconds, CPU seconds and peak RSS from the child's ``rusage`` (the
   database server's CPU is not in it). The loads: into SQLite (a new file each run, and again
   into the full table) and into PostgreSQL (a throwaway cluster on a loopback port, the tests'
   ``tests/support/postgres.py``, with PostgreSQL's default durability: ``fsync`` on; a new
   database each run, and again into the full table).
   "vs export" is the export's wall time over the load's (the goal: >= 0.8).
2. Events applied per second by one ``upvest-async mirror serve`` replica on PostgreSQL over
   loopback: ``--events`` ``POSITION.UPDATED`` events of distinct positions in batches of
   ``--batch``, each request signed v6 with the sandbox's webhook key, ``--senders`` requests
   in flight; from the first request to the last 200 (the goal: >= 1,000/s). Then the table is
   checked: every event applied, every event id recorded once.

The machine has 2 cores shared with other sessions: the load average is printed with each
table. Nothing here is a test: run it by hand.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

import aiohttp  # noqa: E402
from main_job import env_of, run, table  # noqa: E402
from sandbox_process import SandboxProcess  # noqa: E402

from tests.support.postgres import PostgresCluster, _bindir  # noqa: E402
from upvest_async.sandbox.tenant import Tenant  # noqa: E402
from upvest_async.sandbox.webhooks.keys import WebhookKey  # noqa: E402
from upvest_async.sandbox.webhooks.signer import sign_webhook  # noqa: E402

CLI = [sys.executable, "-m", "upvest_async"]
PATH = "/webhooks/upvest"


def load_average() -> str:
    return " ".join(f"{value:.1f}" for value in os.getloadavg())


async def fresh_database(cluster: PostgresCluster) -> str:
    name = f"bench_{uuid.uuid4().hex[:12]}"
    admin = await cluster.connect()
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return cluster.url(name)


async def count_rows(url: str, table_name: str) -> int:
    from upvest_async.storage import open_database

    async with open_database(url) as database, database.transaction() as tx:
        result = await tx.exec_driver_sql(f"SELECT count(*) FROM {table_name}")
        return int(result.scalar_one())


def loads(args: argparse.Namespace, cluster: PostgresCluster) -> None:
    total = args.accounts * args.positions
    tenant = Tenant(accounts=args.accounts, positions_per_account=args.positions, seed=0)
    with tempfile.TemporaryDirectory() as directory, SandboxProcess(
        accounts=args.accounts, positions_per_account=args.positions, seed=0,
        latency_ms=args.latency_ms, positions_cache=args.accounts,
    ) as sandbox:
        folder = Path(directory)
        accounts_file = folder / "accounts.txt"
        accounts_file.write_text("\n".join(tenant.account_ids) + "\n")
        env = env_of(sandbox.settings)
        common = ["--accounts-file", str(accounts_file), "--concurrency", str(args.concurrency),
                  "--quiet"]
        export = [*CLI, "export-positions", *common, "--out", str(folder / "out.jsonl")]

        def load(url: str) -> list[str]:
            return [*CLI, "mirror", "load", "--db", url, *common]

        run(export, env, tty=False)  # warm the server and the bytecode
        names = ["export-positions --quiet (JSONL)", "mirror load, SQLite (new file)",
                 "mirror load, SQLite (full table)", "mirror load, PostgreSQL (new database)",
                 "mirror load, PostgreSQL (full table)"]
        results: dict[str, list[dict[str, float]]] = {name: [] for name in names}
        for number in range(args.repeat):
            sqlite = f"sqlite:///{folder / f'mirror-{number}.db'}"
            postgres = asyncio.run(fresh_database(cluster))
            for name, command in zip(names, [export, load(sqlite), load(sqlite),
                                             load(postgres), load(postgres)], strict=True):
                results[name].append(run(command, env, tty=False))
                print(name, results[name][-1], file=sys.stderr, flush=True)
            assert asyncio.run(count_rows(sqlite, "upvest_positions")) == total
            assert asyncio.run(count_rows(postgres, "upvest_positions")) == total
    rows = []
    floor = min(r["wall"] for r in results[names[0]])
    for name in names:
        best = min(results[name], key=lambda r: r["wall"])
        rows.append([name, f"{best['wall']:.2f}", f"{best['cpu']:.2f}",
                     f"{total / best['wall']:,.0f}", f"{best['rss']:.0f}",
                     f"{floor / best['wall']:.2f}"])
    print(f"\npython {sys.version.split()[0]}, {os.cpu_count()} CPUs (shared), load average "
          f"{load_average()}; sandbox in a child process at {args.latency_ms:g} ms; "
          f"{args.accounts} accounts x {args.positions:,} positions ({total:,}), concurrency "
          f"{args.concurrency}; whole processes, interleaved, best of {args.repeat}\n")
    print(table(["run", "wall s", "CPU s", "positions/s", "peak RSS MiB", "vs export"], rows))


async def send_events(url: str, key: WebhookKey, args: argparse.Namespace,
                      accounts: list[str]) -> tuple[float, int]:
    """Post ``args.events`` events in batches; (seconds, requests)."""
    start = datetime.now(UTC) + timedelta(seconds=10)
    batches = []
    number = 0
    while number < args.events:
        payload = []
        for _ in range(min(args.batch, args.events - number)):
            moment = start + timedelta(milliseconds=number)
            payload.append({
                "id": str(uuid.uuid4()), "type": "POSITION.UPDATED",
                "created_at": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                "webhook_id": "9df39835-be87-4243-9018-f2500b39cee6",
                "object": {"account_id": accounts[number % len(accounts)],
                           "instrument": {"uuid": str(uuid.uuid4())},
                           "quantity": f"{number}.5", "available_for_trading": f"{number}.5",
                           "locked_for_trading": "0", "pending_settlement": "0"}})
            number += 1
        batches.append(json.dumps({"payload": payload}).encode())
    queue = list(reversed(batches))
    requests = 0

    async def sender(session: aiohttp.ClientSession) -> None:
        nonlocal requests
        while queue:
            body = queue.pop()
            for _ in range(20):
                headers = {"content-type": "application/json"}
                headers.update(sign_webhook(key, method="POST", path=PATH, query="",
                                            headers=headers, body=body,
                                            created=int(time.time())))
                requests += 1
                async with session.post(url, data=body, headers=headers) as answer:
                    if answer.status == 200:
                        break
            else:
                raise RuntimeError("a batch was never answered 200")

    async with aiohttp.ClientSession() as session:
        started = time.perf_counter()
        await asyncio.gather(*(sender(session) for _ in range(args.senders)))
        return time.perf_counter() - started, requests


def events(args: argparse.Namespace, cluster: PostgresCluster) -> None:
    with SandboxProcess(accounts=4, positions_per_account=10, seed=0) as sandbox:
        env = env_of(sandbox.settings)
        database = asyncio.run(fresh_database(cluster))
        replica = subprocess.Popen([*CLI, "mirror", "serve", "--db", database, "--port", "0",
                                    "--path", PATH], env=env, stderr=subprocess.PIPE,
                                   text=True)
        try:
            assert replica.stderr is not None
            line = replica.stderr.readline()
            while "Ready: " not in line:
                if not line:
                    raise RuntimeError("mirror serve did not start")
                line = replica.stderr.readline()
            url = line.split("Ready: ", 1)[1].split()[0]
            accounts = Tenant(accounts=4, positions_per_account=10, seed=0).account_ids
            seconds, requests = asyncio.run(send_events(url, WebhookKey.derive(0, 0), args,
                                                        accounts))
        finally:
            replica.terminate()
            replica.wait(timeout=30)
        applied = asyncio.run(count_rows(database, "upvest_positions"))
        recorded = asyncio.run(count_rows(database, "upvest_webhook_events"))
    assert applied == recorded == args.events, (applied, recorded)
    print(f"\nOne mirror serve replica, PostgreSQL on loopback (fsync on), load average "
          f"{load_average()}: {args.events:,} POSITION.UPDATED events of distinct positions "
          f"in batches of {args.batch}, {args.senders} requests in flight\n")
    print(table(["events", "requests", "seconds", "events/s", "batches/s"],
                [[f"{args.events:,}", f"{requests:,}", f"{seconds:.2f}",
                  f"{args.events / seconds:,.0f}", f"{requests / seconds:,.1f}"]]))


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--accounts", type=int, default=50)
    parser.add_argument("--positions", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--senders", type=int, default=8)
    parser.add_argument("--only", choices=["load", "events"])
    args = parser.parse_args(argv)
    bindir = _bindir()
    if bindir is None:
        raise SystemExit("PostgreSQL is not installed: apt-get install -y postgresql")
    cluster = PostgresCluster(bindir, durable=True)  # fsync on, as in production
    cluster.start()
    try:
        if args.only in (None, "load"):
            loads(args, cluster)
        if args.only in (None, "events"):
            events(args, cluster)
    finally:
        cluster.stop()


if __name__ == "__main__":
    main(sys.argv[1:])
