"""Resource namespaces, one module per API area."""

from .allocations import Allocations
from .configurations import Configurations
from .orders import LiquidationRequests, Orders
from .portfolios import Portfolios
from .positions import Positions
from .rebalancings import Executions, Rebalancings

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
