"""Webhook events of the Portfolios and Positions APIs (W3 of docs/guides/api-readings.md):
their types and the event envelope ``id``, ``created_at``, ``type``, ``object``, ``webhook_id``."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from ..store import format_timestamp

__all__ = ["EVENT_TYPES", "EventClock", "make_event"]

#: The event types the sandbox emits.
EVENT_TYPES: Final = (
    "POSITION.UPDATED",
    "PORTFOLIO_ORDER.NEW", "PORTFOLIO_ORDER.PROCESSING", "PORTFOLIO_ORDER.FILLED",
    "PORTFOLIO_ORDER.CANCELLED",
    "PORTFOLIO_ALLOCATION.CREATED", "PORTFOLIO_ALLOCATION.CHANGED",
    "REBALANCING_EXECUTION_ORDER.NEW", "REBALANCING_EXECUTION_ORDER.PROCESSING",
    "REBALANCING_EXECUTION_ORDER.FILLED", "REBALANCING_EXECUTION_ORDER.CANCELLED",
)


class EventClock:
    """``created_at`` stamps (``YYYY-MM-DDTHH:MM:SS.mmmZ``), strictly increasing, so the
    order events were emitted in is their ``created_at`` order."""

    def __init__(self) -> None:
        self._last: datetime | None = None

    def stamp(self) -> str:
        """Now in UTC, at least one millisecond after the previous stamp."""
        now = datetime.now(UTC)
        moment = now.replace(microsecond=now.microsecond // 1000 * 1000)
        if self._last is not None and moment <= self._last:
            moment = self._last + timedelta(milliseconds=1)
        self._last = moment
        return format_timestamp(moment)


def make_event(
    event_type: str, obj: dict[str, Any], webhook_id: str, created_at: str
) -> dict[str, Any]:
    """One event: a new uuid4 ``id``, ``created_at``, ``type``, ``object``, ``webhook_id``."""
    return {"id": str(uuid.uuid4()), "created_at": created_at, "type": event_type,
            "object": obj, "webhook_id": webhook_id}
