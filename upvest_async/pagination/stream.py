"""Reading one list: its prefetch plan, the checks on every page, and the
re-synchronisation described in :mod:`upvest_async.pagination`.

A stream reads its list through a :class:`PageSource` (what it needs of a
:class:`~upvest_async.pagination.Paginator`), takes turns from a :class:`~.gate._Gate` and asks
its scheduler (:mod:`.engine`) to plan more through a ``refill`` callback: it imports neither the
paginator nor the engine, which both import it."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable, Hashable
from typing import Any, Generic, Protocol, TypeVar

import attrs

from ..errors import PaginationError
from ..models import Meta, Page
from ..responses import RawResponse
from .gate import _Gate, _Slot
from .limits import GROWTH_FACTOR, MAX_LIMIT, MAX_UNSETTLED, logger
from .pages import parse_envelope, structure_items

__all__ = ["PageSource", "_Stream"]

T = TypeVar("T")
K = TypeVar("K")


class PageSource(Protocol[T]):
    """One list as a stream reads it: its settings (those of
    :class:`~upvest_async.pagination.Paginator`), where the stream records its progress
    (``next_offset``, ``inconsistencies``), and how one page is fetched and decoded."""

    path: str
    item_type: type[T]
    page_size: int
    offset: int
    max_items: int | None
    prefetch: int
    strict: bool
    key: Callable[[T], Hashable] | None
    next_offset: int
    inconsistencies: collections.deque[str]

    async def _fetch(self, offset: int, limit: int) -> RawResponse: ...

    def _decode(self, response: RawResponse) -> Page[T]: ...


class _Stream(Generic[K, T]):
    """The state of one iteration over one paginator's list: planned page requests (in
    order), what was delivered, and the consistency checks."""

    def __init__(
        self, index: int, key: K, paginator: PageSource[T], *, gate: _Gate,
        refill: Callable[[], None],
    ) -> None:
        self.index = index
        self.key = key
        self.paginator = paginator
        self.gate = gate
        self._refill = refill  # the scheduler plans and launches more requests
        self.page_size = paginator.page_size
        self.read_limit = MAX_LIMIT  # for re-reads; lowered to the server's maximum page size
        self.next_offset = paginator.offset  # offset of the next item to deliver
        self.remaining = paginator.max_items  # items still wanted (None: all)
        self.total: int | None = None  # the total_count the stream works with
        self.plan_offset = paginator.offset  # the next offset to request
        self.plan_end = paginator.offset  # offsets below this are still to be requested
        self.slots: collections.deque[_Slot] = collections.deque()
        # The last pages delivered, to find the reading position again: their items, or the
        # items' keys when the paginator has a key (so delivered items are not kept alive).
        self.tail: collections.deque[list[Any]] = collections.deque(maxlen=2)
        self.unsettled = 0
        self.finished = False
        # Bounds against a server that never lets a list end: items delivered so far, the
        # most allowed (set by the first page), and a fingerprint of every chunk delivered.
        self.delivered = 0
        self.bound: int | None = None
        self.fingerprints: set[tuple[int, int, int]] = set()

    # Planning and launching (called by the scheduler and by the first page's task).

    def start(self) -> None:
        """Request the first page."""
        if self.remaining == 0:
            self.finished = True
            return
        limit = self.page_size if self.remaining is None else min(self.page_size, self.remaining)
        task = asyncio.ensure_future(self._first_page(self.plan_offset, limit))
        self.slots.append(_Slot(self.plan_offset, limit, task))
        self.plan_offset += limit

    def can_launch(self) -> bool:
        return (
            not self.finished and self.plan_offset < self.plan_end
            and len(self.slots) < self.paginator.prefetch
        )

    def launch(self) -> None:
        offset = self.plan_offset
        limit = min(self.page_size, self.plan_end - offset)
        self.plan_offset += limit
        task = asyncio.ensure_future(self._fetch(offset, limit, held=True))
        self.slots.append(_Slot(offset, limit, task))

    async def _fetch(self, offset: int, limit: int, *, held: bool) -> RawResponse:
        """Fetch a page when the gate gives this request its turn; ``held``: the page waits
        for delivery in the gate's window."""
        gate = self.gate
        await gate.acquire((self.index, offset))
        try:
            response = await self.paginator._fetch(offset, limit)
        except BaseException:
            gate.finished(held=False)
            raise
        gate.finished(held=held)
        return response

    def _plan_from(self, offset: int) -> None:
        """Plan requests from ``offset`` up to the end of the list or of ``max_items``."""
        assert self.total is not None
        end = self.total if self.remaining is None else min(
            self.total, self.next_offset + self.remaining
        )
        self.plan_offset = offset
        self.plan_end = max(offset, end)

    async def _first_page(
        self, offset: int, limit: int
    ) -> tuple[Meta, list[Any], str | None]:
        response = await self._fetch(offset, limit, held=False)
        request_id = response.request_id
        meta, data = parse_envelope(response.body, request_id, self.paginator.item_type)
        self._check_response(meta, len(data), offset, limit, request_id)
        self.total = meta.total_count
        self.bound = GROWTH_FACTOR * max(0, meta.total_count) + limit
        if 0 < meta.limit < limit:  # the server serves fewer than asked: its maximum
            self.page_size = self.read_limit = meta.limit
        if data:
            self._plan_from(offset + len(data))
        self._refill()
        # The items are decoded on delivery, as those of the following pages: typed items
        # held for long (the first pages of every list started) only make the cyclic GC
        # scan them again and again, where decoded JSON of strings is soon untracked.
        self.gate.held += 1
        return meta, data, request_id

    async def _drop_plan(self) -> None:
        """Cancel the pages requested ahead and forget the plan."""
        slots = list(self.slots)
        self.slots.clear()
        self.gate.cancel(slots)
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
                self.launch()
            slot = self.slots[0]
            result = await slot.task
            self.slots.popleft()
            self.gate.delivered()
            self._refill()
            # Let the requests this turn allows go out before decoding.
            await asyncio.sleep(0)
            if isinstance(result, tuple):  # the first page, its envelope checked by its task
                meta, data, request_id = result
                page = Page(items=structure_items(data, self.paginator.item_type, request_id),
                            meta=meta)
            else:
                page = self.paginator._decode(result)
                request_id = result.request_id
                self._check_response(page.meta, len(page.items), slot.offset, slot.limit,
                                     request_id)
            delivered = await self._accept(slot, page, request_id)
            if delivered is not None:
                return delivered

    def _check_response(
        self, meta: Meta, count: int, offset: int, limit: int, request_id: str | None
    ) -> None:
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
        server_cap = meta.limit if 0 < meta.limit < slot.limit else None
        expected = min(server_cap or slot.limit, max(0, self.total - slot.offset))
        if meta.total_count == self.total and count == expected:
            if count == 0:
                self.finished = True
                return None
            return self._deliver(page.items, meta, slot.offset, request_id=request_id)
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
        if server_cap is not None and server_cap < self.page_size:
            self.page_size = self.read_limit = server_cap
        if meta.total_count != self.total and self.tail:
            return await self._resync(slot.offset, meta.total_count, reason)
        # The first page planned the following ones from offset + count already.
        first_page = not self.tail and slot.offset == self.paginator.offset
        if not first_page or count == 0:
            await self._drop_plan()
        self.total = meta.total_count
        if count == 0:
            self._note(f"{reason}: stopping at offset {slot.offset}")
            self.finished = True
            return None
        self._note(f"{reason}: re-reading from offset {slot.offset + count}")
        delivered = self._deliver(page.items, meta, slot.offset, request_id=request_id)
        if not first_page:
            self._plan_from(slot.offset + count)
            self._refill()
        return delivered

    async def _resync(self, offset: int, received_total: int, reason: str) -> Page[T] | None:
        """Find the reading position in the changed list and continue right after it: after
        the newest recently delivered item still there, skipping items already delivered."""
        assert self.total is not None
        await self._drop_plan()
        shrink = max(0, self.total - received_total)
        start = max(0, offset - 1 - shrink - self.read_limit // 10)
        response = await self._fetch(start, self.read_limit, held=False)
        page = self.paginator._decode(response)
        self._check_response(page.meta, len(page.items), start, self.read_limit,
                             response.request_id)
        items = page.items
        self.total = page.meta.total_count
        found, newest, delivered_before = self._locate(items)
        if found is not None:
            first = found + 1
            which = "the last item delivered" if newest else (
                "an item delivered shortly before the last one (which is gone)"
            )
            self._note(
                f"{reason}: re-synchronised on {which}, now at offset {start + found}: no item "
                "skipped or repeated"
            )
        else:
            first = min(max(0, offset - start), len(items))
            end = start + len(items) - 1
            self._note(
                f"{reason}: no item delivered lately is within offsets {start}..{end}: "
                f"continuing at offset {start + first}; items near it may be skipped or repeated"
            )
        fresh = [item for item in items[first:] if not delivered_before(item)]
        delivered = self._deliver(fresh, page.meta, start + first, end=start + len(items),
                                  request_id=response.request_id)
        if delivered is None:
            self.next_offset = self.paginator.next_offset = start + first
        self._plan_from(start + len(items))
        self._refill()
        return delivered

    def _locate(self, items: list[T]) -> tuple[int | None, bool, Callable[[T], bool]]:
        """Where the newest recently delivered item is in ``items`` (``None``: nowhere),
        whether it is the very last one delivered, and a test for "delivered lately"."""
        recent = [mark for chunk in self.tail for mark in chunk]  # items, or their keys
        key = self.paginator.key
        positions: dict[Any, int]
        try:
            seen: set[Any] = set(recent)
            if key is None:
                positions = {item: index for index, item in enumerate(items)}
                delivered_before: Callable[[T], bool] = seen.__contains__
            else:
                positions = {key(item): index for index, item in enumerate(items)}

                def delivered_before(item: T) -> bool:
                    return key(item) in seen
        except TypeError:  # unhashable items and no key: look for the last item only
            last = recent[-1]
            for index, item in enumerate(items):
                if (item if key is None else key(item)) == last:
                    return index, True, lambda _: False
            return None, False, lambda _: False
        for back, mark in enumerate(reversed(recent)):
            found = positions.get(mark)
            if found is not None:
                return found, back == 0, delivered_before
        return None, False, delivered_before

    def _deliver(
        self, items: list[T], meta: Meta, offset: int, *, end: int | None = None,
        request_id: str | None = None,
    ) -> Page[T] | None:
        """Hand out ``items`` (from ``offset``; the reading position moves to ``end``,
        default right after them), trimmed to ``max_items``; raise instead when they repeat a
        chunk already delivered or go past the bound."""
        if self.remaining is not None and len(items) > self.remaining:
            items = items[:self.remaining]
            end = None
        if not items:
            return None
        assert self.bound is not None
        room = self.bound - self.delivered
        if 0 < room < len(items):  # deliver up to the bound; the next page raises
            items = items[:room]
            end = None
        self._check_bounds(items, meta, offset, request_id)
        if self.remaining is not None:
            self.remaining -= len(items)
            if self.remaining == 0:
                self.plan_end = self.plan_offset
        self.next_offset = offset + len(items) if end is None else end
        self.paginator.next_offset = self.next_offset
        key = self.paginator.key
        self.tail.append(items if key is None else list(map(key, items)))
        self.unsettled = 0
        if meta.offset != offset or meta.count != len(items):
            meta = attrs.evolve(meta, offset=offset, count=len(items))
        return Page(items=items, meta=meta)

    def _check_bounds(
        self, items: list[T], meta: Meta, offset: int, request_id: str | None
    ) -> None:
        """Raise when delivering ``items`` would pass the bound on items, or repeat a chunk
        already delivered (same length, same first and last item, by ``key``)."""
        assert self.bound is not None
        if self.delivered + len(items) > self.bound:
            raise self._error(
                f"the list was followed past {self.bound} items ({GROWTH_FACTOR} x the "
                f"total_count of its first page, plus one page): it keeps growing",
                meta.total_count, request_id,
            )
        key = self.paginator.key
        try:
            first, last = (items[0], items[-1]) if key is None else (
                key(items[0]), key(items[-1]))
            fingerprint = (len(items), hash(first), hash(last))
        except TypeError:  # unhashable items and no key: the bound on items still holds
            fingerprint = None
        if fingerprint is not None:
            if fingerprint in self.fingerprints:
                raise self._error(
                    f"the page at offset {offset} repeats items already delivered (a server "
                    "that ignores offset?)", meta.total_count, request_id,
                )
            self.fingerprints.add(fingerprint)
        self.delivered += len(items)
