"""upvest-async: asyncio SDK for the Upvest Investment API (Portfolios and Positions).

Public surface: :class:`UpvestClient`, the models, the error hierarchy, and the embedded
sandbox in :mod:`upvest_async.sandbox`.
"""

from .client import UpvestClient
from .config import DEFAULT_BASE_URL
from .errors import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    ConflictError,
    IdempotencyKeyInProgressError,
    IdempotencyKeyReusedError,
    InternalServerError,
    NotAcceptableError,
    NotFoundError,
    PaginationError,
    PermissionDeniedError,
    RateLimitError,
    ResponseTooLargeError,
    ResponseValidationError,
    SigningKeyError,
    UnprocessableEntityError,
    UpvestError,
    ValidationError,
)
from .models import (
    AllocationItem,
    Currency,
    Instrument,
    InstrumentIdType,
    Meta,
    Order,
    OrderSide,
    OrderStatus,
    Page,
    PortfoliosAllocation,
    PortfoliosConfiguration,
    PortfoliosOrder,
    PortfoliosOrderStatus,
    PortfoliosOrderType,
    Position,
    Problem,
    RebalancingExecution,
    SortOrder,
    TriggeredRebalancing,
)
from .pagination import Paginator
from .responses import APIResponse, RawResponse
from .retries import RetryBudget, RetryPolicy
from .stats import ClientStats
from .transport import RequestOptions

__version__ = "0.1.0"
"""The package version, the one source of truth for it: the wheel's metadata is built from it
(``[tool.setuptools.dynamic]`` in ``pyproject.toml``) and ``upvest-async --version`` prints it."""

__all__ = [
    "DEFAULT_BASE_URL",
    "APIConnectionError",
    "APIResponse",
    "APIStatusError",
    "APITimeoutError",
    "AllocationItem",
    "AuthenticationError",
    "BadRequestError",
    "ClientStats",
    "ConfigurationError",
    "ConflictError",
    "Currency",
    "IdempotencyKeyInProgressError",
    "IdempotencyKeyReusedError",
    "Instrument",
    "InstrumentIdType",
    "InternalServerError",
    "Meta",
    "NotAcceptableError",
    "NotFoundError",
    "Order",
    "OrderSide",
    "OrderStatus",
    "Page",
    "PaginationError",
    "Paginator",
    "PermissionDeniedError",
    "PortfoliosAllocation",
    "PortfoliosConfiguration",
    "PortfoliosOrder",
    "PortfoliosOrderStatus",
    "PortfoliosOrderType",
    "Position",
    "Problem",
    "RateLimitError",
    "RawResponse",
    "RebalancingExecution",
    "RequestOptions",
    "ResponseTooLargeError",
    "ResponseValidationError",
    "RetryBudget",
    "RetryPolicy",
    "SigningKeyError",
    "SortOrder",
    "TriggeredRebalancing",
    "UnprocessableEntityError",
    "UpvestClient",
    "UpvestError",
    "ValidationError",
    "__version__",
]
