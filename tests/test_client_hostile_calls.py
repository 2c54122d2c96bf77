"""Hostile servers that try to make a call hang or loop, over real loopback servers: each
timeout names its limit, Retry-After cannot stall a call, redirects are never followed,
oversized headers and endless bodies end in typed errors, and lists whose server lies about
``total_count`` or ignores ``offset`` end with PaginationError."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
import traceback
from collections.abc import AsyncIterator
from typing import Any

import attrs
import pytest
from aiohttp import web
from support.hostile import (
    ACCOUNT,
    FAST,
    POSITION,
    TOKEN,
    Hostile,
    answer,
    hostile,
    list_positions,
    retrieve,
    running_hostile,
)

from upvest_async import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    PaginationError,
    RateLimitError,
    ResponseTooLargeError,
)
from upvest_async.errors import parse_retry_after

__all__ = ["hostile"]  # the fixture, imported


async def stall(_: web.Request) -> web.StreamResponse:
    await asyncio.sleep(30)
    raise AssertionError("not reached")


async def trickle(request: web.Request) -> web.StreamResponse:
    """A chunked body that never ends: a byte every 20 ms."""
    response = web.StreamResponse()
    response.content_type = "application/json"
    await response.prepare(request)
    while True:
        await response.write(b" ")
        await asyncio.sleep(0.02)


async def test_a_silent_server_is_a_read_timeout(hostile: Hostile) -> None:
    hostile.api = stall
    async with hostile.client(read_timeout=0.2, max_retries=1) as client:
        with pytest.raises(APITimeoutError) as caught:
            await retrieve(client)
    error = caught.value
    assert (error.limit, error.seconds, error.attempts) == ("read", 0.2, 2)
    assert "read timeout of 0.2 s exceeded" in str(error)


async def test_a_body_that_never_ends_is_a_total_timeout(hostile: Hostile) -> None:
    hostile.api = trickle
    started = time.monotonic()
    async with hostile.client(timeout=0.4, read_timeout=5, max_retries=0) as client:
        with pytest.raises(APITimeoutError) as caught:
            await list_positions(client)
    assert (caught.value.limit, caught.value.seconds) == ("total", 0.4)
    assert "total timeout of 0.4 s per attempt exceeded" in str(caught.value)
    assert time.monotonic() - started < 3


async def test_the_call_deadline_is_named_when_it_fires(hostile: Hostile) -> None:
    hostile.api = stall
    async with hostile.client(timeout=5, read_timeout=5) as client:
        with pytest.raises(APITimeoutError) as caught:
            await client.with_options(deadline=0.3).positions.retrieve(ACCOUNT, TOKEN_ISIN)
    assert (caught.value.limit, caught.value.seconds) == ("deadline", 0.3)
    assert "deadline of 0.3 s exceeded" in str(caught.value)


TOKEN_ISIN = "isin:US0378331005"


async def test_a_connection_that_is_never_accepted_is_a_connect_timeout() -> None:
    # A listening socket whose accept queue is full: the kernel drops further SYNs.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(4):
        filler = socket.socket()
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            filler.connect(("127.0.0.1", port))
        fillers.append(filler)
    try:
        client = Hostile().client(connect_timeout=0.2, max_retries=0,
                                  base_url=f"http://127.0.0.1:{port}")
        async with client:
            with pytest.raises(APITimeoutError) as caught:
                await retrieve(client)
        assert (caught.value.limit, caught.value.seconds) == ("connect", 0.2)
        assert caught.value.token_request  # the first request is the token request
        assert "connect timeout of 0.2 s exceeded" in str(caught.value)
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


async def test_retry_after_cannot_stall_or_crash_a_call(hostile: Hostile) -> None:
    values = iter(["1000000000", "-5", "²", "1e9", "Fri, 31 Dec 9999 23:59:59 GMT",
                   "9" * 5000, "Mon, 99 Foo 99999 99:99:99 GMT"])
    seen: list[float | None] = []

    async def limited(_: web.Request) -> web.StreamResponse:
        return web.json_response({"detail": "slow down"}, status=429,
                                 headers={"retry-after": next(values, "0")})

    hostile.api = limited
    started = time.monotonic()
    policy = attrs.evolve(FAST, max_throttled_retries=6)  # retry_after_max: 0.05 s
    async with hostile.client(retry_policy=policy) as client:
        with pytest.raises(RateLimitError) as caught:
            await retrieve(client)
    assert caught.value.attempts == 7 and len(hostile.api_requests) == 7
    assert time.monotonic() - started < 3  # every wait capped
    for value in ("1000000000", "-5", "²", "1e9", "9" * 5000, "garbage", "",
                  "Fri, 31 Dec 9999 23:59:59 GMT", "Mon, 99 Foo 99999 99:99:99 GMT"):
        seen.append(parse_retry_after(value))
    assert seen[:5] == [1e9, None, None, None, 1e15] and seen[5:7] == [None, None]
    assert seen[7] is not None and seen[7] > 0 and seen[8] is None


async def test_429_forever_ends_after_the_retries(hostile: Hostile) -> None:
    hostile.api = answer(b'{"title": "rate limited"}', status=429, **{"retry-after": "0"})
    policy = attrs.evolve(FAST, max_throttled_retries=3)
    async with hostile.client(retry_policy=policy) as client:
        with pytest.raises(RateLimitError) as caught:
            await list_positions(client)
    assert caught.value.attempts == 4 and len(hostile.api_requests) == 4


@pytest.fixture
async def elsewhere() -> AsyncIterator[Hostile]:
    """A second server, the target of redirects: it must never be reached."""
    async with running_hostile() as server:
        yield server


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_redirects_are_never_followed(
    hostile: Hostile, elsewhere: Hostile, status: int
) -> None:
    async def to_elsewhere(request: web.Request) -> web.StreamResponse:
        return web.Response(status=status, headers={"location": elsewhere.base_url
                                                    + request.path_qs})

    async def to_self(request: web.Request) -> web.StreamResponse:
        return web.Response(status=status, headers={"location": request.path_qs})

    for handler in (to_elsewhere, to_self):
        hostile.api = handler
        hostile.api_requests.clear()
        async with hostile.client() as client:
            with pytest.raises(APIStatusError) as caught:
                await retrieve(client)
            with pytest.raises(APIStatusError):
                await client.portfolios.orders.create(
                    user_id=ACCOUNT, account_id=ACCOUNT, cash_amount="1", side="BUY")
        assert caught.value.status == status and "redirects are not followed" in str(
            caught.value)
        assert len(hostile.api_requests) == 2  # one each: no loop, no retry
    # The token request does not follow a redirect either.
    hostile.token = to_elsewhere
    async with hostile.client() as client:
        with pytest.raises(APIStatusError) as token_error:
            await retrieve(client)
    assert token_error.value.token_request and token_error.value.status == status
    assert elsewhere.token_requests == 0 and elsewhere.api_requests == []


async def test_a_huge_response_header_is_a_typed_error(hostile: Hostile) -> None:
    async def huge_header(_: web.Request) -> web.StreamResponse:
        return web.json_response(POSITION, headers={"x-padding": "p" * 100_000})

    async def many_headers(_: web.Request) -> web.StreamResponse:
        return web.json_response(POSITION, headers={f"x-h{i}": "v" for i in range(1000)})

    for handler in (huge_header, many_headers):
        hostile.api = handler
        hostile.api_requests.clear()
        async with hostile.client(max_retries=1) as client:
            with pytest.raises(APIConnectionError, match="invalid HTTP answer") as caught:
                await retrieve(client)
        assert not isinstance(caught.value, APITimeoutError) and caught.value.attempts == 2


async def test_an_endless_body_is_cut_at_the_size_limit(hostile: Hostile) -> None:
    async def flood(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        while True:
            await response.write(b"[" * 65_536)

    hostile.api = flood
    async with hostile.client(max_response_bytes=1_048_576) as client:
        with pytest.raises(ResponseTooLargeError):
            await list_positions(client)
    assert len(hostile.api_requests) == 1  # not retried


def _position(i: int) -> dict[str, Any]:
    return {**POSITION, "instrument": {"uuid": f"00000000-0000-4000-8000-{i:012d}"}}


async def test_a_list_whose_total_count_grows_on_every_page_ends(hostile: Hostile) -> None:
    """Every page claims 100 more items than the last one; items exist at every offset."""
    reads = 0

    async def growing(request: web.Request) -> web.StreamResponse:
        nonlocal reads
        reads += 1
        offset, limit = int(request.query["offset"]), int(request.query["limit"])
        items = [_position(i) for i in range(offset, offset + limit)]
        return web.json_response({"data": items, "meta": {
            "offset": offset, "limit": limit, "count": limit,
            "total_count": 300 + 100 * reads + offset + limit}})

    hostile.api = growing
    delivered: list[Any] = []
    async with hostile.client() as client:
        listed = client.positions.list(ACCOUNT, page_size=100, prefetch=2)
        with pytest.raises(PaginationError, match="followed past") as caught:
            async with asyncio.timeout(20):
                async for position in listed:
                    delivered.append(position)
    first_total = 300 + 100 + 100
    assert len(delivered) <= 2 * first_total + 100
    assert caught.value.offset == listed.next_offset == len(delivered)
    assert len({p.instrument.uuid for p in delivered}) == len(delivered)  # no repeats


async def test_a_server_ignoring_offset_is_stopped_at_the_first_repeat(hostile: Hostile) -> None:
    async def same_page(request: web.Request) -> web.StreamResponse:
        offset, limit = int(request.query["offset"]), int(request.query["limit"])
        items = [_position(i) for i in range(limit)]  # always the first page
        return web.json_response({"data": items, "meta": {
            "offset": offset, "limit": limit, "count": limit, "total_count": 10**6}})

    hostile.api = same_page
    async with hostile.client() as client:
        listed = client.positions.list(ACCOUNT, page_size=100, prefetch=3)
        with pytest.raises(PaginationError, match="repeats items already delivered") as caught:
            async with asyncio.timeout(20):
                [p async for p in listed]
    assert caught.value.offset == 100 and len(hostile.api_requests) <= 5


async def test_a_list_that_lies_about_its_total_count_ends(hostile: Hostile) -> None:
    """A total_count of 10**12 and then empty pages; or a total that shrinks to nothing."""
    async def lying(request: web.Request) -> web.StreamResponse:
        offset, limit = int(request.query["offset"]), int(request.query["limit"])
        items = [_position(i) for i in range(offset, offset + limit)] if offset == 0 else []
        return web.json_response({"data": items, "meta": {
            "offset": offset, "limit": limit, "count": len(items), "total_count": 10**12}})

    hostile.api = lying
    async with hostile.client() as client:
        listed = client.positions.list(ACCOUNT, page_size=100, prefetch=4)
        async with asyncio.timeout(20):
            got = [p async for p in listed]
    assert len(got) == 100 and len(hostile.api_requests) <= 6
    assert "stopping at offset 100" in listed.inconsistencies[-1]


async def test_an_invalid_answer_quoting_the_token_leaks_nothing(hostile: Hostile) -> None:
    async def echo(request: web.Request) -> web.StreamResponse:
        token = request.headers["authorization"]
        return web.json_response(POSITION, headers={"x-echo": token + "p" * 10_000})

    hostile.api = echo
    async with hostile.client(max_retries=0) as client:
        with pytest.raises(APIConnectionError) as caught:
            await retrieve(client)
    rendered = "".join(traceback.format_exception(caught.value))
    assert "invalid HTTP answer" in rendered and TOKEN not in rendered


RAW_ANSWERS = [
    b"garbage that is not HTTP\r\n\r\n",
    b"HTTP/1.1 200 " + b"R" * 20_000 + b"\r\ncontent-length: 0\r\n\r\n",
    b"HTTP/1.1 999 Weird\r\ncontent-length: 2\r\n\r\n{}",
    b"HTTP/1.1 200 OK\r\ncontent-length: 5000\r\n\r\n{\"data\": [",  # then closes: truncated
    b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\n{}",
    b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
    b"HTTP/1.1 200 OK\r\n" + b"x-a: b\r\n" * 100_000,  # headers that never end
]


@pytest.mark.parametrize("raw", RAW_ANSWERS, ids=[f"raw{i}" for i in range(len(RAW_ANSWERS))])
async def test_answers_that_are_not_valid_http_are_typed_errors(hostile: Hostile,
                                                                raw: bytes) -> None:
    """A raw TCP server for the API calls (the token comes from the loopback look-alike)."""
    handlers: list[asyncio.Task[Any]] = []
    writers: list[asyncio.StreamWriter] = []

    async def answer_raw(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            await reader.readuntil(b"\r\n\r\n")
            writer.write(raw)
            await writer.drain()
            await asyncio.sleep(0.05)

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        current = asyncio.current_task()
        assert current is not None
        handlers.append(current)
        try:
            await answer_raw(reader, writer)
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]

    async def token(_: web.Request) -> web.StreamResponse:
        return web.json_response({"access_token": TOKEN, "expires_in": 600})

    hostile.token = token
    try:
        client = hostile.client(max_retries=1, read_timeout=1, timeout=3)
        async with client:
            transport = client._open()
            transport._base_url = transport._base_url.with_port(port)  # API calls go to raw
            with pytest.raises((APIConnectionError, APIStatusError)) as caught:
                await retrieve(client)
        assert str(caught.value)
        if raw.startswith(b"HTTP/1.1 999"):
            assert isinstance(caught.value, APIStatusError) and caught.value.status == 999
    finally:
        server.close()
        for writer in writers:
            writer.transport.abort()
        await asyncio.gather(*handlers, return_exceptions=True)
        await server.wait_closed()


async def test_a_refused_connection_says_so_and_where(hostile: Hostile) -> None:
    with socket.socket() as probe:  # a port nothing listens on (bound, never listening)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        async with hostile.client(base_url=f"http://127.0.0.1:{port}", max_retries=0) as client:
            with pytest.raises(APIConnectionError) as caught:
                await retrieve(client)
    message = str(caught.value)
    assert f"connection refused by 127.0.0.1:{port}" in message, message
    assert "(ClientConnectorError)" in message and message.startswith("POST /auth/token")
