"""Limits and shared names of the paginator."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from ..responses import RawResponse

__all__ = ["DEFAULT_PREFETCH", "GROWTH_FACTOR", "INCONSISTENCIES_KEPT", "MAX_LIMIT",
           "MAX_UNSETTLED", "RequestFunction", "logger"]

logger = logging.getLogger("upvest_async")

#: ``request(method, path, params=...)``: how a paginator sends one page request.
RequestFunction = Callable[..., Awaitable[RawResponse]]

#: The largest ``limit`` the API accepts (S4).
MAX_LIMIT = 1000
#: Pages a paginator requests ahead by default (requests in flight plus pages waiting).
DEFAULT_PREFETCH = 8
#: Inconsistent pages in a row, with no item delivered in between, before giving up.
MAX_UNSETTLED = 8
#: One iteration delivers at most ``GROWTH_FACTOR * total_count + page_size`` items, with
#: the ``total_count`` and ``page_size`` of its first page; past that it raises.
GROWTH_FACTOR = 2
#: Inconsistencies a paginator remembers (``paginator.inconsistencies``).
INCONSISTENCIES_KEPT = 100
