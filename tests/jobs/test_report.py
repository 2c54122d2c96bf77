"""No money moves without a durable record: the report of ``rebalance`` lists every trigger the
server received, whatever ends the run (an unexpected error, ``kill -9``), and a re-run of the
batch reconciles without a second execution."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from upvest_async.cli import main
from upvest_async.resources.rebalancings import Executions
from upvest_async.sandbox import Sandbox, Tenant

CLI = [sys.executable, "-m", "upvest_async"]
EXECUTIONS = "/portfolios/rebalancings/executions"


def rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def last_state(path: Path) -> dict[str, dict[str, Any]]:
    """The journal read last-line-wins (a torn last line is ignored)."""
    data = path.read_bytes()
    lines = data[:data.rfind(b"\n") + 1].splitlines()
    return {row["account_id"]: row for row in map(json.loads, lines)}


@pytest.fixture
def no_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("UPVEST_API_"):
            monkeypatch.delenv(name)


def test_an_unexpected_error_still_writes_report_and_summary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_credentials: None
) -> None:
    accounts = Tenant(accounts=6, positions_per_account=1, seed=0).account_ids
    real = Executions.create
    calls = 0

    async def flaky(self: Executions, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise RuntimeError("boom\nsecond line")
        return await real(self, **kwargs)

    monkeypatch.setattr(Executions, "create", flaky)
    out, summary = tmp_path / "r.jsonl", tmp_path / "s.json"
    args = ["rebalance", "--out", str(out), "--batch-id", "b", "--concurrency", "1",
            "--embedded-sandbox", "--sandbox-accounts", "6", "--sandbox-positions", "1",
            "--summary-json", str(summary), "--quiet", *(f"--account={a}" for a in accounts)]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 1
    assert "Traceback" not in result.stderr
    [error] = [line for line in result.stderr.splitlines() if "rebalance failed" in line]
    assert error == "rebalance failed: unexpected RuntimeError: boom second line"
    report = rows(out)  # finished: one line per account, in input order
    assert [r["account_id"] for r in report] == accounts
    assert [r["status"] for r in report] == ["triggered"] * 2 + ["unknown"] + ["not_sent"] * 3
    assert (f"account {accounts[2]} unknown: sent with idempotency key "
            f"{report[2]['idempotency_key']}, no answer received") in result.stderr
    assert "3 accounts not sent; re-run with the same --batch-id" in result.stderr
    data = json.loads(summary.read_text())
    assert data["exit_status"] == 1 and data["error"] == error
    assert (data["triggered"], data["unknown"], data["not_sent"]) == (2, 1, 3)

    monkeypatch.setattr(Executions, "create", real)
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    again = rows(out)
    assert again[:2] == report[:2]  # carried over, not sent again
    assert {r["status"] for r in again} == {"triggered"}
    assert [r["replayed"] for r in again] == [False, False, True, False, False, False]
    data = json.loads(summary.read_text())
    assert data["requests"] == 4 + 1  # four triggers and the token


def env_for(sandbox: Sandbox) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("UPVEST_API_")}
    return {**env, **sandbox.env(key_base64=True)}


async def settle(sandbox: Sandbox) -> None:
    """Wait until the sandbox has finished the handlers of the requests it received (a
    request cut off while its body was read never reaches a handler)."""
    for _ in range(100):
        before = len(sandbox.state.journal)
        await asyncio.sleep(sandbox.state.latency * 3 + 0.1)
        if len(sandbox.state.journal) == before:
            return
    raise AssertionError("the sandbox kept answering")


@pytest.mark.parametrize(("seed", "group_size", "stop"), [
    (1, 1, signal.SIGKILL), (4, 3, signal.SIGKILL), (3, 1, signal.SIGKILL),
    (5, 2, signal.SIGINT),
])
async def test_killed_at_a_random_point_leaves_a_record_of_every_trigger(
    tmp_path: Path, seed: int, group_size: int, stop: signal.Signals
) -> None:
    chance = random.Random(seed)
    async with Sandbox(accounts=24, positions_per_account=1, seed=seed) as sandbox:
        sandbox.state.latency = 0.04
        out = tmp_path / "report.jsonl"
        args = ["rebalance", "--out", str(out), "--all-accounts", "--batch-id", f"b{seed}",
                "--concurrency", "3", "--group-size", str(group_size), "--quiet"]
        process = await asyncio.create_subprocess_exec(
            *CLI, *args, env=env_for(sandbox), stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE)
        for _ in range(1500):  # the report exists before the first trigger is sent
            if out.exists() or process.returncode is not None:
                break
            await asyncio.sleep(0.01)
        assert out.exists() and sandbox.counters.created["execution"] == 0
        groups = -(-24 // group_size)
        intents = chance.randint(1, groups - 1) * group_size  # kill part-way, at random
        for _ in range(1500):
            if out.read_bytes().count(b'"sending"') >= intents:
                break
            await asyncio.sleep(0.005)
        await asyncio.sleep(chance.uniform(0.0, 0.06))
        process.send_signal(stop)
        await process.wait()
        await settle(sandbox)
        if stop == signal.SIGINT:  # Ctrl-C: finished, one line per account, exit 130
            assert process.returncode == 130
            finished = rows(out)
            assert [r["account_id"] for r in finished] == sandbox.tenant.account_ids
            assert {r["status"] for r in finished} <= {"triggered", "unknown", "not_sent"}

        received = {e.headers["idempotency-key"] for e in sandbox.state.journal
                    if e.method == "POST" and e.path == EXECUTIONS}
        created = len(sandbox.portfolios.executions)
        state = last_state(out)
        recorded = {r["idempotency_key"] for r in state.values()
                    if r["status"] in {"sending", "triggered", "failed", "unknown"}}
        assert received <= recorded  # every trigger the server received is in the report
        assert all(r["batch_id"] == f"b{seed}" for r in state.values())
        if seed == 1:  # a crash in the middle of writing a line
            with out.open("ab") as stream:
                stream.write(b'{"account_id": "torn')

        sandbox.state.latency = 0.0
        process = await asyncio.create_subprocess_exec(
            *CLI, *args, env=env_for(sandbox), stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE)
        _, err = await asyncio.wait_for(process.communicate(), timeout=120)
        assert process.returncode == 0, err.decode()
        final = rows(out)
        assert [r["account_id"] for r in final] == sandbox.tenant.account_ids
        assert {r["status"] for r in final} == {"triggered"}
        assert sandbox.counters.duplicates == 0
        assert len(sandbox.portfolios.executions) == sandbox.counters.created["execution"] \
            == groups
        # Keys the server had executed but whose answer the first run never recorded are
        # reported as replays; nothing new was created for them.
        unanswered = {r["idempotency_key"] for r in state.values()
                      if r["status"] in {"sending", "unknown"}}
        for row in final:
            if row["idempotency_key"] in received & unanswered:
                assert row["replayed"] is True
        assert created <= groups


def test_a_runtime_failure_names_the_account_and_the_request_id(
    tmp_path: Path, no_credentials: None
) -> None:
    good, = Tenant(accounts=1, positions_per_account=1, seed=0).account_ids
    stranger = "7b8f2c1e-0000-4000-8000-000000000001"
    out = tmp_path / "r.jsonl"
    result = CliRunner().invoke(main, [
        "rebalance", "--out", str(out), "--batch-id", "b", "--account", good, "--account",
        stranger, "--embedded-sandbox", "--sandbox-accounts", "1", "--sandbox-positions", "1",
        "--quiet"])
    assert result.exit_code == 1
    failed = rows(out)[1]
    assert failed["status"] == "failed" and failed["request_id"]
    [line] = [line for line in result.stderr.splitlines() if stranger in line]
    assert line.startswith(f"account {stranger} failed: 404 ")
    assert f"request id {failed['request_id']}" in line


def test_load_report_drops_a_torn_tail_and_refuses_damage(tmp_path: Path) -> None:
    from upvest_async.jobs.batch import RebalanceResult
    from upvest_async.jobs.report import ReportError, load_report, to_record

    account = Tenant(accounts=1, positions_per_account=1, seed=0).account_ids[0]
    line = json.dumps(to_record(RebalanceResult(account, "sending", "k"), "b")).encode() + b"\n"
    path = tmp_path / "r.jsonl"
    path.write_bytes(line + line[:20])
    previous = load_report(path, "b")
    assert previous is not None and previous.size == len(line)
    assert previous.results[account].status == "sending" and previous.sent_keys == {"k"}
    assert load_report(tmp_path / "missing", "b") is None
    for damage in [b"[" * 100_000 + b"\n", b"\xff\xfe\n", b'{"account_id": 1}\n', b"null\n",
                   line.replace(b'"sending"', b'"exploded"')]:
        path.write_bytes(damage + line)
        with pytest.raises(ReportError, match=r"r\.jsonl:1 is not a line of a rebalance report"):
            load_report(path, "b")
    path.write_bytes(line)
    with pytest.raises(ReportError, match="report of batch 'b', not 'c'"):
        load_report(path, "c")


def test_an_unexpected_error_in_an_export_still_writes_the_summary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_credentials: None
) -> None:
    async def broken(*_: Any, **__: Any) -> Any:
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr("upvest_async.cli.export.export_positions", broken)
    out, summary = tmp_path / "p.jsonl", tmp_path / "s.json"
    result = CliRunner().invoke(main, [
        "export-positions", "--out", str(out), "--summary-json", str(summary), "--quiet",
        "--embedded-sandbox", "--sandbox-accounts", "2", "--sandbox-positions", "1"],
        catch_exceptions=False)
    assert result.exit_code == 1
    assert "Traceback" not in result.stderr
    error, counts, left = result.stderr.splitlines()  # with --quiet too: what it left
    assert error == "export failed unexpectedly: RuntimeError: boom second line"
    assert counts.startswith("Export not complete: 0 positions of 0 accounts exported: ")
    assert left == f"Nothing was written to {out}"
    assert json.loads(summary.read_text())["exit_status"] == 1
    assert not out.exists()
