"""The sandbox's Portfolios endpoints E1 to E15: state, validation, idempotency, scopes.

Most calls go through ``client._request`` so every field of the answer is checked as served; the
tests that need a request the client would never send (no ``idempotency-key``, another content
type) sign it by hand with :func:`upvest_async.signing.sign_request`.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
from support.clients import client_for
from support.sandbox_requests import ITEMS
from yarl import URL

from upvest_async import UpvestClient
from upvest_async.errors import (
    APIStatusError,
    BadRequestError,
    ConflictError,
    InternalServerError,
    NotFoundError,
    PermissionDeniedError,
    UnprocessableEntityError,
)
from upvest_async.sandbox import Sandbox, SandboxCounters, Tenant
from upvest_async.sandbox.idempotency import Claim, IdempotencyStore, StoredResponse
from upvest_async.sandbox.portfolios import PortfolioStore
from upvest_async.sandbox.problems import Problem
from upvest_async.signing import sign_request
from upvest_async.transport import RawResponse

TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
WEIGHT_RULE = r"does not match ^(100|[0-9]{1,2}(\.[0-9]{1,5})?)$"


def new_id() -> str:
    return str(uuid.uuid4())


def order_body(account: str, **changes: Any) -> dict[str, Any]:
    return {"user_id": "4b9732bd-7496-4e91-8a5f-6360479d7fed", "account_id": account,
            "cash_amount": "100.00", "currency": "EUR", "side": "BUY", **changes}


async def call(
    client: UpvestClient, method: str, path: str, body: Any = None, *, key: str | None = None,
    params: dict[str, str | int] | None = None,
) -> RawResponse:
    return await client._request(method, path, json_body=body, idempotency_key=key, params=params)


async def get(client: UpvestClient, path: str, **params: str | int) -> Any:
    return (await call(client, "GET", path, params=params or None)).json()


async def problem(client: UpvestClient, method: str, path: str, body: Any = None,
                  **params: str | int) -> APIStatusError:
    with pytest.raises(APIStatusError) as info:
        await call(client, method, path, body, params=params or None)
    return info.value


async def raw(
    sandbox: Sandbox, method: str, path: str, body: bytes = b"", *,
    headers: dict[str, str] | None = None, scope: str = "portfolios:admin",
) -> tuple[int, dict[str, str], bytes]:
    """Send one request signed by hand: nothing is added but what ``headers`` say."""
    form = urlencode({"client_id": sandbox.credentials.client_id,
                      "client_secret": sandbox.credentials.client_secret,
                      "grant_type": "client_credentials", "scope": scope}).encode()
    _, _, token = await _send(sandbox, "POST", "/auth/token", form,
                              {"content-type": "application/x-www-form-urlencoded"})
    sent = {"authorization": f"Bearer {json.loads(token)['access_token']}", **(headers or {})}
    return await _send(sandbox, method, path, body, sent)


async def _send(
    sandbox: Sandbox, method: str, path: str, body: bytes, extra: dict[str, str]
) -> tuple[int, dict[str, str], bytes]:
    headers = {"accept": "application/json", "upvest-api-version": "1",
               "upvest-client-id": sandbox.credentials.client_id, **extra}
    if body:
        headers["content-length"] = str(len(body))
    headers |= sign_request(
        method=method, path=path, query="", headers=headers, body=body,
        private_key=sandbox.credentials.private_key, key_id=sandbox.credentials.key_id,
    )
    url = URL(sandbox.base_url + path, encoded=True)
    async with aiohttp.ClientSession() as session, session.request(
        method, url, headers=headers, data=body or None
    ) as response:
        return response.status, {k.lower(): v for k, v in response.headers.items()}, \
            await response.read()


# Seeded state and E1 (list allocations)


async def test_allocations_are_seeded_from_the_tenant(sandbox: Sandbox, client: UpvestClient
                                                      ) -> None:
    used = sorted({c["allocation_id"] for c in sandbox.tenant.configurations.values()})
    page = await get(client, "/portfolios/allocations")
    assert page["meta"] == {"offset": 0, "limit": 100, "count": len(used),
                            "total_count": len(used), "sort": "id", "order": "ASC"}
    assert [a["id"] for a in page["data"]] == used
    isins = {i["isin"] for i in sandbox.tenant.instruments if "isin" in i}
    for number, allocation in enumerate(page["data"], start=1):
        assert set(allocation) == {"id", "created_at", "updated_at", "name", "allocation"}
        assert allocation["name"] == f"Allocation {number}"
        assert allocation["created_at"] == allocation["updated_at"] == "2021-07-21T14:10:00.000Z"
        assert len(allocation["allocation"]) in {2, 3}
        assert sum(Decimal(item["weight"]) for item in allocation["allocation"]) == 1
        assert all(item["instrument_id_type"] == "ISIN" and item["instrument_id"] in isins
                   for item in allocation["allocation"])
    # Deterministic from the tenant's seed.
    again = PortfolioStore(Tenant(accounts=4, positions_per_account=1200, seed=7),
                           SandboxCounters())
    assert again.allocations == sandbox.state.portfolios.allocations


async def test_list_allocations_filters_sort_and_paging(sandbox: Sandbox, client: UpvestClient
                                                        ) -> None:
    created = (await call(client, "POST", "/portfolios/allocations", {"allocation": ITEMS})).json()
    by_instrument = await get(client, "/portfolios/allocations",
                              instrument_ids="XX0000000000,c2721bc0-9f65-474b-a846-b237eb17fb05")
    assert [a["id"] for a in by_instrument["data"]] == [created["id"]]
    recent = await get(client, "/portfolios/allocations", start_date="2022-10-14T00:00:00Z")
    assert [a["id"] for a in recent["data"]] == [created["id"]]
    seeded = await get(client, "/portfolios/allocations",
                       end_date="2021-07-21T14:10:00Z", start_date="2021-07-21T14:10:00+00:00")
    assert created["id"] not in {a["id"] for a in seeded["data"]}  # inclusive bounds
    assert seeded["meta"]["total_count"] == len(sandbox.state.portfolios.allocations) - 1
    page = await get(client, "/portfolios/allocations", offset=1, limit=2, sort="id",
                     order="ASC")
    every = sorted(sandbox.state.portfolios.allocations)
    assert [a["id"] for a in page["data"]] == every[1:3]
    assert page["meta"]["count"] == 2 and page["meta"]["total_count"] == len(every)
    for params, field in ((({"sort": "name"}), "sort"), ({"order": "DESC"}, "order"),
                          ({"start_date": "2022-10-14"}, "start_date"),
                          ({"end_date": "yesterday"}, "end_date"), ({"limit": 1001}, "limit")):
        error = await problem(client, "GET", "/portfolios/allocations", **params)
        assert error.status == 400 and error.detail is not None and field in error.detail


# E2 to E4 (allocations)


async def test_create_allocation(sandbox: Sandbox, client: UpvestClient) -> None:
    response = await call(client, "POST", "/portfolios/allocations",
                          {"name": "Growth", "allocation": ITEMS})
    assert response.status == 200 and response.headers["content-type"] == "application/json"
    created = response.json()
    assert uuid.UUID(created["id"]).version == 4 and created["id"] == created["id"].lower()
    assert TIMESTAMP.fullmatch(created["created_at"])
    assert created["created_at"] == created["updated_at"]
    assert created["name"] == "Growth"
    assert created["allocation"] == [{"instrument_id_type": "ISIN", **item} for item in ITEMS]
    assert sandbox.counters.created["allocation"] == 1
    unnamed = (await call(client, "POST", "/portfolios/allocations",
                          {"allocation": ITEMS[:1]})).json()
    assert unnamed["name"] == f"Allocation {len(sandbox.state.portfolios.allocations)}"
    assert await get(client, f"/portfolios/allocations/{created['id']}") == created


@pytest.mark.parametrize(("body", "detail"), [
    ({"allocation": [ITEMS[0], {**ITEMS[1], "weight": "100.0"}]},
     f"allocation[1].weight: {WEIGHT_RULE}"),
    ({"allocation": [{**ITEMS[0], "weight": "0.123456"}]}, f"allocation[0].weight: {WEIGHT_RULE}"),
    ({"allocation": [{**ITEMS[0], "weight": 0.5}]}, "allocation[0].weight: must be a string"),
    ({"allocation": [{**ITEMS[2], "instrument_id_type": "ISIN"}]},
     "allocation[0].instrument_id: does not match ^[A-Z]{2}[A-Z0-9]{9}[0-9]$"),
    ({"allocation": [{**ITEMS[0], "instrument_id_type": "UPVEST"}]},
     "allocation[0].instrument_id: does not match ^[0-9a-fA-F]{8}-?"),
    ({"allocation": [{**ITEMS[0], "instrument_id_type": "WKN"}]},
     "allocation[0].instrument_id_type: must be one of ISIN, UPVEST"),
    ({"allocation": [{**ITEMS[0], "extra": 1}]}, "allocation[0].extra: unknown field"),
    ({"allocation": [{"instrument_id": "US0378331005"}]}, "allocation[0].weight: is required"),
    ({"allocation": []}, "allocation: must not be empty"),
    ({"allocation": {}}, "allocation: must be an array"),
    ({"name": "x"}, "allocation: is required"),
    ({"name": 1, "allocation": ITEMS}, "name: must be a string"),
    ({"allocation": ITEMS, "owner": "me"}, "owner: unknown field"),
    (["not", "an", "object"], "request body: must be a JSON object"),
])
async def test_create_allocation_rejects_bad_bodies(
    sandbox: Sandbox, client: UpvestClient, body: Any, detail: str
) -> None:
    error = await problem(client, "POST", "/portfolios/allocations", body)
    assert isinstance(error, BadRequestError) and error.type == "bad_request"
    assert error.detail is not None and error.detail.startswith(detail)
    assert sandbox.counters.created["allocation"] == 0


async def test_retrieve_allocation_unknown_or_malformed_is_404(client: UpvestClient) -> None:
    for allocation_id in (new_id(), "not-a-uuid"):
        error = await problem(client, "GET", f"/portfolios/allocations/{allocation_id}")
        assert isinstance(error, NotFoundError) and error.type == "not_found"


async def test_update_allocation(sandbox: Sandbox, client: UpvestClient) -> None:
    created = (await call(client, "POST", "/portfolios/allocations",
                          {"name": "Growth", "allocation": ITEMS})).json()
    path = f"/portfolios/allocations/{created['id']}"
    replaced = [{"instrument_id": "IE00B0M62Q58", "instrument_id_type": "ISIN", "weight": "100"}]
    updated = (await call(client, "PUT", path, {"allocation": replaced})).json()
    assert updated["allocation"] == replaced and updated["name"] == "Growth"
    assert updated["created_at"] == created["created_at"]
    assert TIMESTAMP.fullmatch(updated["updated_at"])
    assert updated["updated_at"] > created["updated_at"]
    renamed = (await call(client, "PUT", path, {"name": "Calm", "allocation": replaced})).json()
    assert renamed["name"] == "Calm" and await get(client, path) == renamed
    seeded = next(iter(sandbox.state.portfolios.allocations))
    assert (await call(client, "PUT", f"/portfolios/allocations/{seeded}",
                       {"allocation": replaced})).json()["allocation"] == replaced
    assert sandbox.counters.created["allocation"] == 1
    unknown = await problem(client, "PUT", f"/portfolios/allocations/{new_id()}",
                            {"allocation": replaced})
    assert unknown.status == 404
    malformed = await problem(client, "PUT", "/portfolios/allocations/123",
                              {"allocation": replaced})
    assert malformed.status == 400 and malformed.detail is not None
    assert malformed.detail.startswith("allocation_id: must be a UUID")
    bad = await problem(client, "PUT", path, {"allocation": [{**replaced[0], "weight": "101"}]})
    assert bad.status == 400 and bad.detail == f"allocation[0].weight: {WEIGHT_RULE}"


async def test_update_allocation_without_idempotency_key(sandbox: Sandbox) -> None:
    """Upvest's reference prints no idempotency-key on E4 (Q15): a PUT without one just runs."""
    allocation_id = next(iter(sandbox.state.portfolios.allocations))
    body = json.dumps({"allocation": ITEMS[:1]}).encode()
    for _ in range(2):
        status, _, answer = await raw(sandbox, "PUT", f"/portfolios/allocations/{allocation_id}",
                                      body, headers={"content-type": "application/json"})
        assert status == 200 and json.loads(answer)["allocation"][0]["weight"] == "0.5"
    assert sandbox.counters.idempotent_replays == 0


