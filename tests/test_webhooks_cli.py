"""``upvest-async webhooks listen`` as a process: keys from a loopback JWKS server through the
configured API, events printed and appended to --out, duplicates skipped across a restart."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
import time
from pathlib import Path

import aiohttp
import click
import pytest
from click.testing import CliRunner

from tests.keys import p521_key
from tests.webhooks_api import StubAPI
from tests.webhooks_signer import KEY_ID, batch, event, jwks, position, sign
from upvest_async.cli import main
from upvest_async.cli.webhooks import _recover
from upvest_async.webhooks import MemoryEventStore

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
    process.send_signal(signal.SIGINT)
    async with asyncio.timeout(20):
        stdout, _ = await process.communicate()
    assert process.returncode == 0
    return stdout.decode()


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
    store = MemoryEventStore()
    assert _recover(out, store) == ["a", "b"]
    assert out.read_text() == '{"id":"a"}\n{"id":"b"}\n'
    out.write_text("garbage\n")
    with pytest.raises(click.ClickException):
        _recover(out, store)


def test_listen_help_and_bad_path() -> None:
    runner = CliRunner()
    assert "--demo" in runner.invoke(main, ["webhooks", "listen", "--help"]).output
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


def test_a_port_in_use_is_a_clear_error() -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(main, ["webhooks", "listen", "--embedded-sandbox",
                                           "--port", str(port)], env=dict.fromkeys(NO_API))
    assert result.exit_code == 1 and f"cannot listen on 127.0.0.1:{port}" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
