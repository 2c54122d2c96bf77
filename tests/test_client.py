"""The client against the sandbox on loopback: paging, tokens, scopes, headers, errors."""

from __future__ import annotations

import asyncio
import gc
import uuid
import warnings
from decimal import Decimal

import pytest
from support.clients import client_for

from upvest_async import (
    AuthenticationError,
    InvalidInputError,
    NotFoundError,
    PermissionDeniedError,
    Position,
    UpvestClient,
)
from upvest_async.converter import unstructure
from upvest_async.sandbox import Sandbox


async def test_list_yields_every_position_in_order(sandbox: Sandbox, client: UpvestClient) -> None:
    account = sandbox.tenant.account_ids[0]
    positions = [position async for position in client.positions.list(account)]
    assert [unstructure(p) for p in positions] == sandbox.tenant.positions(account)
    assert len(positions) == 1200 and client.stats.pages == 2  # limit 1000 per page
    assert isinstance(positions[0].quantity, Decimal)
    assert isinstance(positions[0].account_id, uuid.UUID)


async def test_export_equals_sandbox_data_exactly(sandbox: Sandbox, client: UpvestClient) -> None:
    accounts = list(reversed(sandbox.tenant.account_ids))
    exported = [unstructure(p) async for p in client.positions.export(accounts, concurrency=3)]
    expected = [p for account in accounts for p in sandbox.tenant.positions(account)]
    assert exported == expected


async def test_pages_offset_and_max_items(sandbox: Sandbox, client: UpvestClient) -> None:
    account = sandbox.tenant.account_ids[2]
    expected = sandbox.tenant.positions(account)
    pages = [page async for page in client.positions.list(account, page_size=500).pages()]
    assert [page.meta.count for page in pages] == [500, 500, 200]
    assert [page.meta.offset for page in pages] == [0, 500, 1000]
    assert all(page.meta.total_count == 1200 for page in pages)
    tail = [unstructure(p) async for p in client.positions.list(account, offset=1150)]
    assert tail == expected[1150:]
    few = [unstructure(p) async for p in client.positions.list(account, max_items=3, offset=10)]
    assert few == expected[10:13]


async def test_retrieve_by_isin_and_uuid(sandbox: Sandbox, client: UpvestClient) -> None:
    account = sandbox.tenant.account_ids[0]
    wanted = next(p for p in sandbox.tenant.positions(account) if "isin" in p["instrument"])
    isin, instrument_uuid = wanted["instrument"]["isin"], wanted["instrument"]["uuid"]
    for instrument_id in (f"isin:{isin}", f"urn:isin:{isin}", isin, f"uuid:{instrument_uuid}",
                          uuid.UUID(instrument_uuid)):
        position = await client.positions.retrieve(account, instrument_id)
        assert unstructure(position) == wanted
    assert position.instrument.isin == isin


async def test_not_found_is_a_typed_error_with_problem_details(
    sandbox: Sandbox, client: UpvestClient
) -> None:
    account = sandbox.tenant.account_ids[0]
    with pytest.raises(NotFoundError) as caught:
        await client.positions.retrieve(account, "isin:US0378331005")
    error = caught.value
    assert error.status == 404 and error.type == "not_found" and error.detail
    assert error.request_id == sandbox.state.journal[-1].request_id
    assert str(error).startswith("404 on GET /accounts/")
    with pytest.raises(NotFoundError):
        [p async for p in client.positions.list(uuid.uuid4())]


async def test_bad_input_raises_before_anything_is_sent(
    sandbox: Sandbox, client: UpvestClient
) -> None:
    with pytest.raises(InvalidInputError, match="account_id"):
        client.positions.list("not-a-uuid")
    with pytest.raises(InvalidInputError, match="instrument_id"):
        await client.positions.retrieve(sandbox.tenant.account_ids[0], "isin:us0378331005")
    with pytest.raises(InvalidInputError, match="limit"):
        client.positions.list(sandbox.tenant.account_ids[0], page_size=1001)
    with pytest.raises(InvalidInputError, match="offset"):
        client.positions.list(sandbox.tenant.account_ids[0], offset=-1)
    with pytest.raises(InvalidInputError, match="account_id"):
        [p async for p in client.positions.export([sandbox.tenant.account_ids[0], "nope"])]
    assert len(sandbox.state.journal) == 0


async def test_every_request_carries_the_upvest_headers(
    sandbox: Sandbox, client: UpvestClient
) -> None:
    [c async for c in client.portfolios.configurations.list()]
    await client.positions.retrieve(
        sandbox.tenant.account_ids[0],
        sandbox.tenant.positions(sandbox.tenant.account_ids[0])[0]["instrument"]["uuid"],
    )
    assert len(sandbox.state.journal) == 4  # two token requests, two API calls
    for entry in sandbox.state.journal:
        assert entry.status == 200
        assert entry.headers["upvest-client-id"] == sandbox.credentials.client_id
        assert entry.headers["upvest-api-version"] == "1"
        assert entry.headers["accept"] == "application/json"
        assert entry.headers["upvest-signature-version"] == "15"
    assert "authorization" not in sandbox.state.journal[0].headers  # the token request


