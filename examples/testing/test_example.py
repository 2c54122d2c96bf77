"""Testing your integration with the upvest_async pytest plugin (run in CI by
tests/test_pytest_plugin.py, in pytest-asyncio's auto and strict modes)."""

import uuid

import pytest

from upvest_async import PortfoliosOrder, UpvestClient
from upvest_async.pytest_plugin import SandboxFactory, WebhookCapture
from upvest_async.sandbox import Faults, Sandbox

# Strict mode needs the mark; in auto mode it changes nothing.
pytestmark = pytest.mark.asyncio

USER = "4b9732bd-7496-4e91-8a5f-6360479d7fed"


async def holdings(client: UpvestClient, account_id: str) -> int:
    """The code under test: how many positions an account holds."""
    return len([position async for position in client.positions.list(account_id)])


async def test_lists_positions(upvest_sandbox: Sandbox, upvest_client: UpvestClient) -> None:
    account_id = upvest_sandbox.account_ids[0]
    assert await holdings(upvest_client, account_id) == 20  # the plugin's default tenant


@pytest.mark.upvest_sandbox(accounts=3, positions_per_account=5, seed=42)
async def test_a_tenant_of_your_own(upvest_sandbox: Sandbox, upvest_client: UpvestClient) -> None:
    assert len(upvest_sandbox.account_ids) == 3
    for account_id in upvest_sandbox.account_ids:
        assert await holdings(upvest_client, account_id) == 5


@pytest.mark.upvest_sandbox(faults=Faults(script=("503", "503")))
async def test_survives_two_503s(upvest_sandbox: Sandbox, upvest_client: UpvestClient) -> None:
    assert await holdings(upvest_client, upvest_sandbox.account_ids[0]) == 20
    assert upvest_sandbox.counters.faults["503"] == 2  # answered 503 twice, then retried


async def test_two_tenants(upvest_sandbox_factory: SandboxFactory) -> None:
    small = await upvest_sandbox_factory(accounts=1, positions_per_account=3)
    limited = await upvest_sandbox_factory(rate_limit=5, seed=1)
    async with UpvestClient(**small.client_settings()) as client:
        assert await holdings(client, small.account_ids[0]) == 3
    assert limited.rate_limit == 5 and limited.account_ids != small.account_ids


async def test_an_order_is_announced(
    upvest_sandbox: Sandbox, upvest_client: UpvestClient, upvest_webhooks: WebhookCapture
) -> None:
    account_id = uuid.UUID(upvest_sandbox.account_ids[0])
    order = await upvest_client.portfolios.orders.create(
        user_id=USER, account_id=account_id, cash_amount="100.00", side="BUY")
    events = await upvest_webhooks.wait_for(1, timeout=10)
    assert str(events[0].type) == "PORTFOLIO_ORDER.NEW"
    assert isinstance(events[0].object, PortfoliosOrder) and events[0].object.id == order.id
