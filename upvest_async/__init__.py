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
    InternalServerError,
    NotAcceptableError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ResponseValidationError,
    SigningKeyError,
    UnprocessableEntityError,
    UpvestError,
    ValidationError,
)
from .models import Instrument, Meta, Page, PortfoliosConfiguration, Position, SortOrder
from .pagination import Paginator
from .stats import ClientStats
from .transport import RawResponse

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_BASE_URL",
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "ClientStats",
    "ConfigurationError",
    "ConflictError",
    "Instrument",
    "InternalServerError",
    "Meta",
    "NotAcceptableError",
    "NotFoundError",
    "Page",
    "Paginator",
    "PermissionDeniedError",
    "PortfoliosConfiguration",
    "Position",
    "RateLimitError",
    "RawResponse",
    "ResponseValidationError",
    "SigningKeyError",
    "SortOrder",
    "UnprocessableEntityError",
    "UpvestClient",
    "UpvestError",
    "ValidationError",
    "__version__",
]
