"""The target is never inferred, and failures say what they left (issue 19, parts 1 and 4).

Every test runs the installed command as a user runs it: a subprocess, with an environment the
test builds (no ``UPVEST_API_*`` variable leaks in from outside), against the embedded sandbox
(``--embedded-sandbox``) or a loopback port nothing listens on. Nothing here leaves loopback.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis import strategies as st
from support.keys import PASSPHRASE, p521_key, pem

from upvest_async import ConfigurationError, UpvestClient
from upvest_async.config import KEY_VARIABLES, REQUIRED_VARIABLES, VARIABLES, missing_variables
from upvest_async.sandbox import Tenant

CLI = [sys.executable, "-m", "upvest_async"]
CLIENT_ID = "ebabcf4d-61c3-4942-875c-e265a7c2d062"
TENANT = Tenant(accounts=2, positions_per_account=3, seed=0)
A, B = TENANT.account_ids
SMALL = ["--sandbox-accounts", "2", "--sandbox-positions", "3"]
TYPO = "UPVEST_API_CLIENT_SECRETT"


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("UPVEST_API_")}
    return {**env, "COLUMNS": "400", **extra}


def run(*args: str, env: dict[str, str] | None = None,
        cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=120,
                          env=clean_env() if env is None else env, cwd=cwd)


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def key_text() -> str:
    return pem(p521_key(), passphrase=PASSPHRASE).decode()


def files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


# --- part 1: a complete configuration, or exit 2 with no file ---------------------------------

def values(directory: Path, port: int) -> dict[str, str]:
    """A valid value for every variable the package reads (the key encrypted, so the
    passphrase belongs to a complete configuration)."""
    key = directory / "key.pem"
    key.write_text(key_text())
    return {
        "UPVEST_API_BASE_URL": f"http://127.0.0.1:{port}",
        "UPVEST_API_CLIENT_ID": CLIENT_ID,
        "UPVEST_API_CLIENT_SECRET": "not-a-real-secret",
        "UPVEST_API_KEY_ID": "key-1",
        "UPVEST_API_SCOPES": "positions:read,portfolios:admin",
        "UPVEST_API_HTTP_SIGN_PRIVATE_KEY_FILENAME": str(key),
        "UPVEST_API_HTTP_SIGN_PRIVATE_KEY": key_text().replace("\n", "\\n"),
        "UPVEST_API_HTTP_SIGN_PRIVATE_KEY_BASE64": base64.b64encode(key_text().encode()).decode(),
        "UPVEST_API_HTTP_SIGN_PRIVATE_KEY_PASSPHRASE": PASSPHRASE,
    }


def test_the_strategy_knows_every_variable(tmp_path: Path) -> None:
    assert set(values(tmp_path, 1)) == VARIABLES


@st.composite
def environments(draw: st.DrawFn) -> dict[str, str]:
    """Each variable absent, empty (counts as not set) or set: half of the draws are any
    subset, half a complete configuration with up to two variables then unset or emptied."""
    if draw(st.booleans()):
        return draw(st.fixed_dictionaries(
            {name: st.sampled_from(["absent", "set", "set", "empty"])
             for name in sorted(VARIABLES)}))
    chosen = dict.fromkeys(sorted(VARIABLES), "absent")
    for name in [*REQUIRED_VARIABLES, "UPVEST_API_HTTP_SIGN_PRIVATE_KEY_PASSPHRASE",
                 draw(st.sampled_from(KEY_VARIABLES))]:
        chosen[name] = "set"
    for name in ("UPVEST_API_BASE_URL", "UPVEST_API_SCOPES"):
        chosen[name] = draw(st.sampled_from(["absent", "set"]))
    for name in draw(st.lists(st.sampled_from(sorted(VARIABLES)), max_size=2)):
        chosen[name] = draw(st.sampled_from(["absent", "empty", "set"]))
    return chosen


@settings(max_examples=25, deadline=None, phases=[Phase.generate, Phase.shrink],
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(chosen=environments(), typo=st.booleans(), quiet=st.booleans(),
       command=st.sampled_from(["export-positions", "rebalance"]))
def test_any_environment_is_a_complete_configuration_or_exit_2_with_no_file(
    tmp_path_factory: pytest.TempPathFactory, chosen: dict[str, str], typo: bool, quiet: bool,
    command: str,
) -> None:
    directory = tmp_path_factory.mktemp("env")
    work = directory / "work"
    work.mkdir()
    given_values = values(directory, closed_port())
    environ = {name: given_values[name] if state == "set" else ""
               for name, state in chosen.items() if state != "absent"}
    if typo:
        environ[TYPO] = "x"
    set_names = {name for name, value in environ.items() if value and name in VARIABLES}
    keys = set_names & set(KEY_VARIABLES)
    complete = set(REQUIRED_VARIABLES) <= set_names and len(keys) == 1 and \
        "UPVEST_API_HTTP_SIGN_PRIVATE_KEY_PASSPHRASE" in set_names
    if complete and "UPVEST_API_BASE_URL" not in set_names:
        command = "rebalance"  # a dry run: the default base URL is not loopback, send nothing
    out = work / "out.jsonl"
    args = ([command, "--out", str(out), "--account", A, "--max-retries", "0"]
            + (["--dry-run"] if command == "rebalance" else [])
            + (["--quiet"] if quiet else []))
    result = run(*args, env=clean_env(**environ))
    assert "Traceback" not in result.stderr
    event(f"{command}: {'complete' if complete else 'incomplete'}, exit {result.returncode}")
    if not complete:
        assert result.returncode == 2, result.stderr
        assert files(work) == [], "an incomplete configuration wrote a file"
        [line] = result.stderr.splitlines()
        assert line.startswith(f"python -m upvest_async {command}: error: ")
        for name in missing_variables(environ):
            assert name in line
        if missing_variables(environ):
            assert "--embedded-sandbox" in line
        elif len(keys) > 1:
            assert "set only one key source" in line
        else:  # the encrypted key without its passphrase
            assert "passphrase" in line.lower()
        assert (TYPO in line) == typo  # a typo may be the cause: named in the error
        return
    lines = result.stderr.splitlines()
    assert (f"warning: {TYPO} is not a variable upvest-async reads" in result.stderr) == typo
    if command == "rebalance":
        assert result.returncode == 0, result.stderr
        assert json.loads(out.read_text())["status"] == "planned"
    else:  # sent to a closed loopback port: the account failed, and the output says so
        assert result.returncode == 1, result.stderr
        assert any(line.startswith(f"account {A} failed: ") for line in lines)
        assert f"{out} was not written" in result.stderr
    if not quiet and command == "export-positions":
        assert "Using http://127.0.0.1:" in lines[int(typo)]


def test_nothing_set_names_every_variable_and_the_flag(tmp_path: Path) -> None:
    for quiet in ([], ["--quiet"]):
        result = run("export-positions", "--out", str(tmp_path / "p.jsonl"), *quiet)
        assert result.returncode == 2
        [line] = result.stderr.splitlines()
        assert "no UPVEST_API_* configuration: missing UPVEST_API_CLIENT_ID" in line
        assert all(name in line for name in [*REQUIRED_VARIABLES, *KEY_VARIABLES])
        assert line.endswith("or run against the local simulator with --embedded-sandbox")
        assert files(tmp_path) == []


@pytest.mark.parametrize("lone", ["UPVEST_API_BASE_URL", "UPVEST_API_SCOPES",
                                  "UPVEST_API_HTTP_SIGN_PRIVATE_KEY_PASSPHRASE",
                                  "UPVEST_API_HTTP_SIGN_PRIVATE_KEY_BASE64", TYPO])
def test_a_lone_variable_no_longer_means_the_embedded_sandbox(tmp_path: Path,
                                                             lone: str) -> None:
    value = "x" if lone == TYPO else values(tmp_path, 9)[lone]
    work = tmp_path / "work"
    work.mkdir()
    result = run("rebalance", "--out", str(work / "r.jsonl"), "--account", A,
                 "--batch-id", "b", "--quiet", env=clean_env(**{lone: value}))
    assert result.returncode == 2
    assert lone in result.stderr and "missing UPVEST_API_CLIENT_ID" in result.stderr
    assert "embedded sandbox at" not in result.stderr
    assert files(work) == []


@pytest.mark.parametrize("command", ["export-positions", "rebalance"])
def test_the_sandbox_options_need_the_flag(tmp_path: Path, command: str) -> None:
    result = run(command, "--out", str(tmp_path / "o.jsonl"), "--account", A, "--batch-id",
                 "b", "--sandbox-positions", "3") if command == "rebalance" else run(
        command, "--out", str(tmp_path / "o.jsonl"), "--sandbox-seed", "1")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"python -m upvest_async {command}: error: --sandbox-"
        f"{'positions' if command == 'rebalance' else 'seed'}: sizes the embedded sandbox's "
        "tenant: it needs --embedded-sandbox"]
    assert files(tmp_path) == []


def test_the_flag_with_a_configured_api_is_refused_as_ambiguous(tmp_path: Path) -> None:
    env = clean_env(**{name: value for name, value in values(tmp_path, 9).items()
                       if name in REQUIRED_VARIABLES})
    work = tmp_path / "work"
    work.mkdir()
    result = run("export-positions", "--embedded-sandbox", "--out", str(work / "p.jsonl"),
                 "--quiet", env=env)
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert line.startswith("python -m upvest_async export-positions: error: --embedded-sandbox: "
                           "UPVEST_API_CLIENT_ID, UPVEST_API_CLIENT_SECRET, UPVEST_API_KEY_ID "
                           "are set")
    assert "ambiguous" in line and "not-a-real-secret" not in line
    assert files(work) == []


def test_the_embedded_sandbox_with_quiet_prints_nothing_but_a_typo(tmp_path: Path) -> None:
    out = tmp_path / "p.jsonl"
    result = run("export-positions", "--embedded-sandbox", "--out", str(out), "--quiet", *SMALL)
    assert result.returncode == 0 and result.stderr == ""
    assert len(out.read_text().splitlines()) == 6
    result = run("export-positions", "--embedded-sandbox", "--out", str(out), "--quiet", *SMALL,
                 env=clean_env(**{TYPO: "x", "UPVEST_API_SCOPES": ""}))
    assert result.returncode == 0
    assert result.stderr.splitlines() == [
        f"warning: {TYPO} is not a variable upvest-async reads (a typo?); ignored"]


def test_from_env_refuses_the_same_environments() -> None:
    with pytest.raises(ConfigurationError) as caught:
        UpvestClient.from_env({"UPVEST_API_BASE_URL": "https://api.upvest.co", TYPO: "s"})
    message = str(caught.value)
    assert message.startswith("incomplete UPVEST_API_* configuration (set: UPVEST_API_BASE_URL)")
    assert all(name in message for name in [*REQUIRED_VARIABLES, *KEY_VARIABLES, TYPO])
    complete = {"UPVEST_API_CLIENT_ID": CLIENT_ID, "UPVEST_API_CLIENT_SECRET": "s",
                "UPVEST_API_KEY_ID": "k", "UPVEST_API_HTTP_SIGN_PRIVATE_KEY": key_text(),
                "UPVEST_API_HTTP_SIGN_PRIVATE_KEY_PASSPHRASE": PASSPHRASE}
    assert str(UpvestClient.from_env(complete).base_url) == "https://sandbox.upvest.co"
    both = {**complete, "UPVEST_API_HTTP_SIGN_PRIVATE_KEY_BASE64": "eA=="}
    with pytest.raises(ConfigurationError, match="set only one key source"):
        UpvestClient.from_env(both)
    with pytest.raises(ConfigurationError, match="missing UPVEST_API_KEY_ID"):
        UpvestClient.from_env({**complete, "UPVEST_API_KEY_ID": ""})  # empty is not set


# --- part 4: failures that say what they left ---------------------------------------------------

def test_a_failed_export_prints_the_summary_and_names_the_partial_file(tmp_path: Path) -> None:
    missing = "7b8f2c1e-0000-4000-8000-000000000001"
    out = tmp_path / "p.jsonl"
    result = run("export-positions", "--embedded-sandbox", *SMALL, "--out", str(out),
                 "--account", A, "--account", missing, "--quiet")
    assert result.returncode == 1
    failed, counts, left = result.stderr.splitlines()  # also with --quiet
    assert failed.startswith(f"account {missing} failed: 404 ")
    assert counts.startswith("Export not complete (1 account failed): 3 positions of "
                             "1 account exported: ")
    assert left == (f"{out} was not written; the 1 account exported is in {out}.partial; "
                    "without --checkpoint that file is for inspection only: a re-run exports "
                    "everything again")
    assert not out.exists() and len(Path(f"{out}.partial").read_text().splitlines()) == 3

    checkpoint = tmp_path / "c.ckpt"
    result = run("export-positions", "--embedded-sandbox", *SMALL, "--out", str(out),
                 "--account", missing, "--account", A, "--account", B,
                 "--checkpoint", str(checkpoint), "--summary-json", str(tmp_path / "s.json"))
    assert result.returncode == 1
    assert (f"{out} was not written; {checkpoint} records the 2 accounts exported, in "
            f"{out}.partial: re-run the same command to retry the failed accounts"
            ) in result.stderr
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["partial"] == f"{out}.partial" and summary["complete"] is False


def test_the_wording_is_singular_for_one(tmp_path: Path) -> None:
    result = run("rebalance", "--embedded-sandbox", "--sandbox-accounts", "1",
                 "--sandbox-positions", "1", "--out", str(tmp_path / "r.jsonl"), "--batch-id",
                 "b", "--all-accounts")
    assert result.returncode == 0, result.stderr
    summary = result.stderr.splitlines()[-1]
    assert summary.startswith("Rebalanced 1 account: 1 triggered (0 replayed), ")
    assert ", 1 execution, 3 requests (1 token request), " in summary  # token, list, trigger
    assert "(1 account x 1 position, seed 0;" in result.stderr
    result = run("export-positions", "--embedded-sandbox", "--sandbox-accounts", "1",
                 "--sandbox-positions", "1", "--out", str(tmp_path / "p.jsonl"))
    assert result.returncode == 0, result.stderr
    assert "Exported 1 position of 1 account to " in result.stderr
    assert " 1 pages" not in result.stderr and "1 accounts" not in result.stderr


def test_a_dry_run_with_named_accounts_starts_no_sandbox(tmp_path: Path) -> None:
    out = tmp_path / "plan.jsonl"
    started = time.monotonic()
    result = run("rebalance", "--embedded-sandbox", *SMALL, "--out", str(out), "--dry-run",
                 "--account", A, "--account", B, "--batch-id", "b")
    assert result.returncode == 0, result.stderr
    assert "embedded sandbox" not in result.stderr  # not started: nothing to read or send
    assert result.stdout.count("POST /portfolios/rebalancings/executions") == 2
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["status"] for r in rows] == ["planned", "planned"]
    assert "Rebalanced 2 accounts: 0 triggered" in result.stderr
    assert "0 requests (0 token requests)" in result.stderr
    assert time.monotonic() - started < 60
    listed = run("rebalance", "--embedded-sandbox", *SMALL, "--out", str(tmp_path / "all.jsonl"),
                 "--dry-run", "--all-accounts")  # the listing needs the sandbox
    assert listed.returncode == 0 and "Using the embedded sandbox at" in listed.stderr


def _interrupt(args: list[str], delay: float) -> tuple[int, str]:
    """Run the command as a terminal's foreground job and press Ctrl-C after ``delay``
    seconds (SIGINT to the whole process group, as the terminal sends it)."""
    process = subprocess.Popen([*CLI, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True, env=clean_env(), start_new_session=True)
    time.sleep(delay)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGINT)
    _, err = process.communicate(timeout=60)
    return process.returncode, err


@pytest.mark.parametrize("delay", [0.4, 0.6, 0.8, 1.0, 1.3])
def test_ctrl_c_during_start_up_exits_130_without_traceback_or_false_hint(
    tmp_path: Path, delay: float
) -> None:
    out, checkpoint = tmp_path / "p.jsonl", tmp_path / "c.ckpt"
    status, err = _interrupt(["export-positions", "--embedded-sandbox", "--out", str(out),
                              "--checkpoint", str(checkpoint), "--sandbox-accounts", "40",
                              "--sandbox-positions", "2000", "--concurrency", "1"], delay)
    if status == -signal.SIGINT:
        pytest.skip("interrupted while Python imported the package, before any of its code")
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert status in (130, 0), err
    if status == 0:
        assert out.exists()
        return
    last = err.strip().splitlines()[-1]
    # "upvest-async: interrupted" when Ctrl-C came while the command's module was imported.
    assert last.startswith(("Interrupted", "upvest-async: interrupted")), err
    if "re-run the same command to export the rest" in last:
        assert checkpoint.exists() and '"account_id"' in checkpoint.read_text()
        assert Path(f"{out}.partial").exists()
    else:
        assert last.endswith(("nothing to resume", "upvest-async: interrupted")), last
        assert not checkpoint.exists() or '"account_id"' not in checkpoint.read_text()
