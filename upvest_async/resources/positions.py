"""``client.positions``: E16 and E17 (seed 002)."""

from __future__ import annotations

import asyncio
import builtins
import uuid
from collections.abc import AsyncIterator, Iterable

from ..converter import structure
from ..errors import ValidationError
from ..models import Position
from ..pagination import MAX_LIMIT, Paginator
from ..validation import check_uuid, instrument_path_id
from ._base import Resource

__all__ = ["Positions"]


class Positions(Resource):
    """Positions of accounts (scope ``positions:read``)."""

    def list(
        self,
        account_id: str | uuid.UUID,
        *,
        page_size: int = MAX_LIMIT,
        offset: int = 0,
        max_items: int | None = None,
    ) -> Paginator[Position]:
        """List the positions of one account: ``GET /accounts/{account_id}/positions`` (E16).

        Returns an async iterator over every :class:`Position` of every page (``.pages()`` for
        the pages). ``page_size`` is the ``limit`` per request (1..1000), ``offset`` where to
        start, ``max_items`` where to stop. Raises :class:`~upvest_async.ValidationError` at
        once for a non-UUID ``account_id`` or out-of-range paging values; the API errors of
        :class:`~upvest_async.APIStatusError` while iterating.
        """
        account = check_uuid("account_id", account_id)
        return self._client._paginate(
            f"/accounts/{account}/positions", Position,
            page_size=page_size, offset=offset, max_items=max_items,
        )

    async def retrieve(
        self, account_id: str | uuid.UUID, instrument_id: str | uuid.UUID
    ) -> Position:
        """Retrieve one position: ``GET /accounts/{account_id}/positions/{instrument_id}`` (E17).

        ``instrument_id``: ``isin:<ISIN>`` or ``uuid:<UUID>`` (seed 002's URN forms, optionally
        ``urn:`` first); a bare ISIN or UUID is prefixed for you. Raises
        :class:`~upvest_async.ValidationError` before sending for malformed ids, and
        :class:`~upvest_async.NotFoundError` when the account holds no such position.
        """
        account = check_uuid("account_id", account_id)
        instrument = instrument_path_id(instrument_id)
        response = await self._client._request(
            "GET", f"/accounts/{account}/positions/{instrument}"
        )
        return structure(response.json(), Position, request_id=response.request_id)

    async def export_accounts(
        self,
        account_ids: Iterable[str | uuid.UUID],
        *,
        concurrency: int = 8,
        page_size: int = MAX_LIMIT,
    ) -> AsyncIterator[tuple[str, builtins.list[Position]]]:
        """Yield ``(account_id, positions)`` for each account, in the order given.

        Up to ``concurrency`` accounts are fetched at the same time; memory holds at most
        ``concurrency`` accounts' positions. All ids are validated before anything is sent
        (:class:`~upvest_async.ValidationError`). Leaving the loop early cancels the fetches
        in flight.
        """
        if not isinstance(concurrency, int) or concurrency < 1:
            raise ValidationError("concurrency", "must be an integer >= 1")
        accounts = [check_uuid("account_id", account) for account in account_ids]

        async def collect(account: str) -> builtins.list[Position]:
            return [position async for position in self.list(account, page_size=page_size)]

        window: list[tuple[str, asyncio.Task[builtins.list[Position]]]] = []
        pending = iter(accounts)
        try:
            for account in pending:
                window.append((account, asyncio.ensure_future(collect(account))))
                if len(window) >= concurrency:
                    break
            while window:
                account, task = window.pop(0)
                positions = await task
                for following in pending:
                    window.append((following, asyncio.ensure_future(collect(following))))
                    break
                yield account, positions
        finally:
            for _, task in window:
                task.cancel()
            if window:
                await asyncio.gather(*(task for _, task in window), return_exceptions=True)

    async def export(
        self,
        account_ids: Iterable[str | uuid.UUID],
        *,
        concurrency: int = 8,
        page_size: int = MAX_LIMIT,
    ) -> AsyncIterator[Position]:
        """Stream the positions of many accounts, grouped by account in the order given.

        See :meth:`export_accounts` for ``concurrency`` and the errors raised.
        """
        async for _, positions in self.export_accounts(
            account_ids, concurrency=concurrency, page_size=page_size
        ):
            for position in positions:
                yield position
