"""Issue 19 (3): nothing a sender can do jams the receiver or floods its log. Over real
loopback sockets: bodies nested to the depth limit are handled end to end (and one level more
is refused with 400, the event not handled); clients that hang up mid-body, send too slowly or
break the framing cost one WARNING line without traceback, rate-limited, and never an ERROR."""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st
from support.keys import p521_key
from support.webhook_bodies import HEADERS, PATH, deep_body, depth, encode, nested
from support.webhooks_signer import KEY_ID, batch, event, position, sign

from upvest_async import WebhookEvent, WebhookVerifier, webhook_app
from upvest_async.json_body import NotJSONError, nesting_depth, parse_json_exact
from upvest_async.webhooks import (
    MAX_BODY_DEPTH,
    RECEIVER_KEY,
    MalformedRequestFilter,
    WebhookPayloadError,
    WebhookReceiver,
    dumps_json,
    parse_batch,
)

KEY = p521_key()
WEBHOOKS_LOGGER = "upvest_async.webhooks"


class Running:
    def __init__(self, app: web.Application, runner: web.AppRunner) -> None:
        self.app = app
        self.runner = runner
        self.receiver: WebhookReceiver = app[RECEIVER_KEY]
        self.port: int = runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{self.port}{PATH}"

    async def post(self, body: bytes) -> tuple[int, bytes]:
        headers = sign(body, key=KEY, created=int(time.time()), path=PATH)
        async with aiohttp.ClientSession() as session, \
                session.post(self.url, data=body, headers=headers) as response:
            return response.status, await response.read()


@pytest.fixture
async def serve() -> AsyncIterator[Callable[..., Awaitable[Running]]]:
    runners: list[web.AppRunner] = []

    async def start(on_event: Callable[[WebhookEvent, Any], Awaitable[None]], **options: Any
                    ) -> Running:
        verifier = WebhookVerifier({KEY_ID: KEY.public_key()})
        app = webhook_app(on_event, verifier, path=PATH, **options)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        runners.append(runner)
        return Running(app, runner)

    yield start
    for runner in runners:
        await runner.cleanup()


def no_errors(caplog: pytest.LogCaptureFixture) -> None:
    """No record at ERROR or above, none with a traceback."""
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert [r.getMessage() for r in caplog.records if r.exc_info or r.exc_text] == []
    assert "Traceback" not in caplog.text


def warnings_of(caplog: pytest.LogCaptureFixture, logger: str = WEBHOOKS_LOGGER) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == logger and r.levelno == logging.WARNING]


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


# -- nesting: what the parser accepts, everything after it handles --------------------------


async def test_a_body_at_the_depth_limit_is_handled_end_to_end(
    serve: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    seen: list[str] = []

    async def on_event(e: WebhookEvent, tx: object) -> None:
        # What a handler typically does with an event: all recursive, all must work.
        text = dumps_json(e.raw)
        assert json.loads(text, parse_float=Decimal) == e.raw
        copy.deepcopy(e.raw)
        repr(e)
        seen.append(text)

    server = await serve(on_event)
    body, sent = deep_body(MAX_BODY_DEPTH)
    assert nesting_depth(body) == MAX_BODY_DEPTH
    assert (await server.post(body))[0] == 200
    [written] = seen
    assert '"amount":1.250' in written and json.loads(written)["id"] == sent["id"]
    # A known type too: the typed conversion ignores an unknown field nested to the limit.
    obj = position("2.5", extra=nested(MAX_BODY_DEPTH - 4))
    body = encode({"payload": [event("POSITION.UPDATED", obj)]})
    assert nesting_depth(body) == MAX_BODY_DEPTH
    assert (await server.post(body))[0] == 200
    assert len(seen) == 2 and server.receiver.stats.handled == 2
    no_errors(caplog)


@pytest.mark.parametrize("levels", [MAX_BODY_DEPTH + 1, 990, 5000])
async def test_a_body_nested_deeper_is_refused_400_and_not_handled(
    serve: Any, caplog: pytest.LogCaptureFixture, levels: int
) -> None:
    caplog.set_level(logging.DEBUG)
    called: list[WebhookEvent] = []

    async def on_event(e: WebhookEvent, tx: object) -> None:
        called.append(e)

    server = await serve(on_event)
    if levels == MAX_BODY_DEPTH + 1:
        body, _ = deep_body(levels)
    else:  # beyond what the stack allows to decode, or to write out
        body = b'{"payload": [' + b"[" * levels + b"]" * levels + b"]}"
    status, answer = await server.post(body)
    assert status == 400 and answer == b'{"status": 400, "title": "Bad Request"}'
    assert called == [] and server.receiver.stats.rejected == 1
    [warning] = warnings_of(caplog)
    assert "verified webhook body rejected" in warning and "nested" in warning
    no_errors(caplog)
    # The receiver is not stuck: the next delivery is handled.
    assert (await server.post(batch(event("X.NEW", {"a": 1}))))[0] == 200
    assert len(called) == 1


def test_parse_batch_at_and_past_the_limit() -> None:
    body, sent = deep_body(MAX_BODY_DEPTH)
    [parsed] = parse_batch(body)
    assert parsed.raw == json.loads(body, parse_float=Decimal)["payload"][0]
    assert parsed.raw["id"] == sent["id"]
    line = dumps_json(parsed.raw).encode("utf-8", "backslashreplace")  # as listen writes it
    assert json.loads(line, parse_float=Decimal) == parsed.raw
    with pytest.raises(WebhookPayloadError, match=f"nested deeper than {MAX_BODY_DEPTH}"):
        parse_batch(deep_body(MAX_BODY_DEPTH + 1)[0])
    with pytest.raises(WebhookPayloadError, match="nested"):
        parse_batch(b"[" * 100_000 + b"]" * 100_000)


tricky_text = st.text(alphabet=st.sampled_from(list('[]{}"\\ax\u00e9\ud800\n,:')), max_size=8)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | tricky_text,
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(tricky_text, children, max_size=3),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None)
@given(value=json_values, indent=st.sampled_from([None, 1]))
def test_nesting_depth_and_the_exact_parser_agree_with_the_value(
    value: Any, indent: int | None
) -> None:
    body = json.dumps(value, indent=indent).encode()
    levels = depth(value)
    assert nesting_depth(body) == levels
    assert parse_json_exact(body, max_depth=levels) == value
    if levels:
        with pytest.raises(NotJSONError, match=f"nested deeper than {levels - 1} levels"):
            parse_json_exact(body, max_depth=levels - 1)


