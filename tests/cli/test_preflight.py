"""Pre-flight of the bulk commands, in-process (click's CliRunner, embedded sandbox): every
usage error exits 2 with one stderr line naming the option, before anything is sent, and leaves
no file behind."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from upvest_async.cli import main, preflight
from upvest_async.sandbox import Tenant

TENANT = Tenant(accounts=3, positions_per_account=4, seed=0)
A, B, C = TENANT.account_ids
SANDBOX = ["--embedded-sandbox", "--sandbox-accounts", "3", "--sandbox-positions", "4"]


@pytest.fixture(autouse=True)
def no_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("UPVEST_API_"):
            monkeypatch.delenv(name)


def invoke(*args: str) -> Result:
    args_list = list(args)
    if args_list[0] == "export-positions" and "--batch-id" in args_list:  # rebalance only
        at = args_list.index("--batch-id")
        del args_list[at:at + 2]
    return CliRunner().invoke(main, [*args_list, *SANDBOX], catch_exceptions=False,
                              prog_name="upvest-async")


def listing(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() if p.is_file() else b"<dir>"
            for p in sorted(directory.rglob("*"))}


def assert_usage_error(result: Result, *fragments: str) -> None:
    assert result.exit_code == 2, (result.exit_code, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr and "Usage:" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def refused(tmp_path: Path, *args: str, expect: tuple[str, ...]) -> None:
    before = listing(tmp_path)
    assert_usage_error(invoke(*args), *expect)
    assert listing(tmp_path) == before  # nothing created, nothing changed


def write(path: Path, text: str | bytes) -> Path:
    if isinstance(text, str):
        text = text.encode()
    path.write_bytes(text)
    return path


# --- rebalance: scope and batch id -----------------------------------------------------------

def test_rebalance_without_an_account_option_is_refused(tmp_path: Path) -> None:
    refused(tmp_path, "rebalance", "--out", str(tmp_path / "r.jsonl"), "--batch-id", "b",
            expect=("--all-accounts", "never inferred"))


def test_all_accounts_excludes_the_other_account_options(tmp_path: Path) -> None:
    refused(tmp_path, "rebalance", "--out", str(tmp_path / "r.jsonl"), "--batch-id", "b",
            "--all-accounts", "--account", A, expect=("--all-accounts", "cannot be combined"))


def test_all_accounts_rebalances_every_configured_account(tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    result = invoke("rebalance", "--out", str(out), "--batch-id", "b", "--all-accounts",
                    "--quiet")
    assert result.exit_code == 0, result.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["account_id"] for r in rows] == TENANT.account_ids
    assert {r["status"] for r in rows} == {"triggered"} and {r["batch_id"] for r in rows} == {"b"}


def test_a_batch_id_is_required_to_send(tmp_path: Path) -> None:
    refused(tmp_path, "rebalance", "--out", str(tmp_path / "r.jsonl"), "--account", A,
            expect=("--batch-id", "required unless --dry-run"))
    result = invoke("rebalance", "--out", str(tmp_path / "r.jsonl"), "--account", A,
                    "--dry-run", "--quiet")
    assert result.exit_code == 0, result.stderr
    assert json.loads((tmp_path / "r.jsonl").read_text())["status"] == "planned"


@pytest.mark.parametrize(("batch_id", "rule"), [
    ("", "must not be empty"),
    ("x" * 201, "at most 200"),
    ("nightly\n2", "control"),
    ("a\x00b", "control"),
    ("a\u200bb", "control or format"),
    (" nightly", "white space"),
    ("nightly\udcff", "UTF-8"),
])
def test_bad_batch_ids_are_refused(tmp_path: Path, batch_id: str, rule: str) -> None:
    refused(tmp_path, "rebalance", "--out", str(tmp_path / "r.jsonl"), "--account", A,
            "--batch-id", batch_id, expect=("--batch-id", rule))


# --- account lists ----------------------------------------------------------------------------

@pytest.mark.parametrize("command", ["rebalance", "export-positions"])
@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n  \n#another\n"])
def test_an_accounts_file_without_ids_is_refused(tmp_path: Path, command: str, text: str) -> None:
    accounts = write(tmp_path / "accounts.txt", text)
    refused(tmp_path, command, "--out", str(tmp_path / "o.jsonl"), "--batch-id", "b",
            "--accounts-file", str(accounts), expect=("--accounts-file", "lists no account id"))


@pytest.mark.parametrize("command", ["rebalance", "export-positions"])
def test_duplicates_compared_as_uuids_name_both_lines(tmp_path: Path, command: str) -> None:
    accounts = write(tmp_path / "accounts.txt", f"# header\n{A}\n{B}  # note\n\n{A.upper()}\n")
    refused(tmp_path, command, "--out", str(tmp_path / "o.jsonl"), "--batch-id", "b",
            "--accounts-file", str(accounts),
            expect=("--accounts-file", f"account {A} is listed twice", "accounts.txt:2 and ",
                    "accounts.txt:5"))


def test_duplicates_across_account_and_file(tmp_path: Path) -> None:
    accounts = write(tmp_path / "accounts.txt", f"{B}\n")
    refused(tmp_path, "rebalance", "--out", str(tmp_path / "o.jsonl"), "--batch-id", "b",
            "--account", A, "--account", B.upper(), "--accounts-file", str(accounts),
            expect=(f"account {B} is listed twice", "--account #2 and ", "accounts.txt:1"))


@pytest.mark.parametrize("command", ["rebalance", "export-positions"])
def test_a_malformed_id_names_its_line(tmp_path: Path, command: str) -> None:
    accounts = write(tmp_path / "accounts.txt", f"{A}\n\n{{{B}}}\n")
    refused(tmp_path, command, "--out", str(tmp_path / "o.jsonl"), "--batch-id", "b",
            "--accounts-file", str(accounts),
            expect=("--accounts-file", "accounts.txt:3", "is not an account id"))


@pytest.mark.parametrize("command", ["rebalance", "export-positions"])
def test_a_non_utf8_accounts_file_is_refused(tmp_path: Path, command: str) -> None:
    accounts = write(tmp_path / "accounts.txt", A.encode() + b"\n\xff\xfe" + B.encode())
    refused(tmp_path, command, "--out", str(tmp_path / "o.jsonl"), "--batch-id", "b",
            "--accounts-file", str(accounts),
            expect=("--accounts-file", "accounts.txt:2 is not UTF-8"))


def test_a_bom_and_crlf_lines_are_accepted(tmp_path: Path) -> None:
    accounts = write(tmp_path / "accounts.txt", f"\ufeff{A}\r\n{C}\r\n")
    out = tmp_path / "o.jsonl"
    result = invoke("rebalance", "--out", str(out), "--batch-id", "b", "--quiet",
                    "--accounts-file", str(accounts))
    assert result.exit_code == 0, result.stderr
    assert [json.loads(line)["account_id"] for line in out.read_text().splitlines()] == [A, C]


@pytest.mark.parametrize("command", ["rebalance", "export-positions"])
def test_an_accounts_file_that_is_a_directory_or_missing(tmp_path: Path, command: str) -> None:
    (tmp_path / "dir").mkdir()
    refused(tmp_path, command, "--out", str(tmp_path / "o.jsonl"), "--batch-id", "b",
            "--accounts-file", str(tmp_path / "dir"), expect=("--accounts-file", "directory"))
    refused(tmp_path, command, "--out", str(tmp_path / "o.jsonl"), "--batch-id", "b",
            "--accounts-file", str(tmp_path / "missing"), expect=("--accounts-file",))


# --- paths written ----------------------------------------------------------------------------

def rebalance_args(tmp_path: Path, out: Path | str, *extra: str) -> list[str]:
    return ["rebalance", "--out", str(out), "--batch-id", "b", "--account", A, *extra]


def test_missing_directory_and_path_under_a_file(tmp_path: Path) -> None:
    refused(tmp_path, *rebalance_args(tmp_path, tmp_path / "missing" / "r.jsonl"),
            expect=("--out", "does not exist"))
    write(tmp_path / "file", "x")
    refused(tmp_path, *rebalance_args(tmp_path, tmp_path / "file" / "r.jsonl"),
            expect=("--out", "is not a directory"))
    refused(tmp_path, "export-positions", "--out", str(tmp_path / "o.jsonl"),
            "--summary-json", str(tmp_path / "file" / "s.json"),
            expect=("--summary-json", "is not a directory"))


def test_a_directory_or_device_as_out(tmp_path: Path) -> None:
    refused(tmp_path, *rebalance_args(tmp_path, tmp_path), expect=("--out", "directory"))
    refused(tmp_path, *rebalance_args(tmp_path, "/dev/null"),
            expect=("--out", "not a regular file"))
    refused(tmp_path, "export-positions", "--out", "/dev/null",
            expect=("--out", "not a regular file"))
    refused(tmp_path, *rebalance_args(tmp_path, "-"), expect=("--out", "standard output"))


def test_a_read_only_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Tests run as root, for whom chmod does not bite: pretend the kernel says EACCES.
    real = os.access
    monkeypatch.setattr(preflight.os, "access",
                        lambda path, mode: False if Path(path) == tmp_path else real(path, mode))
    refused(tmp_path, *rebalance_args(tmp_path, tmp_path / "r.jsonl"),
            expect=("--out", "is not writable"))
    refused(tmp_path, "export-positions", "--out", str(tmp_path / "o.csv"),
            expect=("--out", "is not writable"))


def test_the_same_path_twice(tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    refused(tmp_path, *rebalance_args(tmp_path, out, "--summary-json",
                                      str(tmp_path / "." / "r.jsonl")),
            expect=("--summary-json", "same file as --out"))
    (tmp_path / "link").symlink_to(tmp_path)
    refused(tmp_path, "export-positions", "--out", str(tmp_path / "o.jsonl"), "--checkpoint",
            str(tmp_path / "link" / "o.jsonl"), expect=("--checkpoint", "same file as --out"))
    refused(tmp_path, "export-positions", "--out", str(tmp_path / "o.jsonl"), "--checkpoint",
            str(tmp_path / "c"), "--summary-json", str(tmp_path / "o.jsonl.partial"),
            expect=("--summary-json", "same file as --out (its work file)"))
    accounts = write(tmp_path / "accounts.txt", A + "\n")
    refused(tmp_path, "rebalance", "--out", str(accounts), "--batch-id", "b",
            "--accounts-file", str(accounts), expect=("--out", "same file as --accounts-file"))


def test_a_file_name_too_long(tmp_path: Path) -> None:
    refused(tmp_path, *rebalance_args(tmp_path, tmp_path / ("r" * 250)),
            expect=("--out", "file name longer than"))


@pytest.mark.parametrize("value", ["0", "513", "-1", "many"])
def test_concurrency_outside_its_documented_range(tmp_path: Path, value: str) -> None:
    refused(tmp_path, *rebalance_args(tmp_path, tmp_path / "r.jsonl", "--concurrency", value),
            expect=("--concurrency",))


def test_click_errors_are_one_line_too(tmp_path: Path) -> None:
    refused(tmp_path, "rebalance", "--bogus", expect=("--bogus",))
    refused(tmp_path, "export-positions", "--account", A, expect=("--out",))
    refused(tmp_path, "export-positions", "--out", "-", "--checkpoint", str(tmp_path / "c"),
            expect=("--checkpoint", "standard output"))


# --- an existing report at --out ---------------------------------------------------------------

def test_a_report_of_another_batch_is_kept_unless_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    assert invoke(*rebalance_args(tmp_path, out, "--quiet")).exit_code == 0
    refused(tmp_path, "rebalance", "--out", str(out), "--batch-id", "other", "--account", A,
            expect=("--out", "report of batch 'b', not 'other'", "--overwrite"))
    result = invoke("rebalance", "--out", str(out), "--batch-id", "other", "--account", A,
                    "--overwrite", "--quiet")
    assert result.exit_code == 0, result.stderr
    assert json.loads(out.read_text())["batch_id"] == "other"


def test_a_file_that_is_not_a_report_is_kept(tmp_path: Path) -> None:
    write(tmp_path / "notes.txt", "my notes\n")
    refused(tmp_path, *rebalance_args(tmp_path, tmp_path / "notes.txt"),
            expect=("--out", "notes.txt:1 is not a line of a rebalance report"))


def test_a_dry_run_never_replaces_a_report_of_sent_triggers(tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    assert invoke(*rebalance_args(tmp_path, out, "--quiet")).exit_code == 0
    refused(tmp_path, *rebalance_args(tmp_path, out, "--dry-run"), expect=("--out", "dry-run"))


def test_a_rerun_with_other_groups_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    args = ["rebalance", "--out", str(out), "--batch-id", "b", "--account", A, "--account", B]
    assert invoke(*args, "--quiet").exit_code == 0
    refused(tmp_path, *args, "--group-size", "2", expect=("--out", "idempotency key"))
    refused(tmp_path, "rebalance", "--out", str(out), "--batch-id", "b", "--account", A,
            expect=("--out", f"records account {B}"))


@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
def test_a_rerun_of_a_finished_batch_sends_nothing(tmp_path: Path, overwrite: list[str]) -> None:
    out = tmp_path / "r.jsonl"
    assert invoke(*rebalance_args(tmp_path, out, "--quiet")).exit_code == 0
    first = out.read_text()
    result = invoke(*rebalance_args(tmp_path, out, "--summary-json", str(tmp_path / "s.json"),
                                    *overwrite))  # a report of this batch is never replaced
    assert result.exit_code == 0, result.stderr
    assert out.read_text() == first  # the same record, carried over
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["triggered"] == 1 and summary["requests"] == 0


def test_a_swallowed_option_is_not_a_path_nor_a_batch_id(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # "--out --dry-run" would otherwise be a real run to ./--dry-run
    refused(tmp_path, "rebalance", "--out", "--dry-run", "--batch-id", "b", "--account", A,
            expect=("--out", "looks like an option", "./--dry-run"))
    refused(tmp_path, "rebalance", "--out", "r.jsonl", "--batch-id", "--dry-run",
            "--account", A, expect=("--batch-id", "looks like an option"))


def test_an_existing_checkpoint_must_be_one_of_this_export(tmp_path: Path) -> None:
    write(tmp_path / "notes.txt", "my notes\n")
    refused(tmp_path, "export-positions", "--out", str(tmp_path / "o.jsonl"), "--checkpoint",
            str(tmp_path / "notes.txt"),
            expect=("--checkpoint", "not an upvest-async export checkpoint"))
    write(tmp_path / "bin.ckpt", b"\xff\xfe\n")
    refused(tmp_path, "export-positions", "--out", str(tmp_path / "o.jsonl"), "--checkpoint",
            str(tmp_path / "bin.ckpt"),
            expect=("--checkpoint", "not an upvest-async export checkpoint"))


def test_a_plan_of_another_batch_may_be_replaced(tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    plan = invoke("rebalance", "--out", str(out), "--account", A, "--dry-run", "--quiet")
    assert plan.exit_code == 0, plan.stderr
    result = invoke(*rebalance_args(tmp_path, out, "--quiet"))
    assert result.exit_code == 0, result.stderr
    [row] = [json.loads(line) for line in out.read_text().splitlines()]
    assert (row["status"], row["batch_id"]) == ("triggered", "b")