# E5 to E8 (configurations)


async def test_list_configurations(sandbox: Sandbox, client: UpvestClient) -> None:
    page = await get(client, "/portfolios/configurations")
    expected = [sandbox.tenant.configurations[a] for a in sorted(sandbox.tenant.account_ids)]
    assert page["data"] == expected
    assert page["meta"] == {"offset": 0, "limit": 100, "count": 4, "total_count": 4,
                            "sort": "account_id", "order": "ASC"}
    first = expected[0]
    by_account = await get(client, "/portfolios/configurations",
                           account_id=first["account_id"].upper())
    assert by_account["data"] == [first]
    by_allocation = await get(client, "/portfolios/configurations",
                              allocation_id=first["allocation_id"])
    assert by_allocation["data"] == [c for c in expected
                                     if c["allocation_id"] == first["allocation_id"]]
    assert (await get(client, "/portfolios/configurations", limit=0))["data"] == []
    error = await problem(client, "GET", "/portfolios/configurations", account_id="abc")
    assert error.status == 400 and error.detail is not None
    assert error.detail.startswith("account_id: must be a UUID")
    error = await problem(client, "GET", "/portfolios/configurations", sort="id")
    assert error.status == 400 and error.detail == "sort: must be account_id"


async def test_create_configuration(sandbox: Sandbox, client: UpvestClient) -> None:
    account, allocation = new_id(), next(iter(sandbox.state.portfolios.allocations))
    strategies = [new_id(), new_id()]
    response = await call(client, "POST", "/portfolios/configurations", {
        "account_id": account.upper(), "allocation_id": allocation,
        "rebalancing_strategy_ids": strategies,
    })
    assert response.status == 200
    created = response.json()
    assert list(created) == ["account_id", "allocation_id", "created_at", "updated_at",
                             "rebalancing_strategy_ids"]
    assert created["account_id"] == account and created["allocation_id"] == allocation
    assert created["rebalancing_strategy_ids"] == strategies
    assert TIMESTAMP.fullmatch(created["created_at"])
    assert created["created_at"] == created["updated_at"]
    assert await get(client, f"/portfolios/configurations/{account}") == created
    assert sandbox.tenant.configurations[account] == created
    assert sandbox.counters.created["configuration"] == 1
    other = (await call(client, "POST", "/portfolios/configurations",
                        {"account_id": new_id(), "allocation_id": allocation})).json()
    assert other["rebalancing_strategy_ids"] == []
    page = await get(client, "/portfolios/configurations")
    assert [c["account_id"] for c in page["data"]] == sorted(c["account_id"] for c in page["data"])
    assert page["meta"]["total_count"] == 6