def test_the_exact_parser_keeps_digits_and_refuses_what_is_not_json() -> None:
    assert parse_json_exact(b'{"a": 1.250, "b": [2, -0.5e3]}', max_depth=2) == {
        "a": Decimal("1.250"), "b": [2, Decimal("-0.5e3")]}
    assert str(parse_json_exact(b"[1.250]", max_depth=1)[0]) == "1.250"
    for body, reason in [(b"\xff[]", "invalid UTF-8"), (b"[NaN]", "NaN"), (b"[1,", "Expect"),
                         (b"\xef\xbb\xbf[]", "character 0"),
                         (b"[" * 50_000 + b"]" * 50_000, "nested")]:
        with pytest.raises(NotJSONError, match=reason):
            parse_json_exact(body, max_depth=MAX_BODY_DEPTH)


# -- clients that hang up, dawdle or break the framing ----------------------------------------


async def _hang_up(port: int, data: bytes) -> None:
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    writer.close()
    await writer.wait_closed()




async def test_hang_ups_mid_body_cost_one_warning_without_traceback(
    serve: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)

    async def on_event(e: WebhookEvent, tx: object) -> None:
        return None

    server = await serve(on_event)
    for _ in range(40):
        await _hang_up(server.port, HEADERS + b"0123456789")
    await until(lambda: server.receiver.stats.incomplete == 40)
    [warning] = warnings_of(caplog)
    assert warning == ("webhook request from 127.0.0.1 dropped: the client closed the "
                       "connection before its body arrived (10 of 1000 bytes arrived)")
    no_errors(caplog)
    assert server.receiver.stats.rejected == 0
    # Upvest's deliveries are still served.
    assert (await server.post(batch(event("X.NEW", {"a": 1}))))[0] == 200


async def test_the_next_warning_counts_those_not_logged(
    serve: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)

    async def on_event(e: WebhookEvent, tx: object) -> None:
        return None

    server = await serve(on_event, warning_interval=0.3)
    for _ in range(5):
        await _hang_up(server.port, HEADERS + b"0123456789")
    await until(lambda: server.receiver.stats.incomplete == 5)
    await asyncio.sleep(0.35)
    await _hang_up(server.port, HEADERS)
    await until(lambda: server.receiver.stats.incomplete == 6)
    first, second = warnings_of(caplog)
    assert "(10 of 1000 bytes arrived)" in first
    assert second.endswith("(0 of 1000 bytes arrived) "
                           "(4 more since the last such warning, not logged)")
    no_errors(caplog)


