"""upvest-async: asyncio SDK for the Upvest Investment API (Portfolios and Positions).

Public surface: :class:`UpvestClient`, the models, the error hierarchy, webhook verification
and receiving (:mod:`upvest_async.webhooks`), and the embedded sandbox in
:mod:`upvest_async.sandbox`.

Sources: docstrings cite Upvest's public pages (https://docs.upvest.co/...), RFCs by section,
and the project's API readings page, ``docs/guides/api-readings.md``, which defines the short
codes used in docstrings and comments: E1 to E17 (endpoints), W1 to W12 (webhooks), S0 to S13
(shared shapes) and Q2 to Q20 (readings of the reference's ambiguities).
"""

from typing import TYPE_CHECKING, Any

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
    InvalidInputError,
    InvalidResponseError,
    LocalRateLimitError,
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
from .ratelimit import RateLimiter
from .responses import APIResponse, RawResponse
from .retries import RetryBudget, RetryPolicy
from .stats import ClientStats
from .transport import RequestOptions

if TYPE_CHECKING:  # imported on first use (see __getattr__): aiohttp.web and JOSE are not
    # needed by a client that never receives webhooks, nor by ``export-positions``.
    from .webhooks import (
        EventStore,
        MemoryEventStore,
        RebalancingExecutionOrder,
        RebalancingExecutionOrderStatus,
        WebhookEvent,
        WebhookEventType,
        WebhookKeys,
        WebhookPayloadError,
        WebhookReceiver,
        WebhookVerificationError,
        WebhookVerifier,
        webhook_app,
    )


def __getattr__(name: str) -> Any:
    """The webhook names (:data:`_LAZY_NAMES`), imported on first access (PEP 562), so that
    ``import upvest_async`` does not import the receiver (``aiohttp.web``) and JOSE."""
    if name in _LAZY_NAMES:
        from . import webhooks

        value = getattr(webhooks, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _LAZY_NAMES)

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
    "EventStore",
    "IdempotencyKeyInProgressError",
    "IdempotencyKeyReusedError",
    "Instrument",
    "InstrumentIdType",
    "InternalServerError",
    "InvalidInputError",
    "InvalidResponseError",
    "LocalRateLimitError",
    "MemoryEventStore",
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
    "RateLimiter",
    "RawResponse",
    "RebalancingExecution",
    "RebalancingExecutionOrder",
    "RebalancingExecutionOrderStatus",
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
    "WebhookEvent",
    "WebhookEventType",
    "WebhookKeys",
    "WebhookPayloadError",
    "WebhookReceiver",
    "WebhookVerificationError",
    "WebhookVerifier",
    "__version__",
    "webhook_app",
]

#: The names of ``__all__`` not imported above: the webhook names, imported from
#: :mod:`upvest_async.webhooks` on first use (the ``TYPE_CHECKING`` import names them).
_LAZY_NAMES = frozenset(__all__).difference(globals())