async def test_create_configuration_errors(sandbox: Sandbox, client: UpvestClient) -> None:
    allocation = next(iter(sandbox.state.portfolios.allocations))
    path = "/portfolios/configurations"
    taken = await problem(client, "POST", path, {
        "account_id": sandbox.tenant.account_ids[0], "allocation_id": allocation})
    assert isinstance(taken, ConflictError) and taken.type == "conflict"
    unknown = await problem(client, "POST", path,
                            {"account_id": new_id(), "allocation_id": new_id()})
    assert isinstance(unknown, NotFoundError)
    for body, detail in (
        ({"allocation_id": allocation}, "account_id: is required"),
        ({"account_id": "f2f7d2c7d79b4de2ae9bd01646259f9e", "allocation_id": allocation},
         "account_id: must be a UUID"),
        ({"account_id": new_id(), "allocation_id": allocation,
          "rebalancing_strategy_ids": ["x"]}, "rebalancing_strategy_ids[0]: must be a UUID"),
        ({"account_id": new_id(), "allocation_id": allocation,
          "rebalancing_strategy_ids": None}, "rebalancing_strategy_ids: must be an array"),
    ):
        error = await problem(client, "POST", path, body)
        assert error.status == 400 and error.detail is not None
        assert error.detail.startswith(detail)
    assert sandbox.counters.created["configuration"] == 0


