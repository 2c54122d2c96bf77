"""Resource namespaces, one module per API area."""

from .portfolios import Configurations, Portfolios
from .positions import Positions

__all__ = ["Configurations", "Portfolios", "Positions"]
