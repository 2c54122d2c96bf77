"""Fuzz of both bulk commands' arguments (hypothesis, in-process against the embedded sandbox):
every argument vector either runs correctly or exits 2 with one stderr line, no traceback, and
no file created or changed."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from upvest_async.cli import main
from upvest_async.sandbox import Tenant

TENANT = Tenant(accounts=3, positions_per_account=4, seed=0)
A, B, C = TENANT.account_ids
SANDBOX = ["--embedded-sandbox", "--sandbox-accounts", "3", "--sandbox-positions", "4"]

FILES: dict[str, bytes] = {
    "accounts.txt": f"# ours\n{C}\n\n{B}  # second\n".encode(),
    "empty.txt": b"",
    "comments.txt": b"# nothing\n\n   \n",
    "dup.txt": f"{A}\n{A.upper()}\n".encode(),
    "bad.txt": f"{A}\n{{{B}}}\n".encode(),
    "bin.txt": b"\xff\xfe\x00" + A.encode(),
    "notes.txt": b"not a report\n",
    "plain": b"x",
}
GOOD_FILE_IDS = [C, B]

write_paths = st.sampled_from([
    "out.jsonl", "out.csv", "s.json", "c.ckpt", "sub", "missing/x.jsonl", "plain/x",
    "notes.txt", "accounts.txt", "sub/../out.jsonl", "-", "", "/dev/null", "r" * 240,
])
read_paths = st.sampled_from(["accounts.txt", "empty.txt", "comments.txt", "dup.txt",
                              "bad.txt", "bin.txt", "sub", "missing.txt", ""])
ids = st.sampled_from([B, C, B, C, A.upper(), "nope", "", f"{{{A}}}", str(uuid.UUID(int=0))[:-1]])
numbers = st.one_of(st.sampled_from(["0", "1", "2", "-1", "x", "", "10001", "513", "257"]),
                    st.integers(-3, 600).map(str))
batch_ids = st.one_of(st.sampled_from(["b", "", " b", "x" * 201, "a\nb", "nightly-1", "\u200b"]),
                      st.text(max_size=6))
junk = st.sampled_from(["--bogus", "-x", "extra", "--", "--out", "--summary-json",
                        "--batch-id", "--account"])

COMMON = {
    "--out": write_paths, "--summary-json": write_paths, "--concurrency": numbers,
    "--max-retries": numbers, "--account": ids, "--accounts-file": read_paths,
}
REBALANCE = {**COMMON, "--batch-id": batch_ids, "--group-size": numbers}
EXPORT = {**COMMON, "--checkpoint": write_paths,
          "--format": st.sampled_from(["jsonl", "csv", "xml", ""])}
FLAGS = {"rebalance": ["--dry-run", "--all-accounts", "--quiet", "--overwrite"],
         "export-positions": ["--quiet"]}


@st.composite
def argument_vectors(draw: st.DrawFn) -> tuple[str, list[tuple[str, str | None]]]:
    command = draw(st.sampled_from(["rebalance", "export-positions"]))
    options = REBALANCE if command == "rebalance" else EXPORT
    out = draw(st.one_of(st.just("out.jsonl"), write_paths))
    pairs: list[tuple[str, str | None]] = [("--out", out)]
    if command == "rebalance":
        pairs += [("--batch-id", "b"), ("--account", A)]  # a likely-valid core, then noise
    for _ in range(draw(st.sampled_from([0, 0, 1, 1, 2, 3, 5]))):
        kind = draw(st.integers(0, 9))
        if kind < 7:
            name = draw(st.sampled_from(sorted(options)))
            pairs.append((name, draw(options[name])))
        elif kind < 9:
            pairs.append((draw(st.sampled_from(FLAGS[command])), None))
        else:
            pairs.append((draw(junk), None))
    if draw(st.booleans()):
        pairs = draw(st.permutations(pairs))
    if draw(st.integers(0, 4)) == 0:  # drop one, e.g. the required --out
        pairs.pop(draw(st.integers(0, len(pairs) - 1)))
    return command, pairs


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() if p.is_file() else b"<dir>"
            for p in sorted(root.rglob("*"))}


def absolute(root: Path, value: str) -> str:
    return value if value in {"", "-"} or value.startswith("/") else str(root / value)


def expected_accounts(pairs: list[tuple[str, str | None]], default: list[str]) -> list[str]:
    names = [name for name, _ in pairs]
    accounts = [str(uuid.UUID(v)) for n, v in pairs if n == "--account" and v]
    files = [v for n, v in pairs if n == "--accounts-file"]
    if files:
        accounts += GOOD_FILE_IDS
    if "--all-accounts" in names or (not accounts and not files):
        return default
    return accounts


def check_success(command: str, pairs: list[tuple[str, str | None]], root: Path,
                  stdout: str) -> None:
    values = dict(pairs)
    accounts = expected_accounts(pairs, TENANT.account_ids)
    out = values["--out"]
    assert out is not None
    if command == "rebalance":
        report = [json.loads(line) for line in Path(absolute(root, out)).read_text().splitlines()]
        assert [r["account_id"] for r in report] == accounts
        wanted = "planned" if "--dry-run" in values else "triggered"
        assert {r["status"] for r in report} == {wanted}
    else:
        fmt = values.get("--format", "jsonl")
        text = stdout if out == "-" else Path(absolute(root, out)).read_text()
        header = 1 if fmt == "csv" else 0
        assert len(text.splitlines()) == header + 4 * len(accounts)
    leftovers = [p.name for p in root.rglob("*") if p.name.endswith((".tmp", ".partial"))]
    assert not leftovers


@pytest.fixture
def no_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("UPVEST_API_"):
            monkeypatch.delenv(name)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(argument_vectors())
def test_every_argument_vector_runs_or_is_one_line_exit_2(
    no_credentials: None, vector: tuple[str, list[tuple[str, str | None]]]
) -> None:
    command, pairs = vector
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        for name, data in FILES.items():
            (root / name).write_bytes(data)
        (root / "sub").mkdir()
        args = [command]
        for name, value in pairs:
            args.append(name)
            if value is not None:
                is_path = name in {"--out", "--summary-json", "--checkpoint", "--accounts-file"}
                args.append(absolute(root, value) if is_path else value)
        before = snapshot(root)
        with contextlib.chdir(root):  # a swallowed option value is a relative path
            result = CliRunner().invoke(main, [*args, *SANDBOX], prog_name="upvest-async")
        assert result.exception is None or isinstance(result.exception, SystemExit), (
            args, result.exception)
        assert "Traceback" not in result.stderr, args
        event(f"exit {result.exit_code} {command}")
        if result.exit_code == 2:
            assert len(result.stderr.splitlines()) == 1, (args, result.stderr)
            assert result.stderr.startswith(f"upvest-async {command}: error: "), result.stderr
            assert snapshot(root) == before, args
        else:
            assert result.exit_code == 0, (args, result.exit_code, result.stderr)
            check_success(command, pairs, root, result.stdout)
