"""The bulk commands run as a user runs them (a subprocess) against a sandbox served by the
test's own event loop, so the test can look inside the sandbox afterwards."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from upvest_async.sandbox import Sandbox
from upvest_async.sandbox.faults import Faults

CLI = [sys.executable, "-m", "upvest_async"]


def env_for(sandbox: Sandbox) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("UPVEST_API_")}
    return {**env, **sandbox.env(key_base64=True)}


async def run(sandbox: Sandbox, *args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        *CLI, *args, env=env_for(sandbox), stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


@pytest.fixture
async def tenant_sandbox() -> AsyncIterator[Sandbox]:
    async with Sandbox(accounts=12, positions_per_account=700, seed=3) as running:
        yield running


def expected_lines(sandbox: Sandbox, accounts: list[str] | None = None) -> list[dict[str, object]]:
    return [p for a in accounts or sandbox.tenant.account_ids for p in sandbox.tenant.positions(a)]


async def test_export_to_stdout_with_summary_json(tenant_sandbox: Sandbox, tmp_path: Path) -> None:
    summary = tmp_path / "summary.json"
    status, out, _ = await run(tenant_sandbox, "export-positions", "--out", "-", "--quiet",
                               "--summary-json", str(summary))
    assert status == 0
    assert [json.loads(line) for line in out.splitlines()] == expected_lines(tenant_sandbox)
    data = json.loads(summary.read_text())
    assert data["exit_status"] == 0 and data["positions"] == 12 * 700
    assert data["accounts"] == 12 and data["failed"] == []


async def test_failed_account_is_listed_and_exit_status_is_1(
    tenant_sandbox: Sandbox, tmp_path: Path
) -> None:
    good = tenant_sandbox.tenant.account_ids[:2]
    missing = str(uuid.uuid4())
    out, summary = tmp_path / "p.jsonl", tmp_path / "s.json"
    status, _, err = await run(
        tenant_sandbox, "export-positions", "--out", str(out), "--account", good[0],
        "--account", missing, "--account", good[1], "--summary-json", str(summary), "--quiet")
    assert status == 1 and f"account {missing} failed" in err
    data = json.loads(summary.read_text())
    assert data["exit_status"] == 1 and data["accounts"] == 2
    [failure] = data["failed"]
    assert failure["account_id"] == missing and "404" in failure["error"]
    assert failure["request_id"] in {e.request_id for e in tenant_sandbox.state.journal}
    assert not out.exists()  # nothing that looks complete: the work stays in <out>.partial
    partial = out.with_name(out.name + ".partial")
    lines = [json.loads(line) for line in partial.read_text().splitlines()]
    assert lines == expected_lines(tenant_sandbox, good)


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGKILL])
async def test_interrupted_export_resumes_from_its_checkpoint(
    tenant_sandbox: Sandbox, tmp_path: Path, stop: signal.Signals
) -> None:
    tenant_sandbox.state.latency = 0.05  # slow enough to interrupt part-way
    read: set[str] = set()

    def slow_down_after_four_accounts(account: str) -> None:
        # From the 5th account on, every request waits 2 s (at most 2 in flight), so the
        # export cannot finish before the signal lands, however loaded the machine.
        read.add(account)
        if len(read) > 4:
            tenant_sandbox.state.latency = 2.0

    tenant_sandbox.tenant.on_positions_read = slow_down_after_four_accounts
    out, checkpoint = tmp_path / "positions.jsonl", tmp_path / "export.checkpoint"
    args = ["export-positions", "--out", str(out), "--checkpoint", str(checkpoint),
            "--concurrency", "2", "--quiet"]
    process = await asyncio.create_subprocess_exec(
        *CLI, *args, env=env_for(tenant_sandbox), stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    for _ in range(600):  # until at least 3 accounts are recorded
        if checkpoint.exists() and checkpoint.read_text().count('"account_id"') >= 3:
            break
        await asyncio.sleep(0.02)
    else:
        raise AssertionError("the export made no progress")
    process.send_signal(stop)
    _, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == (130 if stop == signal.SIGINT else -9), err.decode()
    assert not out.exists()  # nothing that looks complete
    partial = out.with_name(out.name + ".partial")
    assert partial.exists()
    if stop == signal.SIGKILL:  # simulate a crash in the middle of writing an account
        with partial.open("ab") as stream:
            stream.write(b'{"account_id": "torn')
    done_before = checkpoint.read_text().count('"account_id"')

    tenant_sandbox.tenant.on_positions_read = None
    tenant_sandbox.state.latency = 0.0
    status, _, err_text = await run(tenant_sandbox, *args, "--summary-json",
                                    str(tmp_path / "s.json"))
    assert status == 0, err_text
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert lines == expected_lines(tenant_sandbox)  # no gap, no duplicate, same order
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["skipped"] == done_before and summary["accounts"] == 12 - done_before
    assert not partial.exists()


async def test_rebalance_batch_twice_under_lost_responses_creates_one_execution_each(
    tmp_path: Path,
) -> None:
    async with Sandbox(accounts=30, positions_per_account=1, seed=4,
                       faults=Faults(seed=9, lost_response_rate=0.5)) as sandbox:
        reports = []
        for attempt in range(2):
            report = tmp_path / f"report-{attempt}.jsonl"
            status, _, err = await run(sandbox, "rebalance", "--out", str(report),
                                       "--all-accounts", "--batch-id", "2026-11-21-nightly",
                                       "--concurrency", "8", "--max-retries", "10", "--quiet")
            assert status == 0, err
            reports.append([json.loads(line) for line in report.read_text().splitlines()])
        first, second = reports
        assert [r["account_id"] for r in first] == sandbox.tenant.account_ids
        assert all(set(r) == {"account_id", "batch_id", "execution_id", "status", "attempts",
                              "error", "request_id", "idempotency_key", "replayed"}
                   for r in first)
        assert all(r["replayed"] for r in second)  # the sandbox marks its replays
        assert [r["execution_id"] for r in first] == [r["execution_id"] for r in second]
        assert all(r["status"] == "triggered" for r in first + second)
        assert len(sandbox.portfolios.executions) == 30
        assert sandbox.counters.created["execution"] == 30
        assert sandbox.counters.duplicates == 0
        assert sandbox.counters.faults.get("lost-drop", 0) + sandbox.counters.faults.get(
            "lost-504", 0) > 0
        token_requests = sandbox.counters.token_requests
        assert token_requests == 2  # one per run: the admin token also lists the accounts


async def test_rebalance_dry_run_and_groups(tenant_sandbox: Sandbox, tmp_path: Path) -> None:
    report = tmp_path / "plan.jsonl"
    status, out, _ = await run(tenant_sandbox, "rebalance", "--out", str(report), "--dry-run",
                               "--all-accounts",
                               "--batch-id", "b", "--group-size", "5", "--quiet")
    assert status == 0
    assert out.count("POST /portfolios/rebalancings/executions") == 3  # 12 accounts / 5
    assert tenant_sandbox.counters.created["execution"] == 0
    assert {json.loads(line)["status"] for line in report.read_text().splitlines()} == {
        "planned"}
    status, _, _ = await run(tenant_sandbox, "rebalance", "--out", str(report), "--batch-id",
                             "b", "--group-size", "5", "--quiet", "--all-accounts")
    rows = [json.loads(line) for line in report.read_text().splitlines()]
    assert status == 0 and len(rows) == 12 and tenant_sandbox.counters.created["execution"] == 3
    assert len({r["execution_id"] for r in rows}) == 3


async def test_usage_errors_exit_2(tenant_sandbox: Sandbox, tmp_path: Path) -> None:
    status, _, err = await run(tenant_sandbox, "export-positions", "--out", "-",
                               "--checkpoint", str(tmp_path / "c"))
    assert status == 2 and "--checkpoint" in err
    accounts = tmp_path / "accounts.txt"
    accounts.write_text("not-an-account\n")
    status, _, err = await run(tenant_sandbox, "rebalance", "--out", str(tmp_path / "r"),
                               "--accounts-file", str(accounts), "--batch-id", "b")
    assert status == 2 and "--accounts-file" in err and "accounts.txt:1" in err
    assert len(err.splitlines()) == 1 and not (tmp_path / "r").exists()
