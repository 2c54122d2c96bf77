"""Fuzz: whatever body a server sends (malformed, truncated, oversized, wrongly typed, deeply
nested, invalid UTF-8, non-finite numbers, any status), on the API or on the token endpoint,
and whatever ``meta`` a list's pages claim, a call ends with a model or a typed UpvestError
within its timeout, never an unhandled exception, a hang or an endless list."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.keys import p521_key, pem

from upvest_async import PaginationError, Position, RetryPolicy, UpvestClient, UpvestError
from upvest_async.errors import ResponseValidationError
from upvest_async.json_body import parse_json
from upvest_async.pagination import MAX_UNSETTLED

ACCOUNT = "c5161455-4d27-4781-bc74-f05532e49a77"
GOOD_POSITION = {
    "account_id": ACCOUNT,
    "instrument": {"isin": "US0378331005", "uuid": "ccb86937-8a39-4160-8d33-85bf9e902321"},
    "quantity": "10.4", "available_for_trading": "5.4", "locked_for_trading": "5",
    "pending_settlement": "0",
}
GOOD_PAGE = {"data": [GOOD_POSITION],
             "meta": {"offset": 0, "limit": 100, "count": 1, "total_count": 1}}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(
        st.text(max_size=6), children, max_size=3),
    max_leaves=10,
)


def _mutate(document: dict[str, Any], path: list[str], value: Any) -> dict[str, Any]:
    copy = json.loads(json.dumps(document))
    target: Any = copy
    for key in path[:-1]:
        target = target[int(key)] if isinstance(target, list) else target[key]
    if isinstance(target, list):
        target[int(path[-1])] = value
    else:
        target[path[-1]] = value
    return copy


PATHS = [["data"], ["meta"], ["data", "0"], ["data", "0", "quantity"],
         ["data", "0", "instrument"], ["data", "0", "instrument", "uuid"],
         ["data", "0", "account_id"], ["meta", "total_count"], ["meta", "count"],
         ["meta", "offset"]]

GOOD_BODY = json.dumps(GOOD_PAGE).encode()
NUMBER_PATHS = [b'"offset": 0', b'"limit": 100', b'"count": 1', b'"total_count": 1']
non_finite = st.sampled_from([b"NaN", b"Infinity", b"-Infinity", b"1e999", b"-1e400",
                              b"9" * 5000, b"1.5", b"true", b'"1"', b"-1"])


def _nested(depth: int, opener: bytes, closer: bytes, inner: bytes = b"1") -> bytes:
    return opener * depth + inner + closer * depth


deep_bodies = st.one_of(
    st.integers(min_value=1, max_value=2000).map(lambda n: _nested(n, b"[", b"]")),
    st.integers(min_value=1, max_value=800).map(lambda n: _nested(n, b'{"a":', b"}")),
    # Deep inside an otherwise valid page: in an item, in meta, in an unknown field.
    st.tuples(st.integers(min_value=1, max_value=1900),
              st.sampled_from([b'"quantity": "10.4"', b'"total_count": 1', b'"isin": '
                               b'"US0378331005"'])).map(
        lambda t: GOOD_BODY.replace(t[1], t[1].split(b":")[0] + b": "
                                    + _nested(t[0], b"[", b"]"), 1)),
)
invalid_utf8 = st.tuples(
    st.integers(min_value=0, max_value=len(GOOD_BODY)),
    st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80",
                     b"\x80", b"\xef\xbb\xbf"]),
).map(lambda t: GOOD_BODY[:t[0]] + t[1] + GOOD_BODY[t[0]:])
non_finite_meta = st.tuples(st.sampled_from(NUMBER_PATHS), non_finite).map(
    lambda t: GOOD_BODY.replace(t[0], t[0].split(b":")[0] + b": " + t[1]))
oversized = st.integers(min_value=4097, max_value=20_000).map(
    lambda n: json.dumps({**GOOD_PAGE, "pad": "x" * n}).encode())

bodies = st.one_of(
    st.binary(max_size=300),
    deep_bodies,
    invalid_utf8,
    non_finite_meta,
    oversized,
    st.integers(min_value=0, max_value=len(json.dumps(GOOD_PAGE))).map(
        lambda n: json.dumps(GOOD_PAGE).encode()[:n]),
    st.tuples(st.sampled_from(PATHS), json_values).map(
        lambda pv: json.dumps(_mutate(GOOD_PAGE, pv[0], pv[1])).encode()),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.just(b"[" * 5000),
    st.just(json.dumps({**GOOD_PAGE, "data": [GOOD_POSITION] * 50}).encode()),
)
statuses = st.sampled_from([200, 200, 200, 201, 204, 400, 401, 404, 409, 422, 429, 500, 503])
content_types = st.sampled_from(["application/json", "application/problem+json", "text/html",
                                 "application/octet-stream"])


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@contextlib.asynccontextmanager
async def _serving_client(token: Handler, positions: Handler) -> AsyncIterator[UpvestClient]:
    """A client (1 retry, 1 re-send after a 429, 5 s timeout, 4096-byte bodies) of a loopback
    server answering
    ``POST /auth/token`` with ``token`` and the positions list with ``positions``."""
    app = web.Application()
    app.router.add_post("/auth/token", token)
    app.router.add_get("/accounts/{account}/positions", positions)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        async with UpvestClient(
            client_id=ACCOUNT, client_secret="s", key_id="k", private_key=pem(p521_key()),
            base_url=str(server.make_url("/")).rstrip("/"), max_retries=1, timeout=5,
            max_response_bytes=4096, retry_policy=RetryPolicy(max_throttled_retries=1),
        ) as client:
            yield client
    finally:
        await server.close()


async def _exercise(body: bytes, status: int, content_type: str) -> None:
    async def token(_: web.Request) -> web.Response:
        return web.json_response({"access_token": "t", "expires_in": 60})

    async def positions(_: web.Request) -> web.Response:
        return web.Response(status=status, body=body, content_type=content_type,
                            headers={"retry-after": "0"})

    async with _serving_client(token, positions) as client:
        try:
            async with asyncio.timeout(10):
                items = [p async for p in client.positions.list(ACCOUNT, max_items=5)]
            assert all(isinstance(item, Position) for item in items)
        except UpvestError as error:
            assert str(error)  # a one-line message, never empty


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=bodies, status=statuses, content_type=content_types)
def test_any_response_body_gives_a_model_or_a_typed_error(
    body: bytes, status: int, content_type: str
) -> None:
    asyncio.run(_exercise(body, status, content_type))


# --- the token endpoint ------------------------------------------------------------------------

TOKEN_VALUES = st.one_of(
    st.text(max_size=30),
    st.text(alphabet=st.characters(codec="ascii"), min_size=1, max_size=30),
    st.from_regex(r"[A-Za-z0-9\-._~+/]{8,40}=*", fullmatch=True),
    json_values,
)
EXPIRES = st.one_of(st.integers(min_value=-10, max_value=10**13), st.floats(), st.booleans(),
                    st.text(max_size=5), st.none(), st.just(600))
TOKEN_TYPES = st.one_of(st.none(), st.sampled_from(["Bearer", "bearer", "mac", "Bearer\r\n"]),
                        st.text(max_size=8), st.integers())


def _token_document(value: Any, expires: Any, token_type: Any, drop: str | None) -> bytes:
    document = {"access_token": value, "expires_in": expires, "token_type": token_type}
    document = {k: v for k, v in document.items() if k != drop and v is not None}
    # allow_nan: NaN and Infinity on the wire, as a broken server writes them.
    return json.dumps(document, allow_nan=True).encode()


token_bodies = st.one_of(
    st.builds(_token_document, TOKEN_VALUES, EXPIRES, TOKEN_TYPES,
              st.sampled_from([None, None, "access_token", "expires_in"])),
    deep_bodies,
    st.binary(max_size=100),
    st.integers(min_value=4097, max_value=20_000).map(
        lambda n: json.dumps({"access_token": "abcdefgh", "expires_in": 60,
                              "pad": "x" * n}).encode()),
)


async def _exercise_token(body: bytes, status: int) -> None:
    sent: list[str] = []

    async def token(_: web.Request) -> web.Response:
        return web.Response(status=status, body=body, content_type="application/json")

    async def positions(request: web.Request) -> web.Response:
        sent.append(request.headers.get("authorization", ""))
        return web.json_response(GOOD_PAGE)

    async with _serving_client(token, positions) as client:
        try:
            async with asyncio.timeout(10):
                items = [p async for p in client.positions.list(ACCOUNT, max_items=5)]
            assert items and all(isinstance(item, Position) for item in items)
        except UpvestError as error:
            assert str(error) and not sent  # a refused token sends no API request
    for header in sent:  # what was accepted is a clean bearer token
        assert header.startswith("Bearer ") and header.isascii() and header.isprintable()


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=token_bodies, status=st.sampled_from([200, 200, 200, 400, 401, 500]))
def test_any_token_answer_gives_a_token_or_a_typed_error(body: bytes, status: int) -> None:
    asyncio.run(_exercise_token(body, status))


# --- lists whose meta lies ---------------------------------------------------------------------

ITEMS = [{**GOOD_POSITION, "instrument": {"uuid": f"00000000-0000-4000-8000-{i:012d}"}}
         for i in range(200)]
lies = st.fixed_dictionaries({
    "total": st.one_of(st.integers(min_value=-5, max_value=250), st.just(10**9)),
    "offset": st.sampled_from(["echo", "echo", "echo", "zero", "plus-one"]),
    "items": st.sampled_from(["asked", "asked", "first-page", "none", "short", "extra"]),
    "count": st.sampled_from(["true", "true", "true", "off-by-one"]),
})


async def _exercise_pages(script: list[dict[str, Any]], page_size: int) -> None:
    reads = 0

    async def positions(request: web.Request) -> web.Response:
        nonlocal reads
        lie = script[reads % len(script)]
        reads += 1
        offset, limit = int(request.query["offset"]), int(request.query["limit"])
        start = 0 if lie["items"] == "first-page" else offset
        size = {"asked": limit, "first-page": limit, "none": 0, "short": limit // 2,
                "extra": limit + 1}[lie["items"]]
        # The server holds 200 items, whatever total_count it claims (up to 10**9).
        data = ITEMS[start:start + size]
        meta = {"offset": {"echo": offset, "zero": 0, "plus-one": offset + 1}[lie["offset"]],
                "limit": limit, "total_count": lie["total"],
                "count": len(data) + (lie["count"] == "off-by-one")}
        return web.json_response({"data": data, "meta": meta})

    async def token(_: web.Request) -> web.Response:
        return web.json_response({"access_token": "abcdefgh", "expires_in": 60})

    app = web.Application()
    app.router.add_post("/auth/token", token)
    app.router.add_get("/accounts/{account}/positions", positions)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    delivered = 0
    try:
        async with UpvestClient(
            client_id=ACCOUNT, client_secret="s", key_id="k", private_key=pem(p521_key()),
            base_url=str(server.make_url("/")).rstrip("/"), max_retries=0, timeout=5,
            retry_policy=RetryPolicy(max_throttled_retries=0),
        ) as client:
            listed = client.positions.list(ACCOUNT, page_size=page_size, prefetch=3)
            try:
                async with asyncio.timeout(20):
                    async for _ in listed:
                        delivered += 1
            except PaginationError as error:
                assert error.offset == listed.next_offset
            except UpvestError as error:
                assert str(error)
    finally:
        await server.close()
    first_total = script[0]["total"]
    assert delivered <= 2 * max(0, first_total) + page_size
    # Bounded work: every request delivers items or counts towards MAX_UNSETTLED.
    assert reads <= (delivered + 1) * (MAX_UNSETTLED + 2)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(script=st.lists(lies, min_size=1, max_size=6),
       page_size=st.sampled_from([10, 50, 100]))
def test_lying_list_meta_ends_with_items_or_a_typed_error(
    script: list[dict[str, Any]], page_size: int
) -> None:
    asyncio.run(_exercise_pages(script, page_size))


# --- the JSON decoder itself -------------------------------------------------------------------

finite_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children,
                                                                      max_size=4),
    max_leaves=20,
)


@settings(max_examples=150, deadline=None)
@given(value=finite_json, noise=st.binary(max_size=40), cut=st.integers(min_value=0))
def test_parse_json_decodes_json_and_refuses_anything_else_with_a_typed_error(
    value: Any, noise: bytes, cut: int
) -> None:
    encoded = json.dumps(value, ensure_ascii=False).encode()
    assert parse_json(encoded, what="fuzz") == value
    for body in (noise, encoded[:cut % (len(encoded) + 1)] + noise,
                 b"[" * (1000 + cut % 5000), encoded.replace(b"1", b"NaN", 1)):
        try:
            parse_json(body, what="fuzz")
        except ResponseValidationError as error:
            assert "fuzz: body is not JSON" in str(error)
