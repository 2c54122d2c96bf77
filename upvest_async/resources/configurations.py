"""``client.portfolios.configurations``: portfolio configurations of accounts (E5 to E8,
https://docs.upvest.co/api/Portfolios)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Unpack

from ..errors import InvalidInputError
from ..models import (
    PortfoliosConfiguration,
)
from ..pagination import MAX_LIMIT, Paginator
from ..transport import RequestOptions
from ..validation import (
    check_uuid,
    check_uuid_list,
)
from ._base import Id, Resource, Timestamp, list_filters, optional_uuid

__all__ = ["Configurations"]


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
        **options: Unpack[RequestOptions],
    ) -> Paginator[PortfoliosConfiguration]:
        """List configurations: ``GET /portfolios/configurations`` (E5), scope
        ``portfolios:read``.

        Filters ``account_id`` and ``allocation_id`` (the reference prints them without uuid format,
        Q17; the SDK requires UUIDs); ``sort``: ``account_id``; ``order``: ``ASC``;
        ``start_date``/``end_date``: RFC 3339. Returns an async iterator of
        :class:`PortfoliosConfiguration`.
        Takes the per-call options of :class:`~upvest_async.RequestOptions`, applied to each
        page request (checked at once, before anything is sent).
        """
        params = list_filters(
            sort=sort, sort_values=("account_id",), order=order, start_date=start_date,
            end_date=end_date, extra={
                "account_id": optional_uuid("account_id", account_id),
                "allocation_id": optional_uuid("allocation_id", allocation_id),
            },
        )
        return self._client._paginate(
            "/portfolios/configurations", PortfoliosConfiguration, params=params,
            page_size=page_size, offset=offset, max_items=max_items, options=options,
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
        the reference), scope ``portfolios:admin``. Raises :class:`~upvest_async.ConflictError` when
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
            options=options, template="/portfolios/configurations/{account_id}",
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
            raise InvalidInputError("allocation_id", "give allocation_id and/or "
                                  "rebalancing_strategy_ids to update")
        return await self._call(
            PortfoliosConfiguration, "PATCH", f"/portfolios/configurations/{account}",
            json_body=body, idempotency_key=idempotency_key, options=options,
            template="/portfolios/configurations/{account_id}",
        )
