"""The sandbox sends Upvest's webhooks: JWKS and scopes, subscriptions, every event kind on its
state change, positions consistent with the events, the CLI's ``--webhook-url``.

Receivers are real ``aiohttp.web`` servers on 127.0.0.1 that verify every v6 signature
independently (:mod:`tests.support.webhook_receiver`).
"""

from __future__ import annotations

import asyncio
import base64
import os
import random
import sys
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from support.clients import client_for
from support.webhook_receiver import Receiver, jwks_of, public_keys

from upvest_async import UpvestClient
from upvest_async.errors import APIStatusError
from upvest_async.sandbox import Sandbox, WebhookFaults
from upvest_async.sandbox.webhooks import order_changes, price

USER = "4b9732bd-7496-4e91-8a5f-6360479d7fed"


async def call(client: UpvestClient, method: str, path: str, body: Any = None) -> Any:
    key = str(uuid.uuid4()) if method in {"POST", "PUT", "PATCH"} else None
    response = await client._request(method, path, json_body=body, idempotency_key=key)
    return response.json() if response.body else None


def of_types(events: list[dict[str, Any]], prefix: str) -> list[dict[str, Any]]:
    return [e for e in events if e["type"].startswith(prefix)]


# --- keys and scopes ----------------------------------------------------------------------


async def test_verify_keys_is_a_jwks_behind_the_webhooks_scopes() -> None:
    async with Sandbox(accounts=1, positions_per_account=5) as sandbox:
        for scopes in (["webhooks:read"], ["webhooks:admin"]):
            async with client_for(sandbox, scopes=scopes) as client:
                assert await jwks_of(client) == sandbox.webhooks.keys.jwks()
        async with client_for(sandbox) as client:  # asks for the least scope itself
            jwks = await jwks_of(client)
        (key,) = jwks["keys"]
        assert set(key) == {"kid", "kty", "crv", "x", "y"}
        assert key["kid"] != sandbox.credentials.key_id
        # The webhook key is not the client's key.
        client_public = sandbox.credentials.private_key.public_key().public_numbers()
        assert public_keys(jwks)[key["kid"]].public_numbers() != client_public
        async with client_for(sandbox, scopes=["positions:read", "portfolios:admin"]) as client:
            with pytest.raises(APIStatusError) as denied:
                await jwks_of(client)
            assert denied.value.status == 403
            with pytest.raises(APIStatusError) as listing:
                await client._request("GET", "/webhooks")
            assert listing.value.status == 403


async def test_key_rotation_signs_with_the_new_key_and_publishes_both() -> None:
    async with Receiver() as receiver, Sandbox(
        accounts=1, positions_per_account=5, webhook_urls=[receiver.url]
    ) as sandbox, client_for(sandbox) as client:
        receiver.use_jwks(await jwks_of(client))
        old = sandbox.webhooks.keys.current.kid
        sandbox.webhooks.emit("TEST.ONE", {"n": 1})
        await sandbox.webhooks_idle(10)
        new = sandbox.rotate_webhook_key()
        assert new != old
        jwks = await jwks_of(client)
        assert [k["kid"] for k in jwks["keys"]] == [new, old]
        receiver.use_jwks(jwks)
        sandbox.webhooks.emit("TEST.TWO", {"n": 2})
        await sandbox.webhooks_idle(10)
        newest = sandbox.rotate_webhook_key(keep_old=False)
        assert [k["kid"] for k in (await jwks_of(client))["keys"]] == [newest]
        assert [d.keyid for d in receiver.deliveries] == [old, new]
        assert receiver.errors == []


def test_subscription_urls_must_be_loopback() -> None:
    for url in ("http://example.com/hooks", "https://127.0.0.1:8443/hooks", "ftp://[::1]:21/",
                "http://10.0.0.1:80/", "http://user:pw@127.0.0.1:80/", "/relative", ""):
        with pytest.raises(ValueError, match="url"):
            Sandbox(webhook_urls=[url])
    with pytest.raises(TypeError):
        Sandbox(webhook_urls="http://127.0.0.1:1/")
    for url in ("http://127.0.0.1:9/hooks", "http://localhost:9/x?y=1", "http://[::1]:9/"):
        assert Sandbox(webhook_urls=[url]).webhooks.subscriptions