async def test_least_scope_per_endpoint(sandbox: Sandbox, client: UpvestClient) -> None:
    [c async for c in client.portfolios.configurations.list()]
    [p async for p in client.positions.list(sandbox.tenant.account_ids[0], max_items=1)]
    issued = sorted(sorted(token.scopes) for token in sandbox.state.tokens.values())
    assert issued == [["portfolios:read"], ["positions:read"]]


async def test_configured_scopes_are_used_and_enforced(sandbox: Sandbox) -> None:
    async with client_for(sandbox, scopes=["portfolios:read"]) as client:
        configurations = [c async for c in client.portfolios.configurations.list()]
        assert len(configurations) == 4
        with pytest.raises(PermissionDeniedError):
            [p async for p in client.positions.list(sandbox.tenant.account_ids[0])]
    assert sandbox.counters.token_requests == 1


async def test_concurrent_first_calls_share_one_token_request(
    sandbox: Sandbox, client: UpvestClient
) -> None:
    account = sandbox.tenant.account_ids[0]
    results = await asyncio.gather(*(
        client.positions.retrieve(account, p["instrument"]["uuid"])
        for p in sandbox.tenant.positions(account)[:100]
    ))
    assert len(results) == 100
    assert sandbox.counters.token_requests == 1 and client.stats.token_requests == 1


async def test_revoked_token_mid_export_is_renewed_once(
    sandbox: Sandbox, client: UpvestClient
) -> None:
    account = sandbox.tenant.account_ids[1]
    seen: list[Position] = []
    async for position in client.positions.list(account, page_size=100, prefetch=1):
        seen.append(position)
        if len(seen) == 150:
            sandbox.state.revoke_tokens()
    assert [unstructure(p) for p in seen] == sandbox.tenant.positions(account)
    # Every page request in flight at revocation gets one 401; all share one renewal.
    assert sandbox.counters.unauthorized >= 1
    assert sandbox.counters.token_requests == 2
    nonces = [entry.nonce for entry in sandbox.state.journal]
    assert None not in nonces and len(set(nonces)) == len(nonces)


async def test_expired_token_mid_export_is_renewed(sandbox: Sandbox, client: UpvestClient) -> None:
    """The sandbox's clock jumps past the token's lifetime; the client renews and completes."""
    offset = 0.0
    sandbox.state.clock = lambda: 1_000_000.0 + offset
    account = sandbox.tenant.account_ids[3]
    seen = []
    # A window of one page, so that most pages are requested after the jump.
    async for position in client.positions.list(account, page_size=100, prefetch=1):
        seen.append(position)
        if len(seen) == 300:
            offset = 10_000.0  # well past 1799 s
    assert len(seen) == 1200 and sandbox.counters.unauthorized >= 1
    assert sandbox.counters.token_requests == 2


async def test_token_is_renewed_before_it_expires(sandbox: Sandbox, client: UpvestClient) -> None:
    now = 5_000.0
    client._tokens._clock = lambda: now
    account = sandbox.tenant.account_ids[0]
    [p async for p in client.positions.list(account, max_items=1)]
    now += 1799 * 0.85  # still valid, not yet in the renewal margin
    [p async for p in client.positions.list(account, max_items=1)]
    assert sandbox.counters.token_requests == 1
    now = 5_000.0 + 1799 - 30  # inside the renewal margin (10 %, at most 60 s): renewed early
    [p async for p in client.positions.list(account, max_items=1)]
    assert sandbox.counters.token_requests == 2
    assert sandbox.counters.unauthorized == 0


async def test_wrong_client_secret_is_an_authentication_error(sandbox: Sandbox) -> None:
    async with client_for(sandbox, client_secret="not-the-secret") as client:
        with pytest.raises(AuthenticationError) as caught:
            await client.positions.retrieve(sandbox.tenant.account_ids[0], "isin:US0378331005")
    assert caught.value.path == "/auth/token"
    assert "not-the-secret" not in str(caught.value)


async def test_session_is_closed_when_the_body_raises(sandbox: Sandbox) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(RuntimeError, match="boom"):
            async with client_for(sandbox) as client:
                [p async for p in client.positions.list(sandbox.tenant.account_ids[0])]
                raise RuntimeError("boom")
        assert client._session is None
        del client
        gc.collect()
    assert not [w for w in caught if "Unclosed" in str(w.message)]


async def test_closed_client_refuses_calls(sandbox: Sandbox) -> None:
    async with client_for(sandbox) as client:
        pass
    with pytest.raises(RuntimeError, match="closed"):
        await client.positions.retrieve(sandbox.tenant.account_ids[0], "isin:US0378331005")
