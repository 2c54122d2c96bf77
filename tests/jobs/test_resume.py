"""Resuming a checkpointed export: one test per kind of damage between runs.

Runs ``export_positions`` in-process against the sandbox; an "interrupted" run is cancelled
after a number of accounts, as Ctrl-C does, and a crash mid-write is simulated by adding the
bytes such a crash leaves behind. Every resume ends byte-identical to an uninterrupted export,
or is refused with :class:`CheckpointError` before any request, leaving every file as it was.
"""

from __future__ import annotations

import asyncio
import datetime
import fcntl
import json
import random
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import attrs
import pytest
from support.clients import client_for

from upvest_async import UpvestClient
from upvest_async.jobs.checkpoint import Checkpoint, CheckpointError
from upvest_async.jobs.export import ExportSummary, Format, export_positions
from upvest_async.sandbox import Sandbox

ACCOUNTS = 4


@pytest.fixture
async def small() -> AsyncIterator[Sandbox]:
    async with Sandbox(accounts=ACCOUNTS, positions_per_account=120, seed=5) as running:
        yield running


@pytest.fixture
async def client(small: Sandbox) -> AsyncIterator[UpvestClient]:
    async with client_for(small) as opened:
        yield opened


@attrs.frozen
class Paths:
    out: Path
    work: Path
    checkpoint: Path

    @classmethod
    def under(cls, directory: Path, fmt: str = "jsonl") -> Paths:
        out = directory / f"positions.{fmt}"
        return cls(out, out.with_name(out.name + ".partial"), directory / "export.checkpoint")

    def snapshot(self) -> dict[str, bytes | None]:
        return {name: path.read_bytes() if path.exists() else None
                for name, path in attrs.asdict(self, recurse=False).items()}

    def restore(self, files: dict[str, bytes | None]) -> None:
        for name, content in files.items():
            path: Path = getattr(self, name)
            path.unlink(missing_ok=True)
            if content is not None:
                path.write_bytes(content)


def listing(directory: Path, pattern: str = "*") -> list[Path]:
    return list(directory.glob(pattern))


async def export(
    client: UpvestClient, paths: Paths, *, stop_after: int | None = None, fmt: Format = "jsonl",
    accounts: list[str] | None = None, restart: bool = False,
) -> ExportSummary | None:
    """Run the checkpointed export; with ``stop_after``, cancel it (as Ctrl-C does) once that
    many accounts are written and return ``None``."""
    ids = accounts if accounts is not None else await _accounts(client)
    task = asyncio.current_task()
    assert task is not None
    written = 0

    def on_account(_: str, __: int) -> None:
        nonlocal written
        written += 1
        if written == stop_after:
            task.cancel()

    try:
        return await export_positions(client, ids, paths.out, fmt=fmt, checkpoint=paths.checkpoint,
                                      on_account=on_account, restart=restart)
    except asyncio.CancelledError:
        assert stop_after is not None
        task.uncancel()
        return None


async def _accounts(client: UpvestClient) -> list[str]:
    from upvest_async.jobs.export import list_account_ids

    return await list_account_ids(client)


async def reference(client: UpvestClient, directory: Path, fmt: Format = "jsonl") -> bytes:
    path = directory / f"reference.{fmt}"
    await export_positions(client, await _accounts(client), path, fmt=fmt)
    return path.read_bytes()


async def refused(client: UpvestClient, sandbox: Sandbox, paths: Paths, *words: str,
                  hint: str = "--restart", **kwargs: object) -> str:
    """Resume, expecting a refusal that sends nothing and changes no file, its one-line
    message naming ``words`` and how to go on (``hint``); returns the message."""
    kwargs.setdefault("accounts", await _accounts(client))
    before, requests = paths.snapshot(), sandbox.counters.requests
    with pytest.raises(CheckpointError) as caught:
        await export(client, paths, **kwargs)  # type: ignore[arg-type]
    message = str(caught.value)
    assert paths.snapshot() == before
    assert sandbox.counters.requests == requests
    assert "\n" not in message and hint in message
    for word in words:
        assert word in message
    return message


async def test_uninterrupted_checkpointed_export_is_the_plain_export(
    client: UpvestClient, tmp_path: Path
) -> None:
    paths = Paths.under(tmp_path)
    summary = await export(client, paths)
    assert summary is not None and summary.accounts == ACCOUNTS
    assert paths.out.read_bytes() == await reference(client, tmp_path)
    assert not paths.work.exists()
    lines = paths.checkpoint.read_text().splitlines()
    assert json.loads(lines[0])["version"] == 2 and json.loads(lines[-1])["complete"] is True