async def test_a_slow_body_is_answered_408_and_the_connection_closed(
    serve: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)

    async def on_event(e: WebhookEvent, tx: object) -> None:
        raise AssertionError("not reached")

    server = await serve(on_event, body_timeout=0.5)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    started = time.monotonic()
    writer.write(HEADERS + b"0123456789")

    async def drip() -> None:  # a byte every 50 ms: 990 bytes would take 50 s
        for _ in range(990):
            await asyncio.sleep(0.05)
            writer.write(b"x")

    dripping = asyncio.create_task(drip())
    try:
        async with asyncio.timeout(5):
            answer = await reader.read()  # to the end: the server closes the connection
        elapsed = time.monotonic() - started
    finally:
        dripping.cancel()
        writer.close()
    assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    assert b"Connection: close" in answer
    assert answer.endswith(b'{"status": 408, "title": "Request Timeout"}')
    assert 0.45 < elapsed < 2.5
    [warning] = warnings_of(caplog)
    assert warning.startswith("webhook request from 127.0.0.1 refused (408): its body did not "
                              "arrive within 0.5 s (")
    assert server.receiver.stats.incomplete == 1
    no_errors(caplog)


async def test_a_body_that_arrives_in_time_is_not_cut(serve: Any) -> None:
    handled: list[WebhookEvent] = []

    async def on_event(e: WebhookEvent, tx: object) -> None:
        handled.append(e)

    server = await serve(on_event, body_timeout=2.0)
    body = batch(event("X.NEW", {"a": 1}))
    headers = sign(body, key=KEY, created=int(time.time()), path=PATH)

    async def slowly() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 50):
            await asyncio.sleep(0.02)
            yield body[start:start + 50]

    async with aiohttp.ClientSession() as session, \
            session.post(server.url, data=slowly(), headers=headers) as response:
        assert response.status == 200
    assert len(handled) == 1


async def test_a_malformed_body_is_refused_without_traceback(
    serve: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)

    async def on_event(e: WebhookEvent, tx: object) -> None:
        raise AssertionError("not reached")

    server = await serve(on_event, body_timeout=1.0, warning_interval=0)
    answers = []
    for data, later in [
        # a body that does not decompress: 400 at once
        (b"Content-Encoding: gzip\r\nContent-Length: 4\r\n\r\n", b"abcd"),
        # chunk framing broken once the handler reads the body: 400 where aiohttp's parser
        # reports it to the handler (its pure Python parser), else 408 at the deadline
        (b"Transfer-Encoding: chunked\r\n\r\n5\r\nabcde\r\n", b"zz\r\n"),
    ]:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        try:
            writer.write(b"POST " + PATH.encode() + b" HTTP/1.1\r\nHost: x\r\n" + data)
            await writer.drain()
            await asyncio.sleep(0.05)
            writer.write(later)
            async with asyncio.timeout(5):
                answers.append(await reader.read())  # to the end: the server closes
        finally:
            writer.close()
    assert answers[0].startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert answers[1].startswith((b"HTTP/1.1 400 Bad Request\r\n",
                                  b"HTTP/1.1 408 Request Timeout\r\n"))
    assert server.receiver.stats.incomplete == 2
    first, second = warnings_of(caplog)
    assert first.startswith("webhook request from 127.0.0.1 refused (400): its body is "
                            "malformed (ContentEncodingError; ")
    assert second.startswith(("webhook request from 127.0.0.1 refused (400): its body is "
                              "malformed (TransferEncodingError; ",
                              "webhook request from 127.0.0.1 refused (408)"))
    no_errors(caplog)


async def test_the_filter_turns_aiohttps_errors_for_malformed_requests_into_one_warning(
    serve: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)

    async def on_event(e: WebhookEvent, tx: object) -> None:
        raise AssertionError("not reached")

    server = await serve(on_event)
    aiohttp_server = logging.getLogger("aiohttp.server")
    malformed = MalformedRequestFilter()
    aiohttp_server.addFilter(malformed)
    try:
        for _ in range(20):  # refused by aiohttp's parser, before any handler runs
            await _hang_up(server.port, b"POST / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n")
        await asyncio.sleep(0.2)
    finally:
        aiohttp_server.removeFilter(malformed)
    [warning] = warnings_of(caplog, "aiohttp.server")
    assert re.fullmatch(r"Error handling request from 127\.0\.0\.1: malformed request "
                        r"\((BadHttpMessage|InvalidHeader)\)", warning), warning
    no_errors(caplog)


@pytest.mark.parametrize("option", ["body_timeout", "warning_interval"])
@pytest.mark.parametrize("value", [-1, float("nan"), float("inf"), True, "5"])
def test_bad_timings_are_refused(option: str, value: Any) -> None:
    async def on_event(e: WebhookEvent, tx: object) -> None:
        return None

    verifier = WebhookVerifier({KEY_ID: KEY.public_key()})
    with pytest.raises(ValueError, match=option):
        WebhookReceiver(on_event, verifier, **{option: value})
    with pytest.raises(ValueError, match="body_timeout"):
        WebhookReceiver(on_event, verifier, body_timeout=0)
    WebhookReceiver(on_event, verifier, body_timeout=None, warning_interval=0)
