"""``client.positions``: E16 and E17, and streaming exports of many accounts:
:meth:`Positions.export` (typed positions, in order) and :meth:`Positions.export_records` (the
API's own objects per account, as the command line writes them)."""

from __future__ import annotations

import builtins
import contextlib
import uuid
from collections.abc import AsyncGenerator, Callable, Hashable, Iterable
from operator import attrgetter
from typing import TypeVar, Unpack

from ..errors import InvalidInputError
from ..models import Page, Position
from ..models.positions import PositionRecord
from ..pagination import DEFAULT_PREFETCH, MAX_LIMIT, Paginator, chain_pages
from ..pagination.pages import is_int
from ..records import PositionRecords
from ..transport import RequestOptions
from ..validation import check_uuid, instrument_path_id
from ._base import Resource

__all__ = ["DEFAULT_EXPORT_CONCURRENCY", "Positions"]

T = TypeVar("T")

#: Page requests in flight for a whole export, by default.
DEFAULT_EXPORT_CONCURRENCY = 16


#: A position is the one of its instrument (one position per instrument, E17): its key is
#: ``position.instrument.uuid`` (an ``attrgetter``: called for every position delivered).
_instrument_key: Callable[[Position], uuid.UUID] = attrgetter("instrument.uuid")


def _record_key(record: PositionRecord) -> str:
    return record["instrument"]["uuid"]


def _checked_accounts(account_ids: Iterable[str | uuid.UUID], concurrency: int) -> list[str]:
    """The account ids of an export, checked with its ``concurrency`` before anything is
    sent. Raises :class:`~upvest_async.InvalidInputError` for a bad id or a ``concurrency``
    that is not an integer >= 1."""
    if not is_int(concurrency) or concurrency < 1:
        raise InvalidInputError("concurrency", "must be an integer >= 1")
    return [check_uuid("account_id", account) for account in account_ids]


def _empty_records() -> PositionRecords:
    records = PositionRecords()
    records.canonical = True
    return records


async def _items(
    pages: AsyncGenerator[tuple[str, Page[T] | None], None],
) -> AsyncGenerator[T, None]:
    """The items of an export's pages, in order."""
    async with contextlib.aclosing(pages):
        async for _, page in pages:
            if page is not None:
                for item in page.items:
                    yield item


async def _by_account(
    pages: AsyncGenerator[tuple[str, Page[PositionRecord] | None], None],
) -> AsyncGenerator[tuple[str, PositionRecords], None]:
    """The records of an export's pages, gathered per account (an account with no positions
    too)."""
    async with contextlib.aclosing(pages):
        records = _empty_records()
        async for account, page in pages:
            if page is None:
                yield account, records
                records = _empty_records()
            else:
                items = page.items  # PositionRecords, or a plain slice of one (re-sync)
                records.canonical &= getattr(items, "canonical", False)
                records.extend(items)


