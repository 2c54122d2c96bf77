"""Portfolios models. Source: Upvest's Portfolios API reference
(https://docs.upvest.co/api/Portfolios), S7 to S13 of ``docs/guides/api-readings.md``.

Enums are :class:`~upvest_async.models.common.OpenEnum`: values the reference does not list are
kept, not rejected. Readings of the reference's ambiguities:

- Q7: ``weight`` is a decimal string; the reference's pattern admits 0..100 while its examples
  use fractions summing to 1. The SDK models it as :class:`Decimal` and enforces no sum rule.
- Q10: an optional uuid sent as ``""`` (E11's example ``allocation_id``) reads as ``None``.
- Q12: the nested ``orders[]`` item shares its title with the portfolio order but has another
  shape: it is the separate :class:`Order`.
- Q13: the portfolio order status includes ``SUBMITTED``; the nested order status does not.
- Q14: response fields the reference marks optional (``user_id``, ``allocation_id``, ``type``)
  are ``None`` when absent.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal

import attrs

from .common import OpenEnum

__all__ = [
    "AllocationItem",
    "Currency",
    "InstrumentIdType",
    "Order",
    "OrderSide",
    "OrderStatus",
    "PortfoliosAllocation",
    "PortfoliosConfiguration",
    "PortfoliosOrder",
    "PortfoliosOrderStatus",
    "PortfoliosOrderType",
    "RebalancingExecution",
    "TriggeredRebalancing",
]


class InstrumentIdType(OpenEnum):
    """``instrument_id_type`` of an allocation item (S7): ``ISIN`` or ``UPVEST`` (a uuid)."""

    ISIN = "ISIN"
    UPVEST = "UPVEST"


class Currency(OpenEnum):
    """ISO 4217 currency code (S10); the reference lists ``EUR`` only."""

    EUR = "EUR"


class OrderSide(OpenEnum):
    """``side`` of a portfolio order request (E10) and of a nested order (S11)."""

    BUY = "BUY"
    SELL = "SELL"


class PortfoliosOrderStatus(OpenEnum):
    """Execution status of a portfolio order (S10)."""

    NEW = "NEW"
    SUBMITTED = "SUBMITTED"
    PROCESSING = "PROCESSING"
    FILLED = "FILLED"
    CANCELLED = "CANCELLED"


class PortfoliosOrderType(OpenEnum):
    """Type of a portfolio order (S10)."""

    BUY = "BUY"
    SELL = "SELL"
    REBALANCING = "REBALANCING"
    LIQUIDATION = "LIQUIDATION"


class OrderStatus(OpenEnum):
    """Execution status of a nested order (S11); no ``SUBMITTED`` here (Q13)."""

    NEW = "NEW"
    PROCESSING = "PROCESSING"
    FILLED = "FILLED"
    CANCELLED = "CANCELLED"


@attrs.frozen
class AllocationItem:
    """One instrument of an allocation (S7).

    ``instrument_id``: an ISIN when ``instrument_id_type`` is ``ISIN`` (the default), an Upvest
    instrument uuid when it is ``UPVEST``; ``weight``: a decimal (Q7: see the module docs).
    Requests accept this model or a plain dict with the same field names.
    """

    instrument_id: str
    weight: Decimal
    instrument_id_type: InstrumentIdType = InstrumentIdType.ISIN


@attrs.frozen
class PortfoliosAllocation:
    """An allocation (S8; E1 to E4): ``id``, ``name``, the ``allocation`` items, timestamps."""

    id: uuid.UUID
    name: str
    allocation: list[AllocationItem]
    created_at: datetime
    updated_at: datetime


@attrs.frozen
class PortfoliosConfiguration:
    """The portfolio configuration of one account (S9; E5 to E8).

    ``account_id`` and ``allocation_id``: uuids; ``rebalancing_strategy_ids``: uuids (optional in
    the reference, an empty list when absent); ``created_at`` / ``updated_at``: timezone-aware.
    """

    account_id: uuid.UUID
    allocation_id: uuid.UUID
    created_at: datetime
    updated_at: datetime
    rebalancing_strategy_ids: list[uuid.UUID] = attrs.field(factory=list)


@attrs.frozen
class Order:
    """An order inside a portfolio order (S11): ``id``, ``side``, ``status``."""

    id: uuid.UUID
    side: OrderSide
    status: OrderStatus


@attrs.frozen
class PortfoliosOrder:
    """A portfolio order (S10; E9 to E12, and the liquidation request E11).

    ``cash_amount``: a decimal amount in ``currency``; ``post_tax``: whether the amount is a
    post-tax value; ``orders``: the orders it was split into; ``type`` is ``None`` when absent
    (optional in the reference, Q14).
    """

    id: uuid.UUID
    account_id: uuid.UUID
    cash_amount: Decimal
    currency: Currency
    status: PortfoliosOrderStatus
    post_tax: bool
    orders: list[Order]
    created_at: datetime
    updated_at: datetime
    user_id: uuid.UUID | None = None
    allocation_id: uuid.UUID | None = None
    type: PortfoliosOrderType | None = None


@attrs.frozen
class TriggeredRebalancing:
    """The answer to triggering a rebalancing (E14): ``id``, the execution id to retrieve
    with E15 (the reference's example ids match, Q3)."""

    id: uuid.UUID


@attrs.frozen
class RebalancingExecution:
    """A rebalancing execution (S13; E15): ``accounts`` or ``allocations`` it covers (either
    may be absent, Q20)."""

    id: uuid.UUID
    created_at: datetime
    updated_at: datetime
    accounts: list[uuid.UUID] | None = None
    allocations: list[uuid.UUID] | None = None
