"""``upvest-async webhooks listen`` as a process: keys from a loopback JWKS server through the
configured API, events printed and appended to --out, duplicates skipped across a restart;
bodies at the nesting limit recorded and one level deeper refused; hang-ups and malformed
requests logged as single lines; a bad --out and a busy port refused as usage errors."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest
from click.testing import CliRunner
from support.keys import p521_key
from support.webhook_bodies import HEADERS, deep_body
from support.webhooks_api import StubAPI
from support.webhooks_signer import KEY_ID, batch, event, jwks, position, sign

from upvest_async.cli import main
from upvest_async.cli.preflight import PreflightError
from upvest_async.cli.webhooks import DEFAULT_PORT, _recover
from upvest_async.webhooks import MAX_BODY_DEPTH

KEY = p521_key()
NO_API = [name for name in os.environ if name.startswith("UPVEST_API_")]


async def _start(
    env: dict[str, str], out: Path, *extra: str
) -> tuple[asyncio.subprocess.Process, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "upvest_async", "webhooks", "listen", "--port", "0",
        "--path", "/hooks", "--out", str(out), *extra,
        env={**{k: v for k, v in os.environ.items() if not k.startswith("UPVEST_API_")}, **env,
             "COLUMNS": "200"},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    assert process.stderr is not None
    text = ""
    async with asyncio.timeout(30):
        while "Ready" not in text:
            line = await process.stderr.readline()
            if not line:
                raise AssertionError(f"listen exited: {text}")
            text += line.decode()
    found = re.search(r"http://127\.0\.0\.1:(\d+)/hooks", text)
    assert found, text
    return process, found.group(0)


async def _stop(process: asyncio.subprocess.Process) -> str:
    return (await _stop_both(process))[0]


async def _stop_both(process: asyncio.subprocess.Process) -> tuple[str, str]:
    """Stop with Ctrl-C; standard output, and standard error after the "Ready" line."""
    process.send_signal(signal.SIGINT)
    async with asyncio.timeout(20):
        stdout, stderr = await process.communicate()
    assert process.returncode == 0
    return stdout.decode(), stderr.decode()


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``upvest-async webhooks listen ARGS`` to its end, as a user runs it: the installed
    command."""
    command = shutil.which("upvest-async", path=str(Path(sys.executable).parent))
    assert command is not None, "upvest-async is not installed beside this Python"
    return subprocess.run(
        [command, "webhooks", "listen", *args],
        env={**{k: v for k, v in os.environ.items() if not k.startswith("UPVEST_API_")},
             **(env or {}), "COLUMNS": "200"},
        capture_output=True, text=True, timeout=60, check=False,
    )


async def _post(url: str, body: bytes) -> int:
    headers = sign(body, key=KEY, created=int(time.time()), path="/hooks")
    async with aiohttp.ClientSession() as session, \
            session.post(url, data=body, headers=headers) as response:
        return response.status


async def test_listen_verifies_prints_and_records(tmp_path: Path) -> None:
    out = tmp_path / "events.jsonl"
    sent = [event("POSITION.UPDATED", position("1.50")), event("X.NEW", {"a": 1.25})]
    body = batch(*sent).replace(b'"a": 1.25', b'"a": 1.250')
    async with StubAPI(jwks((KEY.public_key(), KEY_ID))) as api:
        process, url = await _start(api.env(), out)
        async with aiohttp.ClientSession() as session:
            headers = sign(body, key=KEY, created=int(time.time()), path="/hooks")
            async with session.post(url, data=body, headers=headers) as response:
                assert response.status == 200
            forged = sign(body, key=KEY, created=int(time.time()), path="/other")
            async with session.post(url, data=body, headers=forged) as response:
                assert response.status == 401
        printed = await _stop(process)
        assert api.scopes == ["webhooks:read"] and api.key_fetches == 1
    assert f"POSITION.UPDATED [{sent[0]['id']}]" in printed
    assert f"X.NEW [{sent[1]['id']}]" in printed
    lines = out.read_text().splitlines()
    assert [json.loads(line)["id"] for line in lines] == [e["id"] for e in sent]
    assert '"a":1.250' in lines[1]  # the API's own number, not via float



