"""``export-positions --checkpoint`` refusals and ``--restart`` as a user runs them (a
subprocess against a sandbox served by the test's own event loop)."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from upvest_async.sandbox import Sandbox

CLI = [sys.executable, "-m", "upvest_async"]


@pytest.fixture
async def small() -> AsyncIterator[Sandbox]:
    async with Sandbox(accounts=3, positions_per_account=50, seed=9) as running:
        yield running


async def run(sandbox: Sandbox, *args: str) -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("UPVEST_API_")}
    process = await asyncio.create_subprocess_exec(
        *CLI, *args, env={**env, **sandbox.env(key_base64=True)},
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode is not None
    return process.returncode, err.decode()


def read(path: Path) -> bytes:
    return path.read_bytes()


async def test_refusal_exits_2_before_any_request_and_restart_starts_over(
    small: Sandbox, tmp_path: Path
) -> None:
    out, checkpoint = tmp_path / "p.jsonl", tmp_path / "c"
    args = ["export-positions", "--out", str(out), "--checkpoint", str(checkpoint), "--quiet"]
    assert (await run(small, *args))[0] == 0
    expected = read(out)
    out.rename(tmp_path / "moved")
    requests, before = small.counters.requests, read(checkpoint)

    status, err = await run(small, *args)  # no --account: the refusal comes before listing
    assert status == 2
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "--checkpoint" in err and str(out) in err and "--restart" in err
    assert small.counters.requests == requests  # nothing sent, not even a token request
    assert read(checkpoint) == before and not out.exists()

    status, err = await run(small, *args, "--restart")
    assert status == 0, err
    assert read(out) == expected


async def test_restart_needs_a_checkpoint(small: Sandbox, tmp_path: Path) -> None:
    status, err = await run(small, "export-positions", "--out", str(tmp_path / "p"),
                            "--restart")
    assert status == 2 and "--restart: needs --checkpoint" in err
    assert not os.listdir(tmp_path)


async def test_a_finished_checkpoint_is_refused_not_a_silent_no_op(
    small: Sandbox, tmp_path: Path
) -> None:
    """A nightly job with a fixed --checkpoint: the second night must not exit 0 having
    exported nothing."""
    out, checkpoint = tmp_path / "p.jsonl", tmp_path / "c"
    args = ["export-positions", "--out", str(out), "--checkpoint", str(checkpoint), "--quiet"]
    assert (await run(small, *args))[0] == 0
    first, requests, before = read(out), small.counters.requests, read(checkpoint)

    status, err = await run(small, *args)
    assert status == 2
    [line] = err.splitlines()
    assert f"checkpoint {checkpoint} records an export to {out} that finished at " in line
    assert "--restart starts a new export" in line and "Traceback" not in err
    assert small.counters.requests == requests  # nothing sent, not even a token request
    assert read(checkpoint) == before and read(out) == first

    status, err = await run(small, *args, "--restart")
    assert status == 0, err
    assert read(out) == first and small.counters.requests > requests