class Positions(Resource):
    """Positions of accounts (scope ``positions:read``)."""

    def list(
        self,
        account_id: str | uuid.UUID,
        *,
        page_size: int = MAX_LIMIT,
        offset: int = 0,
        max_items: int | None = None,
        prefetch: int = DEFAULT_PREFETCH,
        strict: bool = False,
        **options: Unpack[RequestOptions],
    ) -> Paginator[Position]:
        """List the positions of one account: ``GET /accounts/{account_id}/positions`` (E16).

        Returns a :class:`~upvest_async.Paginator`: an async iterator over every
        :class:`Position` in order (``.pages()`` for the pages and their ``meta``, S5).
        ``page_size`` is the ``limit`` per request (1..1000), ``offset`` where to start or
        resume, ``max_items`` where to stop, ``prefetch`` how many pages are requested ahead
        (concurrently, delivered in order), ``strict`` whether a list that changes while it is
        read raises :class:`~upvest_async.PaginationError` instead of being re-synchronised
        (see :mod:`upvest_async.pagination`). Takes the per-call options of
        :class:`~upvest_async.RequestOptions`, applied to each page request. Raises
        :class:`~upvest_async.InvalidInputError` at once for a non-UUID ``account_id`` or
        out-of-range values; the API errors of :class:`~upvest_async.APIStatusError` and
        :class:`~upvest_async.PaginationError` while iterating.
        """
        account = check_uuid("account_id", account_id)
        return self._client._paginate(
            f"/accounts/{account}/positions", Position,
            page_size=page_size, offset=offset, max_items=max_items, prefetch=prefetch,
            strict=strict, key=_instrument_key, template="/accounts/{account_id}/positions",
            options=options,
        )

    async def retrieve(
        self,
        account_id: str | uuid.UUID,
        instrument_id: str | uuid.UUID,
        **options: Unpack[RequestOptions],
    ) -> Position:
        """Retrieve one position: ``GET /accounts/{account_id}/positions/{instrument_id}`` (E17).

        ``instrument_id``: ``isin:<ISIN>`` or ``uuid:<UUID>`` (the URN forms of
        Upvest's Positions reference, optionally ``urn:`` first); a bare ISIN or UUID is prefixed
        for you. Raises
        :class:`~upvest_async.InvalidInputError` before sending for malformed ids, and
        :class:`~upvest_async.NotFoundError` when the account holds no such position, and
        :class:`~upvest_async.ResponseValidationError` for a body that is not a position.
        Takes the per-call options of :class:`~upvest_async.RequestOptions`.
        """
        account = check_uuid("account_id", account_id)
        instrument = instrument_path_id(instrument_id)
        return await self._call(
            Position, "GET", f"/accounts/{account}/positions/{instrument}", options=options,
            template="/accounts/{account_id}/positions/{instrument_id}",
        )

    def export(
        self,
        account_ids: Iterable[str | uuid.UUID],
        *,
        concurrency: int = DEFAULT_EXPORT_CONCURRENCY,
        page_size: int = MAX_LIMIT,
        strict: bool = False,
        **options: Unpack[RequestOptions],
    ) -> AsyncGenerator[Position, None]:
        """Stream the positions of many accounts (E16), grouped by account in the order given,
        each account's in the order of its list; each :class:`Position` names its
        ``account_id``.

        ``concurrency``: the most page requests in flight for the whole export, across
        accounts and pages. The pages of following accounts are fetched while earlier ones are
        delivered, those needed first always requested first; at most ``3 * concurrency``
        pages are in flight or waiting for delivery (see
        :func:`~upvest_async.pagination.chain_pages`), and positions are yielded page by page,
        so no account is held in memory whole. ``page_size`` and ``strict`` as for
        :meth:`list`; the per-call options of :class:`~upvest_async.RequestOptions` apply to
        each page request. A page request answered 429 is re-sent as long as its deadline
        allows (the client's rate limiter paces it), so throttling alone never fails an
        export; give ``max_throttled_retries`` to bound it. Raises
        :class:`~upvest_async.InvalidInputError` at once for a bad id, ``concurrency`` or
        option (all ids are checked before anything is sent); the errors of :meth:`list` while
        iterating. Leaving the loop early cancels the requests in flight.
        """
        paginators = self._export_paginators(
            account_ids, Position, _instrument_key, concurrency=concurrency,
            page_size=page_size, strict=strict, options=options,
        )
        return _items(chain_pages(paginators, concurrency=concurrency))

    def export_records(
        self,
        account_ids: Iterable[str | uuid.UUID],
        *,
        concurrency: int = DEFAULT_EXPORT_CONCURRENCY,
        page_size: int = MAX_LIMIT,
        strict: bool = False,
        **options: Unpack[RequestOptions],
    ) -> AsyncGenerator[tuple[str, PositionRecords], None]:
        """Yield ``(account_id, records)`` for each account, in the order given, once its
        positions are all read (an account with none too, with no records): each position is
        the API's own JSON object (:class:`~upvest_async.models.positions.PositionRecord`),
        validated exactly as :class:`Position` validates it and not rebuilt. The way to write
        positions out unchanged, one account at a time, so that an export can record each
        account done and resume after it (as ``upvest-async export-positions --checkpoint``
        does; see :mod:`upvest_async.records`).

        Same arguments and errors as :meth:`export` (a malformed position is a
        :class:`~upvest_async.ResponseValidationError` naming its field, ``$[3].quantity``);
        memory holds the records of the account being yielded plus at most
        ``3 * concurrency`` pages.
        """
        paginators = self._export_paginators(
            account_ids, PositionRecord, _record_key, concurrency=concurrency,
            page_size=page_size, strict=strict, options=options,
        )
        return _by_account(chain_pages(paginators, concurrency=concurrency))

    def _export_paginators(
        self,
        account_ids: Iterable[str | uuid.UUID],
        item_type: type[T],
        key: Callable[[T], Hashable],
        *,
        concurrency: int,
        page_size: int,
        strict: bool,
        options: RequestOptions,
    ) -> builtins.list[tuple[str, Paginator[T]]]:
        """One paginator per account of an export, all checked before anything is sent: the
        ids, ``concurrency`` (an integer >= 1), the paging values and the options. Each reads
        ahead up to ``concurrency`` pages, and its page requests are re-sent after a 429 as
        long as their deadline allows (the bulk options), unless ``max_throttled_retries``
        was given (here, or with :meth:`~upvest_async.UpvestClient.with_options`)."""
        accounts = _checked_accounts(account_ids, concurrency)
        options = {**self._client._bulk_options(), **options}
        return [
            (account, self._client._paginate(
                f"/accounts/{account}/positions", item_type, page_size=page_size,
                prefetch=concurrency, strict=strict, key=key,
                template="/accounts/{account_id}/positions", options=options,
            ))
            for account in accounts
        ]
