"""``client.portfolios.orders`` and ``client.portfolios.liquidation_requests``: portfolio
orders (E9, E10, E12, E13) and the liquidation request that creates one (E11)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Unpack

from ..models import (
    Currency,
    OrderSide,
    PortfoliosOrder,
)
from ..pagination import MAX_LIMIT, Paginator
from ..transport import RequestOptions
from ..validation import (
    check_bool,
    check_cash_amount,
    check_enum_token,
    check_uuid,
)
from ._base import Id, Resource, Timestamp, idempotency, list_filters, optional_uuid

__all__ = ["LiquidationRequests", "Orders"]


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
        **options: Unpack[RequestOptions],
    ) -> Paginator[PortfoliosOrder]:
        """List portfolio orders: ``GET /portfolios/orders`` (E9), scope ``portfolios:read``.
        Filters ``account_id``, ``allocation_id`` (UUIDs); ``sort``: ``id``; ``order``:
        ``ASC``; ``start_date``/``end_date``: RFC 3339.
        Takes the per-call options of :class:`~upvest_async.RequestOptions`, applied to each
        page request (checked at once, before anything is sent).
        """
        params = list_filters(
            sort=sort, sort_values=("id",), order=order, start_date=start_date,
            end_date=end_date, extra={
                "account_id": optional_uuid("account_id", account_id),
                "allocation_id": optional_uuid("allocation_id", allocation_id),
            },
        )
        return self._client._paginate(
            "/portfolios/orders", PortfoliosOrder, params=params, page_size=page_size,
            offset=offset, max_items=max_items, options=options,
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
        are refused); ``side``: ``BUY`` or ``SELL``; ``currency``: ``EUR`` (required by the
        reference, sent explicitly); ``post_tax``: whether the amount is post-tax (left out when
        ``None``; the API's default is ``false``).
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
            template="/portfolios/orders/{order_id}",
        )

    async def cancel(
        self,
        portfolio_order_id: Id,
        *,
        idempotency_key: Id | None = None,
        **options: Unpack[RequestOptions],
    ) -> None:
        """Cancel a portfolio order: ``DELETE /portfolios/orders/{portfolio_order_id}`` (E13),
        scope ``portfolios:admin``. Returns nothing on success (the reference prints no body, Q3).
        Raises :class:`~upvest_async.ConflictError` when the order can no longer be cancelled
        (the sandbox allows it while ``NEW``)."""
        order_id = check_uuid("portfolio_order_id", portfolio_order_id)
        await self._client._request(
            "DELETE", f"/portfolios/orders/{order_id}",
            idempotency_key=idempotency(idempotency_key), template="/portfolios/orders/{order_id}",
            **options,
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
            options=options, template="/portfolios/{account_id}/liquidation_request",
        )
