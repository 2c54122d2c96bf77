"""Start-up cost: CPU seconds to import what ``export-positions`` runs, against the imports of
the hand-written floor (``floor_export.py``).

    python benchmarks/startup.py [--repeat 15] [--before DIR]

Each case is a whole ``python -c`` process (interpreter start-up included), with the SDK's
bytecode written first, as ``pip install`` writes it (``bytecode.py``); CPU seconds (user
+ system) from the child's ``rusage``; interleaved, best of ``--repeat``. ``--before DIR``
adds the same cases with the ``upvest_async`` package of DIR (run with DIR as the working
directory, which comes before any installed copy; e.g. ``git archive <commit> upvest_async |
tar -x -C DIR``). The import of ``export-positions`` is the CLI's own lookup of that command
(``main.get_command``), so it imports exactly what running the command imports before its
first request.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from bytecode import ensure_bytecode

CASES = {
    "python -c pass": "pass",
    "floor: import aiohttp, orjson, cryptography (serialization)":
        "import aiohttp, orjson, cryptography.hazmat.primitives.serialization",
    "import upvest_async": "import upvest_async",
    "export-positions: the CLI and the command's imports":
        "from upvest_async.cli import main; main.get_command(None, 'export-positions')",
}
#: What the code before the lazy imports could run (it had no lazy commands).
BEFORE = {
    "import upvest_async": "import upvest_async",
    "export-positions: the CLI and the command's imports": "import upvest_async.cli",
}


def cpu_of(code: str, cwd: str) -> float:
    process = subprocess.Popen([sys.executable, "-c", code], cwd=cwd)
    _, status, usage = os.wait4(process.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{code!r} failed in {cwd}")
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--before", metavar="DIR")
    args = parser.parse_args()
    ensure_bytecode(args.before)
    here = str(Path(__file__).resolve().parent)
    runs: dict[str, tuple[str, str]] = {name: (code, here) for name, code in CASES.items()}
    if args.before:
        runs.update({f"before: {name}": (code, args.before) for name, code in BEFORE.items()})
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(args.repeat):
        for name, (code, cwd) in runs.items():
            best[name] = min(best[name], cpu_of(code, cwd))
    width = max(map(len, runs))
    floor = best["floor: import aiohttp, orjson, cryptography (serialization)"]
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs (shared); best of "
          f"{args.repeat} interleaved processes\n")
    print(f"| {'case'.ljust(width)} | CPU s | vs floor |")
    print(f"|{'-' * (width + 2)}|-------|----------|")
    for name, seconds in best.items():
        print(f"| {name.ljust(width)} | {seconds:.3f} | {seconds / floor:.2f}x    |")


if __name__ == "__main__":
    main()
