"""The checkpointed export under kill -9 and damaged files, run as the command line.

One sandbox (6 accounts x 300 positions, pages capped at 100 so every account takes three
requests) runs in its own process for the whole module. Each example runs
``export-positions --checkpoint``, maybe kills it with SIGKILL at a drawn point, maybe damages
its files, re-runs it (maybe killing that run too), and finally re-runs it to the end.
Whatever happened, every run that exits ends in one of two states: exit 0 with an output
byte-identical to an uninterrupted export, or exit 2 (one line, no traceback) with every file
exactly as it was before that run. An output file, whenever it exists, is the complete one.

Each run is a real child process killed with a real SIGKILL, running the click command
``main`` exactly as ``python -m upvest_async`` does; it is forked from this (single-threaded,
already imported) test process rather than started afresh, which saves about a second of
imports per run and keeps the module within its time budget.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from upvest_async import UpvestClient
from upvest_async.cli import main
from upvest_async.jobs.export import Format, export_positions
from upvest_async.sandbox import Sandbox

SEED, ACCOUNTS, POSITIONS, PAGE_CAP = 11, 6, 300, 100
LATENCY_MS = 3  # per response: slow enough to land a kill mid-export

SERVER = f"""
import asyncio, sys
from aiohttp import web
from upvest_async.sandbox import Sandbox

@web.middleware
async def cap_page_size(request, handler):
    # Serve at most {PAGE_CAP} items per page (the client adopts the server's maximum).
    limit = request.query.get("limit")
    if limit is not None and limit.isdigit() and int(limit) > {PAGE_CAP}:
        request = request.clone(rel_url=request.rel_url.update_query(limit="{PAGE_CAP}"))
    return await handler(request)

async def serve():
    sandbox = Sandbox(accounts={ACCOUNTS}, positions_per_account={POSITIONS}, seed={SEED},
                      latency_ms={LATENCY_MS})
    sandbox.app.middlewares.append(cap_page_size)
    async with sandbox:
        print(sandbox.base_url, flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)

