"""``upvest-async`` run as a user runs it: a subprocess, against the embedded sandbox."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from upvest_async.sandbox import Tenant

CLI = [sys.executable, "-m", "upvest_async"]


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("UPVEST_API_")}
    return {**env, **extra}


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=120,
                          env=env or clean_env())


def test_export_with_embedded_sandbox_uses_the_embedded_sandbox(tmp_path: Path) -> None:
    out = tmp_path / "positions.jsonl"
    result = run("export-positions", "--embedded-sandbox", "--out", str(out),
                 "--sandbox-accounts", "3", "--sandbox-positions", "1100", "--concurrency", "2")
    assert result.returncode == 0, result.stderr
    assert "Using the embedded sandbox at http://127.0.0.1:" in result.stderr
    assert "(3 accounts x 1,100 positions, seed 0;" in result.stderr
    assert "Exported 3,300 positions of 3 accounts" in result.stderr
    assert "pages" in result.stderr and "requests" in result.stderr
    assert "positions/s" in result.stderr
    lines = out.read_text().splitlines()
    expected = list(Tenant(accounts=3, positions_per_account=1100, seed=0).iter_positions())
    assert [json.loads(line) for line in lines] == expected
    assert all(isinstance(json.loads(line)["quantity"], str) for line in lines)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_export_csv_for_chosen_accounts(tmp_path: Path) -> None:
    tenant = Tenant(accounts=4, positions_per_account=50, seed=0)
    wanted = [tenant.account_ids[3], tenant.account_ids[1]]
    accounts_file = tmp_path / "accounts.txt"
    accounts_file.write_text(wanted[1] + "\n")
    out = tmp_path / "positions.csv"
    result = run("export-positions", "--embedded-sandbox", "--out", str(out), "--format", "csv",
                 "--quiet",
                 "--account", wanted[0], "--accounts-file", str(accounts_file),
                 "--sandbox-accounts", "4", "--sandbox-positions", "50")
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(out.read_text().splitlines()))
    expected = [p for account in wanted for p in tenant.positions(account)]
    assert len(rows) == len(expected) == 100
    for row, position in zip(rows, expected, strict=True):
        assert row["account_id"] == position["account_id"]
        assert row["instrument.uuid"] == position["instrument"]["uuid"]
        assert row["instrument.isin"] == position["instrument"].get("isin", "")
        assert row["quantity"] == position["quantity"]
        assert row["locked_for_trading"] == position["locked_for_trading"]


def test_bad_account_id_is_a_usage_error(tmp_path: Path) -> None:
    result = run("export-positions", "--out", str(tmp_path / "x"), "--account", "nope")
    assert result.returncode == 2 and "--account: value #1: 'nope'" in result.stderr
    assert len(result.stderr.splitlines()) == 1 and "Traceback" not in result.stderr
    assert not (tmp_path / "x").exists()


@pytest.fixture
def standalone_sandbox(tmp_path: Path) -> Iterator[Path]:
    env_file = tmp_path / "sandbox.env"
    process = subprocess.Popen(
        [*CLI, "sandbox", "--accounts", "2", "--positions", "30", "--seed", "5",
         "--env-file", str(env_file)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env(),
    )
    try:
        deadline = time.monotonic() + 30
        while not env_file.exists() or not env_file.read_text():
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        yield env_file
    finally:
        process.terminate()
        process.communicate(timeout=10)


def test_export_with_credentials_talks_to_their_base_url(
    standalone_sandbox: Path, tmp_path: Path
) -> None:
    variables = dict(
        line.removeprefix("export ").split("=", 1)
        for line in standalone_sandbox.read_text().splitlines()
    )
    assert set(variables) >= {"UPVEST_API_BASE_URL", "UPVEST_API_CLIENT_ID",
                              "UPVEST_API_HTTP_SIGN_PRIVATE_KEY_BASE64"}
    out = tmp_path / "positions.jsonl"
    result = run("export-positions", "--out", str(out), env=clean_env(**variables))
    assert result.returncode == 0, result.stderr
    assert f"Using {variables['UPVEST_API_BASE_URL']}" in result.stderr
    expected = list(Tenant(accounts=2, positions_per_account=30, seed=5).iter_positions())
    assert [json.loads(line) for line in out.read_text().splitlines()] == expected
