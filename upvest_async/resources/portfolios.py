"""``client.portfolios``: the Portfolios API (https://docs.upvest.co/api/Portfolios), endpoints
E1 to E15 of docs/guides/api-readings.md.

Every method checks its input before sending (:class:`~upvest_async.InvalidInputError` naming the
field and the rule; nothing is sent then). Optional fields left as ``None`` are left out of
the body, never sent as ``null``. Writes take ``idempotency_key=`` (a UUID; one is generated
per call when omitted) and send it on every attempt of the call. Every method also takes the
per-call options of :class:`~upvest_async.transport.RequestOptions` (``timeout``,
``max_retries``, ``deadline``, ``backoff_max``, ``extra_headers``). API errors raise the
:class:`~upvest_async.APIStatusError` subclass of the status.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._base import Resource
from .allocations import Allocations
from .configurations import Configurations
from .orders import LiquidationRequests, Orders
from .rebalancings import Rebalancings

if TYPE_CHECKING:
    from ..client import UpvestClient

__all__ = ["Portfolios"]


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