async def test_retrieve_configuration_unknown_is_404(client: UpvestClient) -> None:
    for account in (new_id(), "nope"):
        error = await problem(client, "GET", f"/portfolios/configurations/{account}")
        assert error.status == 404


async def test_update_configuration(sandbox: Sandbox, client: UpvestClient) -> None:
    account = sandbox.tenant.account_ids[1]
    before = dict(sandbox.tenant.configurations[account])
    other = next(a for a in sandbox.state.portfolios.allocations if a != before["allocation_id"])
    path = f"/portfolios/configurations/{account}"
    updated = (await call(client, "PATCH", path, {"allocation_id": other})).json()
    assert updated["allocation_id"] == other
    assert updated["rebalancing_strategy_ids"] == before["rebalancing_strategy_ids"]
    assert updated["created_at"] == before["created_at"]
    assert TIMESTAMP.fullmatch(updated["updated_at"])
    assert updated["updated_at"] > before["updated_at"]
    strategies = [new_id()]
    again = (await call(client, "PATCH", path, {"rebalancing_strategy_ids": strategies})).json()
    assert again["rebalancing_strategy_ids"] == strategies and again["allocation_id"] == other
    assert await get(client, path) == again
    assert (await problem(client, "PATCH", f"/portfolios/configurations/{new_id()}",
                          {"allocation_id": other})).status == 404
    assert (await problem(client, "PATCH", path, {"allocation_id": new_id()})).status == 404
    assert (await problem(client, "PATCH", "/portfolios/configurations/x", {})).status == 400
    error = await problem(client, "PATCH", path, {"account_id": account})
    assert error.status == 400 and error.detail == "account_id: unknown field"


# E9 to E13 (portfolio orders)


async def test_create_order(sandbox: Sandbox, client: UpvestClient) -> None:
    account = sandbox.tenant.account_ids[0]
    response = await call(client, "POST", "/portfolios/orders", order_body(account))
    assert response.status == 200
    order = response.json()
    assert list(order) == ["id", "created_at", "updated_at", "user_id", "account_id",
                           "allocation_id", "cash_amount", "currency", "status", "type",
                           "post_tax", "orders"]
    assert order["account_id"] == account
    assert order["allocation_id"] == sandbox.tenant.configurations[account]["allocation_id"]
    assert order["user_id"] == "4b9732bd-7496-4e91-8a5f-6360479d7fed"
    assert (order["cash_amount"], order["currency"], order["status"], order["type"],
            order["post_tax"], order["orders"]) == ("100.00", "EUR", "NEW", "BUY", False, [])
    assert TIMESTAMP.fullmatch(order["created_at"]) and order["created_at"] == order["updated_at"]
    assert await get(client, f"/portfolios/orders/{order['id']}") == order
    body = order_body(account, side="SELL", post_tax=True, cash_amount=".5")
    del body["currency"]
    sell = (await call(client, "POST", "/portfolios/orders", body)).json()
    assert (sell["type"], sell["post_tax"], sell["currency"], sell["cash_amount"]) == (
        "SELL", True, "EUR", ".5")
    assert sandbox.counters.created["order"] == 2


@pytest.mark.parametrize(("changes", "detail"), [
    ({"cash_amount": "1,000"}, "cash_amount: does not match ^[0-9]{0,63}(\\.[0-9]{1,27})?$"),
    ({"cash_amount": "-1"}, "cash_amount: does not match"),
    ({"cash_amount": 100}, "cash_amount: must be a string"),
    ({"currency": "USD"}, "currency: must be one of EUR"),
    ({"side": "HOLD"}, "side: must be one of BUY, SELL"),
    ({"post_tax": "false"}, "post_tax: must be a boolean"),
    ({"user_id": None}, "user_id: must be a string"),
    ({"type": "BUY"}, "type: unknown field"),
])
async def test_create_order_rejects_bad_bodies(
    sandbox: Sandbox, client: UpvestClient, changes: dict[str, Any], detail: str
) -> None:
    body = order_body(sandbox.tenant.account_ids[0], **changes)
    error = await problem(client, "POST", "/portfolios/orders", body)
    assert error.status == 400 and error.detail is not None and error.detail.startswith(detail)


async def test_create_order_missing_field_or_unconfigured_account(
    sandbox: Sandbox, client: UpvestClient
) -> None:
    body = order_body(sandbox.tenant.account_ids[0])
    del body["side"]
    error = await problem(client, "POST", "/portfolios/orders", body)
    assert error.status == 400 and error.detail == "side: is required"
    error = await problem(client, "POST", "/portfolios/orders", order_body(new_id()))
    assert isinstance(error, NotFoundError) and error.detail is not None
    assert "no portfolio configuration" in error.detail
    assert sandbox.counters.created["order"] == 0


