"""In-memory state of the sandbox's Portfolios API: allocations, configurations, portfolio
orders and rebalancing executions (E1 to E15), seeded from the tenant."""

from __future__ import annotations

import json
import random
import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, Protocol

from .bodies import (
    AllocationBody,
    ConfigurationBody,
    ConfigurationPatch,
    ExecutionBody,
    LiquidationBody,
    OrderBody,
)
from .idempotency import current_key
from .problems import Problem
from .tenant import Tenant

if TYPE_CHECKING:
    from .state import SandboxCounters

__all__ = ["ORDER_STATUSES", "SEED_TIMESTAMP", "PortfolioStore", "StoreObserver",
           "format_timestamp", "parse_timestamp"]

#: S10 ``status`` values.
ORDER_STATUSES: Final = ("NEW", "SUBMITTED", "PROCESSING", "FILLED", "CANCELLED")
#: ``created_at``/``updated_at`` of the seeded allocations (the reference examples' moment).
SEED_TIMESTAMP: Final = "2021-07-21T14:10:00.000Z"
#: S7 weights of the seeded allocations by item count, as in the reference examples (Q7).
_SEED_WEIGHTS: Final = {2: ("0.6", "0.4"), 3: ("0.5", "0.25", "0.25")}
_RFC3339: Final = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})"
)


def format_timestamp(moment: datetime) -> str:
    """``moment`` as ``YYYY-MM-DDTHH:MM:SS.mmmZ`` in UTC."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_timestamp(value: str) -> datetime | None:
    """An RFC 3339 date-time with an offset, else ``None``."""
    if not _RFC3339.fullmatch(value):
        return None
    try:
        return datetime.fromisoformat(value.upper().replace(" ", "T"))
    except ValueError:
        return None


def _now() -> datetime:
    return datetime.now(UTC)


class StoreObserver(Protocol):
    """Told of every change of a :class:`PortfolioStore` after it happened (the webhook
    engine, :mod:`.webhooks.engine`). The dicts are the store's own: read, never keep."""

    def allocation_created(self, allocation: dict[str, Any]) -> None:
        """E2 created ``allocation``."""

    def allocation_changed(self, allocation: dict[str, Any]) -> None:
        """E4 changed ``allocation``."""

    def order_created(self, order: dict[str, Any]) -> None:
        """A portfolio order was created (E10, E11, or for a rebalancing execution)."""

    def order_status_changed(self, order: dict[str, Any], previous: str) -> None:
        """``order`` moved from status ``previous`` to ``order["status"]``."""

    def execution_created(self, execution: dict[str, Any], account_ids: list[str]) -> None:
        """E14 created ``execution`` for ``account_ids`` (sorted; for an allocations trigger,
        the accounts configured with one of them)."""


