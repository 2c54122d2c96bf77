"""Benchmark: trigger rebalancings for 1,000 accounts at 50 ms latency.

    python benchmarks/rebalance.py [--accounts 1000] [--latency-ms 50] [--concurrency 16 64]

For each concurrency it starts a fresh sandbox in a child process, runs
``upvest_async.jobs.trigger_many`` over every configured account with a batch id,
and prints triggers per second, the ceiling (concurrency / latency), token requests and the
executions the sandbox created. Then it runs the same batch again: it must create nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sandbox_process import SandboxProcess

from upvest_async import UpvestClient
from upvest_async.jobs import trigger_many
from upvest_async.sandbox.tenant import Tenant


async def trigger(settings: dict[str, object], accounts: list[str], concurrency: int,
                  batch: str) -> tuple[float, int, int]:
    async with UpvestClient(**settings, scopes=["portfolios:admin"]) as client:  # type: ignore[arg-type]
        started = time.perf_counter()
        results = await trigger_many(client, accounts, concurrency=concurrency, batch_id=batch)
        seconds = time.perf_counter() - started
        failed = sum(r.status != "triggered" for r in results)
        return seconds, failed, client.stats.token_requests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[16, 64])
    args = parser.parse_args()
    accounts = Tenant(accounts=args.accounts, positions_per_account=0, seed=11).account_ids
    print(f"rebalance {args.accounts} accounts, {args.latency_ms:g} ms per request, sandbox in "
          "a child process")
    header = ("concurrency", "seconds", "triggers/s", "ceiling/s", "of ceiling", "token req",
              "executions", "rerun created", "failed")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for concurrency in args.concurrency:
        with SandboxProcess(accounts=args.accounts, positions_per_account=0, seed=11,
                            latency_ms=args.latency_ms) as sandbox:
            seconds, failed, tokens = asyncio.run(
                trigger(sandbox.settings, accounts, concurrency, "bench-batch"))
            _, rerun_failed, _ = asyncio.run(
                trigger(sandbox.settings, accounts, concurrency, "bench-batch"))
            counters = sandbox.stop()
        rate = len(accounts) / seconds
        ceiling = concurrency / (args.latency_ms / 1000)
        rerun_created = counters["executions"] - len(accounts)
        print(f"| {concurrency} | {seconds:.2f} | {rate:,.0f} | {ceiling:,.0f} | "
              f"{rate / ceiling:.0%} | {tokens} | {counters['executions']:,} | "
              f"{rerun_created} | {failed + rerun_failed} |")


if __name__ == "__main__":
    main()