# --- events on state changes ---------------------------------------------------------------


async def test_every_event_kind_is_emitted_on_its_state_change() -> None:
    async with Receiver() as receiver, Sandbox(
        accounts=3, positions_per_account=20, seed=4, webhook_urls=[receiver.url],
        order_fill_seconds=0.04, webhook_backoff_scale=0.001,
    ) as sandbox, client_for(sandbox) as client:
        receiver.use_jwks(await jwks_of(client))
        account, other = sandbox.tenant.account_ids[:2]
        chosen = [i for i in sandbox.tenant.instruments if "isin" in i][:2]
        items = [{"instrument_id": i["isin"], "weight": "0.5"} for i in chosen]
        allocation = await call(client, "POST", "/portfolios/allocations",
                                {"name": "A", "allocation": items})
        changed = await call(client, "PUT", f"/portfolios/allocations/{allocation['id']}",
                             {"allocation": [*items[:1], {**items[1], "weight": "0.4"}]})
        await call(client, "PATCH", f"/portfolios/configurations/{account}",
                   {"allocation_id": allocation["id"]})
        order = await call(client, "POST", "/portfolios/orders", {
            "user_id": USER, "account_id": account, "cash_amount": "1000", "side": "BUY"})
        execution = await call(client, "POST", "/portfolios/rebalancings/executions",
                               {"accounts": [other]})
        await sandbox.webhooks_idle(20)

        sandbox.lifecycle.fill_seconds = None  # keep the next order NEW, to cancel it
        cancelled = await call(client, "POST", "/portfolios/orders", {
            "user_id": USER, "account_id": account, "cash_amount": "5", "side": "SELL"})
        await call(client, "DELETE", f"/portfolios/orders/{cancelled['id']}")
        await sandbox.webhooks_idle(20)

        events = receiver.events()
        assert receiver.errors == [] and len(events) == sandbox.webhook_stats.delivered
        subscription = next(iter(sandbox.webhooks.subscriptions))
        assert all(e["webhook_id"] == subscription for e in events)
        assert len({e["id"] for e in events}) == len(events)
        stamps = [e["created_at"] for e in events]
        assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)

        allocations = of_types(events, "PORTFOLIO_ALLOCATION.")
        assert [(e["type"], e["object"]) for e in allocations] == [
            ("PORTFOLIO_ALLOCATION.CREATED", allocation),
            ("PORTFOLIO_ALLOCATION.CHANGED", changed)]

        def order_types(order_id: str) -> list[str]:
            return [e["type"] for e in events
                    if e["type"].startswith("PORTFOLIO_ORDER.") and e["object"]["id"] == order_id]

        assert order_types(order["id"]) == [
            "PORTFOLIO_ORDER.NEW", "PORTFOLIO_ORDER.PROCESSING", "PORTFOLIO_ORDER.FILLED"]
        assert order_types(cancelled["id"]) == ["PORTFOLIO_ORDER.NEW", "PORTFOLIO_ORDER.CANCELLED"]
        last = next(e["object"] for e in events if e["type"] == "PORTFOLIO_ORDER.FILLED"
                and e["object"]["id"] == order["id"])
        assert last == await call(client, "GET", f"/portfolios/orders/{order['id']}")

        rebalancing = of_types(events, "REBALANCING_EXECUTION_ORDER.")
        assert [e["type"].rpartition(".")[2] for e in rebalancing] == [
            "NEW", "PROCESSING", "FILLED"]
        obj = rebalancing[-1]["object"]
        assert set(obj) == {"id", "execution_id", "account_id", "portfolio_order_id", "status",
                            "created_at", "updated_at"}
        assert (obj["execution_id"], obj["account_id"], obj["status"]) == (
            execution["id"], other, "FILLED")
        portfolio_order = await call(
            client, "GET", f"/portfolios/orders/{obj['portfolio_order_id']}")
        assert (portfolio_order["type"], portfolio_order["status"]) == ("REBALANCING", "FILLED")
        assert order_types(obj["portfolio_order_id"]) == [
            "PORTFOLIO_ORDER.NEW", "PORTFOLIO_ORDER.PROCESSING", "PORTFOLIO_ORDER.FILLED"]
        # The BUY bought the changed allocation's instruments for the account: new positions.
        bought = [e["object"] for e in of_types(events, "POSITION.UPDATED")
                  if e["object"]["account_id"] == account]
        assert sorted(p["instrument"]["uuid"] for p in bought) == sorted(
            i["uuid"] for i in chosen)
        for position in bought:
            uuid_ = position["instrument"]["uuid"]
            served = await call(client, "GET", f"/accounts/{account}/positions/uuid:{uuid_}")
            assert served == position
        # Executions and rebalancing orders are not API creations.
        assert sandbox.counters.created["order"] == 2 and sandbox.counters.duplicates == 0