asyncio.run(serve())
"""


class Served:
    """The sandbox process, the environment that points the CLI at it, and the reference
    (uninterrupted) exports."""

    def __init__(self, tmp: Path) -> None:
        self.process = subprocess.Popen([sys.executable, "-c", SERVER], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        self.sandbox = Sandbox(accounts=ACCOUNTS, positions_per_account=POSITIONS, seed=SEED)
        self.sandbox.base_url = self.process.stdout.readline().strip()
        assert self.sandbox.base_url.startswith("http://127.0.0.1:")
        env = {k: v for k, v in os.environ.items() if not k.startswith("UPVEST_API_")}
        self.env = {**env, **self.sandbox.env(key_base64=True)}
        self.reference = {fmt: asyncio.run(self._reference(tmp / f"ref.{fmt}", fmt))
                          for fmt in ("jsonl", "csv")}

    async def _reference(self, path: Path, fmt: Format) -> bytes:
        async with UpvestClient(**self.sandbox.client_settings()) as client:
            summary = await export_positions(client, self.sandbox.tenant.account_ids, path,
                                             fmt=fmt)
            assert client.stats.pages > ACCOUNTS  # several pages per account
        assert not summary.failed and summary.positions == ACCOUNTS * POSITIONS
        return read(path)

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout=10)
        if self.process.stdout is not None:
            self.process.stdout.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    running = Served(tmp_path_factory.mktemp("reference"))
    yield running
    running.close()


Files = dict[str, bytes | None]


def read(path: Path) -> bytes:
    return path.read_bytes()


def snapshot(paths: dict[str, Path]) -> Files:
    return {name: path.read_bytes() if path.exists() else None for name, path in paths.items()}


def _child(args: list[str], env: dict[str, str], err: Path) -> NoReturn:
    status = 1
    try:
        os.dup2(os.open(err, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), 2)
        os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
        sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115 (lives until os._exit)
        sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115
        os.environ.clear()
        os.environ.update(env)
        main(args=args, prog_name="upvest-async")
        status = 0
    except SystemExit as exc:
        status = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stderr.flush()
        os._exit(status)


def run(served: Served, args: list[str], kill: tuple[int, float] | None,
        checkpoint: Path, err: Path) -> tuple[int, str]:
    """Run the CLI in a child; with ``kill=(k, delay)`` SIGKILL it ``delay`` seconds after the
    checkpoint records ``k`` accounts (if it is still running then)."""
    pid = os.fork()
    if pid == 0:
        _child(args, served.env, err)
    deadline = time.monotonic() + 60
    waited = 0
    while not waited and time.monotonic() < deadline:
        if kill is not None and checkpoint.exists() and \
                checkpoint.read_bytes().count(b'"account_id"') >= kill[0]:
            time.sleep(kill[1])
            os.kill(pid, signal.SIGKILL)
            kill = None
        waited, status = os.waitpid(pid, os.WNOHANG)
        time.sleep(0.002)
    if not waited:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise AssertionError("the export did not finish")
    return os.waitstatus_to_exitcode(status), err.read_text()


# SIGKILL once the checkpoint records k accounts, then after a delay (k = 6: maybe too late).
kills = st.tuples(st.integers(0, 6), st.sampled_from([0.0, 0.004, 0.015]))
damages = st.one_of(
    st.just(("none", 0.0)),
    st.tuples(st.sampled_from(["truncate_work", "delete_work", "move_out", "tear_checkpoint"]),
              st.floats(0.0, 1.0)),
)


def damage(kind: str, fraction: float, paths: dict[str, Path], moved: Path) -> bool:
    """Damage the files (``fraction``: where to cut); whether there was something to damage."""
    target = {"truncate_work": "work", "delete_work": "work", "move_out": "out",
              "tear_checkpoint": "checkpoint"}.get(kind)
    if target is None or not paths[target].exists():
        return False
    if kind == "delete_work":
        paths["work"].unlink()
    elif kind == "move_out":
        paths["out"].replace(moved)
    else:
        data = paths[target].read_bytes()
        paths[target].write_bytes(data[:int(len(data) * fraction)])
    return True


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fmt=st.sampled_from(["jsonl", "csv"]), list_accounts=st.booleans(),
       first=st.one_of(st.none(), kills),
       first_damage=damages, second=st.one_of(st.none(), kills), second_damage=damages)
def test_resume_is_byte_identical_or_refuses_without_changing_a_file(
    served: Served, tmp_path_factory: pytest.TempPathFactory, fmt: str, list_accounts: bool,
    first: tuple[int, float] | None, first_damage: tuple[str, float],
    second: tuple[int, float] | None, second_damage: tuple[str, float],
) -> None:
    """Every run that exits: 0 and byte-identical, or 2 and no file changed."""
    tmp = tmp_path_factory.mktemp("resume")
    paths = {"out": tmp / f"positions.{fmt}", "work": tmp / f"positions.{fmt}.partial",
             "checkpoint": tmp / "export.checkpoint"}
    args = ["export-positions", "--out", str(paths["out"]), "--checkpoint",
            str(paths["checkpoint"]), "--format", fmt, "--concurrency", "2", "--quiet"]
    if not list_accounts:
        for account in served.sandbox.tenant.account_ids:
            args += ["--account", account]
    reference = served.reference[fmt]
    # Run, damage, run (maybe killed), damage, then always one run to the end.
    steps: list[tuple[tuple[int, float] | None, tuple[str, float]]] = [(first, first_damage)]
    if second is not None or first is None:
        steps.append((second, second_damage))
    steps.append((None, ("none", 0.0)))
    for number, (kill, (kind, fraction)) in enumerate(steps, start=1):
        before = snapshot(paths)
        status, err = run(served, args, kill, paths["checkpoint"], tmp / "stderr")
        after = snapshot(paths)
        event(f"run {number}: exit {status}")
        assert after["out"] is None or after["out"] == reference  # never a wrong output
        if status != -9:
            assert status in (0, 2), err
            if status == 0:
                assert after["out"] == reference and after["work"] is None, err
            else:
                lines = err.strip().splitlines()
                assert len(lines) == 1 and "Traceback" not in err, err
                assert after == before, "a refusal changed a file"
        if damage(kind, fraction, paths, tmp / "moved-away"):
            event(f"after run {number}: {kind}")
    assert status in (0, 2)
