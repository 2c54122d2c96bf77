"""``client.portfolios``: the Portfolios API (seed 001; E6 also seed 000)."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from ..models import PortfoliosConfiguration
from ..pagination import MAX_LIMIT, Paginator
from ..validation import check_uuid
from ._base import Resource

if TYPE_CHECKING:
    from ..client import UpvestClient

__all__ = ["Configurations", "Portfolios"]


class Configurations(Resource):
    """``client.portfolios.configurations``: portfolio configurations of accounts (E5 to E8)."""

    def list(
        self,
        *,
        account_id: str | uuid.UUID | None = None,
        allocation_id: str | uuid.UUID | None = None,
        page_size: int = MAX_LIMIT,
        offset: int = 0,
        max_items: int | None = None,
    ) -> Paginator[PortfoliosConfiguration]:
        """List configurations: ``GET /portfolios/configurations`` (E5), scope
        ``portfolios:read``.

        Filters ``account_id`` and ``allocation_id`` (the seed prints them without uuid format,
        quirk Q17; the SDK requires UUIDs). Returns an async iterator of
        :class:`PortfoliosConfiguration`. Raises :class:`~upvest_async.ValidationError` at once
        for malformed filters or paging values.
        """
        params: dict[str, str | int] = {}
        if account_id is not None:
            params["account_id"] = check_uuid("account_id", account_id)
        if allocation_id is not None:
            params["allocation_id"] = check_uuid("allocation_id", allocation_id)
        return self._client._paginate(
            "/portfolios/configurations", PortfoliosConfiguration, params=params,
            page_size=page_size, offset=offset, max_items=max_items,
        )


class Portfolios(Resource):
    """``client.portfolios``: namespaces of the Portfolios API."""

    def __init__(self, client: UpvestClient) -> None:
        super().__init__(client)
        self.configurations = Configurations(client)