def test_restart_recovery_cuts_a_partial_line_and_remembers_ids(tmp_path: Path) -> None:
    out = tmp_path / "events.jsonl"
    out.write_text('{"id":"a"}\n{"id":"b"}\n{"id": "half')
    assert _recover(out) == ["a", "b"]
    assert out.read_text() == '{"id":"a"}\n{"id":"b"}\n'
    assert _recover(tmp_path / "absent.jsonl") == []
    # A file that is not ours is refused and left as it was, its last line included.
    for foreign in ('{"id":"a"}\ngarbage\n{"id": "half', '[1, 2]\n', "[" * 5000 + "\n"):
        out.write_text(foreign)
        with pytest.raises(PreflightError, match=r"events\.jsonl:[12] is not a JSON event"):
            _recover(out)
        assert out.read_text() == foreign


def test_listen_help_and_bad_path() -> None:
    runner = CliRunner()
    assert "--demo" in runner.invoke(main, ["webhooks", "listen", "--help"]).output
    # Not mkdocs serve's (nor Django's, nor http.server's) 8000.
    assert DEFAULT_PORT == 8749
    assert "[default: 8749;" in runner.invoke(main, ["webhooks", "listen", "--help"]).output
    assert runner.invoke(main, ["webhooks", "listen", "--path", "hooks"]).exit_code == 2
    assert runner.invoke(main, ["webhooks", "listen", "--path", "/h?a=1"]).exit_code == 2


def test_demo_refuses_a_configured_api() -> None:
    env = {"UPVEST_API_BASE_URL": "http://127.0.0.1:9", "UPVEST_API_CLIENT_ID": "c",
           "UPVEST_API_CLIENT_SECRET": "s", "UPVEST_API_KEY_ID": "k",
           "UPVEST_API_HTTP_SIGN_PRIVATE_KEY": "x"}
    result = CliRunner().invoke(main, ["webhooks", "listen", "--demo"], env=env)
    assert result.exit_code == 2 and "--embedded-sandbox" in result.output
    result = CliRunner().invoke(main, ["webhooks", "listen", "--demo", "--embedded-sandbox"],
                                env=env)
    assert result.exit_code == 2 and "target is ambiguous" in result.output


def test_listen_without_a_complete_configuration_is_a_usage_error() -> None:
    result = CliRunner().invoke(main, ["webhooks", "listen"], env=dict.fromkeys(NO_API))
    assert result.exit_code == 2
    assert "missing UPVEST_API_CLIENT_ID" in result.output
    assert "--embedded-sandbox" in result.output


async def test_listen_without_credentials_receives_from_the_embedded_sandbox(
    tmp_path: Path,
) -> None:
    out = tmp_path / "events.jsonl"
    process, _ = await _start({}, out, "--demo", "--embedded-sandbox")
    assert process.stdout is not None
    lines: list[str] = []
    async with asyncio.timeout(30):
        while not any("POSITION.UPDATED [" in line for line in lines):
            line = (await process.stdout.readline()).decode()
            assert line, "listen exited before an event arrived"
            lines.append(line)
    printed = "".join(lines) + await _stop(process)
    recorded = [json.loads(line) for line in out.read_text().splitlines()]
    assert recorded and all(f"{e['type']} [{e['id']}]" in printed for e in recorded)
    assert len({e["id"] for e in recorded}) == len(recorded)


def test_a_port_in_use_is_a_usage_error_with_a_hint(tmp_path: Path) -> None:
    out = tmp_path / "events.jsonl"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        started = time.monotonic()
        result = _run("--embedded-sandbox", "--port", str(port), "--out", str(out))
    assert result.returncode == 2, result.stderr
    assert result.stderr == (f"upvest-async webhooks listen: error: --port: 127.0.0.1:{port} "
                             "is in use (--port 0 picks a free port)\n")
    assert result.stdout == "" and not out.exists()
    assert time.monotonic() - started < 20  # refused before any sandbox started


