"""The main job side by side: ``upvest-async export-positions`` as a process against the
hand-written floor (``floor_export.py``), both against the sandbox in a child process.

    python benchmarks/export_positions.py main-job [--latency-ms 50] [--accounts 100]
        [--positions 2000] [--concurrency 16] [--repeat 3] [--modes progress,quiet,csv]

Every run is a whole process (interpreter start-up and imports included, the SDK's bytecode
written first as ``pip install`` writes it: ``bytecode.py``) started with the sandbox's
``UPVEST_API_*`` variables; wall seconds from spawn to exit, CPU seconds (user +
system) and peak RSS from the child's ``rusage``. The modes: ``progress`` (the default CLI,
its stderr on a pseudo-terminal so the rich progress bar really draws), ``quiet``
(``--quiet``), ``csv`` (``--format csv --quiet``). Runs are interleaved (floor, then each
mode, repeated), best of ``--repeat`` shown; outputs are checked to be the same positions.

Then a per-stage cost in µs per position, measured in this process on the sandbox's own page
bodies: decode (``orjson.loads``), validate (the export's validator), encode (the JSONL
renderer, and the CSV one), write (to a file); "fetch" is the rest of the CLI's CPU time per
position (HTTP, signing, scheduling, start-up).
"""

from __future__ import annotations

import argparse
import os
import pty
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import orjson
from bytecode import ensure_bytecode
from sandbox_process import SandboxProcess

from upvest_async.sandbox.tenant import Tenant

HERE = Path(__file__).resolve().parent
CLI = [sys.executable, "-m", "upvest_async"]


def env_of(settings: dict[str, Any]) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("UPVEST_API_")},
        "UPVEST_API_BASE_URL": settings["base_url"],
        "UPVEST_API_CLIENT_ID": settings["client_id"],
        "UPVEST_API_CLIENT_SECRET": settings["client_secret"],
        "UPVEST_API_KEY_ID": settings["key_id"],
        "UPVEST_API_HTTP_SIGN_PRIVATE_KEY": settings["private_key"],
        "UPVEST_API_HTTP_SIGN_PRIVATE_KEY_PASSPHRASE": settings["private_key_passphrase"],
    }


def run(command: list[str], env: dict[str, str], *, tty: bool,
        cwd: str | None = None) -> dict[str, float]:
    """Run ``command`` to its end: wall s, CPU s, peak RSS MiB (from wait4's rusage)."""
    master = slave = None
    if tty:
        master, slave = pty.openpty()
        drain = threading.Thread(target=_drain, args=(master,), daemon=True)
        drain.start()
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, cwd=cwd, stdout=subprocess.DEVNULL,
                               stderr=slave if tty else subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if slave is not None:
        os.close(slave)
    if process.returncode != 0:
        raise RuntimeError(f"{command} exited with {process.returncode}")
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime,
            "rss": usage.ru_maxrss / 1024}


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 65536):
            pass
    except OSError:
        pass
    finally:
        os.close(fd)