async def export_raw(client: UpvestClient, accounts: list[str]) -> dict[tuple[str, str], Any]:
    copy = {}
    for account in accounts:
        offset = 0
        while True:
            response = await client._request(
                "GET", f"/accounts/{account}/positions", params={"offset": offset, "limit": 1000})
            page = response.json()
            for position in page["data"]:
                copy[(account, position["instrument"]["uuid"])] = position
            offset += page["meta"]["count"]
            if offset >= page["meta"]["total_count"] or not page["data"]:
                break
    return copy


@pytest.mark.parametrize("unreliable", [False, True], ids=["reliable", "unreliable"])
async def test_positions_after_fills_equal_what_the_events_said(unreliable: bool) -> None:
    faults = WebhookFaults(seed=5, duplicate_rate=0.3, lost_answer_rate=0.3) if unreliable \
        else None
    async with Receiver() as receiver, Sandbox(
        accounts=4, positions_per_account=40, seed=9, webhook_urls=[receiver.url],
        order_fill_seconds=0.04, webhook_backoff_scale=0.001, webhook_faults=faults,
    ) as sandbox, client_for(sandbox) as client:
        receiver.use_jwks(await jwks_of(client))
        if unreliable:  # and the receiver itself fails 30 % of the requests
            draws = random.Random(8)
            receiver.default = lambda _: 500 if draws.random() < 0.3 else 200
        accounts = sandbox.tenant.account_ids
        local = await export_raw(client, accounts)
        for i, account in enumerate(accounts):
            for side, cash in (("BUY", "2500.50"), ("SELL", "700"), ("BUY", "0.01")):
                await call(client, "POST", "/portfolios/orders", {
                    "user_id": USER, "account_id": account, "cash_amount": f"{cash}{i}",
                    "side": side})
        await call(client, "POST", f"/portfolios/{accounts[0]}/liquidation_request",
                   {"user_id": USER})
        allocation_id = sandbox.tenant.configurations[accounts[1]]["allocation_id"]
        await call(client, "POST", "/portfolios/rebalancings/executions",
                   {"allocations": [allocation_id]})
        await sandbox.webhooks_idle(30)
        seen: set[str] = set()
        updates = []
        for event in of_types(receiver.events(), "POSITION.UPDATED"):
            if event["id"] not in seen:  # what an idempotent handler does
                seen.add(event["id"])
                updates.append(event["object"])
        assert updates and receiver.errors == []
        stats = sandbox.webhook_stats
        assert stats.delivered == stats.emitted and stats.pending == 0
        if unreliable:
            assert stats.duplicates and stats.lost_answers
            assert any(d.answered == 500 for d in receiver.deliveries)
        for position in updates:
            local[(position["account_id"], position["instrument"]["uuid"])] = position
        assert local == await export_raw(client, accounts)
        for position in updates:  # decimal strings, never negative, quantity = sum of parts
            parts = [Decimal(position[k]) for k in (
                "available_for_trading", "locked_for_trading", "pending_settlement")]
            assert Decimal(position["quantity"]) == sum(parts) and min(parts) >= 0


# --- trading rules -------------------------------------------------------------------------


