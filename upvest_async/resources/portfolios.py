"""``client.portfolios``: the Portfolios API (seed 001; E6 also seed 000), endpoints E1 to E15.

Every method checks its input before sending (:class:`~upvest_async.ValidationError` naming the
field and the rule; nothing is sent then). Optional fields left as ``None`` are left out of
the body, never sent as ``null``. Writes take ``idempotency_key=`` (a UUID; one is generated
per call when omitted) and send it on every attempt of the call. Every method also takes the
per-call options of :class:`~upvest_async.transport.RequestOptions` (``timeout``,
``max_retries``, ``deadline``, ``backoff_max``, ``extra_headers``). API errors raise the
:class:`~upvest_async.APIStatusError` subclass of the status.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Unpack

from ..bulk import RebalanceResult, trigger_many
from ..errors import ValidationError
from ..models import (
    AllocationItem,
    Currency,
    OrderSide,
    PortfoliosAllocation,
    PortfoliosConfiguration,
    PortfoliosOrder,
    RebalancingExecution,
    TriggeredRebalancing,
)
from ..pagination import MAX_LIMIT, Paginator
from ..transport import RequestOptions
from ..validation import (
    ISIN_PATTERN,
    check_allocation_items,
    check_bool,
    check_cash_amount,
    check_enum_token,
    check_uuid,
    check_uuid_list,
)
from ._base import Resource, idempotency, list_filters

if TYPE_CHECKING:
    from ..client import UpvestClient

__all__ = [
    "Allocations",
    "Configurations",
    "Executions",
    "LiquidationRequests",
    "Orders",
    "Portfolios",
    "Rebalancings",
]

Id = str | uuid.UUID
Timestamp = str | datetime
AllocationItems = Iterable[AllocationItem | dict[str, Any]]


class Allocations(Resource):
    """``client.portfolios.allocations``: model portfolios (E1 to E4)."""

    def list(
        self,
        *,
        instrument_ids: Sequence[Id] | None = None,
        sort: str | None = None,
        order: str | None = None,
        start_date: Timestamp | None = None,
        end_date: Timestamp | None = None,
        page_size: int = MAX_LIMIT,
        offset: int = 0,
        max_items: int | None = None,
    ) -> Paginator[PortfoliosAllocation]:
        """List allocations: ``GET /portfolios/allocations`` (E1), scope ``portfolios:read``.

        ``instrument_ids``: ISINs or Upvest uuids, sent comma-separated (Q17); ``sort``: ``id``;
        ``order``: ``ASC``; ``start_date``/``end_date``: RFC 3339. Returns an async iterator of
        :class:`PortfoliosAllocation`.
        """
        joined = None
        if instrument_ids is not None:
            if isinstance(instrument_ids, str | bytes) or not isinstance(instrument_ids, Iterable):
                raise ValidationError("instrument_ids", "must be a list of ISINs or UUIDs")
            checked = []
            for index, value in enumerate(instrument_ids):
                if isinstance(value, str) and ISIN_PATTERN.fullmatch(value):
                    checked.append(value)
                else:
                    checked.append(check_uuid(f"instrument_ids[{index}]", value))
            joined = ",".join(checked) or None
        params = list_filters(sort=sort, sort_values=("id",), order=order, start_date=start_date,
                              end_date=end_date, extra={"instrument_ids": joined})
        return self._client._paginate(
            "/portfolios/allocations", PortfoliosAllocation, params=params,
            page_size=page_size, offset=offset, max_items=max_items,
        )

    async def create(
        self,
        *,
        allocation: AllocationItems,
        name: str | None = None,
        idempotency_key: Id | None = None,
        **options: Unpack[RequestOptions],
    ) -> PortfoliosAllocation:
        """Create an allocation: ``POST /portfolios/allocations`` (E2), scope
        ``portfolios:admin``. ``allocation``: at least one item (S7 rules, see
        :func:`~upvest_async.validation.check_allocation_items`); ``name``: optional."""
        body: dict[str, Any] = {"allocation": check_allocation_items("allocation", allocation)}
        if name is not None:
            body["name"] = _name(name)
        return await self._call(
            PortfoliosAllocation, "POST", "/portfolios/allocations", json_body=body,
            idempotency_key=idempotency_key, options=options,
        )

    async def retrieve(
        self, allocation_id: Id, **options: Unpack[RequestOptions]
    ) -> PortfoliosAllocation:
        """Retrieve an allocation: ``GET /portfolios/allocations/{allocation_id}`` (E3).
        Raises :class:`~upvest_async.NotFoundError` when unknown."""
        allocation = check_uuid("allocation_id", allocation_id)
        return await self._call(
            PortfoliosAllocation, "GET", f"/portfolios/allocations/{allocation}", options=options,
        )

    async def update(
        self,
        allocation_id: Id,
        *,
        allocation: AllocationItems,
        name: str | None = None,
        idempotency_key: Id | None = None,
        **options: Unpack[RequestOptions],
    ) -> PortfoliosAllocation:
        """Replace an allocation's items (and ``name`` when given): ``PUT
        /portfolios/allocations/{allocation_id}`` (E4), scope ``portfolios:admin``.

        The seed prints no ``idempotency-key`` on this PUT (Q15); the SDK sends one anyway,
        like on every write, so retries stay safe."""
        target = check_uuid("allocation_id", allocation_id)
        body: dict[str, Any] = {"allocation": check_allocation_items("allocation", allocation)}
        if name is not None:
            body["name"] = _name(name)
        return await self._call(
            PortfoliosAllocation, "PUT", f"/portfolios/allocations/{target}", json_body=body,
            idempotency_key=idempotency_key, options=options,
        )


class Configurations(Resource):
    """``client.portfolios.configurations``: portfolio configurations of accounts (E5 to E8)."""

    def list(
        self,
        *,
        account_id: Id | None = None,
        allocation_id: Id | None = None,
        sort: str | None = None,
        order: str | None = None,
        start_date: Timestamp | None = None,
        end_date: Timestamp | None = None,
        page_size: int = MAX_LIMIT,
        offset: int = 0,
        max_items: int | None = None,
    ) -> Paginator[PortfoliosConfiguration]:
        """List configurations: ``GET /portfolios/configurations`` (E5), scope
        ``portfolios:read``.

        Filters ``account_id`` and ``allocation_id`` (the seed prints them without uuid format,
        Q17; the SDK requires UUIDs); ``sort``: ``account_id``; ``order``: ``ASC``;
        ``start_date``/``end_date``: RFC 3339. Returns an async iterator of
        :class:`PortfoliosConfiguration`.
        """
        params = list_filters(
            sort=sort, sort_values=("account_id",), order=order, start_date=start_date,
            end_date=end_date, extra={
                "account_id": _optional_uuid("account_id", account_id),
                "allocation_id": _optional_uuid("allocation_id", allocation_id),
            },
        )
        return self._client._paginate(
            "/portfolios/configurations", PortfoliosConfiguration, params=params,
            page_size=page_size, offset=offset, max_items=max_items,
        )

    async def create(
        self,
        *,
        account_id: Id,
        allocation_id: Id,
        rebalancing_strategy_ids: Iterable[Id] | None = None,
        idempotency_key: Id | None = None,
        **options: Unpack[RequestOptions],
    ) -> PortfoliosConfiguration:
        """Configure an account's portfolio: ``POST /portfolios/configurations`` (E6; 200 per
        seed 000), scope ``portfolios:admin``. Raises :class:`~upvest_async.ConflictError` when
        the account already has a configuration."""
        body: dict[str, Any] = {
            "account_id": check_uuid("account_id", account_id),
            "allocation_id": check_uuid("allocation_id", allocation_id),
        }
        if rebalancing_strategy_ids is not None:
            body["rebalancing_strategy_ids"] = check_uuid_list(
                "rebalancing_strategy_ids", rebalancing_strategy_ids
            )
        return await self._call(
            PortfoliosConfiguration, "POST", "/portfolios/configurations", json_body=body,
            idempotency_key=idempotency_key, options=options,
        )

    async def retrieve(
        self, account_id: Id, **options: Unpack[RequestOptions]
    ) -> PortfoliosConfiguration:
        """Retrieve an account's configuration: ``GET /portfolios/configurations/{account_id}``
        (E7). Raises :class:`~upvest_async.NotFoundError` when it has none."""
        account = check_uuid("account_id", account_id)
        return await self._call(
            PortfoliosConfiguration, "GET", f"/portfolios/configurations/{account}",
            options=options,
        )

    async def update(
        self,
        account_id: Id,
        *,
        allocation_id: Id | None = None,
        rebalancing_strategy_ids: Iterable[Id] | None = None,
        idempotency_key: Id | None = None,
        **options: Unpack[RequestOptions],
    ) -> PortfoliosConfiguration:
        """Change an account's configuration: ``PATCH /portfolios/configurations/{account_id}``
        (E8), scope ``portfolios:admin``. Both fields are optional, but at least one must be
        given (an empty PATCH is refused before sending)."""
        account = check_uuid("account_id", account_id)
        body: dict[str, Any] = {}
        if allocation_id is not None:
            body["allocation_id"] = check_uuid("allocation_id", allocation_id)
        if rebalancing_strategy_ids is not None:
            body["rebalancing_strategy_ids"] = check_uuid_list(
                "rebalancing_strategy_ids", rebalancing_strategy_ids
            )
        if not body:
            raise ValidationError("allocation_id", "give allocation_id and/or "
                                  "rebalancing_strategy_ids to update")
        return await self._call(
            PortfoliosConfiguration, "PATCH", f"/portfolios/configurations/{account}",
            json_body=body, idempotency_key=idempotency_key, options=options,
        )


class Orders(Resource):
    """``client.portfolios.orders``: portfolio orders (E9, E10, E12, E13)."""

    def list(
        self,
        *,
        account_id: Id | None = None,
        allocation_id: Id | None = None,
        sort: str | None = None,
        order: str | None = None,
        start_date: Timestamp | None = None,
        end_date: Timestamp | None = None,
        page_size: int = MAX_LIMIT,
        offset: int = 0,
        max_items: int | None = None,
    ) -> Paginator[PortfoliosOrder]:
        """List portfolio orders: ``GET /portfolios/orders`` (E9), scope ``portfolios:read``.
        Filters ``account_id``, ``allocation_id`` (UUIDs); ``sort``: ``id``; ``order``:
        ``ASC``; ``start_date``/``end_date``: RFC 3339."""
        params = list_filters(
            sort=sort, sort_values=("id",), order=order, start_date=start_date,
            end_date=end_date, extra={
                "account_id": _optional_uuid("account_id", account_id),
                "allocation_id": _optional_uuid("allocation_id", allocation_id),
            },
        )
        return self._client._paginate(
            "/portfolios/orders", PortfoliosOrder, params=params, page_size=page_size,
            offset=offset, max_items=max_items,
        )

    async def create(
        self,
        *,
        user_id: Id,
        account_id: Id,
        cash_amount: str | Decimal,
        side: OrderSide | str,
        currency: Currency | str = Currency.EUR,
        post_tax: bool | None = None,
        idempotency_key: Id | None = None,
        **options: Unpack[RequestOptions],
    ) -> PortfoliosOrder:
        """Place a portfolio order: ``POST /portfolios/orders`` (E10), scope
        ``portfolios:admin``.

        ``cash_amount``: a decimal string or :class:`~decimal.Decimal` in ``currency`` (floats
        are refused); ``side``: ``BUY`` or ``SELL``; ``currency``: ``EUR`` (required by the seed,
        sent explicitly); ``post_tax``: whether the amount is post-tax (left out when ``None``;
        the API's default is ``false``).
        """
        body: dict[str, Any] = {
            "user_id": check_uuid("user_id", user_id),
            "account_id": check_uuid("account_id", account_id),
            "cash_amount": check_cash_amount("cash_amount", cash_amount),
            "currency": check_enum_token("currency", currency),
            "side": check_enum_token("side", side),
        }
        if post_tax is not None:
            body["post_tax"] = check_bool("post_tax", post_tax)
        return await self._call(
            PortfoliosOrder, "POST", "/portfolios/orders", json_body=body,
            idempotency_key=idempotency_key, options=options,
        )

    async def retrieve(
        self, portfolio_order_id: Id, **options: Unpack[RequestOptions]
    ) -> PortfoliosOrder:
        """Retrieve a portfolio order: ``GET /portfolios/orders/{portfolio_order_id}`` (E12)."""
        order_id = check_uuid("portfolio_order_id", portfolio_order_id)
        return await self._call(
            PortfoliosOrder, "GET", f"/portfolios/orders/{order_id}", options=options,
        )

    async def cancel(
        self,
        portfolio_order_id: Id,
        *,
        idempotency_key: Id | None = None,
        **options: Unpack[RequestOptions],
    ) -> None:
        """Cancel a portfolio order: ``DELETE /portfolios/orders/{portfolio_order_id}`` (E13),
        scope ``portfolios:admin``. Returns nothing on success (the seed prints no body, Q3).
        Raises :class:`~upvest_async.ConflictError` when the order can no longer be cancelled
        (the sandbox allows it while ``NEW``)."""
        order_id = check_uuid("portfolio_order_id", portfolio_order_id)
        await self._client._request(
            "DELETE", f"/portfolios/orders/{order_id}",
            idempotency_key=idempotency(idempotency_key), **options,
        )


class LiquidationRequests(Resource):
    """``client.portfolios.liquidation_requests`` (E11)."""

    async def create(
        self,
        account_id: Id,
        *,
        user_id: Id,
        idempotency_key: Id | None = None,
        **options: Unpack[RequestOptions],
    ) -> PortfoliosOrder:
        """Liquidate an account's portfolio: ``POST /portfolios/{account_id}/liquidation_request``
        (E11), scope ``portfolios:admin``. Returns the ``LIQUIDATION`` portfolio order."""
        account = check_uuid("account_id", account_id)
        return await self._call(
            PortfoliosOrder, "POST", f"/portfolios/{account}/liquidation_request",
            json_body={"user_id": check_uuid("user_id", user_id)}, idempotency_key=idempotency_key,
            options=options,
        )


class Executions(Resource):
    """``client.portfolios.rebalancings.executions`` (E14, E15)."""

    async def create(
        self,
        *,
        accounts: Iterable[Id] | None = None,
        allocations: Iterable[Id] | None = None,
        idempotency_key: Id | None = None,
        **options: Unpack[RequestOptions],
    ) -> TriggeredRebalancing:
        """Trigger a rebalancing: ``POST /portfolios/rebalancings/executions`` (E14), scope
        ``portfolios:admin``.

        Give exactly one of ``accounts`` (account uuids) or ``allocations`` (allocation uuids),
        non-empty: the seed prints the two shapes without saying whether both may be sent, and
        its examples send one (Q20), so the SDK treats them as mutually exclusive.
        Returns the execution id (:class:`TriggeredRebalancing`).
        """
        if (accounts is None) == (allocations is None):
            raise ValidationError("accounts", "give exactly one of accounts or allocations")
        if accounts is not None:
            body = {"accounts": check_uuid_list("accounts", accounts, non_empty=True)}
        else:
            body = {"allocations": check_uuid_list("allocations", allocations, non_empty=True)}
        return await self._call(
            TriggeredRebalancing, "POST", "/portfolios/rebalancings/executions", json_body=body,
            idempotency_key=idempotency_key, options=options,
        )

    async def retrieve(
        self, execution_id: Id, **options: Unpack[RequestOptions]
    ) -> RebalancingExecution:
        """Retrieve a rebalancing execution:
        ``GET /portfolios/rebalancings/executions/{execution_id}`` (E15)."""
        execution = check_uuid("execution_id", execution_id)
        return await self._call(
            RebalancingExecution, "GET", f"/portfolios/rebalancings/executions/{execution}",
            options=options,
        )


class Rebalancings(Resource):
    """``client.portfolios.rebalancings``: ``.executions`` and :meth:`trigger_many`."""

    def __init__(self, client: UpvestClient) -> None:
        super().__init__(client)
        self.executions = Executions(client)

    async def trigger_many(
        self,
        account_ids: Iterable[Id],
        *,
        concurrency: int = 16,
        batch_id: str | None = None,
        group_size: int = 1,
        dry_run: bool = False,
        on_result: Callable[[RebalanceResult], Awaitable[None] | None] | None = None,
        max_retries: int | None = None,
    ) -> list[RebalanceResult]:
        """Trigger a rebalancing execution (E14) for each account (or each group of
        ``group_size`` accounts) with at most ``concurrency`` in flight; returns one
        :class:`~upvest_async.bulk.RebalanceResult` per account, in input order, and never
        raises for a failed trigger. With ``batch_id`` the idempotency keys are derived from
        it, so re-running the batch creates no second execution. See
        :func:`upvest_async.bulk.trigger_many`."""
        return await trigger_many(
            self.executions, account_ids, concurrency=concurrency, batch_id=batch_id,
            group_size=group_size, dry_run=dry_run, on_result=on_result,
            max_retries=max_retries,
        )


class Portfolios(Resource):
    """``client.portfolios``: ``.allocations``, ``.configurations``, ``.orders``,
    ``.liquidation_requests`` and ``.rebalancings.executions``."""

    def __init__(self, client: UpvestClient) -> None:
        super().__init__(client)
        self.allocations = Allocations(client)
        self.configurations = Configurations(client)
        self.orders = Orders(client)
        self.liquidation_requests = LiquidationRequests(client)
        self.rebalancings = Rebalancings(client)


def _name(name: object) -> str:
    if not isinstance(name, str):
        raise ValidationError("name", f"must be a string, got {type(name).__name__}")
    return name


def _optional_uuid(field: str, value: object) -> str | None:
    return None if value is None else check_uuid(field, value)