def table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(c)) for c in column) for column in zip(headers, *rows, strict=True)]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    return "\n".join([line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
                     + [line(row) for row in rows])


def stages(tenant: Tenant, accounts: list[str], cli_cpu_per_position: float) -> str:
    """µs per position of each stage, on the sandbox's page bodies (best of 5)."""
    from upvest_async.json_body import parse_json
    from upvest_async.records import position_records, render_csv, render_jsonl

    bodies = []
    for account in accounts[:10]:
        data = tenant.positions(account)[:1000]
        meta = {"offset": 0, "limit": 1000, "count": len(data), "total_count": len(data)}
        bodies.append(orjson.dumps({"meta": meta, "data": data}))
    documents = [parse_json(body, what="page") for body in bodies]
    count = sum(len(document["data"]) for document in documents)
    pages = [position_records(document["data"]) for document in documents]
    texts = [render_jsonl(page) for page in pages]

    def best(work: Any) -> float:
        fastest = float("inf")
        for _ in range(5):
            started = time.perf_counter()
            work()
            fastest = min(fastest, time.perf_counter() - started)
        return fastest / count * 1e6

    with tempfile.TemporaryFile("w", encoding="utf-8") as stream:
        figures = {
            "decode (parse_json: orjson.loads of the page body)": best(
                lambda: [parse_json(body, what="page") for body in bodies]),
            "validate (position_records: as the Position model)": best(
                lambda: [position_records(d["data"]) for d in documents]),
            "encode JSONL (render_jsonl)": best(lambda: [render_jsonl(page) for page in pages]),
            "encode CSV (render_csv)": best(lambda: [render_csv(page) for page in pages]),
            "write (text file, one call per page)": best(
                lambda: [stream.write(text) for text in texts]),
        }
    known = sum(v for k, v in figures.items() if not k.startswith("encode CSV"))
    figures["fetch and the rest (CLI --quiet CPU per position - the above)"] = (
        cli_cpu_per_position - known)
    rows = [[name, f"{value:.2f}"] for name, value in figures.items()]
    return table(["stage", "µs/position"], rows)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--accounts", type=int, default=100)
    parser.add_argument("--positions", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--modes", default="progress,quiet,csv")
    parser.add_argument("--no-stages", action="store_true", help="skip the per-stage table")
    parser.add_argument("--before", metavar="DIR",
                        help="also run the CLI from this source tree (as the working "
                        "directory, which comes before any installed copy; e.g. "
                        "`git archive <commit> upvest_async | tar -x -C DIR`), interleaved, "
                        "as the 'before' rows")
    args = parser.parse_args(argv)
    ensure_bytecode(args.before)
    modes = [m for m in args.modes.split(",") if m]
    total = args.accounts * args.positions
    tenant = Tenant(accounts=args.accounts, positions_per_account=args.positions, seed=0)
    accounts = tenant.account_ids
    with tempfile.TemporaryDirectory() as directory, SandboxProcess(
        accounts=args.accounts, positions_per_account=args.positions, seed=0,
        latency_ms=args.latency_ms, positions_cache=args.accounts,
    ) as sandbox:
        folder = Path(directory)
        accounts_file = folder / "accounts.txt"
        accounts_file.write_text("\n".join(accounts) + "\n")
        env = env_of(sandbox.settings)
        if args.before:  # the 'before' runs must import DIR's package, not the installed one
            where = subprocess.run(
                [sys.executable, "-c", "import upvest_async; print(upvest_async.__file__)"],
                cwd=args.before, capture_output=True, text=True, check=True).stdout.strip()
            if not Path(where).resolve().is_relative_to(Path(args.before).resolve()):
                raise SystemExit(f"--before {args.before}: imports {where} instead")
        cli = [*CLI, "export-positions", "--accounts-file", str(accounts_file),
               "--concurrency", str(args.concurrency)]
        commands: dict[str, tuple[list[str], bool]] = {  # (command, stderr on a pty)
            "floor": ([sys.executable, str(HERE / "floor_export.py"), str(accounts_file),
                       str(folder / "floor.jsonl")], False),
            "progress": ([*cli, "--out", str(folder / "progress.jsonl")], True),
            "quiet": ([*cli, "--quiet", "--out", str(folder / "quiet.jsonl")], False),
            "csv": ([*cli, "--quiet", "--format", "csv", "--out", str(folder / "out.csv")],
                    False),
        }
        if args.before:
            for name in modes:
                command, tty = commands[name]
                commands["before " + name] = (
                    [part.replace(name, "before-" + name) if part.startswith(directory)
                     else part for part in command], tty)
        old = [m for m in modes if m != "csv"] if args.before else []
        chosen = ["floor", *modes, *("before " + m for m in old)]
        run(*commands["floor"][:1], env, tty=False)  # warm the server
        results: dict[str, list[dict[str, float]]] = {name: [] for name in chosen}
        for _ in range(args.repeat):
            for name in chosen:
                command, tty = commands[name]
                results[name].append(
                    run(command, env, tty=tty,
                        cwd=args.before if name.startswith("before") else None))
                print(name, results[name][-1], file=sys.stderr, flush=True)
        floor_bytes = (folder / "floor.jsonl").read_bytes()
        same = {name: (folder / f"{name}.jsonl").read_bytes() == floor_bytes
                for name in ("progress", "quiet") if name in chosen}
    best = {name: min(runs, key=lambda r: r["wall"]) for name, runs in results.items()}
    labels = {
        "floor": "floor: floor_export.py (aiohttp + orjson, signed)",
        "progress": "CLI export-positions (progress bar on a pty)",
        "quiet": "CLI export-positions --quiet",
        "csv": "CLI export-positions --quiet --format csv",
    }
    rows = []
    for name in chosen:
        figure = best[name]
        label = labels[name.removeprefix("before ")]
        rows.append([
            "before: " + label if name.startswith("before") else label,
            f"{figure['wall']:.2f}", f"{figure['cpu']:.2f}",
            f"{total / figure['wall']:,.0f}", f"{max(r['rss'] for r in results[name]):.0f}",
            f"{best['floor']['wall'] / figure['wall']:.2f}",
        ])
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs (shared); sandbox in a child "
          f"process at {args.latency_ms:g} ms; {args.accounts} accounts x {args.positions:,} "
          f"positions ({total:,}), concurrency {args.concurrency}; whole processes, interleaved, "
          f"best of {args.repeat}\n")
    print(table(["run", "wall s", "CPU s", "positions/s", "peak RSS MiB", "vs floor"], rows))
    print("\nJSONL output byte-identical to the floor's: "
          + ", ".join(f"{name} {'yes' if ok else 'NO'}" for name, ok in same.items()))
    if "csv" in best and "quiet" in best:
        print(f"\nCSV / JSONL wall time: {best['csv']['wall'] / best['quiet']['wall']:.2f}")
    if args.no_stages:
        return
    cpu = best.get("quiet", best["floor"])["cpu"] / total * 1e6
    print("\nPer-stage cost (this process, 10 pages of 1,000 of the sandbox's positions, best "
          "of 5)\n")
    print(stages(tenant, accounts, cpu))
