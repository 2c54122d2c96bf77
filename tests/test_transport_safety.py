"""Transport safety and developer experience: TLS/http rules, timeouts, size limits, raw
responses, per-call options, logging and tracing, and secrets that never leak."""

from __future__ import annotations

import asyncio
import logging
import ssl
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from support.clients import client_for
from support.keys import p521_key, pem

from upvest_async import (
    APITimeoutError,
    ConfigurationError,
    IdempotencyKeyReusedError,
    InvalidInputError,
    ResponseTooLargeError,
    ResponseValidationError,
    UpvestClient,
)
from upvest_async.sandbox import Sandbox

ID = "c5161455-4d27-4781-bc74-f05532e49a77"


def _settings(base_url: str, **extra: Any) -> dict[str, Any]:
    return {"client_id": ID, "client_secret": "fake-secret", "key_id": "k",
            "private_key": pem(p521_key()), "base_url": base_url, **extra}


@pytest.fixture
async def fake_api() -> AsyncIterator[tuple[TestServer, dict[str, Any]]]:
    """A loopback server that issues tokens and answers the positions list as ``behaviour``
    says (``stall``, ``huge``, ``chunked-huge``)."""
    behaviour: dict[str, Any] = {"mode": "stall"}

    async def token(_: web.Request) -> web.Response:
        return web.json_response({"access_token": "t", "expires_in": 60, "scope": ""})

    async def positions(request: web.Request) -> web.StreamResponse:
        if behaviour["mode"] == "stall":
            await asyncio.sleep(3600)
        if behaviour["mode"] == "huge":
            return web.Response(body=b"x" * 200_000, content_type="application/json",
                                headers={"upvest-request-id": "req-huge"})
        response = web.StreamResponse(headers={"upvest-request-id": "req-huge"})
        await response.prepare(request)
        for _ in range(50):
            await response.write(b"y" * 10_000)
        return response

    app = web.Application()
    app.router.add_post("/auth/token", token)
    app.router.add_get("/accounts/{account}/positions", positions)
    app.router.add_get("/accounts/{account}/positions/{instrument}", positions)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield server, behaviour
    finally:
        await server.close()


async def test_a_stalling_server_never_hangs_a_call(
    fake_api: tuple[TestServer, dict[str, Any]],
) -> None:
    server, _ = fake_api
    base = str(server.make_url("/")).rstrip("/")
    async with UpvestClient(**_settings(base, read_timeout=0.3, max_retries=1)) as client:
        with pytest.raises(APITimeoutError) as caught:
            [p async for p in client.positions.list(ID)]
    assert caught.value.attempts == 2  # timeouts are retried, then reported


@pytest.mark.parametrize("mode", ["huge", "chunked-huge"])
async def test_oversized_bodies_are_refused(
    fake_api: tuple[TestServer, dict[str, Any]], mode: str
) -> None:
    server, behaviour = fake_api
    behaviour["mode"] = mode
    base = str(server.make_url("/")).rstrip("/")
    async with UpvestClient(**_settings(base, max_response_bytes=100_000)) as client:
        with pytest.raises(ResponseTooLargeError, match="100000") as caught:
            [p async for p in client.positions.list(ID)]
    assert caught.value.request_id == "req-huge"
    assert str(caught.value).endswith("(request id req-huge)")


def test_plain_http_only_for_loopback_and_tls_cannot_be_disabled() -> None:
    for url in ("http://127.0.0.1:8080", "http://localhost:1", "http://[::1]:5"):
        UpvestClient(**_settings(url))
    for url in ("http://sandbox.upvest.co", "http://10.0.0.1"):
        with pytest.raises(ConfigurationError, match="https"):
            UpvestClient(**_settings(url))
    with pytest.raises(ConfigurationError, match="cannot be turned off"):
        UpvestClient(**_settings("https://api.upvest.co", ssl=False))
    UpvestClient(**_settings("https://api.upvest.co", ssl=ssl.create_default_context()))


