"""What happens in the sandbox after a Portfolios call, and the events it emits.

:class:`OrderLifecycle` observes the :class:`~..store.PortfolioStore`:

- E2 creates an allocation: ``PORTFOLIO_ALLOCATION.CREATED``; E4 changes one:
  ``PORTFOLIO_ALLOCATION.CHANGED`` (object: the S8 allocation);
- an order is created (E10, E11, or for a rebalancing execution): ``PORTFOLIO_ORDER.NEW``;
  every later status change (E13 cancel, the automatic progress below, or
  ``set_order_status``): ``PORTFOLIO_ORDER.<status>`` (object: the S10 order);
- when an order reaches ``FILLED`` its account's positions change as
  :mod:`.trading` describes, one ``POSITION.UPDATED`` (object: the E17 position after the
  change) per changed position, emitted before ``PORTFOLIO_ORDER.FILLED``; an order changes
  positions once, even if moved to ``FILLED`` again by hand. Only accounts of the generated
  tenant hold positions; orders of other accounts change none. A status the reference lists but
  the event list of W3 does not (``SUBMITTED``, set by hand) is emitted as
  ``PORTFOLIO_ORDER.SUBMITTED`` too;
- with ``fill_seconds`` set, every order created moves on its own: ``NEW`` for half of
  ``fill_seconds``, then ``PROCESSING``, then ``FILLED`` after the other half (unless it was
  cancelled or moved by hand meanwhile), and each E14 rebalancing execution creates, per
  account (the ``accounts`` given, or the accounts configured with one of the
  ``allocations``), one ``REBALANCING`` portfolio order and a rebalancing execution order
  (``id``, ``execution_id``, ``account_id``, ``portfolio_order_id``, ``status``,
  ``created_at``, ``updated_at``) whose status follows the portfolio order's, each change
  emitted as ``REBALANCING_EXECUTION_ORDER.<status>``. With ``fill_seconds=None`` nothing
  moves on its own and executions create no orders (the sandbox as it was before webhooks).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import TYPE_CHECKING, Any

from .trading import order_changes

if TYPE_CHECKING:
    from ..store import PortfolioStore
    from ..tenant import Tenant
    from .engine import WebhookEngine

__all__ = ["OrderLifecycle"]

_USER_NAMESPACE = uuid.UUID("0b1f9c9e-2c54-4d0e-8a55-1d0f6f6e2a10")


class OrderLifecycle:
    """The store observer described in the module docs. ``execution_orders``: the
    rebalancing execution orders by id."""

    def __init__(
        self, store: PortfolioStore, tenant: Tenant, engine: WebhookEngine,
        fill_seconds: float | None,
    ) -> None:
        if fill_seconds is not None and not fill_seconds >= 0:
            raise ValueError("order_fill_seconds must be >= 0 or None")
        self.store, self.tenant, self.engine = store, tenant, engine
        self.fill_seconds = fill_seconds
        self.execution_orders: dict[str, dict[str, Any]] = {}
        self._by_order: dict[str, dict[str, Any]] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._filled: set[str] = set()
        self._known: dict[str, dict[str, Any]] | None = None
        store.observer = self
        engine.busy = lambda: bool(self._tasks)

    # StoreObserver

    def allocation_created(self, allocation: dict[str, Any]) -> None:
        """Emit ``PORTFOLIO_ALLOCATION.CREATED``."""
        self.engine.emit("PORTFOLIO_ALLOCATION.CREATED", allocation)

    def allocation_changed(self, allocation: dict[str, Any]) -> None:
        """Emit ``PORTFOLIO_ALLOCATION.CHANGED``."""
        self.engine.emit("PORTFOLIO_ALLOCATION.CHANGED", allocation)

    def order_created(self, order: dict[str, Any]) -> None:
        """Emit ``PORTFOLIO_ORDER.NEW`` and, with ``fill_seconds``, start its progress."""
        self.engine.emit("PORTFOLIO_ORDER.NEW", order)
        if self.fill_seconds is None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no event loop (the store used synchronously): the order stays NEW
        self._tasks[order["id"]] = loop.create_task(self._progress(order["id"]))

    def order_status_changed(self, order: dict[str, Any], previous: str) -> None:
        """Fill (first ``FILLED`` only), emit ``PORTFOLIO_ORDER.<status>`` and mirror the status
        to its rebalancing execution order, if any."""
        status = order["status"]
        if status == "FILLED" and order["id"] not in self._filled:
            self._filled.add(order["id"])  # an order changes positions once, however moved
            self._fill(order)
        self.engine.emit(f"PORTFOLIO_ORDER.{status}", order)
        mirrored = self._by_order.get(order["id"])
        if mirrored is not None:
            mirrored["status"] = status
            mirrored["updated_at"] = order["updated_at"]
            self.engine.emit(f"REBALANCING_EXECUTION_ORDER.{status}", mirrored)
        if status in {"FILLED", "CANCELLED"}:
            task = self._tasks.pop(order["id"], None)
            if task is not None and task is not asyncio.current_task():
                task.cancel()

    def execution_created(self, execution: dict[str, Any], account_ids: list[str]) -> None:
        """With ``fill_seconds``: one REBALANCING order and execution order per account."""
        if self.fill_seconds is None:
            return
        for account_id in account_ids:
            user_id = str(uuid.uuid5(_USER_NAMESPACE, account_id))
            order = self.store.create_rebalancing_order(account_id, user_id)
            mirrored = {
                "id": str(uuid.uuid4()), "execution_id": execution["id"],
                "account_id": account_id, "portfolio_order_id": order["id"],
                "status": order["status"], "created_at": order["created_at"],
                "updated_at": order["updated_at"],
            }
            self.execution_orders[mirrored["id"]] = mirrored
            self._by_order[order["id"]] = mirrored
            self.engine.emit("REBALANCING_EXECUTION_ORDER.NEW", mirrored)

    # Automatic progress and fills

    async def _progress(self, order_id: str) -> None:
        assert self.fill_seconds is not None
        try:
            for before, after in (("NEW", "PROCESSING"), ("PROCESSING", "FILLED")):
                await asyncio.sleep(self.fill_seconds / 2)
                if self.store.orders[order_id]["status"] != before:
                    return
                self.store.set_order_status(order_id, after)
        finally:
            if self._tasks.get(order_id) is asyncio.current_task():
                del self._tasks[order_id]

    def _instruments(self) -> dict[str, dict[str, Any]]:
        if self._known is None:
            self._known = {}
            for instrument in self.tenant.instruments:
                self._known[str(instrument["uuid"])] = instrument
                if "isin" in instrument:
                    self._known[str(instrument["isin"])] = instrument
        return self._known

    def _fill(self, order: dict[str, Any]) -> None:
        account_id = str(order["account_id"])
        allocation = self.store.allocations.get(str(order["allocation_id"]))
        if allocation is None or not self.tenant.has_account(account_id):
            return
        held = {
            str(p["instrument"]["uuid"]): p
            for p in self.tenant.positions(account_id, notify=False)
        }
        changed = order_changes(order, allocation["allocation"], held, self._instruments())
        if not changed:
            return
        for position in changed:
            held[str(position["instrument"]["uuid"])] = position
        self.tenant.set_positions(account_id, [held[key] for key in sorted(held)])
        for position in changed:
            self.engine.emit("POSITION.UPDATED", position)

    async def stop(self) -> None:
        """Cancel the orders' progress (they stay in the status they reached)."""
        tasks, self._tasks = list(self._tasks.values()), {}
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
