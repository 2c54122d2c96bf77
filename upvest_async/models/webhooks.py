"""Webhook event models. Source: Upvest's event pages
(https://docs.upvest.co/api/positions/position_event,
https://docs.upvest.co/api/portfolios/portfolio_allocation_event,
https://docs.upvest.co/api/portfolios/portfolio_order_event, and the rebalancing execution order
events of https://docs.upvest.co/api/Portfolios-Rebalancing); W1 and W3 of
``docs/guides/api-readings.md``.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import attrs

from .common import OpenEnum
from .portfolios import PortfoliosAllocation, PortfoliosOrder
from .positions import Position

__all__ = [
    "RebalancingExecutionOrder",
    "RebalancingExecutionOrderStatus",
    "WebhookEvent",
    "WebhookEventType",
]


class WebhookEventType(OpenEnum):
    """``type`` of a webhook event. Open: types Upvest adds later are kept as received."""

    POSITION_UPDATED = "POSITION.UPDATED"
    PORTFOLIO_ORDER_NEW = "PORTFOLIO_ORDER.NEW"
    PORTFOLIO_ORDER_PROCESSING = "PORTFOLIO_ORDER.PROCESSING"
    PORTFOLIO_ORDER_FILLED = "PORTFOLIO_ORDER.FILLED"
    PORTFOLIO_ORDER_SETTLED = "PORTFOLIO_ORDER.SETTLED"
    PORTFOLIO_ORDER_CANCELLED = "PORTFOLIO_ORDER.CANCELLED"
    PORTFOLIO_ALLOCATION_CREATED = "PORTFOLIO_ALLOCATION.CREATED"
    PORTFOLIO_ALLOCATION_CHANGED = "PORTFOLIO_ALLOCATION.CHANGED"
    REBALANCING_EXECUTION_ORDER_NEW = "REBALANCING_EXECUTION_ORDER.NEW"
    REBALANCING_EXECUTION_ORDER_PROCESSING = "REBALANCING_EXECUTION_ORDER.PROCESSING"
    REBALANCING_EXECUTION_ORDER_CANCELLED = "REBALANCING_EXECUTION_ORDER.CANCELLED"
    REBALANCING_EXECUTION_ORDER_FILLED = "REBALANCING_EXECUTION_ORDER.FILLED"


class RebalancingExecutionOrderStatus(OpenEnum):
    """``status`` of a rebalancing execution order; open (unknown values are kept)."""

    NEW = "NEW"
    PROCESSING = "PROCESSING"
    CANCELLED = "CANCELLED"
    FILLED = "FILLED"


@attrs.frozen
class RebalancingExecutionOrder:
    """The object of ``REBALANCING_EXECUTION_ORDER.*`` events: the portfolio order
    (``portfolio_order_id``) that a rebalancing execution (``execution_id``) placed for one
    account; timestamps timezone-aware."""

    id: uuid.UUID
    execution_id: uuid.UUID
    account_id: uuid.UUID
    portfolio_order_id: uuid.UUID
    status: RebalancingExecutionOrderStatus
    created_at: datetime
    updated_at: datetime


#: What ``WebhookEvent.object`` holds: a typed model for the known types, else parsed JSON.
EventObject = Position | PortfoliosOrder | PortfoliosAllocation | RebalancingExecutionOrder | Any


@attrs.frozen
class WebhookEvent:
    """One event of a webhook batch.

    ``id`` (uuid; the key to deduplicate on: Upvest delivers at least once), ``type``
    (:class:`WebhookEventType`, open), ``created_at`` (timezone-aware), ``webhook_id`` (the
    subscription, uuid), ``object``: a :class:`~upvest_async.Position` for
    ``POSITION.UPDATED``, :class:`~upvest_async.PortfoliosOrder` for ``PORTFOLIO_ORDER.*``,
    :class:`~upvest_async.PortfoliosAllocation` for ``PORTFOLIO_ALLOCATION.*``,
    :class:`RebalancingExecutionOrder` for ``REBALANCING_EXECUTION_ORDER.*``, and for any other
    type the object as parsed JSON (numbers with a fraction as :class:`~decimal.Decimal`).
    ``raw``: the whole event as parsed JSON, the API's own values (what ``webhooks listen``
    writes out).
    """

    id: uuid.UUID
    type: WebhookEventType
    created_at: datetime
    webhook_id: uuid.UUID
    object: EventObject = attrs.field(repr=False)
    raw: dict[str, Any] = attrs.field(repr=False, eq=False)
