"""Every Portfolios endpoint (E1 to E15) through the public methods, against the sandbox:
success with the model's fields, a 4xx, and idempotent replay."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from support.clients import client_for

from upvest_async import (
    AllocationItem,
    BadRequestError,
    ConflictError,
    IdempotencyKeyReusedError,
    InstrumentIdType,
    NotFoundError,
    PermissionDeniedError,
    PortfoliosOrderStatus,
    PortfoliosOrderType,
    UpvestClient,
)
from upvest_async.sandbox import Sandbox

USER = "4b9732bd-7496-4e91-8a5f-6360479d7fed"
ITEMS = [
    AllocationItem(instrument_id="IE00B0M62Q58", weight=Decimal("0.6")),
    {"instrument_id": "c2721bc0-9f65-474b-a846-b237eb17fb05", "instrument_id_type": "UPVEST",
     "weight": "0.4"},
]


async def test_allocations_create_retrieve_update_list(
    sandbox: Sandbox, client: UpvestClient
) -> None:
    created = await client.portfolios.allocations.create(name="Balanced", allocation=ITEMS)
    assert created.name == "Balanced" and created.created_at.tzinfo is not None
    assert [item.weight for item in created.allocation] == [Decimal("0.6"), Decimal("0.4")]
    assert created.allocation[1].instrument_id_type is InstrumentIdType.UPVEST
    assert str(created.id) in sandbox.portfolios.allocations

    fetched = await client.portfolios.allocations.retrieve(created.id)
    assert fetched == created

    updated = await client.portfolios.allocations.update(
        created.id, allocation=[{"instrument_id": "US0378331005", "weight": "100"}]
    )
    assert updated.name == "Balanced" and updated.updated_at > created.updated_at
    assert [(i.instrument_id, i.weight) for i in updated.allocation] == [
        ("US0378331005", Decimal("100"))]

    listed = [a async for a in client.portfolios.allocations.list(sort="id", order="ASC")]
    assert [str(a.id) for a in listed] == sorted(sandbox.portfolios.allocations)
    matching = [a async for a in client.portfolios.allocations.list(
        instrument_ids=["US0378331005"])]
    assert created.id in {a.id for a in matching}

    with pytest.raises(NotFoundError):
        await client.portfolios.allocations.retrieve(uuid.uuid4())
    with pytest.raises(NotFoundError):
        await client.portfolios.allocations.update(uuid.uuid4(), allocation=ITEMS)


async def test_allocation_create_4xx_and_idempotent_replay(
    sandbox: Sandbox, client: UpvestClient
) -> None:
    key = str(uuid.uuid4())
    first = await client.portfolios.allocations.create(allocation=ITEMS, idempotency_key=key)
    again = await client.portfolios.allocations.create(allocation=ITEMS, idempotency_key=key)
    assert again == first
    assert sandbox.counters.created["allocation"] == 1
    assert sandbox.counters.idempotent_replays == 1
    with pytest.raises(IdempotencyKeyReusedError) as caught:
        await client.portfolios.allocations.create(allocation=ITEMS[:1], idempotency_key=key)
    assert caught.value.status == 422 and caught.value.attempts == 1
    assert sandbox.counters.created["allocation"] == 1


async def test_configurations_list_create_retrieve_update(
    sandbox: Sandbox, client: UpvestClient
) -> None:
    listed = [c async for c in client.portfolios.configurations.list()]
    assert [str(c.account_id) for c in listed] == sandbox.tenant.account_ids
    one = listed[1]
    by_filter = [c async for c in client.portfolios.configurations.list(
        account_id=one.account_id)]
    assert by_filter == [one]

    allocation = await client.portfolios.allocations.create(allocation=ITEMS)
    account = uuid.uuid4()
    created = await client.portfolios.configurations.create(
        account_id=account, allocation_id=allocation.id,
        rebalancing_strategy_ids=["7a7322f5-b45d-4aba-aae4-c12797938c93"],
    )
    assert created.account_id == account and created.allocation_id == allocation.id
    assert created.rebalancing_strategy_ids == [uuid.UUID("7a7322f5-b45d-4aba-aae4-c12797938c93")]
    assert await client.portfolios.configurations.retrieve(account) == created
    with pytest.raises(ConflictError):
        await client.portfolios.configurations.create(
            account_id=account, allocation_id=allocation.id)

    updated = await client.portfolios.configurations.update(
        one.account_id, allocation_id=allocation.id)
    assert updated.allocation_id == allocation.id and updated.updated_at > one.updated_at
    with pytest.raises(NotFoundError):
        await client.portfolios.configurations.retrieve(uuid.uuid4())
    with pytest.raises(NotFoundError):
        await client.portfolios.configurations.create(
            account_id=uuid.uuid4(), allocation_id=uuid.uuid4())


async def test_orders_create_retrieve_list_cancel(sandbox: Sandbox, client: UpvestClient) -> None:
    account = sandbox.tenant.account_ids[0]
    order = await client.portfolios.orders.create(
        user_id=USER, account_id=account, cash_amount=Decimal("100.00"), side="BUY",
        post_tax=True,
    )
    assert order.status is PortfoliosOrderStatus.NEW and order.type is PortfoliosOrderType.BUY
    assert order.cash_amount == Decimal("100.00") and str(order.cash_amount) == "100.00"
    assert order.post_tax is True and order.orders == [] and str(order.user_id) == USER
    assert str(order.allocation_id) == sandbox.tenant.configurations[account]["allocation_id"]
    assert await client.portfolios.orders.retrieve(order.id) == order

    other = await client.portfolios.orders.create(
        user_id=USER, account_id=sandbox.tenant.account_ids[1], cash_amount="5", side="SELL")
    mine = [o async for o in client.portfolios.orders.list(account_id=account)]
    assert [o.id for o in mine] == [order.id]
    recent = [o async for o in client.portfolios.orders.list(
        start_date=datetime.now(UTC) - timedelta(days=1))]
    assert {order.id, other.id} <= {o.id for o in recent}

    assert await client.portfolios.orders.cancel(order.id) is None
    assert (await client.portfolios.orders.retrieve(order.id)).status == "CANCELLED"
    sandbox.portfolios.set_order_status(str(other.id), "PROCESSING")
    with pytest.raises(ConflictError):
        await client.portfolios.orders.cancel(other.id)
    with pytest.raises(NotFoundError):
        await client.portfolios.orders.retrieve(uuid.uuid4())
    with pytest.raises(NotFoundError):  # an account without configuration
        await client.portfolios.orders.create(
            user_id=USER, account_id=uuid.uuid4(), cash_amount="1", side="BUY")


async def test_order_idempotent_replay_creates_one_order(
    sandbox: Sandbox, client: UpvestClient
) -> None:
    key = uuid.uuid4()
    account = sandbox.tenant.account_ids[2]
    results = [
        await client.portfolios.orders.create(
            user_id=USER, account_id=account, cash_amount="10", side="BUY", idempotency_key=key)
        for _ in range(3)
    ]
    assert results[0] == results[1] == results[2]
    assert sandbox.counters.created["order"] == 1 and len(sandbox.portfolios.orders) == 1


async def test_liquidation_request(sandbox: Sandbox, client: UpvestClient) -> None:
    account = sandbox.tenant.account_ids[3]
    order = await client.portfolios.liquidation_requests.create(account, user_id=USER)
    assert order.type is PortfoliosOrderType.LIQUIDATION and order.status == "NEW"
    assert str(order.account_id) == account
    assert await client.portfolios.orders.retrieve(order.id) == order
    with pytest.raises(NotFoundError):
        await client.portfolios.liquidation_requests.create(uuid.uuid4(), user_id=USER)


async def test_rebalancing_executions(sandbox: Sandbox, client: UpvestClient) -> None:
    accounts = sandbox.tenant.account_ids[:2]
    triggered = await client.portfolios.rebalancings.executions.create(accounts=accounts)
    execution = await client.portfolios.rebalancings.executions.retrieve(triggered.id)
    assert execution.id == triggered.id
    assert [str(a) for a in execution.accounts or []] == accounts
    assert execution.allocations is None

    allocation = next(iter(sandbox.portfolios.allocations))
    by_allocation = await client.portfolios.rebalancings.executions.create(
        allocations=[allocation])
    fetched = await client.portfolios.rebalancings.executions.retrieve(by_allocation.id)
    assert [str(a) for a in fetched.allocations or []] == [allocation]
    with pytest.raises(NotFoundError):
        await client.portfolios.rebalancings.executions.create(accounts=[uuid.uuid4()])
    with pytest.raises(NotFoundError):
        await client.portfolios.rebalancings.executions.retrieve(uuid.uuid4())
    assert sandbox.counters.created["execution"] == 2


async def test_writes_need_the_admin_scope(sandbox: Sandbox) -> None:
    async with client_for(sandbox, scopes=["portfolios:read"]) as reader:
        assert [c async for c in reader.portfolios.configurations.list(max_items=1)]
        with pytest.raises(PermissionDeniedError):
            await reader.portfolios.allocations.create(allocation=ITEMS)
    assert sandbox.counters.created["allocation"] == 0


async def test_sandbox_rejects_what_the_sdk_would_not_send(
    sandbox: Sandbox, client: UpvestClient
) -> None:
    """The SDK validates first, so reach the sandbox's own 400 through the raw request."""
    with pytest.raises(BadRequestError) as caught:
        await client._request("POST", "/portfolios/allocations", json_body={
            "allocation": [{"instrument_id": "US0378331005", "weight": "0.123456"}]})
    assert "allocation[0].weight" in (caught.value.detail or "")


async def test_least_scope_and_one_admin_token_for_reads_and_writes(
    sandbox: Sandbox, client: UpvestClient
) -> None:
    await client.portfolios.allocations.create(allocation=ITEMS)
    [a async for a in client.portfolios.allocations.list()]
    # The admin token granted for the write also serves the read (Q6: either scope is enough).
    assert sandbox.counters.token_requests == 1
    assert [sorted(t.scopes) for t in sandbox.state.tokens.values()] == [["portfolios:admin"]]
