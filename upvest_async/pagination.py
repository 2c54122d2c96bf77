"""Streaming over offset/limit list endpoints (``data`` + ``meta``; ENDPOINTS.md S4, S5).

``async for item in paginator`` yields every item in order; ``paginator.pages()`` yields
:class:`~upvest_async.models.Page` objects (``items`` and ``meta``). Nothing is sent before
iteration starts.

**Prefetch.** The first page gives ``total_count``; the following pages are then requested
concurrently, at most ``prefetch`` pages requested and not yet delivered at any time (in flight
or waiting in order), and delivered strictly in order. Memory is bounded by about
``(prefetch + 1) * page_size`` items. :func:`chain_pages` streams many lists one after another
(grouped, in the order given) while fetching ahead across them under one limit of requests in
flight.

**Consistency policy.** Every page is checked, in delivery order:

1. A malformed page raises :class:`~upvest_async.PaginationError` in every mode: ``meta.offset``
   is not the offset asked for (a server that ignores ``offset`` would repeat pages forever),
   ``meta.count`` is not the number of items, more items than ``limit``, or
   ``offset + count > total_count``.
2. A page is *inconsistent* when its ``total_count`` differs from the one the paginator works
   with, or it has not ``min(limit, total_count - offset)`` items (a short or empty page). The
   list changed while it was read, or the server is inconsistent.

   - ``strict=True``: raise :class:`~upvest_async.PaginationError` before delivering anything of
     that page. Every item before ``error.offset`` was delivered exactly once, from pages that
     agreed on ``total_count``; ``offset=error.offset`` resumes.
   - ``strict=False`` (default), never silent (logged at WARNING on the ``upvest_async`` logger
     and recorded in :attr:`Paginator.inconsistencies`), and never endless:

     - ``total_count`` changed: **re-synchronise**. The pages fetched ahead are dropped; the
       paginator re-reads up to 1000 items from ``offset - 1 - shrink`` (``shrink``: how much
       ``total_count`` went down), finds the last item it delivered (by ``key``, default
       equality) and continues right after it with the new ``total_count``. Items present
       during the whole iteration are then neither skipped nor repeated (for insertions or
       removals that moved them by less than 1000 places); items added or removed meanwhile
       appear at most once. When the last item is not found (it was removed or changed, or
       moved too far), paging continues at the same offset of the new list and the warning
       says that items near that offset may be skipped or repeated.
     - same ``total_count``, short page: deliver it, and **re-read** the rest from
       ``offset + count`` (no gap). A ``meta.limit`` below the ``limit`` asked for is taken as
       the server's maximum page size from then on.
     - same ``total_count``, empty page before the end: **stop**.
     - after :data:`MAX_UNSETTLED` inconsistent pages in a row with no item delivered in
       between, raise :class:`~upvest_async.PaginationError` (the list never settles).

   Changes that keep ``total_count`` and every page's size (an insertion and a removal between
   two page reads) cannot be seen with offset paging, in either mode.

**Cancellation.** Leaving the loop (``break``, an exception, the consuming task cancelled)
cancels the page requests in flight and awaits them: no task outlives the iteration and no
warning is emitted. Python closes an abandoned async generator through the event loop's hooks a
few loop iterations later; use ``contextlib.aclosing(paginator.pages())`` (or
``aclosing(aiter(paginator))``) to clean up at once.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Hashable,
    Iterable,
    Mapping,
)
from typing import Any, Generic, TypeVar

import attrs

from .converter import converter, structure
from .errors import PaginationError, ResponseValidationError, ValidationError
from .models import Meta, Page
from .stats import ClientStats
from .transport import RawResponse

__all__ = [
    "DEFAULT_PREFETCH",
    "MAX_LIMIT",
    "MAX_UNSETTLED",
    "Paginator",
    "RequestFunction",
    "chain_pages",
    "parse_page",
]

logger = logging.getLogger("upvest_async")

#: ``request(method, path, params=...)``: how a paginator sends one page request.
RequestFunction = Callable[..., Awaitable[RawResponse]]

T = TypeVar("T")
K = TypeVar("K")

#: The largest ``limit`` the API accepts (S4).
MAX_LIMIT = 1000
#: Pages a paginator requests ahead by default (requests in flight plus pages waiting).
DEFAULT_PREFETCH = 8
#: Inconsistent pages in a row, with no item delivered in between, before giving up.
MAX_UNSETTLED = 8
_INCONSISTENCIES_KEPT = 100
_NOTHING: Any = object()


class Paginator(Generic[T]):
    """Lazily streams one list endpoint; nothing is sent before iteration starts.

    ``page_size``: the ``limit`` of each request (1 to 1000, default 1000); ``offset``: where to
    start or resume (0 or more); ``max_items``: stop after this many items; ``prefetch``: the
    most pages requested and not yet delivered (1 or more; 1 reads one page at a time);
    ``strict``: raise instead of re-synchronising when the list changes (see the module's
    consistency policy); ``key``: how to recognise an item across reads when re-synchronising
    (default: equality of the whole item). Raises :class:`~upvest_async.ValidationError` at
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
        if not _is_int(page_size) or not 1 <= page_size <= MAX_LIMIT:
            raise ValidationError("limit", f"page_size must be an integer in 1..{MAX_LIMIT}")
        if not _is_int(offset) or offset < 0:
            raise ValidationError("offset", "offset must be an integer >= 0")
        if max_items is not None and (not _is_int(max_items) or max_items < 0):
            raise ValidationError("max_items", "max_items must be an integer >= 0")
        if not _is_int(prefetch) or prefetch < 1:
            raise ValidationError("prefetch", "prefetch must be an integer >= 1")
        if not isinstance(strict, bool):
            raise ValidationError("strict", "strict must be True or False")
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
            maxlen=_INCONSISTENCIES_KEPT
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
                offset = page.meta.offset
                for item in page.items:
                    offset += 1
                    self.next_offset = offset
                    yield item

    async def pages(self) -> AsyncGenerator[Page[T], None]:
        """Yield the pages in order, each with its typed ``items`` and ``meta``.

        Empty pages are not yielded. When the paginator trims a page (``max_items``, or a
        re-synchronisation), ``meta.offset`` and ``meta.count`` describe the items yielded.
        """
        scheduler: _Scheduler[None, T] = _Scheduler([(None, self)], window=0, limiter=None)
        async with contextlib.aclosing(scheduler.pages()) as pages:
            async for _, page in pages:
                if page is not None:
                    self.next_offset = page.meta.offset + len(page.items)
                    yield page

    async def fetch_page(self, offset: int, limit: int) -> Page[T]:
        """Fetch the single page at ``offset`` with ``limit`` items at most (no checks)."""
        return self._decode(await self._fetch(offset, limit, None))

    async def _fetch(
        self, offset: int, limit: int, limiter: asyncio.Semaphore | None
    ) -> RawResponse:
        params: dict[str, str | int] = {**self._params, "offset": offset, "limit": limit}
        if limiter is None:
            response = await self._request("GET", self.path, params=params)
        else:
            async with limiter:
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
    At most ``concurrency`` page requests are in flight in total; the paginator being
    delivered fetches up to its own ``prefetch`` pages ahead, and the following ones up to
    ``window`` pages (default ``concurrency``) between them, so memory is bounded by about
    ``prefetch + window`` pages. Raises :class:`~upvest_async.ValidationError` at once for a
    ``concurrency`` or ``window`` below 1, and the paginators' errors in order while iterating.
    """
    if not _is_int(concurrency) or concurrency < 1:
        raise ValidationError("concurrency", "must be an integer >= 1")
    if window is not None and (not _is_int(window) or window < 1):
        raise ValidationError("window", "must be an integer >= 1")
    scheduler: _Scheduler[K, T] = _Scheduler(
        sources, window=concurrency if window is None else window,
        limiter=asyncio.Semaphore(concurrency),
    )
    return scheduler.pages()


def parse_page(body: bytes, item_type: type[T], *, request_id: str | None = None) -> Page[T]:
    """Decode a list response body into a :class:`Page` of ``item_type``.

    Raises :class:`~upvest_async.errors.ResponseValidationError` when the body is not JSON,
    lacks ``data``/``meta``, or an item does not match ``item_type`` (naming the first one,
    ``$[3].quantity``).
    """
    try:
        document: Any = json.loads(body)
    except ValueError:
        raise ResponseValidationError("body is not JSON", request_id=request_id) from None
    if not isinstance(document, dict) or not isinstance(document.get("data"), list):
        raise ResponseValidationError("expected an object with a data array", path="$.data",
                                      request_id=request_id)
    meta = structure(document.get("meta"), Meta, request_id=request_id)
    data = document["data"]
    hook = converter.get_structure_hook(item_type)
    try:
        items = [hook(item, item_type) for item in data]
    except Exception:
        # The whole list again through the usual path, for its error naming the first item.
        items = structure(data, list[item_type], request_id=request_id)  # type: ignore[valid-type]
    return Page(items=items, meta=meta)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class _Slot:
    """One page request: ``offset``, ``limit``, its task, and whether it uses the shared
    window (``charged``)."""

    __slots__ = ("charged", "limit", "offset", "task")

    def __init__(self, offset: int, limit: int, task: asyncio.Task[Any], charged: bool) -> None:
        self.offset = offset
        self.limit = limit
        self.task = task
        self.charged = charged


class _Stream(Generic[K, T]):
    """The state of one iteration over one paginator's list: planned page requests (in
    order), what was delivered, and the consistency checks."""

    def __init__(self, key: K, paginator: Paginator[T], scheduler: _Scheduler[K, T]) -> None:
        self.key = key
        self.paginator = paginator
        self.scheduler = scheduler
        self.page_size = paginator.page_size
        self.read_limit = MAX_LIMIT  # for re-reads; lowered to the server's maximum page size
        self.next_offset = paginator.offset  # offset of the next item to deliver
        self.remaining = paginator.max_items  # items still wanted (None: all)
        self.total: int | None = None  # the total_count the stream works with
        self.plan_offset = paginator.offset  # the next offset to request
        self.plan_end = paginator.offset  # offsets below this are still to be requested
        self.slots: collections.deque[_Slot] = collections.deque()
        self.anchor: Any = _NOTHING  # the last item delivered
        self.unsettled = 0
        self.finished = False

    # Planning and launching (called by the scheduler and by the first page's task).

    def start(self, charged: bool) -> bool:
        """Request the first page; returns whether a request was made."""
        if self.remaining == 0:
            self.finished = True
            return False
        limit = self.page_size if self.remaining is None else min(self.page_size, self.remaining)
        task = asyncio.ensure_future(self._first_page(self.plan_offset, limit))
        self.slots.append(_Slot(self.plan_offset, limit, task, charged))
        self.plan_offset += limit
        return True

    def can_launch(self) -> bool:
        return (
            not self.finished and self.plan_offset < self.plan_end
            and len(self.slots) < self.paginator.prefetch
        )

    def launch(self, charged: bool) -> None:
        offset = self.plan_offset
        limit = min(self.page_size, self.plan_end - offset)
        self.plan_offset += limit
        task = asyncio.ensure_future(
            self.paginator._fetch(offset, limit, self.scheduler.limiter)
        )
        self.slots.append(_Slot(offset, limit, task, charged))

    def _plan_from(self, offset: int) -> None:
        """Plan requests from ``offset`` up to the end of the list or of ``max_items``."""
        assert self.total is not None
        end = self.total if self.remaining is None else min(
            self.total, self.next_offset + self.remaining
        )
        self.plan_offset = offset
        self.plan_end = max(offset, end)

    async def _first_page(self, offset: int, limit: int) -> tuple[Page[T], str | None]:
        response = await self.paginator._fetch(offset, limit, self.scheduler.limiter)
        page = self.paginator._decode(response)
        self._check_response(page, offset, limit, response.request_id)
        self.total = page.meta.total_count
        if 0 < page.meta.limit < self.page_size:
            self.page_size = self.read_limit = page.meta.limit
        if page.items:
            self._plan_from(offset + len(page.items))
        self.scheduler.refill()
        return page, response.request_id

    async def _drop_plan(self) -> None:
        """Cancel the pages requested ahead and forget the plan."""
        slots = list(self.slots)
        self.slots.clear()
        for slot in slots:
            slot.task.cancel()
            if slot.charged:
                self.scheduler.release()
        if slots:
            await asyncio.gather(*(slot.task for slot in slots), return_exceptions=True)
        self.plan_end = self.plan_offset

    # Delivery (called by the consumer, in order).

    async def next(self) -> Page[T] | None:
        """The next non-empty page in order, ``None`` when the list is exhausted."""
        while True:
            if not self.slots:
                if self.finished or self.total is None or self.plan_offset >= self.plan_end:
                    self.finished = True
                    return None
                self.launch(charged=False)
            slot = self.slots[0]
            result = await slot.task
            self.slots.popleft()
            if slot.charged:
                self.scheduler.release()
            self.scheduler.refill()
            if isinstance(result, tuple):  # the first page, decoded and checked by its task
                page, request_id = result
            else:
                page = self.paginator._decode(result)
                request_id = result.request_id
                self._check_response(page, slot.offset, slot.limit, request_id)
            delivered = await self._accept(slot, page, request_id)
            if delivered is not None:
                return delivered

    def _check_response(
        self, page: Page[T], offset: int, limit: int, request_id: str | None
    ) -> None:
        meta, count = page.meta, len(page.items)
        if meta.offset != offset:
            problem = f"meta.offset is {meta.offset} in the answer to a request at offset {offset}"
        elif meta.count != count:
            problem = f"meta.count is {meta.count} but data has {count} items"
        elif count > limit:
            problem = f"{count} items in a page of limit {limit}"
        elif count and offset + count > meta.total_count:
            problem = f"items up to offset {offset + count} exceed total_count {meta.total_count}"
        else:
            return
        raise self._error(f"malformed page: {problem}", meta.total_count, request_id)

    def _error(self, reason: str, received: int | None, request_id: str | None) -> PaginationError:
        return PaginationError(
            reason, path=self.paginator.path, offset=self.next_offset, total_count=self.total,
            received_total_count=received, request_id=request_id,
        )

    def _note(self, message: str) -> None:
        line = f"paging {self.paginator.path}: {message}"
        self.paginator.inconsistencies.append(line)
        logger.warning("%s", line)

    async def _accept(
        self, slot: _Slot, page: Page[T], request_id: str | None
    ) -> Page[T] | None:
        """Check ``page`` against the plan; deliver it, re-read, re-synchronise or stop."""
        assert self.total is not None
        meta, count = page.meta, len(page.items)
        cap = meta.limit if 0 < meta.limit < slot.limit else slot.limit
        expected = min(cap, max(0, self.total - slot.offset))
        if meta.total_count == self.total and count == expected:
            if count == 0:
                self.finished = True
                return None
            return self._deliver(page.items, meta, slot.offset)
        if meta.total_count != self.total:
            reason = f"total_count changed from {self.total} to {meta.total_count}"
        else:
            reason = f"{count} items at offset {slot.offset} where {expected} were expected"
        if self.paginator.strict:
            raise self._error(f"the list changed while it was read ({reason})",
                              meta.total_count, request_id)
        self.unsettled += 1
        if self.unsettled > MAX_UNSETTLED:
            raise self._error(
                f"the list did not settle ({reason}; {MAX_UNSETTLED} inconsistent pages in a "
                "row)", meta.total_count, request_id,
            )
        if cap < self.page_size:
            self.page_size = self.read_limit = cap
        if meta.total_count != self.total and self.anchor is not _NOTHING:
            return await self._resync(slot.offset, meta.total_count, reason)
        # The first page planned the following ones from offset + count already.
        first_page = self.anchor is _NOTHING and slot.offset == self.paginator.offset
        if not first_page or count == 0:
            await self._drop_plan()
        self.total = meta.total_count
        if count == 0:
            self._note(f"{reason}: stopping at offset {slot.offset}")
            self.finished = True
            return None
        self._note(f"{reason}: re-reading from offset {slot.offset + count}")
        delivered = self._deliver(page.items, meta, slot.offset)
        if not first_page:
            self._plan_from(slot.offset + count)
            self.scheduler.refill()
        return delivered

    async def _resync(self, offset: int, received_total: int, reason: str) -> Page[T] | None:
        """Find the last item delivered in the changed list and continue right after it."""
        assert self.total is not None
        await self._drop_plan()
        shrink = max(0, self.total - received_total)
        start = max(0, offset - 1 - shrink)
        response = await self.paginator._fetch(start, self.read_limit, self.scheduler.limiter)
        page = self.paginator._decode(response)
        self._check_response(page, start, self.read_limit, response.request_id)
        items = page.items
        self.total = page.meta.total_count
        found = self._find_anchor(items)
        if found is not None:
            first = found + 1
            self._note(
                f"{reason}: re-synchronised on the last item delivered, now at offset "
                f"{start + found}: no item skipped or repeated"
            )
        else:
            first = min(max(0, offset - start), len(items))
            end = start + len(items) - 1
            self._note(
                f"{reason}: the last item delivered is not within offsets {start}..{end}: "
                f"continuing at offset {start + first}; items near it may be skipped or repeated"
            )
        self.next_offset = start + first
        delivered = self._deliver(items[first:], page.meta, start + first)
        self._plan_from(start + len(items))
        self.scheduler.refill()
        return delivered

    def _find_anchor(self, items: list[T]) -> int | None:
        key = self.paginator.key
        if key is None:
            anchor = self.anchor
            for index, item in enumerate(items):
                if item == anchor:
                    return index
            return None
        wanted = key(self.anchor)
        for index, item in enumerate(items):
            if key(item) == wanted:
                return index
        return None

    def _deliver(self, items: list[T], meta: Meta, offset: int) -> Page[T] | None:
        if self.remaining is not None:
            if len(items) > self.remaining:
                items = items[:self.remaining]
            self.remaining -= len(items)
            if self.remaining == 0:
                self.plan_end = self.plan_offset
        if not items:
            return None
        self.next_offset = offset + len(items)
        self.anchor = items[-1]
        self.unsettled = 0
        if meta.offset != offset or meta.count != len(items):
            meta = attrs.evolve(meta, offset=offset, count=len(items))
        return Page(items=items, meta=meta)


class _Scheduler(Generic[K, T]):
    """Streams several lists in order. The list being delivered (the head) requests up to its
    paginator's ``prefetch`` pages ahead; the following lists share ``window`` pages, given
    out in order; ``limiter`` bounds the requests in flight."""

    def __init__(
        self,
        sources: Iterable[tuple[K, Paginator[T]]],
        *,
        window: int,
        limiter: asyncio.Semaphore | None,
    ) -> None:
        self._sources = iter(sources)
        self._exhausted = False
        self.window = window
        self.limiter = limiter
        self.charged = 0
        self.streams: collections.deque[_Stream[K, T]] = collections.deque()
        self.closed = False

    def release(self) -> None:
        self.charged -= 1

    def refill(self) -> None:
        """Request pages, earlier lists first, as far as the windows allow."""
        if self.closed:
            return
        for index, stream in enumerate(self.streams):
            while stream.can_launch():
                if index == 0:
                    stream.launch(charged=False)
                elif self.charged < self.window:
                    stream.launch(charged=True)
                    self.charged += 1
                else:
                    return
        while not self._exhausted and (not self.streams or self.charged < self.window):
            try:
                key, paginator = next(self._sources)
            except StopIteration:
                self._exhausted = True
                return
            head = not self.streams
            stream = _Stream(key, paginator, self)
            self.streams.append(stream)
            if stream.start(charged=not head) and not head:
                self.charged += 1

    async def pages(self) -> AsyncGenerator[tuple[K, Page[T] | None], None]:
        try:
            self.refill()
            while self.streams:
                stream = self.streams[0]
                page = await stream.next()
                if page is None:
                    self.streams.popleft()
                    self.refill()
                yield stream.key, page
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        """Cancel every page request and wait until they are all done."""
        self.closed = True
        tasks = [slot.task for stream in self.streams for slot in stream.slots]
        self.streams.clear()
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
