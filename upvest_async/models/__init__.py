"""Typed response models (frozen ``attrs`` classes), converted by :mod:`upvest_async.converter`."""

from .common import Meta, OpenEnum, Page, Problem, SortOrder
from .portfolios import (
    AllocationItem,
    Currency,
    InstrumentIdType,
    Order,
    OrderSide,
    OrderStatus,
    PortfoliosAllocation,
    PortfoliosConfiguration,
    PortfoliosOrder,
    PortfoliosOrderStatus,
    PortfoliosOrderType,
    RebalancingExecution,
    TriggeredRebalancing,
)
from .positions import Instrument, Position
from .webhooks import (
    RebalancingExecutionOrder,
    RebalancingExecutionOrderStatus,
    WebhookEvent,
    WebhookEventType,
)

__all__ = [
    "AllocationItem",
    "Currency",
    "Instrument",
    "InstrumentIdType",
    "Meta",
    "OpenEnum",
    "Order",
    "OrderSide",
    "OrderStatus",
    "Page",
    "PortfoliosAllocation",
    "PortfoliosConfiguration",
    "PortfoliosOrder",
    "PortfoliosOrderStatus",
    "PortfoliosOrderType",
    "Position",
    "Problem",
    "RebalancingExecution",
    "RebalancingExecutionOrder",
    "RebalancingExecutionOrderStatus",
    "SortOrder",
    "TriggeredRebalancing",
    "WebhookEvent",
    "WebhookEventType",
]
