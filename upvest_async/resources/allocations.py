"""``client.portfolios.allocations``: model portfolios (E1 to E4)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Unpack

from ..errors import InvalidInputError
from ..models import (
    AllocationItem,
    PortfoliosAllocation,
)
from ..pagination import MAX_LIMIT, Paginator
from ..transport import RequestOptions
from ..validation import (
    ISIN_PATTERN,
    check_allocation_items,
    check_uuid,
)
from ._base import Id, Resource, Timestamp, list_filters

__all__ = ["Allocations"]


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
        **options: Unpack[RequestOptions],
    ) -> Paginator[PortfoliosAllocation]:
        """List allocations: ``GET /portfolios/allocations`` (E1), scope ``portfolios:read``.

        ``instrument_ids``: ISINs or Upvest uuids, sent comma-separated (Q17); ``sort``: ``id``;
        ``order``: ``ASC``; ``start_date``/``end_date``: RFC 3339. Returns an async iterator of
        :class:`PortfoliosAllocation`.
        Takes the per-call options of :class:`~upvest_async.RequestOptions`, applied to each
        page request (checked at once, before anything is sent).
        """
        joined = None
        if instrument_ids is not None:
            if isinstance(instrument_ids, str | bytes) or not isinstance(instrument_ids, Iterable):
                raise InvalidInputError("instrument_ids", "must be a list of ISINs or UUIDs")
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
            page_size=page_size, offset=offset, max_items=max_items, options=options,
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
            template="/portfolios/allocations/{allocation_id}",
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

        The reference prints no ``idempotency-key`` on this PUT (Q15); the SDK sends one anyway,
        like on every write, so retries stay safe."""
        target = check_uuid("allocation_id", allocation_id)
        body: dict[str, Any] = {"allocation": check_allocation_items("allocation", allocation)}
        if name is not None:
            body["name"] = _name(name)
        return await self._call(
            PortfoliosAllocation, "PUT", f"/portfolios/allocations/{target}", json_body=body,
            idempotency_key=idempotency_key, options=options,
            template="/portfolios/allocations/{allocation_id}",
        )


def _name(name: object) -> str:
    if not isinstance(name, str):
        raise InvalidInputError("name", f"must be a string, got {type(name).__name__}")
    return name
