"""Benchmark: exporting the positions of a tenant over a modelled WAN, several ways.

    python benchmarks/export_positions.py main-job [--help]   # the CLI vs floor_export.py
    python benchmarks/export_positions.py [--latency-ms 50] [--accounts 20] [--positions 2000]
        [--concurrency 16] [--repeat 5] [--scaling 10000,100000,1000000] [--no-naive]

Prints three tables:

1. Throughput and peak RSS of exporting ``accounts x positions`` at ``--latency-ms``:
   (a) the SDK's ``client.positions.export(accounts, concurrency=C)`` (typed positions);
   (b) the floor: a hand-written aiohttp client on the same signed session that requests the
       first page of every account, then all remaining pages, concurrently (the same limit of
       C requests in flight), and only ``orjson.loads`` the bodies;
   (c) a naive client: one page at a time with ``limit=100``, account after account
       (``--no-naive`` skips it: it alone takes about 20 s);
   and, interleaved with (a) and (b): (a) in a process whose GC is tuned as the CLI tunes
   its own (``gc.freeze()``, a gen-0 threshold of 20,000; docs/guides/pagination.md),
   and (d) ``export_records()`` (validated records, not typed).
2. Peak RSS while exporting 10k, 100k and 1M positions to a JSONL file with the CLI's job
   (``upvest_async.jobs.export.export_positions``, built on ``positions.export_records``), at
   ``--scaling-latency-ms`` and 2,000 positions per account.
3. Decode cost per position (``benchmarks/decode.py``): ``json.loads`` and ``orjson.loads``
   alone, the SDK's typed decoding (``orjson.loads`` and the converter) and the export's
   validated records.

The sandbox runs in a child process (so its CPU does not compete with the client's on one
core) and every measured variant runs in a child process of its own (so peak RSS figures do
not contaminate each other). Nothing here is a test: run it by hand.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import orjson
from sandbox_process import SandboxProcess

from upvest_async import UpvestClient
from upvest_async.sandbox.tenant import Tenant

PAGE = 1000


def peak_rss_mib() -> float:
    """Peak resident set size of this process (VmHWM), MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")  # pragma: no cover (not Linux)


# --- the variants, each run in a child process -------------------------------------------------


async def run_sdk(client: UpvestClient, accounts: list[str], concurrency: int) -> int:
    count = 0
    async for _ in client.positions.export(accounts, concurrency=concurrency):
        count += 1
    return count


async def run_records(client: UpvestClient, accounts: list[str], concurrency: int) -> int:
    count = 0
    async for _, records in client.positions.export_records(accounts, concurrency=concurrency):
        count += len(records)
    return count


async def run_sdk_gc(client: UpvestClient, accounts: list[str], concurrency: int) -> int:
    """(a) in a process tuned as the CLI tunes its own (``gc.freeze()``, a gen-0 threshold
    of 20,000): the recipe of docs/guides/pagination.md for a process that only exports."""
    import gc

    gc.freeze()
    gc.set_threshold(20_000, 10, 10)
    return await run_sdk(client, accounts, concurrency)


async def run_floor(client: UpvestClient, accounts: list[str], concurrency: int) -> int:
    client._open()
    session = client._session
    assert session is not None
    limiter = asyncio.Semaphore(concurrency)

    async def get(account: str, offset: int, limit: int) -> tuple[int, int]:
        url = client.base_url.with_path(f"/accounts/{account}/positions")
        async with limiter, session.get(url, params={"offset": offset, "limit": limit}) as resp:
            resp.raise_for_status()
            body = await resp.read()
        document = orjson.loads(body)
        return document["meta"]["total_count"], len(document["data"])

    async def one(account: str) -> int:
        total, count = await get(account, 0, PAGE)
        rest = await asyncio.gather(*(get(account, o, PAGE) for o in range(PAGE, total, PAGE)))
        return count + sum(n for _, n in rest)

    return sum(await asyncio.gather(*(one(account) for account in accounts)))


async def run_naive(client: UpvestClient, accounts: list[str], _: int) -> int:
    client._open()
    session = client._session
    assert session is not None
    count = 0
    for account in accounts:
        url = client.base_url.with_path(f"/accounts/{account}/positions")
        offset = 0
        while True:
            async with session.get(url, params={"offset": offset, "limit": 100}) as resp:
                resp.raise_for_status()
                document = json.loads(await resp.read())
            count += len(document["data"])
            offset += len(document["data"])
            if not document["data"] or offset >= document["meta"]["total_count"]:
                break
    return count


