"""Hostile or broken servers, over real loopback aiohttp.web servers: bodies that cannot be
decoded, oversized token and error bodies, malformed access tokens, a failing token endpoint
shared by many callers, and servers that echo secrets back. Every case ends in a typed
UpvestError (and never RecursionError, ValueError, KeyError or TypeError)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import zlib
from typing import Any
from urllib.parse import quote_plus

import pytest
from aiohttp import web
from support.hostile import (
    ACCOUNT,
    POSITION,
    SECRET,
    TOKEN,
    Handler,
    Hostile,
    answer,
    hostile,
    list_positions,
    page,
    retrieve,
)

from upvest_async import (
    APIStatusError,
    InternalServerError,
    Position,
    ResponseTooLargeError,
    ResponseValidationError,
    UpvestError,
)

__all__ = ["hostile"]  # the fixture, imported

DEEP = b"[" * 100_000 + b"]" * 100_000
DEEP_OBJECT = b'{"a":' * 50_000 + b"1" + b"}" * 50_000
UNDECODABLE = [
    # Decoding failures: the reason given in parentheses depends on the JSON implementation.
    (DEEP, "body is not JSON"),
    (DEEP_OBJECT, "body is not JSON"),
    (json.dumps(page([POSITION])).encode().replace(b"10.4", b"10.4\xff\xfe"),
     "body is not JSON"),
    (b"\xef\xbb\xbf" + json.dumps(page([POSITION])).encode(), "not JSON"),  # a BOM
    (json.dumps(page([POSITION])).encode().replace(b'"total_count": 1', b'"total_count": NaN'),
     "body is not JSON"),
    (json.dumps(page([POSITION])).encode().replace(b'"count": 1', b'"count": Infinity'),
     "body is not JSON"),
    (json.dumps(page([POSITION])).encode().replace(b'"offset": 0', b'"offset": -Infinity'),
     "body is not JSON"),
    (json.dumps(page([POSITION])).encode().replace(b'"offset": 0', b'"offset": 1e999'),
     "body is not JSON"),
    (json.dumps(page([POSITION])).encode().replace(b'"offset": 0', b'"offset": ' + b"9" * 5000),
     "not JSON"),
    (json.dumps(page([POSITION], total=True)).encode(), "total_count"),  # type: ignore[arg-type]
    (json.dumps(page([POSITION], total="1")).encode(), "total_count"),  # type: ignore[arg-type]
    (json.dumps(page([{**POSITION, "quantity": 10.4}])).encode(), "quantity"),
    (json.dumps(page([{**POSITION, "quantity": [[[[1]]]] * 1000}])).encode(), "quantity"),
    (json.dumps(page([{k: v for k, v in POSITION.items() if k != "instrument"}])).encode(),
     "instrument"),
    (json.dumps({"meta": {}}).encode(), "data"),
    (b"", "not JSON"),
]


@pytest.mark.parametrize(("body", "message"), UNDECODABLE,
                         ids=[f"body{i}" for i in range(len(UNDECODABLE))])
async def test_undecodable_list_bodies_are_response_validation_errors(
    hostile: Hostile, body: bytes, message: str
) -> None:
    hostile.api = answer(body)
    async with hostile.client() as client:
        with pytest.raises(ResponseValidationError, match=message):
            await list_positions(client)


async def test_undecodable_single_bodies_and_raw_json_are_typed(hostile: Hostile) -> None:
    for body, message in UNDECODABLE[:9]:
        hostile.api = answer(body)
        async with hostile.client() as client:
            with pytest.raises(ResponseValidationError, match=message):
                await retrieve(client)
    hostile.api = answer(DEEP)
    async with hostile.client() as client:
        response = await client._request("GET", f"/accounts/{ACCOUNT}/positions")
        with pytest.raises(ResponseValidationError,
                           match=r"GET /accounts/.*: body is not JSON \("):
            response.json()


@pytest.mark.parametrize("body", [DEEP, DEEP_OBJECT, b"\xff\xfe{", b'{"detail": NaN}',
                                  b'{"detail": "' + b"x" * 3000 + b'\\n\\u001b[31m"}'])
async def test_undecodable_error_bodies_still_give_the_status_error(
    hostile: Hostile, body: bytes
) -> None:
    hostile.api = answer(body, status=422)
    async with hostile.client() as client:
        with pytest.raises(APIStatusError) as caught:
            await retrieve(client)
    assert caught.value.status == 422 and caught.value.body == body
    message = str(caught.value)
    assert "\n" not in message and "\x1b" not in message and len(message) < 700


async def test_token_bodies_and_error_bodies_are_bounded(hostile: Hostile) -> None:
    huge = json.dumps({"access_token": TOKEN, "expires_in": 600, "pad": "x" * 200_000}).encode()

    async def chunked(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(status=500)
        await response.prepare(request)
        for _ in range(100):
            await response.write(b"y" * 10_000)
        return response

    cases: list[tuple[str, Handler]] = [
        ("token", answer(huge)),
        ("token", chunked),
        ("api", answer(b"z" * 200_000, status=503)),
        ("api", chunked),
    ]
    for where, handler in cases:
        hostile.token, hostile.api = hostile.good_token, hostile.good_api
        setattr(hostile, where, handler)
        async with hostile.client(max_response_bytes=65_536) as client:
            with pytest.raises(ResponseTooLargeError, match="65536"):
                await retrieve(client)


async def test_a_compressed_body_is_limited_after_decompression(hostile: Hostile) -> None:
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)  # gzip
    zeros = b"\0" * 1_000_000
    bomb = b"".join(packer.compress(zeros) for _ in range(40)) + packer.flush()  # 40 MB
    assert len(bomb) < 100_000
    hostile.api = answer(bomb, **{"content-encoding": "gzip"})
    async with hostile.client(max_response_bytes=1_048_576) as client:
        with pytest.raises(ResponseTooLargeError, match="1048576"):
            await list_positions(client)


BAD_TOKENS: list[tuple[Any, str]] = [
    ({"access_token": "abc\ndef-ghijk", "expires_in": 60}, "b64token"),
    ({"access_token": "abc\x00defghijk", "expires_in": 60}, "b64token"),
    ({"access_token": "tökén-tökén-tökén", "expires_in": 60}, "b64token"),
    ({"access_token": "two words here", "expires_in": 60}, "b64token"),
    ({"access_token": "a" * 9000, "expires_in": 60}, "b64token"),
    ({"access_token": "", "expires_in": 60}, "non-empty"),
    ({"access_token": 12345, "expires_in": 60}, "non-empty"),
    ({"expires_in": 60}, "access_token"),
    ({"access_token": TOKEN}, "expires_in"),
    ({"access_token": TOKEN, "expires_in": -1}, "expires_in"),
    ({"access_token": TOKEN, "expires_in": 0}, "expires_in"),
    ({"access_token": TOKEN, "expires_in": 10**12}, "expires_in"),
    ({"access_token": TOKEN, "expires_in": 60.5}, "expires_in"),
    ({"access_token": TOKEN, "expires_in": "60"}, "expires_in"),
    ({"access_token": TOKEN, "expires_in": True}, "expires_in"),
    ({"access_token": TOKEN, "expires_in": 60, "token_type": "mac"}, "token_type"),
    ({"access_token": TOKEN, "expires_in": 60, "token_type": "Bearer\r\nX-Evil: 1"},
     "token_type"),
    ({"access_token": TOKEN, "expires_in": 60, "token_type": 7}, "token_type"),
    ({"access_token": TOKEN, "expires_in": 60, "scope": ["positions:read"]}, "scope"),
    ({"access_token": TOKEN, "expires_in": 60, "scope": "positions:read\x07"}, "scope"),
    ([TOKEN], "object"),
]


@pytest.mark.parametrize(("payload", "message"), BAD_TOKENS,
                         ids=[f"token{i}" for i in range(len(BAD_TOKENS))])
async def test_malformed_token_answers_are_refused_before_any_api_call(
    hostile: Hostile, payload: Any, message: str
) -> None:
    hostile.token = answer(json.dumps(payload).encode())
    async with hostile.client() as client:
        with pytest.raises(ResponseValidationError, match=message) as caught:
            await retrieve(client)
    assert "token response" in str(caught.value)
    assert hostile.api_requests == [] and hostile.token_requests == 1  # not retried
    if isinstance(payload, dict) and len(str(payload.get("access_token", ""))) >= 12:
        assert payload["access_token"][:12] not in str(caught.value)  # never quoted


@pytest.mark.parametrize("body", [DEEP, b'{"access_token": "abcdefghij", "expires_in": NaN}',
                                  b'{"access_token": "abcdefghij", "expires_in": Infinity}',
                                  b"\x80abc", b"not json"])
async def test_undecodable_token_bodies_are_typed(hostile: Hostile, body: bytes) -> None:
    hostile.token = answer(body)
    async with hostile.client() as client:
        with pytest.raises(ResponseValidationError, match="token response"):
            await retrieve(client)


async def test_an_integral_float_expires_in_is_accepted(hostile: Hostile) -> None:
    hostile.token = answer(b'{"access_token": "abc.def-ghi_jkl~mno+pq/r==", '
                           b'"expires_in": 600.0, "token_type": "bearer"}')
    async with hostile.client() as client:
        assert isinstance(await retrieve(client), Position)
    assert hostile.api_requests[0].headers["authorization"] == (
        "Bearer abc.def-ghi_jkl~mno+pq/r==")


@pytest.mark.parametrize(("fails", "succeeds"), [(100, False), (2, True)])
async def test_concurrent_callers_share_the_token_request_and_its_failure(
    hostile: Hostile, fails: int, succeeds: bool
) -> None:
    async def flaky(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(0.01)
        if hostile.token_requests <= fails:
            return web.json_response({"detail": "token service down"}, status=500)
        return await hostile.good_token(request)

    hostile.token = flaky
    async with hostile.client(max_retries=2) as client:
        results = await asyncio.gather(*(retrieve(client) for _ in range(50)),
                                       return_exceptions=True)
    assert hostile.token_requests == 3  # retries + 1, not 50 x 3
    if succeeds:
        assert all(isinstance(r, Position) for r in results) and len(hostile.api_requests) == 50
    else:
        assert all(isinstance(r, InternalServerError) for r in results)
        errors = [r for r in results if isinstance(r, InternalServerError)]
        assert {(e.path, e.attempts, e.token_request) for e in errors} == {
            ("/auth/token", 3, True)}
        assert hostile.api_requests == []
    # A later call, after the failure, asks again (one new shared request).
    if not succeeds:
        hostile.token = hostile.good_token
        async with hostile.client(max_retries=2) as client:
            await asyncio.gather(*(retrieve(client) for _ in range(10)))
        assert hostile.token_requests == 4


def _leaks(texts: list[str], secrets: list[str]) -> list[str]:
    return [f"{secret!r} in {text[:120]!r}" for text in texts for secret in secrets
            if secret in text]


async def test_a_token_endpoint_echoing_the_client_secret_leaks_nothing(
    hostile: Hostile, caplog: pytest.LogCaptureFixture
) -> None:
    async def echo(request: web.Request) -> web.StreamResponse:
        raw = (await request.read()).decode()
        form = hostile.forms[-1]
        problem = {"type": "invalid_client", "title": f"bad secret {form['client_secret']}",
                   "detail": f"you sent {raw} with secret {form['client_secret']}",
                   "request_id": form["client_secret"]}
        return web.json_response(problem, status=400, headers={
            "upvest-request-id": form["client_secret"], "x-echo": quote_plus(SECRET)})

    hostile.token = echo
    caplog.set_level(logging.DEBUG)
    async with hostile.client() as client:
        with pytest.raises(APIStatusError) as caught:
            await retrieve(client)
    error = caught.value
    assert hostile.forms[0]["client_secret"] == SECRET and error.status == 400
    texts = [str(error), repr(error), error.body.decode(errors="replace"), str(error.headers),
             str(error.detail), str(error.title), str(error.request_id), caplog.text]
    assert _leaks(texts, [SECRET, quote_plus(SECRET), json.dumps(SECRET)[1:-1]]) == []
    assert "<redacted>" in str(error) and error.type == "invalid_client"


async def test_an_api_echoing_the_access_token_leaks_nothing(
    hostile: Hostile, caplog: pytest.LogCaptureFixture
) -> None:
    async def echo(request: web.Request) -> web.StreamResponse:
        authorization = request.headers["authorization"]
        if request.path.endswith("/positions"):  # a 200 whose body quotes the token
            bad = {**POSITION, "quantity": authorization.split()[1]}
            return web.json_response(page([bad]))
        return web.json_response(
            {"title": "forbidden", "detail": f"token {authorization} lacks a scope",
             "instance": authorization},
            status=403, headers={"upvest-request-id": authorization,
                                 "www-authenticate": f'Bearer error="{authorization}"'})

    hostile.api = echo
    caplog.set_level(logging.DEBUG)
    texts: list[str] = []
    async with hostile.client() as client:
        with pytest.raises(APIStatusError) as forbidden:
            await retrieve(client)
        with pytest.raises(ResponseValidationError) as invalid:
            await list_positions(client)
    for error in (forbidden.value, invalid.value):
        texts += [str(error), repr(error), str(vars(error))]
    texts += [forbidden.value.body.decode(), caplog.text]
    assert _leaks(texts, [TOKEN]) == []
    assert "quantity" in str(invalid.value)


async def test_every_outcome_is_an_upvest_error_never_a_builtin(hostile: Hostile) -> None:
    """A sweep over the bodies above, on every endpoint kind, in one client."""
    async with hostile.client(max_retries=0, max_response_bytes=65_536) as client:
        for body, _ in UNDECODABLE:
            for status in (200, 400, 500):
                hostile.api = answer(body, status=status)
                for call in (retrieve, list_positions):
                    with contextlib.suppress(UpvestError):
                        await call(client)  # type: ignore[operator]
