"""Streaming over offset/limit list endpoints (``data`` + ``meta``; S4 and S5 of the API readings,
``docs/guides/api-readings.md``).

``async for item in paginator`` yields every item in order; ``paginator.pages()`` yields
:class:`~upvest_async.models.Page` objects (``items`` and ``meta``). Nothing is sent before
iteration starts.

**Prefetch.** The first page gives ``total_count``; the following pages are then requested
concurrently, at most ``prefetch`` pages requested and not yet delivered at any time (in flight
or waiting in order), and delivered strictly in order. Memory is bounded by about
``(prefetch + 2) * page_size`` items (the pages ahead, the page delivered and the one before).
:func:`chain_pages` streams many lists one after another (grouped, in the order given) while
fetching ahead across them under one limit of requests in flight; requests get their turn in
delivery order, so the pages needed next go first.

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
       paginator re-reads up to 1000 items from a little before ``offset - 1 - shrink``
       (``shrink``: how much ``total_count`` went down), finds the newest item it delivered
       lately (from its last two pages, by ``key``, default equality) and continues right
       after it with the new ``total_count``, skipping any item it delivered lately. Items
       present during the whole iteration are then neither skipped nor repeated (for
       insertions or removals that moved them by less than about 900 places); items added or
       removed meanwhile appear at most once. When none is found (shift too large, or every
       such item removed or changed), paging continues at the same offset of the new list and
       the warning says that items near that offset may be skipped or repeated.
     - same ``total_count``, short page: deliver it, and **re-read** the rest from
       ``offset + count`` (no gap). A ``meta.limit`` below the ``limit`` asked for is taken as
       the server's maximum page size from then on.
     - same ``total_count``, empty page before the end: **stop**.
     - after :data:`MAX_UNSETTLED` inconsistent pages in a row with no item delivered in
       between, raise :class:`~upvest_async.PaginationError` (the list never settles).

   Changes that keep ``total_count`` and every page's size (an insertion and a removal between
   two page reads) cannot be seen with offset paging, in either mode.

3. **Bounds**, in every mode, against a server that never lets a list end: one iteration
   delivers at most ``GROWTH_FACTOR * total_count + limit`` items (:data:`GROWTH_FACTOR` = 2;
   the ``total_count`` of the first page and the ``limit`` of the first request), which leaves
   room for a list that legitimately grows while it is read; and a chunk of items that repeats
   one already delivered (same length, same first and last item, compared by ``key``) is never
   delivered again (a server that ignores ``offset`` and answers the same page forever). Either
   raises :class:`~upvest_async.PaginationError` with ``offset`` right after the last item
   delivered.

**Cancellation.** Leaving the loop (``break``, an exception, the consuming task cancelled)
cancels the page requests in flight and awaits them: no task outlives the iteration and no
warning is emitted. Python closes an abandoned async generator through the event loop's hooks a
few loop iterations later; use ``contextlib.aclosing(paginator.pages())`` (or
``aclosing(aiter(paginator))``) to clean up at once.
"""

from .limits import DEFAULT_PREFETCH, GROWTH_FACTOR, MAX_LIMIT, MAX_UNSETTLED, RequestFunction
from .pages import parse_page
from .paginator import Paginator, chain_pages

__all__ = [
    "DEFAULT_PREFETCH",
    "GROWTH_FACTOR",
    "MAX_LIMIT",
    "MAX_UNSETTLED",
    "Paginator",
    "RequestFunction",
    "chain_pages",
    "parse_page",
]
