"""The bulk jobs under the tenant's rate limit, as users run them (issue 18).

Each scenario runs the installed command line (``python -m upvest_async ...``, whole
processes) against the embedded sandbox in a child process that throttles as Upvest does: one
token bucket per client id refilled at R requests/s (burst R/10), 50 ms per request, 429
problem+json without ``Retry-After``. Figures come from the sandbox's journal (every request,
when it arrived, whether it was throttled):

- ``ok/s / R``: requests answered without throttling per second of the run (the command's
  whole wall time, Python's start-up included), over R; ``>=5s``: the same from 5 s into the
  run to its last answer (the steady state, once the rate is learned);
- ``429 <5s`` / ``429 >=5s``: the share of requests answered 429 in the first 5 s of the run
  and after them (for the falling limit: before and from 5 s after the fall);
- ``exact``: exit status 0 and the output complete, each position once (export) or one
  execution per account, every account triggered (rebalance).

Scenarios: one export at R = 50 (``steady``; ``steady-light`` with 100 positions a page);
the limit falling from 100 to 25 req/s two seconds into an
export; ``rebalance`` of 300 accounts at concurrency 64 with R = 20; three export processes of
one client id sharing R = 30. ``--before DIR`` runs the code in DIR too, in the same run (its
command line, with the same sandbox). Only loopback; every child is bounded in time.

    python benchmarks/rate_limit.py [--before DIR] [--only NAME ...] [--repeat N] [--timeline]
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bytecode import ensure_bytecode
from main_job import env_of, table
from sandbox_process import SandboxProcess

from upvest_async.sandbox.tenant import Tenant

CLI = [sys.executable, "-m", "upvest_async"]
LATENCY_MS = 50.0
#: The longest any one command may run (seconds): a hung run fails the benchmark.
CHILD_TIMEOUT = 600


@attrs.define
class Outcome:
    variant: str
    scenario: str
    rate: str
    wall: float
    ok_per_rate: float
    late_ok_per_rate: float
    early_429: float
    late_429: float
    exact: str
    note: str = ""


@attrs.frozen
class Run:
    """One command: its argv, environment and working directory."""

    argv: list[str]
    env: dict[str, str]
    cwd: str | None


def command(variant: str, before: str | None, settings: dict[str, Any], *args: str) -> Run:
    env = env_of(settings)
    cwd = None
    if variant == "before":
        assert before is not None
        env["PYTHONPATH"] = before
        cwd = before
    return Run([*CLI, *args], env, cwd)


def run_all(runs: list[Run]) -> list[tuple[int, float]]:
    """Start every run at once; their exit statuses and wall seconds."""
    results: list[tuple[int, float]] = [(0, 0.0)] * len(runs)

    def one(index: int, run: Run) -> None:
        started = time.monotonic()
        try:
            status = subprocess.run(run.argv, env=run.env, cwd=run.cwd, check=False,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                    timeout=CHILD_TIMEOUT).returncode
        except subprocess.TimeoutExpired:
            status = -1
        results[index] = (status, time.monotonic() - started)

    threads = [threading.Thread(target=one, args=(i, run)) for i, run in enumerate(runs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


#: ``--timeline``: print each run's requests per second (ok / 429) on standard error.
TIMELINE = False


def timeline(journal: list[tuple[float, int, bool]], start: float, end: float) -> None:
    if not TIMELINE:
        return
    seconds = int(end - start) + 1
    ok, throttled = [0] * seconds, [0] * seconds
    for at, status, _ in journal:
        if start <= at <= end:
            (throttled if status == 429 else ok)[int(at - start)] += 1
    print("    ok/s : " + " ".join(f"{n:3d}" for n in ok), file=sys.stderr)
    print("    429/s: " + " ".join(f"{n:3d}" for n in throttled), file=sys.stderr)


def steady_rate(journal: list[tuple[float, int, bool]], split: float, end: float) -> float:
    """Requests answered without throttling per second from ``split`` to the last of them."""
    late = [e[0] for e in journal if split <= e[0] <= end and e[1] != 429]
    return len(late) / (max(late) - split) if len(late) > 1 else 0.0


def shares(journal: list[tuple[float, int, bool]], start: float, split: float,
           end: float) -> tuple[float, float, int]:
    """The 429 share before and after ``split``, and the requests answered without
    throttling, of the journal entries in ``[start, end]`` (monotonic seconds)."""
    timeline(journal, start, end)
    early = [e for e in journal if start <= e[0] < split]
    late = [e for e in journal if split <= e[0] <= end]

    def share(entries: list[tuple[float, int, bool]]) -> float:
        return sum(1 for e in entries if e[1] == 429) / len(entries) if entries else 0.0

    ok = sum(1 for e in journal if start <= e[0] <= end and e[1] != 429)
    return share(early), share(late), ok


def export_exact(out: Path, accounts: list[str], per_account: int) -> bool:
    if not out.exists():
        return False
    seen: set[tuple[str, str]] = set()
    for line in out.read_text().splitlines():
        record = json.loads(line)
        seen.add((record["account_id"], record["instrument"]["uuid"]))
    lines = len(out.read_text().splitlines())
    return lines == len(seen) == len(accounts) * per_account and {
        a for a, _ in seen} == set(accounts)


_RUNS = itertools.count()


def fresh(directory: Path, name: str) -> Path:
    """A path no run of this benchmark used before (a report left by an earlier run would
    make a rebalance a replay)."""
    return directory / f"{next(_RUNS)}-{name}"


def write_accounts(directory: Path, name: str, accounts: list[str]) -> Path:
    path = directory / name
    path.write_text("".join(f"{a}\n" for a in accounts))
    return path


Scenario = Callable[[str, str | None, Path], Outcome]


@attrs.frozen
class ExportRun:
    """One ``export-positions`` run against a throttling sandbox: its exit status, wall
    seconds, start and end (monotonic seconds), the sandbox's journal, and whether the output
    is exact."""

    status: int
    wall: float
    start: float
    end: float
    journal: list[tuple[float, int, bool]]
    exact: bool


def export_run(variant: str, before: str | None, tmp: Path, name: str, *, seed: int,
               accounts_n: int, per: int, rate: float,
               change: tuple[float, float] | None = None) -> ExportRun:
    """Export ``accounts_n`` accounts of ``per`` positions under ``rate`` requests/s;
    ``change``: ``(after seconds, new rate)``, the limit changed while the export runs."""
    accounts = Tenant(accounts=accounts_n, positions_per_account=per, seed=seed).account_ids
    with SandboxProcess(accounts=accounts_n, positions_per_account=per, seed=seed,
                        latency_ms=LATENCY_MS, rate_limit=rate,
                        positions_cache=accounts_n) as sandbox:
        out = fresh(tmp, f"{name}-{variant}.jsonl")
        run = command(variant, before, sandbox.settings, "export-positions", "--out", str(out),
                      "--accounts-file", str(write_accounts(tmp, f"{name}.txt", accounts)),
                      "--quiet")
        start = time.monotonic()
        timer = None
        if change is not None:
            timer = threading.Timer(change[0], sandbox.set_rate_limit, args=(change[1],))
            timer.start()
        [(status, wall)] = run_all([run])
        if timer is not None:
            timer.cancel()
        end = time.monotonic()
        journal = sandbox.stop()["journal"]
    exact = status == 0 and export_exact(out, accounts, per)
    return ExportRun(status, wall, start, end, journal, exact)


def export_steady(variant: str, before: str | None, tmp: Path, per: int = 1000) -> Outcome:
    rate = 50.0
    run = export_run(variant, before, tmp, "steady", seed=5, accounts_n=600, per=per, rate=rate)
    early, late, ok = shares(run.journal, run.start, run.start + 5, run.end)
    name = "export, R = 50" + ("" if per == 1000 else f", {per} positions a page")
    return Outcome(variant, name, "50", run.wall, ok / run.wall / rate,
                   steady_rate(run.journal, run.start + 5, run.end) / rate, early, late,
                   "yes" if run.exact else f"no (exit {run.status})")


def export_falling(variant: str, before: str | None, tmp: Path) -> Outcome:
    high, low = 100.0, 25.0
    run = export_run(variant, before, tmp, "falling", seed=6, accounts_n=400, per=1000,
                     rate=high, change=(2.0, low))
    fall, end, journal = run.start + 2.0, run.end, run.journal
    early, late, _ = shares(journal, fall, fall + 5, end)
    after_fall = sum(1 for e in journal if fall + 5 <= e[0] <= end and e[1] != 429)
    ok_rate = after_fall / max(end - fall - 5, 1e-9) / low
    return Outcome(variant, "export, R 100 -> 25 at 2 s", "100->25", run.wall, ok_rate,
                   steady_rate(journal, fall + 5, end) / low, early, late,
                   "yes" if run.exact else f"no (exit {run.status})",
                   "429 shares: the 5 s after the fall / after them; ok/s from 5 s after")


def rebalance(variant: str, before: str | None, tmp: Path) -> Outcome:
    rate, accounts_n = 20.0, 300
    tenant = Tenant(accounts=accounts_n, positions_per_account=1, seed=7)
    accounts = tenant.account_ids
    with SandboxProcess(accounts=accounts_n, positions_per_account=1, seed=7,
                        latency_ms=LATENCY_MS, rate_limit=rate) as sandbox:
        report = fresh(tmp, f"rebalance-{variant}.jsonl")
        run = command(variant, before, sandbox.settings, "rebalance", "--out", str(report),
                      "--accounts-file", str(write_accounts(tmp, "rebalance.txt", accounts)),
                      "--batch-id", f"bench-{variant}", "--concurrency", "64", "--quiet")
        start = time.monotonic()
        [(status, wall)] = run_all([run])
        end = time.monotonic()
        counters = sandbox.stop()
    early, late, ok = shares(counters["journal"], start, start + 5, end)
    triggered = 0
    if report.exists():
        for line in report.read_text().splitlines():
            record = json.loads(line)
            triggered += record.get("status") == "triggered"
    exact = (status == 0 and triggered == accounts_n and counters["executions"] == accounts_n
             and counters["duplicates"] == 0)
    detail = (f"{counters['executions']} executions, {triggered} triggered, "
              f"{counters['duplicates']} duplicates")
    return Outcome(variant, "rebalance 300, concurrency 64, R = 20", "20", wall,
                   ok / wall / rate, steady_rate(counters["journal"], start + 5, end) / rate,
                   early, late, "yes" if exact else f"no (exit {status})",
                   detail)


def three_processes(variant: str, before: str | None, tmp: Path) -> Outcome:
    rate, accounts_n, per = 30.0, 450, 1000
    tenant = Tenant(accounts=accounts_n, positions_per_account=per, seed=8)
    accounts = tenant.account_ids
    parts = [accounts[i::3] for i in range(3)]
    with SandboxProcess(accounts=accounts_n, positions_per_account=per, seed=8,
                        latency_ms=LATENCY_MS, rate_limit=rate,
                        positions_cache=accounts_n) as sandbox:
        outs = [fresh(tmp, f"three-{variant}-{i}.jsonl") for i in range(3)]
        runs = [command(variant, before, sandbox.settings, "export-positions", "--out",
                        str(outs[i]), "--accounts-file",
                        str(write_accounts(tmp, f"three-{i}.txt", parts[i])), "--quiet")
                for i in range(3)]
        start = time.monotonic()
        results = run_all(runs)
        end = time.monotonic()
        journal = sandbox.stop()["journal"]
    early, late, ok = shares(journal, start, start + 5, end)
    walls = [wall for _, wall in results]
    exact = all(status == 0 and export_exact(out, part, per)
                for (status, _), out, part in zip(results, outs, parts, strict=True))
    statuses = ",".join(str(status) for status, _ in results)
    return Outcome(variant, "3 exports, one client id, R = 30", "30", max(walls),
                   ok / (end - start) / rate, steady_rate(journal, start + 5, end) / rate,
                   early, late,
                   "yes" if exact else f"no (exits {statuses})",
                   f"last/first finish {max(walls) / min(walls):.2f}")


SCENARIOS: dict[str, Scenario] = {
    "steady": export_steady,
    # The same with pages a tenth the size: the sandbox child does a tenth of the work per
    # request, so its event loop bunches arrivals less (a diagnosis, not a goal).
    "steady-light": functools.partial(export_steady, per=100),
    "falling": export_falling,
    "rebalance": rebalance,
    "three": three_processes,
}


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", metavar="DIR",
                        help="also run the code in DIR (e.g. `git archive REV | tar -x -C DIR`)")
    parser.add_argument("--only", nargs="*", choices=sorted(SCENARIOS), default=None)
    parser.add_argument("--repeat", type=int, default=1,
                        help="run each scenario this many times (a row per run)")
    parser.add_argument("--timeline", action="store_true",
                        help="print each run's requests per second (ok, 429) on stderr")
    args = parser.parse_args(argv)
    global TIMELINE
    TIMELINE = args.timeline
    ensure_bytecode(args.before)
    variants = ["this"] + (["before"] if args.before else [])
    outcomes: list[Outcome] = []
    with tempfile.TemporaryDirectory(prefix="upvest-rate-") as tmp:
        for name in [n for n in args.only or list(SCENARIOS) for _ in range(args.repeat)]:
            for variant in variants:
                outcome = SCENARIOS[name](variant, args.before, Path(tmp))
                outcomes.append(outcome)
                print(f"  {name} ({variant}): {outcome.wall:.1f} s, exact {outcome.exact}",
                      file=sys.stderr, flush=True)
    rows = [[o.scenario, o.variant, o.rate, f"{o.wall:.1f}", f"{o.ok_per_rate:.2f}",
             f"{o.late_ok_per_rate:.2f}", f"{o.early_429:.1%}", f"{o.late_429:.1%}", o.exact,
             o.note] for o in outcomes]
    print(table(["scenario", "code", "R req/s", "wall s", "ok/s / R", ">=5s", "429 <5s",
                 "429 >=5s", "exact", "notes"], rows))
    print(f"\n{os.cpu_count()} cores; 50 ms per request; sandbox in a child process; "
          "python " + ".".join(map(str, sys.version_info[:3])))


if __name__ == "__main__":
    main(sys.argv[1:])
