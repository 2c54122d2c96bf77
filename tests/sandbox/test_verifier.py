"""The sandbox verifies signatures like the real API: Upvest's own reference signer passes,
tampering and replays are rejected. Requests here are sent by a plain aiohttp session with no
middlewares, so every byte on the wire is what the test says."""

from __future__ import annotations

import time
from typing import Any

import aiohttp
import pytest
from support.sandbox_requests import FORM_TYPE, signed, token_form
from upvest_investment_api import UpvestHttpMessageSigner
from yarl import URL

from upvest_async.sandbox import Sandbox
from upvest_async.signing import content_digest


async def send(
    sandbox: Sandbox, method: str, path: str, headers: dict[str, str], body: bytes = b"",
    query: str = "",
) -> tuple[int, dict[str, Any]]:
    url = URL(sandbox.base_url + path + (f"?{query}" if query else ""), encoded=True)
    async with aiohttp.ClientSession() as session, session.request(
        method, url, headers=headers, data=body or None
    ) as response:
        return response.status, await response.json(content_type=None)


async def access_token(sandbox: Sandbox) -> str:
    body = token_form(sandbox)
    headers = signed(sandbox, "POST", "/auth/token", body=body,
                     extra={"content-type": FORM_TYPE})
    status, payload = await send(sandbox, "POST", "/auth/token", headers, body)
    assert status == 200, payload
    return str(payload["access_token"])


async def test_upvest_reference_signer_is_accepted(sandbox: Sandbox) -> None:
    """Token request and a paged positions request, both signed by `upvest-investment-api`."""
    signer = UpvestHttpMessageSigner(
        private_key_pem=sandbox.credentials.private_key_pem().encode(),
        private_key_passphrase=sandbox.credentials.passphrase.encode(),
        key_id=sandbox.credentials.key_id,
        client_id=sandbox.credentials.client_id,
    )
    body = token_form(sandbox)
    _, _, headers, sent_body, _ = signer.sign_request(
        method="POST", url=sandbox.base_url + "/auth/token",
        headers_in={"content-type": FORM_TYPE}, body=body,
    )
    # The reference signer returns only the headers it adds; the request keeps its own.
    headers = {"content-type": FORM_TYPE} | {name: str(value) for name, value in headers.items()}
    status, payload = await send(sandbox, "POST", "/auth/token", headers, sent_body)
    assert status == 200, payload
    account = sandbox.tenant.account_ids[0]
    path = f"/accounts/{account}/positions"
    authorization = {"authorization": f"Bearer {payload['access_token']}"}
    _, _, headers, _, _ = signer.sign_request(
        method="GET", url=f"{sandbox.base_url}{path}?offset=2&limit=3", headers_in=authorization,
    )
    headers = authorization | {name: str(value) for name, value in headers.items()}
    status, page = await send(sandbox, "GET", path, headers, query="offset=2&limit=3")
    assert status == 200, page
    assert page["data"] == sandbox.tenant.positions(account)[2:5]
    assert sandbox.counters.bad_signatures == 0


async def test_untampered_request_is_accepted(sandbox: Sandbox) -> None:
    token = await access_token(sandbox)
    path = f"/accounts/{sandbox.tenant.account_ids[1]}/positions"
    headers = signed(sandbox, "GET", path, query="limit=1",
                     extra={"authorization": f"Bearer {token}"})
    status, page = await send(sandbox, "GET", path, headers, query="limit=1")
    assert status == 200 and page["meta"]["count"] == 1


@pytest.mark.parametrize("tamper", ["path", "query", "covered-header", "authorization"])
async def test_tampered_get_is_rejected(sandbox: Sandbox, tamper: str) -> None:
    token = await access_token(sandbox)
    first, second = sandbox.tenant.account_ids[:2]
    path, query = f"/accounts/{first}/positions", "limit=1"
    headers = signed(sandbox, "GET", path, query=query,
                     extra={"authorization": f"Bearer {token}"})
    if tamper == "path":
        path = f"/accounts/{second}/positions"
    elif tamper == "query":
        query = "limit=2"
    elif tamper == "covered-header":
        headers["accept"] = "application/pdf"
    else:
        headers["authorization"] = f"Bearer {await access_token(sandbox)}"
    status, problem = await send(sandbox, "GET", path, headers, query=query)
    assert status == 401
    assert problem["detail"].startswith("signature rejected")
    assert problem["request_id"] and problem["type"] == "unauthorized"
    assert sandbox.counters.bad_signatures == 1


@pytest.mark.parametrize("recompute_digest", [False, True])
async def test_tampered_body_is_rejected(sandbox: Sandbox, recompute_digest: bool) -> None:
    body = token_form(sandbox)
    headers = signed(sandbox, "POST", "/auth/token", body=body,
                     extra={"content-type": FORM_TYPE})
    tampered = body.replace(b"client_credentials", b"client_credentialz")  # same length
    assert len(tampered) == len(body) and tampered != body
    if recompute_digest:
        headers["content-digest"] = content_digest(tampered)
    status, problem = await send(sandbox, "POST", "/auth/token", headers, tampered)
    assert status == 401
    assert ("content-digest" in problem["detail"]) != recompute_digest
    assert sandbox.counters.token_requests == 0


async def test_replayed_nonce_is_rejected(sandbox: Sandbox) -> None:
    body = token_form(sandbox)
    headers = signed(sandbox, "POST", "/auth/token", body=body,
                     extra={"content-type": FORM_TYPE})
    assert (await send(sandbox, "POST", "/auth/token", headers, body))[0] == 200
    status, problem = await send(sandbox, "POST", "/auth/token", headers, body)
    assert status == 401 and "nonce" in problem["detail"]
    assert sandbox.counters.nonce_replays == 1


@pytest.mark.parametrize(("shift", "reason"), [(-3600, "expired"), (3600, "future")])
async def test_stale_or_future_created_is_rejected(
    sandbox: Sandbox, shift: int, reason: str
) -> None:
    body = token_form(sandbox)
    headers = signed(sandbox, "POST", "/auth/token", body=body,
                     extra={"content-type": FORM_TYPE}, created=int(time.time()) + shift)
    status, problem = await send(sandbox, "POST", "/auth/token", headers, body)
    assert status == 401 and reason in problem["detail"]


async def test_unsigned_and_uncovered_requests_are_rejected(sandbox: Sandbox) -> None:
    status, problem = await send(sandbox, "GET", "/portfolios/configurations",
                                 {"upvest-client-id": sandbox.credentials.client_id})
    assert status == 401 and "missing" in problem["detail"]
    # Signed, but idempotency-key was added afterwards and is not covered.
    token = await access_token(sandbox)
    headers = signed(sandbox, "GET", "/portfolios/configurations",
                     extra={"authorization": f"Bearer {token}"})
    headers["idempotency-key"] = "0f0e5c6a-94a4-4b57-b5a1-0f4a4d6b2f10"
    status, problem = await send(sandbox, "GET", "/portfolios/configurations", headers)
    assert status == 401 and "not covered: idempotency-key" in problem["detail"]
