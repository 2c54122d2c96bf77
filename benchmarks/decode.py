"""Benchmark: the cost of decoding a positions page, per position, against ``json.loads``.

    python benchmarks/decode.py [--pages 10] [--rounds 15] [--before DIR]

Prints one table, microseconds per position (10 pages of 1,000 of the sandbox's positions):
``json.loads`` and ``orjson.loads`` of the page alone; the typed path (``orjson.loads``, then
the converter's ``structure(data, list[Position])``), on the same pages again and on pages
never decoded before (as an export's are: 2,000 positions per account, its instruments shared
with other accounts); ``parse_page(body, Position)`` (the same, the envelope and ``meta``
included); the export's records (``parse_page(body, PositionRecord)``); and ``Decimal(str)``
of the four quantities alone. The decoders run interleaved (each once per round, the best
round of each), so that load from elsewhere hits all alike.

``--before DIR``: also measures ``parse_page(body, Position)`` and the records of the
``upvest_async`` package found in ``DIR`` (another checkout), in a child process, first.
Nothing here is a test: run it by hand.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson

PAGE = 1000
QUANTITIES = ("quantity", "available_for_trading", "locked_for_trading", "pending_settlement")


def pages(count: int, rounds: int) -> tuple[list[bytes], list[bytes]]:
    """``count`` page bodies, and enough bodies never seen before for every round."""
    from upvest_async.sandbox.tenant import Tenant

    def body(data: list[Any], offset: int, total: int) -> bytes:
        meta = {"offset": offset, "limit": PAGE, "count": len(data), "total_count": total}
        return json.dumps({"meta": meta, "data": data}, separators=(",", ":")).encode()

    tenant = Tenant(accounts=count, positions_per_account=PAGE, seed=1)
    same = [body(tenant.positions(account), 0, PAGE) for account in tenant.account_ids]
    export = Tenant(accounts=(count * rounds + 1) // 2, positions_per_account=2 * PAGE, seed=2)
    fresh = [
        body(export.positions(account)[offset:offset + PAGE], offset, 2 * PAGE)
        for account in export.account_ids for offset in (0, PAGE)
    ]
    return same, fresh


def decoders(fresh: list[bytes], *, current: bool) -> dict[str, Callable[[bytes], Any]]:
    from upvest_async.models import Position
    from upvest_async.models.positions import PositionRecord
    from upvest_async.pagination import parse_page

    unseen = iter(fresh)
    found: dict[str, Callable[[bytes], Any]] = {
        "typed, parse_page(body, Position)": lambda body: parse_page(body, Position),
        "typed, parse_page, pages never decoded before (an export's)": (
            lambda _: parse_page(next(unseen), Position)),
        "records, parse_page(body, PositionRecord)": (
            lambda body: parse_page(body, PositionRecord)),
    }
    if current:
        from upvest_async.converter import converter

        found["typed: orjson.loads + converter.structure(data, list[Position])"] = (
            lambda body: converter.structure(orjson.loads(body)["data"], list[Position]))
    return found


def best_of(decoders: dict[str, Callable[[bytes], Any]], bodies: list[bytes],
            rounds: int) -> dict[str, float]:
    """Microseconds per position, best round of each (interleaved rounds)."""
    fastest = dict.fromkeys(decoders, float("inf"))
    for _ in range(rounds):
        for name, decode in decoders.items():
            started = time.perf_counter()
            for body in bodies:
                decode(body)
            fastest[name] = min(fastest[name], time.perf_counter() - started)
    return {name: seconds / (len(bodies) * PAGE) * 1e6 for name, seconds in fastest.items()}


def measure(count: int, rounds: int, *, current: bool) -> dict[str, float]:
    bodies, fresh = pages(count, rounds)
    quantities = {body: [item[name] for item in orjson.loads(body)["data"] for name in QUANTITIES]
                  for body in bodies}
    table: dict[str, Callable[[bytes], Any]] = {
        "json.loads": json.loads,
        "orjson.loads": orjson.loads,
        **decoders(fresh, current=current),
    }
    if current:
        table["Decimal(str) of the 4 quantities only"] = (
            lambda body: list(map(Decimal, quantities[body])))
    return best_of(table, bodies, rounds)


def render(rows: list[tuple[str, float, float]]) -> str:
    headers = ("decoder", "us/position", "vs json.loads")
    cells = [(name, f"{value:.2f}", f"{value / base:.2f}x") for name, value, base in rows]
    widths = [max(len(r[i]) for r in [headers, *cells]) for i in range(3)]

    def line(row: tuple[str, ...]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"

    return "\n".join([line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|",
                      *map(line, cells)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--before", metavar="DIR")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:  # the code of --before: print its figures as JSON
        import upvest_async

        package = Path(upvest_async.__file__ or "").resolve().parent
        assert package == Path.cwd() / "upvest_async", f"imported {package}, not --before's"
        print(json.dumps(measure(args.pages, args.rounds, current=False)))
        return
    rows: list[tuple[str, float, float]] = []
    if args.before:
        env = {**os.environ, "PYTHONPATH": str(Path(args.before).resolve())}
        done = subprocess.run(
            [sys.executable, __file__, "--child", "--pages", str(args.pages), "--rounds",
             str(args.rounds)], capture_output=True, text=True, check=True, env=env,
            cwd=args.before,
        )
        before = json.loads(done.stdout.strip().splitlines()[-1])
        rows += [(f"before: {name}", value, before["json.loads"])
                 for name, value in before.items()]
    now = measure(args.pages, args.rounds, current=True)
    rows += [(name, value, now["json.loads"]) for name, value in now.items()]
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs; {args.pages} pages x "
          f"{PAGE:,} positions, best of {args.rounds} interleaved rounds\n")
    print(render(rows))


if __name__ == "__main__":
    main()