def test_fills_follow_the_documented_trading_rules() -> None:
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    known = {"US0378331005": {"uuid": a, "isin": "US0378331005"}, a: {"uuid": a}}
    items = [{"instrument_id": "US0378331005", "instrument_id_type": "ISIN", "weight": "60"},
             {"instrument_id": b.upper(), "instrument_id_type": "UPVEST", "weight": "40"}]
    account = str(uuid.uuid4())

    def held(uuid_: str, available: str, locked: str = "1") -> dict[str, Any]:
        quantity = str(Decimal(available) + Decimal(locked))
        return {"account_id": account, "instrument": {"uuid": uuid_}, "quantity": quantity,
                "available_for_trading": available, "locked_for_trading": locked,
                "pending_settlement": "0"}

    order = {"account_id": account, "type": "BUY", "cash_amount": "1000"}
    bought = order_changes(order, items, {}, known)
    assert [p["instrument"] for p in bought] == [{"uuid": a, "isin": "US0378331005"},
                                                  {"uuid": b}]
    expected = (Decimal(600) / price(a)).quantize(Decimal("1e-9"), "ROUND_DOWN")
    assert Decimal(bought[0]["quantity"]) == expected == Decimal(bought[0]["available_for_trading"])
    # SELL: capped at what is available, skips what is not held; locked stays.
    sold = order_changes({**order, "type": "SELL", "cash_amount": "1e9"}, items,
                         {a: held(a, "3.5")}, known)
    assert [(p["quantity"], p["available_for_trading"], p["locked_for_trading"]) for p in sold] \
        == [("1", "0", "1")]
    assert order_changes({**order, "type": "SELL"}, items, {}, known) == []
    liquidated = order_changes({**order, "type": "LIQUIDATION", "cash_amount": "0"}, items,
                               {a: held(a, "2"), b: held(b, "0")}, known)
    assert [(p["instrument"]["uuid"], p["available_for_trading"]) for p in liquidated] == [(a, "0")]
    # REBALANCING: value-neutral to the target weights.
    before = {a: held(a, "10", "0"), b: held(b, "0", "0")}
    after = order_changes({**order, "type": "REBALANCING", "cash_amount": "0"}, items, before,
                          known)
    value = Decimal(10) * price(a)
    got = {p["instrument"]["uuid"]: Decimal(p["quantity"]) for p in after}
    assert abs(got[a] * price(a) - value * Decimal("0.6")) < Decimal("0.001")
    assert abs(got[b] * price(b) - value * Decimal("0.4")) < Decimal("0.001")
    assert order_changes({**order, "type": "REBALANCING"}, items, {}, known) == []
    assert order_changes({**order, "type": "BUY"}, [], {}, known) == []


# --- subscription endpoints ---------------------------------------------------------------