@pytest.mark.parametrize("cut", ["one byte", "to the previous account", "to nothing"])
async def test_truncated_work_file_is_refused(
    client: UpvestClient, small: Sandbox, tmp_path: Path, cut: str
) -> None:
    paths = Paths.under(tmp_path)
    await export(client, paths, stop_after=2)
    records = [json.loads(line) for line in paths.checkpoint.read_text().splitlines()]
    size = {"one byte": records[-1]["offset"] - 1, "to the previous account":
            records[-2]["offset"], "to nothing": 0}[cut]
    with paths.work.open("r+b") as stream:
        stream.truncate(size)
    await refused(client, small, paths, str(paths.work), f"the file has {size} bytes")


async def test_deleted_work_file_is_refused(
    client: UpvestClient, small: Sandbox, tmp_path: Path
) -> None:
    paths = Paths.under(tmp_path)
    await export(client, paths, stop_after=1)
    paths.work.unlink()
    await refused(client, small, paths, str(paths.work), "does not exist")


@pytest.mark.parametrize("where", [0, 0.5, -1])
async def test_changed_work_file_bytes_are_refused(
    client: UpvestClient, small: Sandbox, tmp_path: Path, where: float
) -> None:
    paths = Paths.under(tmp_path)
    await export(client, paths, stop_after=2)
    data = bytearray(paths.work.read_bytes())
    index = int(len(data) * where) if where >= 0 else len(data) - 1
    data[index] ^= 0x01
    paths.work.write_bytes(bytes(data))
    await refused(client, small, paths, str(paths.work), "SHA-256")


async def test_bytes_after_the_last_record_are_cut_off(
    client: UpvestClient, tmp_path: Path
) -> None:
    """What a crash while writing an account leaves (or anything appended later) is not vouched
    for by the checkpoint, so it is dropped and that account is written again."""
    paths = Paths.under(tmp_path)
    await export(client, paths, stop_after=2)
    with paths.work.open("ab") as stream:
        stream.write(b'{"account_id": "torn\x00\x00')
    summary = await export(client, paths)
    assert summary is not None and summary.skipped == 2 and summary.accounts == ACCOUNTS - 2
    assert paths.out.read_bytes() == await reference(client, tmp_path)


async def test_a_finished_export_is_refused_saying_when_and_restart_starts_anew(
    client: UpvestClient, small: Sandbox, tmp_path: Path
) -> None:
    """A checkpoint serves one export: a re-run of a finished one must not succeed having
    exported nothing (a nightly job with a fixed --checkpoint)."""
    paths = Paths.under(tmp_path)
    await export(client, paths)
    stat = paths.out.stat()
    finished = datetime.datetime.fromtimestamp(paths.checkpoint.stat().st_mtime).astimezone()
    message = await refused(client, small, paths, "finished at", str(paths.out),
                            finished.isoformat(timespec="seconds"), "starts a new export")
    assert "records an export to" in message
    assert (paths.out.stat().st_ino, paths.out.stat().st_mtime_ns) == (stat.st_ino,
                                                                        stat.st_mtime_ns)
    summary = await export(client, paths, restart=True)
    assert summary is not None and summary.accounts == ACCOUNTS and summary.skipped == 0
    assert paths.out.read_bytes() == await reference(client, tmp_path)


async def test_output_moved_away_after_completion_is_refused_naming_it(
    client: UpvestClient, small: Sandbox, tmp_path: Path
) -> None:
    paths = Paths.under(tmp_path)
    await export(client, paths)
    paths.out.rename(tmp_path / "elsewhere")
    await refused(client, small, paths, str(paths.out), "does not exist", "put it back")
    (tmp_path / "elsewhere").rename(paths.out)  # put back: the finished export again
    await refused(client, small, paths, "finished at")


@pytest.mark.parametrize("change", ["byte", "appended", "truncated"])
async def test_changed_output_after_completion_is_refused(
    client: UpvestClient, small: Sandbox, tmp_path: Path, change: str
) -> None:
    paths = Paths.under(tmp_path)
    await export(client, paths)
    data = paths.out.read_bytes()
    changed = {"byte": data[:10] + b"X" + data[11:], "appended": data + b"{}\n",
               "truncated": data[:-1]}[change]
    paths.out.write_bytes(changed)
    await refused(client, small, paths, str(paths.out), "is not the complete export")


async def test_crash_between_completion_and_rename_finishes_the_rename(
    client: UpvestClient, small: Sandbox, tmp_path: Path
) -> None:
    paths = Paths.under(tmp_path)
    await export(client, paths)
    paths.out.rename(paths.work)  # the state a kill between the two steps leaves
    requests = small.counters.requests
    summary = await export(client, paths, accounts=await _accounts(client))
    assert summary is not None and summary.skipped == ACCOUNTS
    assert small.counters.requests == requests + 1  # the listing of accounts, nothing else
    assert paths.out.read_bytes() == await reference(client, tmp_path)
    assert not paths.work.exists()


