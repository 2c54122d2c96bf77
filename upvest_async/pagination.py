"""Async iteration over offset/limit list endpoints (``data`` + ``meta``, ENDPOINTS.md S4/S5).

``async for item in paginator`` yields every item of every page; ``paginator.pages()`` yields
:class:`~upvest_async.models.Page` objects. Pages are requested with ``offset`` and ``limit``
until ``meta.total_count`` is reached. An empty page before that ends the iteration (the list
shrank while it was read) rather than looping forever.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, Generic, TypeVar

from .converter import structure
from .errors import ResponseValidationError, ValidationError
from .models import Meta, Page
from .stats import ClientStats
from .transport import RawResponse

__all__ = ["MAX_LIMIT", "Paginator", "RequestFunction", "parse_page"]

#: ``request(method, path, params=...)``: how a paginator sends one page request.
RequestFunction = Callable[..., Awaitable[RawResponse]]

T = TypeVar("T")

#: The largest ``limit`` the API accepts (S4).
MAX_LIMIT = 1000


class Paginator(Generic[T]):
    """Lazily pages through one list endpoint; nothing is sent before iteration starts.

    ``page_size``: the ``limit`` of each request (1 to 1000, default 1000); ``offset``: where to
    start (0 or more); ``max_items``: stop after this many items. Raises
    :class:`~upvest_async.errors.ValidationError` at construction for out-of-range values.
    """

    def __init__(
        self,
        request: RequestFunction,
        stats: ClientStats,
        path: str,
        item_type: type[T],
        *,
        params: Mapping[str, str | int] | None = None,
        page_size: int = MAX_LIMIT,
        offset: int = 0,
        max_items: int | None = None,
    ) -> None:
        if not isinstance(page_size, int) or not 1 <= page_size <= MAX_LIMIT:
            raise ValidationError("limit", f"page_size must be an integer in 1..{MAX_LIMIT}")
        if not isinstance(offset, int) or offset < 0:
            raise ValidationError("offset", "offset must be an integer >= 0")
        if max_items is not None and (not isinstance(max_items, int) or max_items < 0):
            raise ValidationError("max_items", "max_items must be an integer >= 0")
        self._request = request
        self._stats = stats
        self._path = path
        self._item_type = item_type
        self._params = dict(params or {})
        self._page_size = page_size
        self._offset = offset
        self._max_items = max_items

    def __repr__(self) -> str:
        return f"Paginator(path={self._path!r}, offset={self._offset}, limit={self._page_size})"

    def __aiter__(self) -> AsyncIterator[T]:
        return self._items()

    async def _items(self) -> AsyncIterator[T]:
        async for page in self.pages():
            for item in page.items:
                yield item

    async def pages(self) -> AsyncIterator[Page[T]]:
        """Yield the pages in order, each with its typed ``items`` and ``meta``."""
        offset = self._offset
        remaining = self._max_items
        while remaining is None or remaining > 0:
            limit = self._page_size if remaining is None else min(self._page_size, remaining)
            page = await self.fetch_page(offset, limit)
            if not page.items:
                return
            if remaining is not None:
                page = Page(items=page.items[:remaining], meta=page.meta)
                remaining -= len(page.items)
            yield page
            offset += len(page.items)
            if offset >= page.meta.total_count:
                return

    async def fetch_page(self, offset: int, limit: int) -> Page[T]:
        """Fetch the single page at ``offset`` with ``limit`` items at most."""
        params: dict[str, str | int] = {**self._params, "offset": offset, "limit": limit}
        response = await self._request("GET", self._path, params=params)
        self._stats.pages += 1
        return parse_page(response.body, self._item_type, request_id=response.request_id)


def parse_page(body: bytes, item_type: type[T], *, request_id: str | None = None) -> Page[T]:
    """Decode a list response body into a :class:`Page` of ``item_type``.

    Raises :class:`~upvest_async.errors.ResponseValidationError` when the body is not JSON or
    lacks ``data``/``meta``.
    """
    try:
        document: Any = json.loads(body)
    except ValueError:
        raise ResponseValidationError("body is not JSON", request_id=request_id) from None
    if not isinstance(document, dict) or not isinstance(document.get("data"), list):
        raise ResponseValidationError("expected an object with a data array", path="$.data",
                                      request_id=request_id)
    meta = structure(document.get("meta"), Meta, request_id=request_id)
    items = structure(document["data"], list[item_type], request_id=request_id)  # type: ignore[valid-type]
    return Page(items=items, meta=meta)