async def test_liquidation_request(sandbox: Sandbox, client: UpvestClient) -> None:
    account, user = sandbox.tenant.account_ids[2], new_id()
    path = f"/portfolios/{account}/liquidation_request"
    order = (await call(client, "POST", path, {"user_id": user})).json()
    assert (order["type"], order["status"], order["cash_amount"], order["currency"],
            order["post_tax"], order["orders"]) == ("LIQUIDATION", "NEW", "0", "EUR", False, [])
    assert order["user_id"] == user and order["account_id"] == account
    assert order["allocation_id"] == sandbox.tenant.configurations[account]["allocation_id"]
    assert await get(client, f"/portfolios/orders/{order['id']}") == order
    assert sandbox.counters.created["order"] == 1
    error = await problem(client, "POST", f"/portfolios/{new_id()}/liquidation_request",
                          {"user_id": user})
    assert error.status == 404
    error = await problem(client, "POST", "/portfolios/abc/liquidation_request",
                          {"user_id": user})
    assert error.status == 400 and error.detail is not None
    assert error.detail.startswith("account_id: must be a UUID")
    error = await problem(client, "POST", path, {"user_id": user, "cash_amount": "1"})
    assert error.status == 400 and error.detail == "cash_amount: unknown field"
    error = await problem(client, "POST", path, {})
    assert error.status == 400 and error.detail == "user_id: is required"


async def test_list_orders(sandbox: Sandbox, client: UpvestClient) -> None:
    first, second = sandbox.tenant.account_ids[:2]
    orders = [(await call(client, "POST", "/portfolios/orders", order_body(account))).json()
              for account in (first, second, first)]
    page = await get(client, "/portfolios/orders")
    assert page["data"] == sorted(orders, key=lambda o: o["id"])
    assert page["meta"] == {"offset": 0, "limit": 100, "count": 3, "total_count": 3,
                            "sort": "id", "order": "ASC"}
    mine = await get(client, "/portfolios/orders", account_id=first)
    assert {o["id"] for o in mine["data"]} == {orders[0]["id"], orders[2]["id"]}
    allocation = sandbox.tenant.configurations[second]["allocation_id"]
    by_allocation = await get(client, "/portfolios/orders", allocation_id=allocation)
    assert orders[1] in by_allocation["data"]
    since = await get(client, "/portfolios/orders", start_date=orders[1]["created_at"],
                      end_date=orders[1]["created_at"])
    assert since["data"] == [orders[1]]
    assert (await get(client, "/portfolios/orders", start_date="2001-01-01T00:00:00Z",
                      end_date="2002-01-01T00:00:00.5+02:00"))["data"] == []
    error = await problem(client, "GET", "/portfolios/orders", allocation_id="x")
    assert error.status == 400


async def test_cancel_order(sandbox: Sandbox, client: UpvestClient) -> None:
    order = (await call(client, "POST", "/portfolios/orders",
                        order_body(sandbox.tenant.account_ids[0]))).json()
    path = f"/portfolios/orders/{order['id']}"
    response = await call(client, "DELETE", path)
    assert response.status == 204 and response.body == b""
    cancelled = await get(client, path)
    assert cancelled["status"] == "CANCELLED"
    assert cancelled["updated_at"] > order["updated_at"]
    assert cancelled["created_at"] == order["created_at"]
    again = await problem(client, "DELETE", path)
    assert isinstance(again, ConflictError) and again.detail is not None
    assert "CANCELLED" in again.detail
    assert (await problem(client, "DELETE", f"/portfolios/orders/{new_id()}")).status == 404
    assert (await problem(client, "GET", f"/portfolios/orders/{new_id()}")).status == 404


async def test_cancel_is_refused_once_the_order_is_processing(
    sandbox: Sandbox, client: UpvestClient
) -> None:
    order = (await call(client, "POST", "/portfolios/orders",
                        order_body(sandbox.tenant.account_ids[0]))).json()
    moved = sandbox.portfolios.set_order_status(order["id"], "PROCESSING")
    assert moved["updated_at"] > order["updated_at"]
    error = await problem(client, "DELETE", f"/portfolios/orders/{order['id']}")
    assert error.status == 409 and error.type == "conflict"
    assert (await get(client, f"/portfolios/orders/{order['id']}"))["status"] == "PROCESSING"
    with pytest.raises(ValueError, match="status must be one of"):
        sandbox.state.portfolios.set_order_status(order["id"], "DONE")
    with pytest.raises(KeyError):
        sandbox.state.portfolios.set_order_status(new_id(), "FILLED")


# E14, E15 (rebalancing executions)


async def test_trigger_and_retrieve_rebalancing(sandbox: Sandbox, client: UpvestClient) -> None:
    accounts = sandbox.tenant.account_ids[:2]
    path = "/portfolios/rebalancings/executions"
    triggered = (await call(client, "POST", path, {"accounts": accounts})).json()
    assert list(triggered) == ["id"] and uuid.UUID(triggered["id"]).version == 4
    execution = await get(client, f"{path}/{triggered['id']}")
    assert list(execution) == ["id", "created_at", "updated_at", "accounts"]
    assert execution["accounts"] == accounts and TIMESTAMP.fullmatch(execution["created_at"])
    allocation = next(iter(sandbox.state.portfolios.allocations))
    by_allocation = (await call(client, "POST", path, {"allocations": [allocation]})).json()
    execution = await get(client, f"{path}/{by_allocation['id']}")
    assert execution["allocations"] == [allocation] and "accounts" not in execution
    assert sandbox.counters.created["execution"] == 2
    assert (await problem(client, "GET", f"{path}/{new_id()}")).status == 404
    assert (await problem(client, "GET", f"{path}/42")).status == 404