async def test_checkpoint_torn_at_any_byte_resumes_or_refuses(
    client: UpvestClient, small: Sandbox, tmp_path: Path
) -> None:
    expected = await reference(client, tmp_path)
    paths = Paths.under(tmp_path)
    await export(client, paths, stop_after=3)
    saved = paths.snapshot()
    data = paths.checkpoint.read_bytes()
    header = data.index(b"\n") + 1
    boundaries = [i + 1 for i, byte in enumerate(data) if byte == ord("\n")]
    cuts = {0, 1, header - 1, header, len(data) - 1, *random.Random(3).sample(range(len(data)), 8)}
    cuts |= {b + d for b in boundaries for d in (-1, 1) if 0 <= b + d < len(data)}
    for cut in sorted(cuts):
        paths.restore(saved)  # back to the state the interruption left
        paths.checkpoint.write_bytes(data[:cut])
        if 0 < cut < header:
            await refused(client, small, paths, "header line is incomplete")
            continue
        summary = await export(client, paths)
        assert summary is not None, cut
        assert paths.out.read_bytes() == expected, cut


async def test_torn_checkpoint_resumed_then_crashed_again_still_resumes(
    client: UpvestClient, tmp_path: Path
) -> None:
    paths = Paths.under(tmp_path)
    await export(client, paths, stop_after=1)
    torn = b'{"account_id": "' + str(uuid.uuid4()).encode()[:9]  # died while appending
    with paths.checkpoint.open("ab") as stream:
        stream.write(torn)
    with paths.work.open("ab") as stream:  # and while writing the next account
        stream.write(b'{"account_id": ')
    await export(client, paths, stop_after=1)  # resumed, then stopped again
    lines = paths.checkpoint.read_bytes().split(b"\n")
    assert lines[-1] == b"" and torn not in paths.checkpoint.read_bytes()
    assert all(json.loads(line) for line in lines[:-1])  # the torn line was cut, not buried
    with paths.checkpoint.open("ab") as stream:  # second crash, torn again
        stream.write(torn[:5])
    state = Checkpoint.load(paths.checkpoint, out=paths.out, fmt="jsonl", accounts=None)
    assert state is not None and len(state.done) == 2
    summary = await export(client, paths)
    assert summary is not None and summary.skipped == 2
    assert paths.out.read_bytes() == await reference(client, tmp_path)


@pytest.mark.parametrize("other", ["output", "format", "accounts"])
async def test_checkpoint_of_another_export_is_refused(
    client: UpvestClient, small: Sandbox, tmp_path: Path, other: str
) -> None:
    paths = Paths.under(tmp_path)
    await export(client, paths, stop_after=2)
    if other == "output":
        paths = attrs.evolve(paths, out=tmp_path / "other.jsonl",
                             work=tmp_path / "other.jsonl.partial")
        await refused(client, small, paths, "belongs to the export of")
    elif other == "format":
        await refused(client, small, paths, "(jsonl), not", fmt="csv")
    else:
        accounts = (await _accounts(client))[::-1]
        await refused(client, small, paths, "another list of accounts", accounts=accounts)


async def test_old_format_version_is_refused_and_restart_discards_it(
    client: UpvestClient, small: Sandbox, tmp_path: Path
) -> None:
    paths = Paths.under(tmp_path)
    accounts = await _accounts(client)
    paths.checkpoint.write_text(
        json.dumps({"version": 1, "out": str(paths.out.resolve()), "format": "jsonl"}) + "\n"
        + json.dumps({"start": 0}) + "\n"
        + json.dumps({"account_id": accounts[0], "offset": 0, "positions": 0}) + "\n")
    paths.work.write_bytes(b"")
    await refused(client, small, paths, "format version 1", "reads only version 2")
    summary = await export(client, paths, restart=True)
    assert summary is not None and summary.skipped == 0
    assert paths.out.read_bytes() == await reference(client, tmp_path)


@pytest.mark.parametrize("content", [b"my notes\n", b"{}\n", b'{"version": 2}\n', b"\xff\xfe"])
async def test_a_file_that_is_no_checkpoint_is_refused_and_restart_keeps_it(
    client: UpvestClient, small: Sandbox, tmp_path: Path, content: bytes
) -> None:
    paths = Paths.under(tmp_path)
    paths.checkpoint.write_bytes(content)
    await refused(client, small, paths, "not an upvest-async export checkpoint",
                  hint="use another --checkpoint path")
    with pytest.raises(CheckpointError, match="not deleting it"):
        await export(client, paths, restart=True)
    assert paths.checkpoint.read_bytes() == content