async def test_raw_response_gives_status_headers_request_id_and_attempts(
    sandbox: Sandbox, client: UpvestClient
) -> None:
    account = sandbox.tenant.account_ids[0]
    instrument = sandbox.tenant.positions(account)[0]["instrument"]["uuid"]
    response = await client.with_raw_response(client.positions.retrieve, account, instrument)
    assert response.status == 200 and response.attempts == 1
    assert response.request_id == sandbox.state.journal[-1].request_id
    assert response.headers["content-type"].startswith("application/json")
    assert str(response.parsed.instrument.uuid) == instrument
    order = await client.with_raw_response(
        client.portfolios.orders.create, user_id=ID, account_id=account, cash_amount="1",
        side="BUY")
    assert order.parsed.status == "NEW" and order.request_id


async def test_per_call_options_and_extra_headers(sandbox: Sandbox, client: UpvestClient) -> None:
    account = sandbox.tenant.account_ids[0]
    await client.portfolios.configurations.retrieve(
        account, timeout=5.0, max_retries=0, extra_headers={"x-correlation-id": "abc-123"})
    assert sandbox.state.journal[-1].headers["x-correlation-id"] == "abc-123"
    for reserved in ("Authorization", "signature", "idempotency-key", "upvest-client-id",
                     "content-digest"):
        with pytest.raises(InvalidInputError, match="extra_headers"):
            await client.portfolios.configurations.retrieve(
                account, extra_headers={reserved: "x"})
    view = client.with_options(extra_headers={"x-tenant-tag": "t1"}, max_retries=0)
    [c async for c in view.portfolios.configurations.list(max_items=1)]
    assert sandbox.state.journal[-1].headers["x-tenant-tag"] == "t1"
    await view.aclose()  # a view does not close the shared session
    await client.portfolios.configurations.retrieve(account)


async def test_trace_configs_are_handed_to_aiohttp(sandbox: Sandbox) -> None:
    seen: list[str] = []
    trace = aiohttp.TraceConfig()

    async def on_end(_: Any, __: Any, params: aiohttp.TraceRequestEndParams) -> None:
        seen.append(f"{params.method} {params.url.path} {params.response.status}")

    trace.on_request_end.append(on_end)
    async with client_for(sandbox, trace_configs=[trace]) as client:
        [c async for c in client.portfolios.configurations.list(max_items=1)]
    assert seen == ["POST /auth/token 200", "GET /portfolios/configurations 200"]


async def test_debug_logs_name_each_request_and_no_secret_leaks(
    sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    texts: list[str] = []
    async with client_for(sandbox) as client:
        positions = [p async for p in client.positions.export(sandbox.tenant.account_ids[:2])]
        key = str(uuid.uuid4())
        await client.portfolios.orders.create(user_id=ID, account_id=sandbox.tenant.account_ids[0],
                                              cash_amount="5", side="BUY", idempotency_key=key)
        with pytest.raises(IdempotencyKeyReusedError) as caught:
            await client.portfolios.orders.create(
                user_id=ID, account_id=sandbox.tenant.account_ids[0], cash_amount="6",
                side="BUY", idempotency_key=key)
        texts += [str(caught.value), repr(caught.value), caught.value.body.decode()]
        texts += [repr(client), repr(client._tokens), repr(client.stats)]
    assert len(positions) == 2400
    request_lines = [r.getMessage() for r in caplog.records
                     if r.name == "upvest_async" and r.levelno == logging.DEBUG]
    assert any(line.startswith("GET /accounts/") and "request id" in line
               for line in request_lines)
    assert any(line.startswith("POST /portfolios/orders -> 422") for line in request_lines)
    texts += [r.getMessage() for r in caplog.records] + [caplog.text]
    secrets = [sandbox.credentials.client_secret, sandbox.credentials.passphrase,
               *sandbox.state.tokens, "PRIVATE KEY"]
    private_number = str(sandbox.credentials.private_key.private_numbers().private_value)
    secrets.append(private_number)
    for text in texts:
        for secret in secrets:
            assert secret not in text, f"secret leaked into {text[:80]!r}"


async def test_bad_response_body_is_a_typed_error(
    fake_api: tuple[TestServer, dict[str, Any]],
) -> None:
    server, behaviour = fake_api
    behaviour["mode"] = "huge"
    base = str(server.make_url("/")).rstrip("/")
    async with UpvestClient(**_settings(base)) as client:
        with pytest.raises(ResponseValidationError, match="not JSON"):
            [p async for p in client.positions.list(ID)]
        with pytest.raises(ResponseValidationError, match="not JSON"):
            await client.positions.retrieve(ID, "isin:US0378331005")
