"""What every resource namespace shares: a handle on its client."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..client import UpvestClient

__all__ = ["Resource"]


class Resource:
    """Base of the resource namespaces (``client.positions``, ``client.portfolios...``)."""

    def __init__(self, client: UpvestClient) -> None:
        self._client = client

    def __repr__(self) -> str:
        return f"<{type(self).__name__}>"