@pytest.mark.parametrize("where", ["missing/events.jsonl", ".", "exists-as-dir"])
def test_an_out_that_cannot_be_written_is_a_usage_error(tmp_path: Path, where: str) -> None:
    (tmp_path / "exists-as-dir").mkdir()
    before = sorted(tmp_path.rglob("*"))
    result = _run("--embedded-sandbox", "--port", "0", "--out", str(tmp_path / where))
    assert result.returncode == 2, result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith("upvest-async webhooks listen: error: ") and "--out" in line
    assert "does not exist" in line or "directory" in line
    assert "unexpected" not in line and result.stdout == ""
    assert sorted(tmp_path.rglob("*")) == before


def test_an_out_that_is_no_file_of_events_is_a_usage_error_and_left_as_is(
    tmp_path: Path,
) -> None:
    out = tmp_path / "notes.txt"
    out.write_text("my notes\nmore notes")
    result = _run("--embedded-sandbox", "--port", "0", "--out", str(out))
    assert result.returncode == 2
    assert result.stderr == (f"upvest-async webhooks listen: error: --out: {out}:1 is not a "
                             "JSON event (not a file of webhooks listen?)\n")
    assert out.read_text() == "my notes\nmore notes"


async def test_listen_records_a_body_at_the_depth_limit_and_refuses_one_deeper(
    tmp_path: Path,
) -> None:
    out = tmp_path / "events.jsonl"
    at_limit, sent = deep_body(MAX_BODY_DEPTH)
    too_deep, refused = deep_body(MAX_BODY_DEPTH + 1)
    odd = event("X.N\u00c9W\x1b[31m\n", {"text": "\ud800 and \u00e9", "n": 1})
    async with StubAPI(jwks((KEY.public_key(), KEY_ID))) as api:
        process, url = await _start(api.env(), out)
        assert await _post(url, at_limit) == 200
        assert await _post(url, too_deep) == 400
        assert await _post(url, batch(odd)) == 200
        printed, logged = await _stop_both(process)
        lines = out.read_bytes().splitlines()
        assert [json.loads(line)["id"] for line in lines] == [sent["id"], odd["id"]]
        assert refused["id"] not in printed and refused["id"] not in out.read_text()
        assert json.loads(lines[0])["object"] == json.loads(at_limit)["payload"][0]["object"]
        assert b'"amount":1.250' in lines[0]
        assert json.loads(lines[1]) == odd  # the lone surrogate as its JSON escape
        assert f"X.N\\xc9W\\x1b[31m\\n [{odd['id']}]" in printed
        assert f"nested deeper than {MAX_BODY_DEPTH} levels" in logged
        assert "Traceback" not in logged
        # After a restart the lines read back; Upvest's redelivery is not written again.
        process, url = await _start(api.env(), out)
        assert await _post(url, at_limit) == 200
        printed, _ = await _stop_both(process)
    assert sent["id"] not in printed
    assert out.read_bytes().splitlines() == lines


async def test_listen_logs_hang_ups_and_malformed_requests_as_single_lines(
    tmp_path: Path,
) -> None:
    out = tmp_path / "events.jsonl"
    async with StubAPI(jwks((KEY.public_key(), KEY_ID))) as api:
        process, url = await _start(api.env(), out)
        port = int(url.split(":")[2].split("/")[0])
        for data in [HEADERS.replace(b"/hooks/upvest", b"/hooks") + b"0123456789",
                     b"POST /hooks HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n"] * 25:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(data)
            await writer.drain()
            writer.close()
            await writer.wait_closed()
        body = batch(event("X.NEW", {"a": 1}))
        assert await _post(url, body) == 200  # still serving
        _, logged = await _stop_both(process)
    lines = logged.splitlines()
    assert [line for line in lines if "closed the connection" in line] == [
        "webhook request from 127.0.0.1 dropped: the client closed the connection before its "
        "body arrived (10 of 1000 bytes arrived)"]
    assert len([line for line in lines if "malformed request" in line]) == 1
    assert "Traceback" not in logged and "ERROR" not in logged
    assert len(lines) == 2, logged
