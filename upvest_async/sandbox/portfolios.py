"""The sandbox's Portfolios API (E1 to E15 of docs/guides/api-readings.md): handlers and routes
over the in-memory :class:`~.store.PortfolioStore`.

Decisions beyond the reference (which prints no success statuses, Q3):

- every success is 200 ``application/json`` except E13 DELETE, 204 without a body;
- timestamps are ``YYYY-MM-DDTHH:MM:SS.mmmZ`` (UTC, 3 fractional digits; Q16), strictly
  increasing across writes so an update always changes ``updated_at``; ids are lower-case uuid4;
- lists (E1, E5, E9) take ``offset``/``limit`` (:func:`~.listing.paging`), ``sort`` (only the
  reference's single value), ``order`` (only ``ASC``, Q9), ``start_date``/``end_date`` (RFC 3339,
  inclusive, on ``created_at``; Q17), and their filters; anything malformed is a 400. The E5
  filters must be uuids too although the reference prints them as plain strings (Q17);
- a malformed uuid in the path is a 400 on the endpoints whose page lists 400 (E4, E8, E11) and a
  404 on the others (E3, E7, E12, E13, E15; Q5);
- request bodies are validated by :mod:`.bodies`; syntax is checked before state, so a bad body
  for an unknown resource is a 400, a good one a 404;
- mutating handlers go through :func:`~.idempotency.idempotent` (key required on E2, E6, E8,
  E10, E11, E14; honoured when present on E4 and E13, Q15).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from aiohttp import web

from .bodies import (
    AllocationBody,
    ConfigurationBody,
    ConfigurationPatch,
    ExecutionBody,
    LiquidationBody,
    OrderBody,
    canonical_uuid,
    read_json,
)
from .context import STATE_KEY
from .idempotency import idempotent
from .listing import list_response, paging
from .problems import Problem, json_response
from .store import PortfolioStore, parse_timestamp

__all__ = ["PortfolioStore", "add_portfolio_routes"]


def _store(request: web.Request) -> PortfolioStore:
    return request.app[STATE_KEY].portfolios


def _path_uuid(request: web.Request, name: str, malformed_status: int) -> str:
    value = canonical_uuid(request.match_info[name])
    if value is None:
        raise Problem(malformed_status, f"{name}: must be a UUID (8-4-4-4-12 hex)")
    return value


def _query_uuid(request: web.Request, name: str) -> str | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    value = canonical_uuid(raw)
    if value is None:
        raise Problem(400, f"{name}: must be a UUID (8-4-4-4-12 hex)")
    return value


def _query_time(request: web.Request, name: str) -> datetime | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    moment = parse_timestamp(raw)
    if moment is None:
        raise Problem(400, f"{name}: must be an RFC 3339 date-time, e.g. 2022-10-14T00:00:00Z")
    return moment


def _page(
    request: web.Request, items: Iterable[dict[str, Any]], sort: str
) -> web.Response:
    """The S4/S5 list answer of ``items``: checks ``sort``/``order``, filters on
    ``start_date``/``end_date`` (inclusive, ``created_at``), sorts by ``sort``, pages."""
    offset, limit = paging(request)
    if request.query.get("sort", sort) != sort:
        raise Problem(400, f"sort: must be {sort}")
    if request.query.get("order", "ASC") != "ASC":
        raise Problem(400, "order: must be ASC")
    start, end = _query_time(request, "start_date"), _query_time(request, "end_date")
    chosen = []
    for item in items:
        created = datetime.fromisoformat(item["created_at"])
        if (start is None or created >= start) and (end is None or created <= end):
            chosen.append(item)
    chosen.sort(key=lambda item: str(item[sort]))
    return list_response(chosen[offset:offset + limit], len(chosen), offset, limit, sort)


async def list_allocations(request: web.Request) -> web.Response:
    """E1 ``GET /portfolios/allocations``: S8 items sorted by ``id``; filter
    ``instrument_ids`` (comma-separated; an allocation matches when any item's
    ``instrument_id`` is listed)."""
    items: Iterable[dict[str, Any]] = _store(request).allocations.values()
    if "instrument_ids" in request.query:
        wanted = {part for part in request.query["instrument_ids"].split(",") if part}
        items = [
            allocation for allocation in items
            if any(item["instrument_id"] in wanted for item in allocation["allocation"])
        ]
    return _page(request, items, "id")


@idempotent(required=True)
async def create_allocation(request: web.Request) -> web.Response:
    """E2 ``POST /portfolios/allocations``: body ``name``?, ``allocation``;
    answers the S8 allocation."""
    body = AllocationBody.parse(await read_json(request))
    return json_response(_store(request).create_allocation(body))


async def retrieve_allocation(request: web.Request) -> web.Response:
    """E3 ``GET /portfolios/allocations/{allocation_id}``: S8; 404."""
    allocation_id = _path_uuid(request, "allocation_id", 404)
    return json_response(_store(request).allocation(allocation_id))


@idempotent(required=False)
async def update_allocation(request: web.Request) -> web.Response:
    """E4 ``PUT /portfolios/allocations/{allocation_id}``: body as E2;
    replaces the items (and the name when given); answers S8; 404 for an unknown id."""
    allocation_id = _path_uuid(request, "allocation_id", 400)
    body = AllocationBody.parse(await read_json(request))
    return json_response(_store(request).update_allocation(allocation_id, body))


async def list_configurations(request: web.Request) -> web.Response:
    """E5 ``GET /portfolios/configurations``: S9 items sorted by
    ``account_id``; filters ``account_id``, ``allocation_id`` (uuids, exact match)."""
    items: Iterable[dict[str, Any]] = _store(request).configurations.values()
    for name in ("account_id", "allocation_id"):
        value = _query_uuid(request, name)
        if value is not None:
            items = [item for item in items if item[name] == value]
    return _page(request, items, "account_id")


@idempotent(required=True)
async def create_configuration(request: web.Request) -> web.Response:
    """E6 ``POST /portfolios/configurations``: body
    ``account_id``, ``allocation_id``, ``rebalancing_strategy_ids``?; answers S9 (200 as in
    the reference); 404 unknown allocation; 409 account already configured."""
    body = ConfigurationBody.parse(await read_json(request))
    return json_response(_store(request).create_configuration(body))


async def retrieve_configuration(request: web.Request) -> web.Response:
    """E7 ``GET /portfolios/configurations/{account_id}``: S9; 404."""
    account_id = _path_uuid(request, "account_id", 404)
    return json_response(_store(request).configuration(account_id))


@idempotent(required=True)
async def update_configuration(request: web.Request) -> web.Response:
    """E8 ``PATCH /portfolios/configurations/{account_id}``: body
    ``allocation_id``?, ``rebalancing_strategy_ids``?; answers S9; 404 when none."""
    account_id = _path_uuid(request, "account_id", 400)
    patch = ConfigurationPatch.parse(await read_json(request))
    return json_response(_store(request).update_configuration(account_id, patch))


async def list_orders(request: web.Request) -> web.Response:
    """E9 ``GET /portfolios/orders``: S10 items sorted by ``id``; filters
    ``account_id``, ``allocation_id`` (uuids, exact match)."""
    items: Iterable[dict[str, Any]] = _store(request).orders.values()
    for name in ("account_id", "allocation_id"):
        value = _query_uuid(request, name)
        if value is not None:
            items = [item for item in items if item[name] == value]
    return _page(request, items, "id")


@idempotent(required=True)
async def create_order(request: web.Request) -> web.Response:
    """E10 ``POST /portfolios/orders``: body ``user_id``, ``account_id``,
    ``cash_amount``, ``currency``?, ``side``, ``post_tax``?; answers S10 (status NEW,
    ``type`` = ``side``, ``orders`` []); 404 when the account has no configuration."""
    body = OrderBody.parse(await read_json(request))
    return json_response(_store(request).create_order(body))


@idempotent(required=True)
async def create_liquidation(request: web.Request) -> web.Response:
    """E11 ``POST /portfolios/{account_id}/liquidation_request``: body
    ``user_id``; answers an S10 order of ``type`` LIQUIDATION; 404 without configuration."""
    account_id = _path_uuid(request, "account_id", 400)
    body = LiquidationBody.parse(await read_json(request))
    return json_response(_store(request).create_liquidation(account_id, body))


async def retrieve_order(request: web.Request) -> web.Response:
    """E12 ``GET /portfolios/orders/{portfolio_order_id}``: S10; 404."""
    order_id = _path_uuid(request, "portfolio_order_id", 404)
    return json_response(_store(request).order(order_id))


@idempotent(required=False)
async def cancel_order(request: web.Request) -> web.Response:
    """E13 ``DELETE /portfolios/orders/{portfolio_order_id}``: 204 without a
    body (Q3); 409 unless the order is NEW; 404 for an unknown id."""
    order_id = _path_uuid(request, "portfolio_order_id", 404)
    _store(request).cancel_order(order_id)
    return web.Response(status=204)


@idempotent(required=True)
async def create_execution(request: web.Request) -> web.Response:
    """E14 ``POST /portfolios/rebalancings/executions``: body ``accounts``
    or ``allocations`` (exactly one, Q20); answers ``{"id": <execution id>}``; 404 for
    unknown accounts or allocations."""
    body = ExecutionBody.parse(await read_json(request))
    return json_response({"id": _store(request).create_execution(body)["id"]})


async def retrieve_execution(request: web.Request) -> web.Response:
    """E15 ``GET /portfolios/rebalancings/executions/{execution_id}``: S13
    with only the key the trigger used; 404."""
    execution_id = _path_uuid(request, "execution_id", 404)
    return json_response(_store(request).execution(execution_id))


def add_portfolio_routes(app: web.Application) -> None:
    """Register E1 to E15 on ``app`` (its state lives in ``app[STATE_KEY].portfolios``)."""
    router = app.router
    router.add_get("/portfolios/allocations", list_allocations)
    router.add_post("/portfolios/allocations", create_allocation)
    router.add_get("/portfolios/allocations/{allocation_id}", retrieve_allocation)
    router.add_put("/portfolios/allocations/{allocation_id}", update_allocation)
    router.add_get("/portfolios/configurations", list_configurations)
    router.add_post("/portfolios/configurations", create_configuration)
    router.add_get("/portfolios/configurations/{account_id}", retrieve_configuration)
    router.add_patch("/portfolios/configurations/{account_id}", update_configuration)
    router.add_get("/portfolios/orders", list_orders)
    router.add_post("/portfolios/orders", create_order)
    router.add_get("/portfolios/orders/{portfolio_order_id}", retrieve_order)
    router.add_delete("/portfolios/orders/{portfolio_order_id}", cancel_order)
    router.add_post("/portfolios/{account_id}/liquidation_request", create_liquidation)
    router.add_post("/portfolios/rebalancings/executions", create_execution)
    router.add_get("/portfolios/rebalancings/executions/{execution_id}", retrieve_execution)