class PortfolioStore:
    """Allocations, configurations, portfolio orders and rebalancing executions, JSON-shaped.

    ``configurations`` is the tenant's own dict (account id -> S9), so E6/E8 changes show in
    ``tenant.configurations`` too. ``allocations`` starts with one S8 allocation per allocation
    id the tenant's configurations use ("Allocation 1".. in id order, 2 or 3 ISIN items with
    weights "0.6"/"0.4" or "0.5"/"0.25"/"0.25", created at :data:`SEED_TIMESTAMP`); seeded
    resources are not counted in ``counters.created``. ``clock`` returns aware datetimes.

    The API-facing methods raise :class:`~.problems.Problem` (404 unknown, 409 conflicting state).

    Duplicates: each resource created through the API is fingerprinted by its request content
    without the volatile fields (orders and liquidations: ``user_id``, ``account_id``,
    ``cash_amount``, ``currency``, ``side``/``type``, ``post_tax``; executions: the sorted
    ``accounts`` or ``allocations``; allocations: ``name`` and items; configurations: all
    fields). A creation whose fingerprint matches an earlier creation made under a different
    ``idempotency-key`` (or without one) adds one to ``counters.duplicates``: a client that
    changes its key when it retries shows up there. Distinct operations that are meant to
    create equal resources count too, so tests give each operation distinct content.
    ``created_by_key`` maps each ``idempotency-key`` (lower-case) to the id of the resource
    created under it (the account id for configurations).
    """

    def __init__(
        self, tenant: Tenant, counters: SandboxCounters, *, clock: Callable[[], datetime] = _now
    ) -> None:
        self.counters = counters
        self.clock = clock
        self.configurations: dict[str, dict[str, Any]] = tenant.configurations
        self.allocations: dict[str, dict[str, Any]] = self._seed_allocations(tenant)
        self.orders: dict[str, dict[str, Any]] = {}
        self.executions: dict[str, dict[str, Any]] = {}
        self.created_by_key: dict[str, str] = {}
        self._first_keys: dict[str, tuple[str, str] | None] = {}
        self._last: datetime | None = None
        #: Told of every change (``None``: nobody listens).
        self.observer: StoreObserver | None = None

    @staticmethod
    def _seed_allocations(tenant: Tenant) -> dict[str, dict[str, Any]]:
        rng = random.Random(f"allocations-{tenant.seed}")
        isins = [str(i["isin"]) for i in tenant.instruments if "isin" in i]
        used = sorted({str(c["allocation_id"]) for c in tenant.configurations.values()})
        allocations = {}
        for number, allocation_id in enumerate(used, start=1):
            weights = _SEED_WEIGHTS[rng.choice((2, 3))]
            allocations[allocation_id] = {
                "id": allocation_id,
                "created_at": SEED_TIMESTAMP,
                "updated_at": SEED_TIMESTAMP,
                "name": f"Allocation {number}",
                "allocation": [
                    {"instrument_id": isin, "instrument_id_type": "ISIN", "weight": weight}
                    for isin, weight in zip(rng.sample(isins, len(weights)), weights, strict=True)
                ],
            }
        return allocations

    def _stamp(self) -> str:
        """Now, at least one millisecond after the previous stamp."""
        now = self.clock().astimezone(UTC)
        moment = now.replace(microsecond=now.microsecond // 1000 * 1000)
        if self._last is not None and moment <= self._last:
            moment = self._last + timedelta(milliseconds=1)
        self._last = moment
        return format_timestamp(moment)

    def _created(self, kind: str, resource_id: str, content: Any) -> None:
        """Count a creation of ``kind`` and check ``content`` (JSON-shaped) for duplicates."""
        self.counters.created[kind] = self.counters.created.get(kind, 0) + 1
        key = current_key()
        if key is not None:
            self.created_by_key[key[1]] = resource_id
        fingerprint = json.dumps([kind, content], sort_keys=True, separators=(",", ":"))
        if fingerprint not in self._first_keys:
            self._first_keys[fingerprint] = key
        elif key is None or self._first_keys[fingerprint] != key:
            self.counters.duplicates += 1

    # Allocations (E1 to E4)

    def allocation(self, allocation_id: str) -> dict[str, Any]:
        """The stored portfolio allocation (E1 to E4), JSON-shaped as the API
        serves it; a missing one raises the sandbox's 404 problem."""
        try:
            return self.allocations[allocation_id]
        except KeyError:
            raise Problem(404, f"no portfolio allocation {allocation_id}") from None

    def create_allocation(self, body: AllocationBody) -> dict[str, Any]:
        """E2; ``name`` defaults to "Allocation <n>", n the allocation count after creation."""
        stamp, allocation_id = self._stamp(), str(uuid.uuid4())
        name = body.name if body.name is not None else f"Allocation {len(self.allocations) + 1}"
        allocation = {
            "id": allocation_id,
            "created_at": stamp,
            "updated_at": stamp,
            "name": name,
            "allocation": [item.to_json() for item in body.allocation],
        }
        self.allocations[allocation_id] = allocation
        self._created("allocation", allocation_id, [body.name, allocation["allocation"]])
        if self.observer is not None:
            self.observer.allocation_created(allocation)
        return allocation

    def update_allocation(self, allocation_id: str, body: AllocationBody) -> dict[str, Any]:
        """E4: replaces ``allocation``, and ``name`` only when given."""
        allocation = self.allocation(allocation_id)
        allocation["allocation"] = [item.to_json() for item in body.allocation]
        if body.name is not None:
            allocation["name"] = body.name
        allocation["updated_at"] = self._stamp()
        if self.observer is not None:
            self.observer.allocation_changed(allocation)
        return allocation

    # Configurations (E5 to E8)

    def configuration(self, account_id: str) -> dict[str, Any]:
        """The stored portfolio configuration of an account (E5 to E8), JSON-shaped as the API
        serves it; a missing one raises the sandbox's 404 problem."""
        try:
            return self.configurations[account_id]
        except KeyError:
            raise Problem(404, f"account {account_id} has no portfolio configuration") from None

    def create_configuration(self, body: ConfigurationBody) -> dict[str, Any]:
        """E6: 404 for an unknown allocation, 409 when the account is configured already. Any
        well-formed account id not configured yet is accepted as an account."""
        self.allocation(body.allocation_id)
        if body.account_id in self.configurations:
            raise Problem(409, f"account {body.account_id} already has a portfolio configuration")
        stamp = self._stamp()
        configuration = {
            "account_id": body.account_id,
            "allocation_id": body.allocation_id,
            "created_at": stamp,
            "updated_at": stamp,
            "rebalancing_strategy_ids": list(body.rebalancing_strategy_ids),
        }
        self.configurations[body.account_id] = configuration
        self._created("configuration", body.account_id, [
            body.account_id, body.allocation_id, sorted(body.rebalancing_strategy_ids)
        ])
        return configuration

    def update_configuration(self, account_id: str, patch: ConfigurationPatch) -> dict[str, Any]:
        """E8: sets the fields given (an unknown ``allocation_id`` is a 404)."""
        configuration = self.configuration(account_id)
        if patch.allocation_id is not None:
            self.allocation(patch.allocation_id)
            configuration["allocation_id"] = patch.allocation_id
        if patch.rebalancing_strategy_ids is not None:
            configuration["rebalancing_strategy_ids"] = list(patch.rebalancing_strategy_ids)
        configuration["updated_at"] = self._stamp()
        return configuration

    # Portfolio orders (E9 to E13)

    def order(self, order_id: str) -> dict[str, Any]:
        """The stored portfolio order (E9 to E13), JSON-shaped as the API
        serves it; a missing one raises the sandbox's 404 problem."""
        try:
            return self.orders[order_id]
        except KeyError:
            raise Problem(404, f"no portfolio order {order_id}") from None

    def _new_order(
        self, *, user_id: str, account_id: str, cash_amount: str, currency: str, kind: str,
        post_tax: bool, count: bool = True,
    ) -> dict[str, Any]:
        configuration = self.configuration(account_id)
        stamp, order_id = self._stamp(), str(uuid.uuid4())
        order = {
            "id": order_id,
            "created_at": stamp,
            "updated_at": stamp,
            "user_id": user_id,
            "account_id": account_id,
            "allocation_id": configuration["allocation_id"],
            "cash_amount": cash_amount,
            "currency": currency,
            "status": "NEW",
            "type": kind,
            "post_tax": post_tax,
            "orders": [],
        }
        self.orders[order_id] = order
        if count:
            self._created("order", order_id, [
                user_id, account_id, cash_amount, currency, kind, post_tax
            ])
        if self.observer is not None:
            self.observer.order_created(order)
        return order

    def create_order(self, body: OrderBody) -> dict[str, Any]:
        """E10: an S10 order of ``type`` = ``side``, status NEW, the configuration's allocation;
        404 when the account has no configuration."""
        return self._new_order(
            user_id=body.user_id, account_id=body.account_id, cash_amount=body.cash_amount,
            currency=body.currency, kind=body.side, post_tax=body.post_tax,
        )

    def create_liquidation(self, account_id: str, body: LiquidationBody) -> dict[str, Any]:
        """E11: an S10 order of ``type`` LIQUIDATION, ``cash_amount`` "0", EUR, not post-tax."""
        return self._new_order(
            user_id=body.user_id, account_id=account_id, cash_amount="0", currency="EUR",
            kind="LIQUIDATION", post_tax=False,
        )

    def create_rebalancing_order(self, account_id: str, user_id: str) -> dict[str, Any]:
        """An S10 order of ``type`` REBALANCING (``cash_amount`` "0", EUR) that a rebalancing
        execution makes for one account; not counted in ``counters.created``."""
        return self._new_order(
            user_id=user_id, account_id=account_id, cash_amount="0", currency="EUR",
            kind="REBALANCING", post_tax=False, count=False,
        )

    def cancel_order(self, order_id: str) -> None:
        """E13: NEW -> CANCELLED; 409 in any other status."""
        order = self.order(order_id)
        if order["status"] != "NEW":
            raise Problem(409, f"portfolio order {order_id} is {order['status']}, not NEW")
        order["status"] = "CANCELLED"
        order["updated_at"] = self._stamp()
        if self.observer is not None:
            self.observer.order_status_changed(order, "NEW")

    def set_order_status(self, order_id: str, status: str) -> dict[str, Any]:
        """Move an order to ``status`` (one of :data:`ORDER_STATUSES`), as the real system
        would; for tests. Raises :class:`KeyError` / :class:`ValueError`."""
        if status not in ORDER_STATUSES:
            raise ValueError(f"status must be one of {', '.join(ORDER_STATUSES)}")
        order = self.orders[order_id]
        previous = order["status"]
        order["status"] = status
        order["updated_at"] = self._stamp()
        if self.observer is not None and previous != status:
            self.observer.order_status_changed(order, previous)
        return order

    # Rebalancing executions (E14, E15)

    def execution(self, execution_id: str) -> dict[str, Any]:
        """The stored rebalancing execution (E14, E15), JSON-shaped as the API
        serves it; a missing one raises the sandbox's 404 problem."""
        try:
            return self.executions[execution_id]
        except KeyError:
            raise Problem(404, f"no rebalancing execution {execution_id}") from None

    def create_execution(self, body: ExecutionBody) -> dict[str, Any]:
        """E14: 404 for an account without configuration or an unknown allocation. The S13
        execution has only the key that was sent (``accounts`` or ``allocations``)."""
        if body.accounts is not None:
            for account_id in body.accounts:
                self.configuration(account_id)
            targets = {"accounts": list(body.accounts)}
            content = ["accounts", sorted(body.accounts)]
            accounts = sorted(set(body.accounts))
        else:
            assert body.allocations is not None
            for allocation_id in body.allocations:
                self.allocation(allocation_id)
            targets = {"allocations": list(body.allocations)}
            content = ["allocations", sorted(body.allocations)]
            wanted = set(body.allocations)
            accounts = sorted(
                account for account, configuration in self.configurations.items()
                if configuration["allocation_id"] in wanted
            )
        stamp, execution_id = self._stamp(), str(uuid.uuid4())
        execution = {"id": execution_id, "created_at": stamp, "updated_at": stamp, **targets}
        self.executions[execution_id] = execution
        self._created("execution", execution_id, content)
        if self.observer is not None:
            self.observer.execution_created(execution, accounts)
        return execution