@pytest.mark.parametrize("line", [b"not json", b"[]", b'{"account_id": 1}', b'{"complete": true}'])
async def test_corrupt_checkpoint_line_is_refused(
    client: UpvestClient, small: Sandbox, tmp_path: Path, line: bytes
) -> None:
    paths = Paths.under(tmp_path)
    await export(client, paths, stop_after=2)
    lines = paths.checkpoint.read_bytes().split(b"\n")
    lines.insert(2, line)
    paths.checkpoint.write_bytes(b"\n".join(lines))
    await refused(client, small, paths, "line 3 is corrupt")


async def test_restart_discards_the_checkpoint_and_the_work_file(
    client: UpvestClient, tmp_path: Path
) -> None:
    paths = Paths.under(tmp_path, "csv")
    await export(client, paths, stop_after=2, fmt="csv")
    paths.work.write_bytes(b"damaged")
    summary = await export(client, paths, fmt="csv", restart=True)
    assert summary is not None and summary.skipped == 0 and summary.accounts == ACCOUNTS
    assert paths.out.read_bytes() == await reference(client, tmp_path, "csv")


async def test_empty_checkpoint_file_is_a_fresh_start(client: UpvestClient, tmp_path: Path) -> None:
    paths = Paths.under(tmp_path)
    paths.checkpoint.write_bytes(b"")  # e.g. made by mktemp
    summary = await export(client, paths)
    assert summary is not None and summary.accounts == ACCOUNTS
    assert paths.out.read_bytes() == await reference(client, tmp_path)


@pytest.mark.parametrize("checkpointed", [True, False])
async def test_failed_accounts_leave_nothing_at_out(
    client: UpvestClient, tmp_path: Path, checkpointed: bool
) -> None:
    paths = Paths.under(tmp_path)
    paths.out.write_bytes(b"an earlier export\n")
    accounts = await _accounts(client)
    ids = [accounts[0], str(uuid.uuid4()), accounts[1]]
    summary = await export_positions(client, ids, paths.out,
                                     checkpoint=paths.checkpoint if checkpointed else None)
    assert [failure.account_id for failure in summary.failed] == [ids[1]]
    assert paths.out.read_bytes() == b"an earlier export\n"  # untouched, nothing new there
    good = await export_positions(client, [accounts[0], accounts[1]], tmp_path / "good.jsonl")
    assert not good.failed
    assert paths.work.read_bytes() == (tmp_path / "good.jsonl").read_bytes()
    assert not listing(tmp_path, ".*.tmp")


async def test_checkpointed_export_needs_distinct_accounts(
    client: UpvestClient, tmp_path: Path
) -> None:
    accounts = await _accounts(client)
    with pytest.raises(ValueError, match="distinct"):
        await export(client, Paths.under(tmp_path), accounts=[accounts[0], accounts[0]])
    assert not listing(tmp_path)


async def test_lost_completion_line_with_the_output_in_place_is_finished_too(
    client: UpvestClient, small: Sandbox, tmp_path: Path
) -> None:
    paths = Paths.under(tmp_path)
    await export(client, paths)
    data = paths.checkpoint.read_bytes()
    paths.checkpoint.write_bytes(data[:data.rindex(b'{"complete"') + 7])  # torn completion
    await refused(client, small, paths, "finished at", "--restart")


async def test_a_second_run_of_the_same_export_is_refused_while_the_first_runs(
    client: UpvestClient, small: Sandbox, tmp_path: Path
) -> None:
    paths = Paths.under(tmp_path)
    await export(client, paths, stop_after=1)
    with paths.checkpoint.open("rb") as held:  # another process's run holds the lock
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        await refused(client, small, paths, "in use by another running export",
                      hint="use another --checkpoint path")
    summary = await export(client, paths)
    assert summary is not None and summary.skipped == 1
    assert paths.out.read_bytes() == await reference(client, tmp_path)


async def test_deeply_nested_checkpoint_line_is_corrupt_not_a_crash(
    client: UpvestClient, small: Sandbox, tmp_path: Path
) -> None:
    paths = Paths.under(tmp_path)
    await export(client, paths, stop_after=1)
    with paths.checkpoint.open("ab") as stream:
        stream.write(b"[" * 100_000 + b"\n")
    await refused(client, small, paths, "is corrupt")


async def test_a_newer_format_version_is_refused(
    client: UpvestClient, small: Sandbox, tmp_path: Path
) -> None:
    paths = Paths.under(tmp_path)
    await export(client, paths, stop_after=1)
    data = paths.checkpoint.read_bytes()
    paths.checkpoint.write_bytes(data.replace(b'"version": 2', b'"version": 3', 1))
    await refused(client, small, paths, "format version 3", "release that wrote it")