@pytest.mark.parametrize(("body", "status", "detail"), [
    ({}, 400, "request body: exactly one of accounts or allocations"),
    ({"accounts": ["A"], "allocations": ["B"]}, 400, "request body: exactly one of"),
    ({"accounts": []}, 400, "accounts: must not be empty"),
    ({"allocations": ["nope"]}, 400, "allocations[0]: must be a UUID"),
    ({"accounts": "all"}, 400, "accounts: must be an array"),
    ({"accounts": [str(uuid.UUID(int=1))]}, 404, "account 00000000-0000-0000-0000-000000000001"),
    ({"allocations": [str(uuid.UUID(int=2))]}, 404, "no portfolio allocation"),
])
async def test_trigger_rebalancing_errors(
    sandbox: Sandbox, client: UpvestClient, body: dict[str, Any], status: int, detail: str
) -> None:
    error = await problem(client, "POST", "/portfolios/rebalancings/executions", body)
    assert error.status == status and error.detail is not None
    assert error.detail.startswith(detail)
    assert sandbox.counters.created["execution"] == 0


# Idempotency


async def test_same_key_same_request_is_replayed(sandbox: Sandbox, client: UpvestClient) -> None:
    key, body = new_id(), order_body(sandbox.tenant.account_ids[0])
    first = await call(client, "POST", "/portfolios/orders", body, key=key)
    assert "upvest-idempotent-replay" not in first.headers
    second = await call(client, "POST", "/portfolios/orders", body, key=key.upper())
    assert second.headers["upvest-idempotent-replay"] == "true"
    assert second.status == first.status == 200 and second.body == first.body
    assert second.headers["content-type"] == "application/json"
    assert second.request_id != first.request_id
    assert sandbox.counters.created["order"] == 1 and len(sandbox.state.portfolios.orders) == 1
    assert sandbox.counters.idempotent_replays == 1
    # A new key is a new request.
    third = await call(client, "POST", "/portfolios/orders", body, key=new_id())
    assert third.json()["id"] != first.json()["id"]
    assert sandbox.counters.created["order"] == 2


@pytest.mark.parametrize(("method", "path", "body", "kind"), [
    ("POST", "/portfolios/allocations", {"allocation": ITEMS}, "allocation"),
    ("POST", "/portfolios/configurations", {"account_id": "d4c5d7f4-3b1a-4f71-8d5e-2a3c1b0e9f87",
                                            "allocation_id": "SEEDED"}, "configuration"),
    ("POST", "/portfolios/ACCOUNT/liquidation_request", {"user_id": str(uuid.UUID(int=5))},
     "order"),
    ("POST", "/portfolios/rebalancings/executions", {"accounts": ["ACCOUNT"]}, "execution"),
])
async def test_every_create_endpoint_replays(
    sandbox: Sandbox, client: UpvestClient, method: str, path: str, body: dict[str, Any],
    kind: str,
) -> None:
    account = sandbox.tenant.account_ids[0]
    allocation = next(iter(sandbox.state.portfolios.allocations))
    text = json.dumps(body).replace("ACCOUNT", account).replace("SEEDED", allocation)
    path, body = path.replace("ACCOUNT", account), json.loads(text)
    key = new_id()
    first = await call(client, method, path, body, key=key)
    second = await call(client, method, path, body, key=key)
    assert second.body == first.body and second.headers["upvest-idempotent-replay"] == "true"
    assert sandbox.counters.created[kind] == 1


async def test_patch_put_and_delete_replay_with_a_key(sandbox: Sandbox, client: UpvestClient
                                                      ) -> None:
    account = sandbox.tenant.account_ids[0]
    path = f"/portfolios/configurations/{account}"
    key, patch = new_id(), {"rebalancing_strategy_ids": [new_id()]}
    first = await call(client, "PATCH", path, patch, key=key)
    second = await call(client, "PATCH", path, patch, key=key)
    assert second.body == first.body and second.headers["upvest-idempotent-replay"] == "true"
    allocation = next(iter(sandbox.state.portfolios.allocations))
    key = new_id()
    put = [await call(client, "PUT", f"/portfolios/allocations/{allocation}",
                      {"allocation": ITEMS[:1]}, key=key) for _ in range(2)]
    assert put[0].body == put[1].body and put[1].headers["upvest-idempotent-replay"] == "true"
    order = (await call(client, "POST", "/portfolios/orders", order_body(account))).json()
    key = new_id()
    cancels = [await call(client, "DELETE", f"/portfolios/orders/{order['id']}", key=key)
               for _ in range(2)]
    assert [c.status for c in cancels] == [204, 204] and cancels[1].body == b""
    assert cancels[1].headers["upvest-idempotent-replay"] == "true"
    assert "content-type" not in cancels[1].headers
    assert sandbox.counters.idempotent_replays == 3


