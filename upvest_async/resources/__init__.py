"""Resource namespaces, one module per API area."""

from .portfolios import (
    Allocations,
    Configurations,
    Executions,
    LiquidationRequests,
    Orders,
    Portfolios,
    Rebalancings,
)
from .positions import Positions

__all__ = [
    "Allocations",
    "Configurations",
    "Executions",
    "LiquidationRequests",
    "Orders",
    "Portfolios",
    "Positions",
    "Rebalancings",
]
