"""The public paginator and :func:`chain_pages` (many lists in a row under one limit)."""

from __future__ import annotations

import collections
import contextlib
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Callable,
    Hashable,
    Iterable,
    Mapping,
)
from typing import Generic, TypeVar

from ..errors import InvalidInputError
from ..models import Page
from ..responses import RawResponse
from ..stats import ClientStats
from .engine import _Scheduler
from .gate import _Gate
from .limits import DEFAULT_PREFETCH, INCONSISTENCIES_KEPT, MAX_LIMIT, RequestFunction
from .pages import is_int, parse_page

T = TypeVar("T")
K = TypeVar("K")

class Paginator(Generic[T]):
    """Lazily streams one list endpoint; nothing is sent before iteration starts.

    ``page_size``: the ``limit`` of each request (1 to 1000, default 1000); ``offset``: where to
    start or resume (0 or more); ``max_items``: stop after this many items; ``prefetch``: the
    most pages requested and not yet delivered (1 or more; 1 reads one page at a time);
    ``strict``: raise instead of re-synchronising when the list changes (see the module's
    consistency policy); ``key``: how to recognise an item across reads when re-synchronising
    (default: equality of the whole item). Raises :class:`~upvest_async.InvalidInputError` at
    construction for out-of-range values; while iterating, the API errors
    (:class:`~upvest_async.APIStatusError`...), :class:`~upvest_async.ResponseValidationError`
    and :class:`~upvest_async.PaginationError`.

    After (or during) an iteration, :attr:`next_offset` is the offset right after the last
    item delivered (pass it as ``offset=`` to resume) and :attr:`inconsistencies` holds the
    last 100 inconsistencies met (one line each).
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
        prefetch: int = DEFAULT_PREFETCH,
        strict: bool = False,
        key: Callable[[T], Hashable] | None = None,
    ) -> None:
        if not is_int(page_size) or not 1 <= page_size <= MAX_LIMIT:
            raise InvalidInputError("limit", f"page_size must be an integer in 1..{MAX_LIMIT}")
        if not is_int(offset) or offset < 0:
            raise InvalidInputError("offset", "offset must be an integer >= 0")
        if max_items is not None and (not is_int(max_items) or max_items < 0):
            raise InvalidInputError("max_items", "max_items must be an integer >= 0")
        if not is_int(prefetch) or prefetch < 1:
            raise InvalidInputError("prefetch", "prefetch must be an integer >= 1")
        if not isinstance(strict, bool):
            raise InvalidInputError("strict", "strict must be True or False")
        self._request = request
        self._stats = stats
        self.path = path
        self.item_type = item_type
        self._params = dict(params or {})
        self.page_size = page_size
        self.offset = offset
        self.max_items = max_items
        self.prefetch = prefetch
        self.strict = strict
        self.key = key
        #: The offset right after the last item delivered (``offset`` before iterating).
        self.next_offset = offset
        #: The latest inconsistencies met while paging (one-line descriptions, newest last).
        self.inconsistencies: collections.deque[str] = collections.deque(
            maxlen=INCONSISTENCIES_KEPT
        )

    def __repr__(self) -> str:
        return (
            f"Paginator(path={self.path!r}, offset={self.offset}, limit={self.page_size}, "
            f"prefetch={self.prefetch})"
        )

    def __aiter__(self) -> AsyncIterator[T]:
        return self._items()

    async def _items(self) -> AsyncGenerator[T, None]:
        async with contextlib.aclosing(self.pages()) as pages:
            async for page in pages:
                end = self.next_offset  # exact after the page; per item within it
                offset = page.meta.offset
                last = len(page.items) - 1
                for index, item in enumerate(page.items):
                    self.next_offset = offset + index + 1 if index < last else end
                    yield item

    async def pages(self) -> AsyncGenerator[Page[T], None]:
        """Yield the pages in order, each with its typed ``items`` and ``meta``.

        Empty pages are not yielded. When the paginator trims a page (``max_items``, or a
        re-synchronisation), ``meta.offset`` and ``meta.count`` describe the items yielded.
        """
        gate = _Gate(concurrency=self.prefetch, window=self.prefetch)
        scheduler: _Scheduler[None, T] = _Scheduler([(None, self)], gate=gate, streams=1)
        async with contextlib.aclosing(scheduler.pages()) as pages:
            async for _, page in pages:
                if page is not None:
                    yield page

    async def fetch_page(self, offset: int, limit: int) -> Page[T]:
        """Fetch the single page at ``offset`` with ``limit`` items at most (no checks)."""
        return self._decode(await self._fetch(offset, limit))

    async def _fetch(self, offset: int, limit: int) -> RawResponse:
        params: dict[str, str | int] = {**self._params, "offset": offset, "limit": limit}
        response = await self._request("GET", self.path, params=params)
        self._stats.pages += 1
        return response

    def _decode(self, response: RawResponse) -> Page[T]:
        return parse_page(response.body, self.item_type, request_id=response.request_id)


def chain_pages(
    sources: Iterable[tuple[K, Paginator[T]]],
    *,
    concurrency: int,
    window: int | None = None,
) -> AsyncGenerator[tuple[K, Page[T] | None], None]:
    """Stream the pages of several paginators one after another, in the order given.

    Yields ``(key, page)`` for every non-empty page and then ``(key, None)`` once the
    paginator of ``key`` is exhausted (also for an empty list). ``sources`` is read lazily.

    Pages of the following paginators are fetched while earlier ones are delivered. Requests
    get their turn by delivery order (paginator, then offset), never by creation order, so the
    pages needed next are always requested first. At most ``concurrency`` page requests are in
    flight in total, and at most ``window`` pages (default ``2 * concurrency``) are in flight
    or fetched and not yet delivered; the paginator being delivered may go beyond ``window``
    by its own ``prefetch``, so memory is bounded by about ``window + prefetch`` pages. Raises
    :class:`~upvest_async.InvalidInputError` at once for a ``concurrency`` or ``window`` below 1,
    and the paginators' errors in order while iterating.
    """
    if not is_int(concurrency) or concurrency < 1:
        raise InvalidInputError("concurrency", "must be an integer >= 1")
    if window is not None and (not is_int(window) or window < 1):
        raise InvalidInputError("window", "must be an integer >= 1")
    gate = _Gate(concurrency=concurrency, window=2 * concurrency if window is None else window)
    scheduler: _Scheduler[K, T] = _Scheduler(sources, gate=gate, streams=gate.window + 1)
    return scheduler.pages()

