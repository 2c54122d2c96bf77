"""The transport alone (no middlewares, no server): retry sequence, error mapping and the
idempotency key of every attempt, with responses mocked by aioresponses (see
tests/support/aioresponses_compat.py for why and for the aiohttp 3.14 workaround)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aioresponses import aioresponses
from support.aioresponses_compat import CompatResponse
from yarl import URL

from upvest_async import (
    BadRequestError,
    IdempotencyKeyReusedError,
    InternalServerError,
    RetryBudget,
    RetryPolicy,
)
from upvest_async.stats import ClientStats
from upvest_async.transport import Limits, Transport

BASE = "http://api.test"
ORDERS = f"{BASE}/portfolios/orders"


@pytest.fixture
async def transport() -> AsyncIterator[Transport]:
    async with aiohttp.ClientSession() as session:
        yield Transport(session, URL(BASE), policy=RetryPolicy(backoff_base=0.0),
                        budget=RetryBudget(), limits=Limits(), stats=ClientStats())


def problem(status: int, type_: str, **extra: Any) -> dict[str, Any]:
    body = json.dumps({"status": status, "type": type_, "detail": "d", "request_id": "r-1",
                       **extra})
    return {"status": status, "body": body, "content_type": "application/problem+json",
            "response_class": CompatResponse}


async def test_transient_errors_are_retried_with_one_idempotency_key(
    transport: Transport,
) -> None:
    with aioresponses() as mocked:
        mocked.post(ORDERS, **problem(503, "service_unavailable"), headers={"retry-after": "0"})
        mocked.post(ORDERS, **problem(429, "too_many_requests"), headers={"retry-after": "0"})
        mocked.post(ORDERS, status=200, body=b'{"id": "x"}', response_class=CompatResponse)
        response = await transport.request("POST", "/portfolios/orders", json_body={"a": 1})
        calls = mocked.requests[("POST", URL(ORDERS))]
    assert response.attempts == 3 and response.json() == {"id": "x"}
    keys = {call.kwargs["headers"]["idempotency-key"] for call in calls}
    assert len(calls) == 3 and len(keys) == 1
    assert {call.kwargs["data"] for call in calls} == {b'{"a":1}'}


@pytest.mark.parametrize(
    ("status", "type_", "error"),
    [(400, "bad_request", BadRequestError),
     (422, "idempotency_key_reused", IdempotencyKeyReusedError)],
)
async def test_client_errors_are_not_retried(
    transport: Transport, status: int, type_: str, error: type[Exception]
) -> None:
    with aioresponses() as mocked:
        mocked.post(ORDERS, **problem(status, type_))
        with pytest.raises(error) as caught:
            await transport.request("POST", "/portfolios/orders", json_body={})
        assert len(mocked.requests[("POST", URL(ORDERS))]) == 1
    assert caught.value.attempts == 1  # type: ignore[attr-defined]
    assert caught.value.request_id == "r-1"  # type: ignore[attr-defined]


async def test_retries_stop_at_max_retries_with_the_last_error(transport: Transport) -> None:
    with aioresponses() as mocked:
        for _ in range(3):
            mocked.get(f"{BASE}/x", **problem(500, "internal_server_error"))
        with pytest.raises(InternalServerError) as caught:
            await transport.request("GET", "/x")
    assert caught.value.attempts == 3 and caught.value.status == 500