async def run_file(client: UpvestClient, accounts: list[str], concurrency: int) -> int:
    from upvest_async.jobs.export import export_positions

    with tempfile.TemporaryDirectory() as directory:
        summary = await export_positions(
            client, accounts, Path(directory) / "positions.jsonl", concurrency=concurrency
        )
    return summary.positions


VARIANTS = {"sdk": run_sdk, "floor": run_floor, "naive": run_naive, "file": run_file,
            "records": run_records, "sdk-gc": run_sdk_gc}


def child(variant: str) -> None:
    """Run one variant with the job read from stdin; print a JSON result line."""
    job = json.loads(sys.stdin.read())

    async def main() -> dict[str, Any]:
        async with UpvestClient(**job["settings"]) as client:
            started, cpu = time.perf_counter(), time.process_time()
            count = await VARIANTS[variant](client, job["accounts"], job["concurrency"])
            seconds = time.perf_counter() - started
            return {"positions": count, "seconds": seconds, "requests": client.stats.requests,
                    "cpu_seconds": time.process_time() - cpu}

    result = asyncio.run(main())
    result["peak_rss_mib"] = peak_rss_mib()
    result["package"] = str(Path(sys.modules["upvest_async"].__file__ or "").parent)
    print(json.dumps(result))


def measure(variant: str, settings: dict[str, Any], accounts: list[str],
            concurrency: int, *, code: str | None = None) -> dict[str, Any]:
    """Run ``variant`` in a child process; ``code``: a directory holding another
    ``upvest_async`` package to import instead (``--before``)."""
    job = json.dumps({"settings": settings, "accounts": accounts, "concurrency": concurrency})
    env = dict(os.environ)
    if code is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [code, env.get("PYTHONPATH")]))
    done = subprocess.run(
        [sys.executable, __file__, "--child", variant], input=job, capture_output=True,
        text=True, check=True, env=env,
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    expected = Path(code).resolve() / "upvest_async" if code else Path(__file__).resolve(
    ).parent.parent / "upvest_async"
    assert Path(result["package"]).resolve() == expected, (result["package"], expected)
    return result


# --- the parent --------------------------------------------------------------------------------


def table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(c)) for c in column) for column in zip(headers, *rows, strict=True)]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    return "\n".join(
        [line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
        + [line(row) for row in rows]
    )


def throughput(args: argparse.Namespace) -> tuple[str, dict[str, float]]:
    total = args.accounts * args.positions
    with SandboxProcess(accounts=args.accounts, positions_per_account=args.positions, seed=0,
                        latency_ms=args.latency_ms) as sandbox:
        accounts = Tenant(accounts=args.accounts, positions_per_account=0, seed=0).account_ids
        measure("floor", sandbox.settings, accounts, args.concurrency)  # warm the server
        runs: dict[str, list[dict[str, Any]]] = {"sdk": [], "floor": [], "sdk-gc": [],
                                                 "records": []}
        if args.before:
            runs["before"] = []
        # Interleaved, so that a burst of load from elsewhere hits both variants alike.
        for _ in range(args.repeat):
            for variant in runs:
                runs[variant].append(measure(
                    "sdk" if variant == "before" else variant, sandbox.settings, accounts,
                    args.concurrency, code=args.before if variant == "before" else None,
                ))
        if not args.no_naive:
            runs["naive"] = [measure("naive", sandbox.settings, accounts, args.concurrency)]
    rates: dict[str, float] = {}
    rows = []
    labels = {
        "sdk": f"(a) SDK positions.export(concurrency={args.concurrency})",
        "floor": f"(b) floor: aiohttp, all pages concurrent (<= {args.concurrency}), orjson.loads",
        "naive": "(c) naive: one page at a time, limit 100",
        "sdk-gc": "(a) with the GC tuned as the CLI tunes it (gc.freeze, threshold 20,000)",
        "records": "(d) SDK export_records(): validated records, not typed",
        "before": f"(a) before: the same, code from {args.before}",
    }
    for variant, results in runs.items():
        assert all(r["positions"] == total for r in results), results
        fastest = min(results, key=lambda r: r["seconds"])
        median = statistics.median(r["seconds"] for r in results)
        rates[variant] = total / fastest["seconds"]
        rows.append([
            labels[variant], f"{fastest['requests']:,}", f"{fastest['seconds']:.3f}",
            f"{median:.3f}", f"{fastest['cpu_seconds']:.3f}",
            f"{min(r['cpu_seconds'] for r in results):.3f}", f"{rates[variant]:,.0f}",
            f"{max(r['peak_rss_mib'] for r in results):.0f}",
        ])
    heading = (
        f"Export of {args.accounts} accounts x {args.positions:,} positions ({total:,}) at "
        f"{args.latency_ms:g} ms latency; best of {args.repeat} interleaved runs"
        + ("" if args.no_naive else " ((c): 1 run)")
    )
    text = heading + "\n\n" + table(
        ["variant", "requests", "best s", "median s", "CPU s (best run)", "CPU s (least)",
         "positions/s (best)",
         "peak RSS MiB"], rows
    )
    text += (
        f"\n\n(a)/(b) = {rates['sdk'] / rates['floor']:.2f} (target >= 0.9)   "
        + (f"(a)/(c) = {rates['sdk'] / rates['naive']:.1f} (target >= 30)"
           if "naive" in rates else "")
        + f"   GC tuned (a)/(b) = {rates['sdk-gc'] / rates['floor']:.2f}"
        f"   (d)/(b) = {rates['records'] / rates['floor']:.2f}"
    )
    if "before" in rates:
        text += f"   before: (a)/(b) = {rates['before'] / rates['floor']:.2f}"
    return text, rates


def scaling(args: argparse.Namespace) -> str:
    sizes = [int(size) for size in args.scaling.split(",") if size]
    per_account = 2000
    accounts_needed = max(sizes) // per_account
    with SandboxProcess(accounts=accounts_needed, positions_per_account=per_account, seed=1,
                        latency_ms=args.scaling_latency_ms) as sandbox:
        accounts = Tenant(accounts=accounts_needed, positions_per_account=0, seed=1).account_ids
        rows = []
        baseline = None
        for size in sizes:
            result = measure("file", sandbox.settings, accounts[:size // per_account],
                             args.concurrency)
            assert result["positions"] == size, result
            baseline = baseline or result["peak_rss_mib"]
            rows.append([
                f"{size:,}", f"{size // per_account:,}", f"{result['seconds']:.1f}",
                f"{size / result['seconds']:,.0f}", f"{result['peak_rss_mib']:.0f}",
                f"{result['peak_rss_mib'] / baseline:.2f}x",
            ])
    heading = (
        f"Peak RSS exporting to a JSONL file (CLI job, {per_account:,} positions per account, "
        f"{args.scaling_latency_ms:g} ms latency, concurrency {args.concurrency})"
    )
    return heading + "\n\n" + table(
        ["positions", "accounts", "seconds", "positions/s", "peak RSS MiB", "vs first"], rows
    )


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "main-job":
        from main_job import main as main_job

        main_job(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", choices=sorted(VARIANTS), help=argparse.SUPPRESS)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--accounts", type=int, default=20)
    parser.add_argument("--positions", type=int, default=2000, help="positions per account")
    parser.add_argument("--concurrency", type=int, default=16,
                        help="page requests in flight (SDK and floor)")
    parser.add_argument("--repeat", type=int, default=5,
                        help="runs of (a) and (b), interleaved; the best of each is shown")
    parser.add_argument("--scaling", default="10000,100000,1000000",
                        help="positions exported to a file for the RSS table ('' skips it)")
    parser.add_argument("--no-naive", action="store_true", help="skip variant (c)")
    parser.add_argument("--scaling-latency-ms", type=float, default=5.0)
    parser.add_argument("--before", metavar="DIR",
                        help="also run (a) with the upvest_async package found in DIR "
                             "(e.g. from git archive), interleaved")
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs; sandbox in a child process\n")
    text, _ = throughput(args)
    print(text + "\n", flush=True)
    if args.scaling:
        print(scaling(args) + "\n", flush=True)
    from decode import measure as decode_costs
    from decode import render

    costs = decode_costs(10, 15, current=True)
    print("Decode cost per position (10 pages x 1,000 positions, best of 15 interleaved "
          "rounds)\n")
    print(render([(name, value, costs["json.loads"]) for name, value in costs.items()]))


if __name__ == "__main__":
    main()
