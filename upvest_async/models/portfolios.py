"""Portfolios models. Source: seed 001 (and 000 for E6), ENDPOINTS.md S7 to S13."""

from __future__ import annotations

import uuid
from datetime import datetime

import attrs

__all__ = ["PortfoliosConfiguration"]


@attrs.frozen
class PortfoliosConfiguration:
    """The portfolio configuration of one account (S9; E5 to E8).

    ``account_id`` and ``allocation_id``: uuids; ``rebalancing_strategy_ids``: uuids (optional in
    the seed, an empty list when absent); ``created_at`` / ``updated_at``: timezone-aware.
    """

    account_id: uuid.UUID
    allocation_id: uuid.UUID
    created_at: datetime
    updated_at: datetime
    rebalancing_strategy_ids: list[uuid.UUID] = attrs.field(factory=list)
