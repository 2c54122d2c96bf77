"""Fuzz: whatever body a server sends (malformed, truncated, oversized, wrongly typed, any
status), a call ends with a model or a typed UpvestError within its timeout, never an
unhandled exception or a hang."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from upvest_async import Position, UpvestClient, UpvestError

from .keys import p521_key, pem

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

bodies = st.one_of(
    st.binary(max_size=300),
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


async def _exercise(body: bytes, status: int, content_type: str) -> None:
    async def token(_: web.Request) -> web.Response:
        return web.json_response({"access_token": "t", "expires_in": 60})

    async def positions(_: web.Request) -> web.Response:
        return web.Response(status=status, body=body, content_type=content_type,
                            headers={"retry-after": "0"})

    app = web.Application()
    app.router.add_post("/auth/token", token)
    app.router.add_get("/accounts/{account}/positions", positions)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        async with UpvestClient(
            client_id=ACCOUNT, client_secret="s", key_id="k", private_key=pem(p521_key()),
            base_url=str(server.make_url("/")).rstrip("/"), max_retries=1, timeout=5,
            max_response_bytes=4096,
        ) as client:
            try:
                async with asyncio.timeout(10):
                    items = [p async for p in client.positions.list(ACCOUNT, max_items=5)]
                assert all(isinstance(item, Position) for item in items)
            except UpvestError as error:
                assert str(error)  # a one-line message, never empty
    finally:
        await server.close()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=bodies, status=statuses, content_type=content_types)
def test_any_response_body_gives_a_model_or_a_typed_error(
    body: bytes, status: int, content_type: str
) -> None:
    asyncio.run(_exercise(body, status, content_type))
