"""Keep a local copy of every position current with Upvest's webhooks.

The program of issue 12's acceptance test, as a user writes it: export every position of the
tenant once, run a webhook receiver (verified with the keys of ``GET /auth/verify_keys``), apply
each ``POSITION.UPDATED`` to the copy, and check at the end that the copy equals a fresh export.

It runs against an embedded sandbox, which delivers its events to the receiver, and places a
few orders and a rebalancing in it so that positions change (never do that against a real
tenant)::

    python examples/keep_positions_current.py            # reliable delivery
    python examples/keep_positions_current.py --faults   # duplicates and lost answers

Against Upvest, build the client with ``UpvestClient.from_env()``, mount the receiver behind
your TLS proxy, subscribe its URL with Upvest, and give ``webhook_app`` a durable ``store``
(``upvest_async.storage.SQLEventStore``) and write the copy through the handler's ``tx``
(docs/guides/mirror.md).
Exit status 0 when the copy equals the fresh export, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid

from aiohttp import web

from upvest_async import Position, UpvestClient, WebhookEvent
from upvest_async.jobs import trigger_many
from upvest_async.sandbox import Sandbox, WebhookFaults
from upvest_async.webhooks import RECEIVER_KEY, WebhookEventType, webhook_app

PATH = "/hooks/upvest"
USER = "4b9732bd-7496-4e91-8a5f-6360479d7fed"  # any user id will do in the sandbox


class LocalPositions:
    """A local copy of every position, by (account id, instrument uuid)."""

    def __init__(self) -> None:
        self.positions: dict[tuple[uuid.UUID, uuid.UUID], Position] = {}
        self.updates = 0

    async def load(self, client: UpvestClient) -> None:
        """Export every position of every account the tenant has configured."""
        self.positions = await export(client)

    async def on_event(self, event: WebhookEvent, tx: object) -> None:
        """The receiver's handler: awaited once per new event, in order, inside the store's
        transaction ``tx`` (unused: this copy is in memory). A position event carries the
        position after the change, so applying it is a replace (and applying it again, after a
        delivery that failed later on, changes nothing)."""
        if event.type == WebhookEventType.POSITION_UPDATED and isinstance(event.object, Position):
            self.positions[(event.object.account_id, event.object.instrument.uuid)] = event.object
            self.updates += 1


async def export(client: UpvestClient) -> dict[tuple[uuid.UUID, uuid.UUID], Position]:
    """Every position of the tenant's accounts (E5 for the accounts, E16 for positions)."""
    accounts = [c.account_id async for c in client.portfolios.configurations.list()]
    return {(p.account_id, p.instrument.uuid): p async for p in client.positions.export(accounts)}


async def trade_in_the_sandbox(client: UpvestClient, accounts: list[uuid.UUID]) -> None:
    """BUY and SELL orders for every account, then a rebalancing of half of them."""
    for account in accounts:
        for side, cash in (("BUY", "2500.00"), ("SELL", "800.00")):
            await client.portfolios.orders.create(
                user_id=USER, account_id=account, cash_amount=cash, side=side)
    await trigger_many(client, accounts[: len(accounts) // 2 or 1])


async def main(faults: bool) -> int:
    async with Sandbox(
        accounts=5, positions_per_account=40, order_fill_seconds=0.2,
        webhook_backoff_scale=0.01,
        webhook_faults=WebhookFaults(seed=1, duplicate_rate=0.3, lost_answer_rate=0.3)
        if faults else None,
    ) as sandbox, UpvestClient(**sandbox.client_settings()) as client:
        local = LocalPositions()
        await local.load(client)
        print(f"exported {len(local.positions)} positions")

        app = webhook_app(local.on_event, client.webhooks.verifier, path=PATH)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        try:
            url = f"http://127.0.0.1:{runner.addresses[0][1]}{PATH}"
            sandbox.webhooks.subscribe(url)  # with Upvest: a webhook subscription of this URL
            print(f"receiving webhooks on {url}")
            await trade_in_the_sandbox(client, sorted({a for a, _ in local.positions}))
            await sandbox.webhooks_idle(60)  # everything filled and delivered
        finally:
            await runner.cleanup()

        fresh = await export(client)
        stats, received = sandbox.webhook_stats, app[RECEIVER_KEY].stats
        print(f"events: {stats.emitted} emitted, {received.handled} handled, "
              f"{received.duplicates} duplicates skipped, {stats.retried} retried deliveries; "
              f"{local.updates} position updates applied")
        equal = local.positions == fresh
        print("local copy equals a fresh export:", "yes" if equal else "NO")
        return 0 if equal else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faults", action="store_true",
                        help="duplicate 30 %% of deliveries and lose 30 %% of the answers")
    sys.exit(asyncio.run(main(parser.parse_args().faults)))