async def test_subscription_endpoints() -> None:
    async with Receiver() as receiver, Sandbox(
        accounts=1, positions_per_account=5, webhook_backoff_scale=0.001
    ) as sandbox, client_for(sandbox) as client:
        receiver.use_jwks(await jwks_of(client))
        created = await call(client, "POST", "/webhooks", {
            "title": "positions", "url": receiver.url, "type": ["POSITION", "PORTFOLIO_ORDER"],
            "config": {"delay": "1s", "max_package_size": 4096}})
        assert set(created) == {"id", "created_at", "updated_at", "title", "url", "type",
                                "enabled", "config"}
        assert (created["enabled"], created["config"]) == (
            True, {"delay": "1s", "max_package_size": 4096})
        path = f"/webhooks/{created['id']}"
        assert await call(client, "GET", path) == created
        listed = await call(client, "GET", "/webhooks")
        assert listed["data"] == [created] and listed["meta"]["total_count"] == 1

        sandbox.webhooks.emit("PORTFOLIO_ALLOCATION.CREATED", {"id": "not subscribed"})
        sandbox.webhooks.emit("POSITION.UPDATED", {"n": 1})
        await sandbox.webhooks_idle(10)
        assert [e["object"] for e in receiver.events()] == [{"n": 1}]

        patched = await call(client, "PATCH", path, {"enabled": False, "title": "off"})
        assert (patched["enabled"], patched["title"], patched["url"]) == (False, "off",
                                                                            receiver.url)
        assert patched["updated_at"] > created["updated_at"]
        sandbox.webhooks.emit("POSITION.UPDATED", {"n": 2})  # not for a disabled one
        await sandbox.webhooks_idle(10)
        assert len(receiver.events()) == 1

        for body, status in (
            ({"title": "x", "url": "http://example.com/h", "type": ["ALL"]}, 422),
            ({"title": "x", "url": "https://127.0.0.1:1/h", "type": ["ALL"]}, 422),
            ({"title": "x", "url": receiver.url, "type": ["ALL"],
              "config": {"delay": "500ms"}}, 422),
            ({"title": "x", "url": receiver.url, "type": []}, 400),
            ({"title": "x", "url": receiver.url}, 400),
            ({"title": "x", "url": receiver.url, "type": ["ALL"], "extra": 1}, 400),
            ({"title": "x", "url": receiver.url, "type": ["ALL"],
              "config": {"max_package_size": "big"}}, 400),
            ([], 400),
        ):
            with pytest.raises(APIStatusError) as refused:
                await call(client, "POST", "/webhooks", body)
            assert refused.value.status == status, body
        with pytest.raises(APIStatusError) as refused:
            await call(client, "PATCH", path, {"url": "http://192.168.1.1:80/"})
        assert refused.value.status == 422

        async with client_for(sandbox, scopes=["webhooks:read"]) as reader:
            assert (await call(reader, "GET", path))["title"] == "off"
            with pytest.raises(APIStatusError) as denied:
                await call(reader, "DELETE", path)
            assert denied.value.status == 403
        assert await call(client, "DELETE", path) is None
        for method in ("GET", "DELETE"):
            with pytest.raises(APIStatusError) as gone:
                await call(client, method, path)
            assert gone.value.status == 404
        assert sandbox.webhook_stats.dropped == 0 and sandbox.webhook_stats.pending == 0


# --- the CLI -------------------------------------------------------------------------------


async def test_cli_sandbox_delivers_to_webhook_urls(tmp_path: Path) -> None:
    env_file = tmp_path / "sandbox.env"
    async with Receiver() as receiver:
        env = {k: v for k, v in os.environ.items() if not k.startswith("UPVEST_API_")}
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "upvest_async", "sandbox", "--accounts", "1", "--positions",
            "5", "--env-file", str(env_file), "--webhook-url", receiver.url,
            "--order-fill-seconds", "0.05", env=env, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            async with asyncio.timeout(60):
                while not env_file.exists() or not env_file.read_text():
                    assert process.returncode is None
                    await asyncio.sleep(0.05)
            values = dict(
                line.removeprefix("export ").split("=", 1)
                for line in env_file.read_text().splitlines()
            )
            pem = base64.b64decode(values["UPVEST_API_HTTP_SIGN_PRIVATE_KEY_BASE64"]).decode()
            async with UpvestClient(
                client_id=values["UPVEST_API_CLIENT_ID"],
                client_secret=values["UPVEST_API_CLIENT_SECRET"],
                key_id=values["UPVEST_API_KEY_ID"], private_key=pem,
                private_key_passphrase=values["UPVEST_API_HTTP_SIGN_PRIVATE_KEY_PASSPHRASE"],
                base_url=values["UPVEST_API_BASE_URL"],
            ) as client:
                receiver.use_jwks(await jwks_of(client))
                allocation = await call(client, "POST", "/portfolios/allocations", {
                    "allocation": [{"instrument_id": "US0378331005", "weight": "1"}]})
                async with asyncio.timeout(30):
                    while not receiver.accepted():  # noqa: ASYNC110 (another process)
                        await asyncio.sleep(0.02)
        finally:
            process.terminate()
            stdout, _ = await process.communicate()
    assert receiver.errors == []
    (event,) = receiver.events()
    assert (event["type"], event["object"]) == ("PORTFOLIO_ALLOCATION.CREATED", allocation)
    assert f"Delivering webhooks to {receiver.url}" in stdout.decode()