async def test_client_errors_are_stored_and_replayed(sandbox: Sandbox, client: UpvestClient
                                                     ) -> None:
    key, body = new_id(), order_body(new_id())
    first = await problem_with_key(client, "POST", "/portfolios/orders", body, key)
    # Configuring the account afterwards does not change the answer under the same key.
    allocation = next(iter(sandbox.state.portfolios.allocations))
    await call(client, "POST", "/portfolios/configurations",
               {"account_id": body["account_id"], "allocation_id": allocation})
    second = await problem_with_key(client, "POST", "/portfolios/orders", body, key)
    assert first.status == second.status == 404 and first.body == second.body
    assert second.headers["upvest-idempotent-replay"] == "true"
    assert second.headers["content-type"] == "application/problem+json"
    assert (await call(client, "POST", "/portfolios/orders", body)).status == 200


async def problem_with_key(client: UpvestClient, method: str, path: str, body: Any, key: str
                           ) -> APIStatusError:
    with pytest.raises(APIStatusError) as info:
        await call(client, method, path, body, key=key)
    return info.value


async def test_same_key_different_request_is_422(sandbox: Sandbox, client: UpvestClient) -> None:
    account, key = sandbox.tenant.account_ids[0], new_id()
    await call(client, "POST", "/portfolios/orders", order_body(account), key=key)
    for method, path, body in (
        ("POST", "/portfolios/orders", order_body(account, cash_amount="100.01")),
        ("POST", "/portfolios/allocations", {"allocation": ITEMS}),
        ("POST", f"/portfolios/{account}/liquidation_request", {"user_id": new_id()}),
    ):
        error = await problem_with_key(client, method, path, body, key)
        assert isinstance(error, UnprocessableEntityError)
        assert error.type == "idempotency_key_reused"
        assert error.detail is not None and "different request" in error.detail
    assert sandbox.counters.created == {"allocation": 0, "configuration": 0, "order": 1,
                                        "execution": 0}


async def test_same_key_in_flight_is_409(sandbox: Sandbox) -> None:
    sandbox.state.mutation_delay = 0.3
    key, body = new_id(), order_body(sandbox.tenant.account_ids[0])
    # No retries: the second answer must be the sandbox's first word on it.
    async with client_for(sandbox, max_retries=0) as client:
        results = await asyncio.gather(
            call(client, "POST", "/portfolios/orders", body, key=key),
            call(client, "POST", "/portfolios/orders", body, key=key),
            return_exceptions=True,
        )
        answers = [r for r in results if isinstance(r, RawResponse)]
        errors = [r for r in results if isinstance(r, APIStatusError)]
        assert len(answers) == 1 and len(errors) == 1, results
        assert errors[0].status == 409 and errors[0].type == "idempotency_key_in_progress"
        assert errors[0].detail is not None and "still being processed" in errors[0].detail
        assert sandbox.counters.created["order"] == 1
        sandbox.state.mutation_delay = 0.0
        replay = await call(client, "POST", "/portfolios/orders", body, key=key)
    assert replay.body == answers[0].body
    assert replay.headers["upvest-idempotent-replay"] == "true"


