"""A loopback look-alike of the API for the hostile-server tests: :class:`Hostile` answers
``POST /auth/token`` and every other request with handlers a test replaces, and counts what it
receives; the ``hostile`` fixture starts one per test."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from support.keys import p521_key, pem
from upvest_async import Position, RetryPolicy, UpvestClient

ACCOUNT = "c5161455-4d27-4781-bc74-f05532e49a77"
INSTRUMENT = "ccb86937-8a39-4160-8d33-85bf9e902321"
SECRET = "cs-9f8e7d6c5b4a+Secret/=&Ünï"  # characters that form and JSON encoding change
TOKEN = "tok-3f2a9c81d4e7b605"  # short enough to be quoted whole by a validation message
POSITION = {
    "account_id": ACCOUNT, "instrument": {"isin": "US0378331005", "uuid": INSTRUMENT},
    "quantity": "10.4", "available_for_trading": "5.4", "locked_for_trading": "5",
    "pending_settlement": "0",
}
FAST = RetryPolicy(backoff_base=0.001, backoff_max=0.01, retry_after_max=0.05)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def page(items: list[Any], offset: int = 0, total: int | None = None) -> dict[str, Any]:
    return {"data": items, "meta": {"offset": offset, "limit": 1000, "count": len(items),
                                    "total_count": len(items) if total is None else total}}


class Hostile:
    """A loopback look-alike of the API: ``token`` answers ``POST /auth/token``, ``api``
    every other request; both can be replaced by a test. Counts what it receives."""

    def __init__(self) -> None:
        self.token: Handler = self.good_token
        self.api: Handler = self.good_api
        self.token_requests = 0
        self.api_requests: list[web.Request] = []
        self.forms: list[dict[str, str]] = []
        self.server: TestServer | None = None

    async def good_token(self, _: web.Request) -> web.StreamResponse:
        return web.json_response({"access_token": TOKEN, "expires_in": 600,
                                  "token_type": "Bearer"})

    async def good_api(self, request: web.Request) -> web.StreamResponse:
        if request.path.endswith("/positions"):
            return web.json_response(page([POSITION]))
        return web.json_response(POSITION)

    async def _token(self, request: web.Request) -> web.StreamResponse:
        self.token_requests += 1
        self.forms.append(dict(await request.post()))  # type: ignore[arg-type]
        return await self.token(request)

    async def _api(self, request: web.Request) -> web.StreamResponse:
        self.api_requests.append(request)
        return await self.api(request)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/auth/token", self._token)
        app.router.add_route("*", "/{tail:.*}", self._api)
        self.server = TestServer(app, host="127.0.0.1")
        await self.server.start_server()

    @property
    def base_url(self) -> str:
        assert self.server is not None
        return str(self.server.make_url("/")).rstrip("/")

    def client(self, **options: Any) -> UpvestClient:
        settings: dict[str, Any] = {
            "client_id": ACCOUNT, "client_secret": SECRET, "key_id": "k",
            "private_key": pem(p521_key()),
            "base_url": options.pop("base_url", None) or self.base_url, "retry_policy": FAST,
            "timeout": 5, **options,
        }
        return UpvestClient(**settings)


@contextlib.asynccontextmanager
async def running_hostile() -> AsyncIterator[Hostile]:
    """A started :class:`Hostile`, closed on exit."""
    server = Hostile()
    await server.start()
    try:
        yield server
    finally:
        assert server.server is not None
        await server.server.close()


@pytest.fixture
async def hostile() -> AsyncIterator[Hostile]:
    async with running_hostile() as server:
        yield server


def answer(body: bytes, status: int = 200, **headers: str) -> Handler:
    async def handler(_: web.Request) -> web.StreamResponse:
        return web.Response(body=body, status=status, content_type="application/json",
                            headers=headers)

    return handler


async def list_positions(client: UpvestClient) -> list[Position]:
    return [p async for p in client.positions.list(ACCOUNT)]


async def retrieve(client: UpvestClient) -> Position:
    return await client.positions.retrieve(ACCOUNT, INSTRUMENT)