async def test_server_errors_release_the_key(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = sandbox.state.portfolios
    real = store.create_order

    def failing(*args: Any, **kwargs: Any) -> Any:
        raise Problem(503, "maintenance")

    key, body = new_id(), order_body(sandbox.tenant.account_ids[0])
    async with client_for(sandbox, max_retries=0) as client:
        monkeypatch.setattr(store, "create_order", failing)
        with pytest.raises(APIStatusError) as info:
            await call(client, "POST", "/portfolios/orders", body, key=key)
        assert info.value.status == 503
        monkeypatch.setattr(store, "create_order", real)
        retried = await call(client, "POST", "/portfolios/orders", body, key=key)
    assert "upvest-idempotent-replay" not in retried.headers
    assert sandbox.counters.created["order"] == 1 and sandbox.counters.idempotent_replays == 0


async def test_unexpected_exceptions_release_the_key(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = sandbox.state.portfolios

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("bug")

    monkeypatch.setattr(store, "create_execution", broken)
    async with client_for(sandbox, max_retries=0) as client:
        with pytest.raises(InternalServerError):
            await call(client, "POST", "/portfolios/rebalancings/executions",
                       {"accounts": sandbox.tenant.account_ids[:1]}, key=new_id())
    assert len(sandbox.state.idempotency) == 0


@pytest.mark.parametrize(("method", "path", "body"), [
    ("POST", "/portfolios/allocations", {"allocation": ITEMS}),
    ("POST", "/portfolios/configurations",
     {"account_id": "d4c5d7f4-3b1a-4f71-8d5e-2a3c1b0e9f87", "allocation_id": "SEEDED"}),
    ("PATCH", "/portfolios/configurations/ACCOUNT", {"rebalancing_strategy_ids": []}),
    ("POST", "/portfolios/orders", order_body("ACCOUNT")),
    ("POST", "/portfolios/ACCOUNT/liquidation_request", {"user_id": str(uuid.UUID(int=5))}),
    ("POST", "/portfolios/rebalancings/executions", {"accounts": ["ACCOUNT"]}),
])
async def test_missing_or_malformed_idempotency_key_is_400(
    sandbox: Sandbox, method: str, path: str, body: dict[str, Any]
) -> None:
    account = sandbox.tenant.account_ids[0]
    allocation = next(iter(sandbox.state.portfolios.allocations))
    path = path.replace("ACCOUNT", account)
    raw_body = json.dumps(body).replace("ACCOUNT", account).replace("SEEDED", allocation).encode()
    json_type = {"content-type": "application/json"}
    status, headers, answer = await raw(sandbox, method, path, raw_body, headers=json_type)
    assert status == 400 and headers["content-type"] == "application/problem+json"
    assert json.loads(answer)["detail"] == "idempotency-key: header is required"
    status, _, answer = await raw(sandbox, method, path, raw_body,
                                  headers={**json_type, "idempotency-key": "not-a-uuid"})
    assert status == 400 and json.loads(answer)["detail"].startswith("idempotency-key: must be")
    assert sum(sandbox.counters.created.values()) == 0 and len(sandbox.state.idempotency) == 0
    status, _, _ = await raw(sandbox, method, path, raw_body,
                             headers={**json_type, "idempotency-key": new_id()})
    assert status == 200


async def test_body_must_be_json(sandbox: Sandbox) -> None:
    headers = {"idempotency-key": new_id(), "content-type": "text/plain"}
    status, _, answer = await raw(sandbox, "POST", "/portfolios/allocations", b"{}",
                                  headers=headers)
    assert status == 400 and json.loads(answer)["detail"] == "content-type must be application/json"
    for body in (b"{", b'{"allocation": NaN}', b"\xff"):
        headers = {"idempotency-key": new_id(), "content-type": "application/json"}
        status, _, answer = await raw(sandbox, "POST", "/portfolios/allocations", body,
                                      headers=headers)
        assert status == 400 and json.loads(answer)["detail"] == "request body: is not valid JSON"


async def test_refused_authentication_does_not_consume_the_key(sandbox: Sandbox,
                                                               client: UpvestClient) -> None:
    key, body = new_id(), order_body(sandbox.tenant.account_ids[0])
    async with client_for(sandbox, scopes=["portfolios:read"]) as reader:
        with pytest.raises(PermissionDeniedError) as info:
            await call(reader, "POST", "/portfolios/orders", body, key=key)
        assert info.value.type == "forbidden"
        assert (await get(reader, "/portfolios/orders"))["data"] == []
    assert len(sandbox.state.idempotency) == 0 and sandbox.counters.forbidden == 1
    created = await call(client, "POST", "/portfolios/orders", body, key=key)
    assert "upvest-idempotent-replay" not in created.headers


ONE = uuid.UUID(int=1)


@pytest.mark.parametrize(("method", "path"), [
    ("POST", "/portfolios/allocations"), ("PUT", f"/portfolios/allocations/{ONE}"),
    ("POST", "/portfolios/configurations"), ("PATCH", f"/portfolios/configurations/{ONE}"),
    ("POST", "/portfolios/orders"), ("DELETE", f"/portfolios/orders/{ONE}"),
    ("POST", f"/portfolios/{ONE}/liquidation_request"),
    ("POST", "/portfolios/rebalancings/executions"),
])
async def test_writes_need_portfolios_admin(sandbox: Sandbox, method: str, path: str) -> None:
    async with client_for(sandbox, scopes=["portfolios:read"]) as reader:
        with pytest.raises(PermissionDeniedError):
            await call(reader, method, path, None if method == "DELETE" else {})


def test_idempotency_store_scopes_keys_per_client() -> None:
    store = IdempotencyStore(max_entries=2)
    assert store.claim("client-a", "k", "POST /x 1") == (Claim.CLAIMED, None)
    assert store.claim("client-b", "k", "POST /y 2") == (Claim.CLAIMED, None)
    assert store.claim("client-a", "k", "POST /x 1") == (Claim.IN_PROGRESS, None)
    assert store.claim("client-a", "k", "POST /x 2") == (Claim.REUSED, None)
    answer = StoredResponse(200, b"{}", "application/json")
    store.complete("client-a", "k", answer)
    assert store.claim("client-a", "k", "POST /x 1") == (Claim.REPLAY, answer)
    # Over capacity the oldest answered key goes; keys in progress stay.
    assert store.claim("client-a", "k2", "POST /x 3") == (Claim.CLAIMED, None)
    assert len(store) == 2
    assert store.claim("client-a", "k", "POST /x 1") == (Claim.CLAIMED, None)
    store.release("client-a", "k")
    assert store.claim("client-a", "k", "POST /x 9") == (Claim.CLAIMED, None)


# The typed client resources against the sandbox


async def test_typed_resources_round_trip(sandbox: Sandbox, client: UpvestClient) -> None:
    portfolios = client.portfolios
    allocation = await portfolios.allocations.create(allocation=ITEMS, name="Typed")
    assert allocation.name == "Typed" and len(allocation.allocation) == 3
    account = uuid.uuid4()
    configuration = await portfolios.configurations.create(
        account_id=account, allocation_id=allocation.id)
    assert configuration.account_id == account
    order = await portfolios.orders.create(user_id=uuid.uuid4(), account_id=account,
                                           cash_amount=Decimal("250.5"), side="BUY")
    assert str(order.allocation_id) == str(allocation.id)
    await portfolios.orders.cancel(order.id)
    assert (await portfolios.orders.retrieve(order.id)).status == "CANCELLED"
    listed = [o async for o in portfolios.orders.list(account_id=account)]
    assert [o.id for o in listed] == [order.id]
    triggered = await portfolios.rebalancings.executions.create(allocations=[allocation.id])
    execution = await portfolios.rebalancings.executions.retrieve(triggered.id)
    assert execution.id == triggered.id
    found = [a async for a in portfolios.allocations.list(instrument_ids=["US0378331005"])]
    assert [a.id for a in found] == [allocation.id]
