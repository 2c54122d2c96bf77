"""What every resource namespace shares: a handle on its client and response decoding."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from ..converter import structure
from ..json_body import parse_json
from ..responses import RawResponse
from ..transport import RequestOptions
from ..validation import check_choice, check_timestamp, check_uuid

if TYPE_CHECKING:
    from ..client import UpvestClient

__all__ = ["Id", "Resource", "Timestamp", "decode", "idempotency", "list_filters", "optional_uuid"]

T = TypeVar("T")

#: An id argument: a UUID string or :class:`uuid.UUID`.
Id = str | uuid.UUID
#: A timestamp filter: RFC 3339 text or a timezone-aware :class:`datetime.datetime`.
Timestamp = str | datetime


class Resource:
    """Base of the resource namespaces (``client.positions``, ``client.portfolios...``)."""

    def __init__(self, client: UpvestClient) -> None:
        self._client = client

    def __repr__(self) -> str:
        return f"<{type(self).__name__}>"

    async def _call(
        self,
        cls: type[T],
        method: str,
        path: str,
        *,
        json_body: Any = None,
        idempotency_key: object = None,
        options: RequestOptions,
        template: str | None = None,
    ) -> T:
        """Send one call and decode its body into ``cls``; the caller's ``idempotency_key``
        is checked (a UUID) before anything is sent. ``template``: the path's URL template,
        for telemetry (``None``: a path without ids, or one to derive it from)."""
        response = await self._client._request(
            method, path, json_body=json_body, idempotency_key=idempotency(idempotency_key),
            template=template, **options,
        )
        return decode(response, cls)


def decode(response: RawResponse, cls: type[T]) -> T:
    """Decode a 2xx JSON body into ``cls``; :class:`ResponseValidationError` when it is not JSON
    or does not match the model (naming the field and the request id)."""
    document: Any = parse_json(response.body, what=f"{response.method} {response.path}",
                               request_id=response.request_id)
    return structure(document, cls, request_id=response.request_id)


def idempotency(key: object) -> str | None:
    """The caller's ``idempotency_key``: ``None`` (one is generated per call) or a UUID."""
    return None if key is None else check_uuid("idempotency_key", key)


def optional_uuid(field: str, value: object) -> str | None:
    """``None`` stays ``None``; anything else must be a UUID (:func:`check_uuid`)."""
    return None if value is None else check_uuid(field, value)


def list_filters(
    *,
    sort: str | None,
    sort_values: tuple[str, ...],
    order: str | None,
    start_date: object,
    end_date: object,
    extra: Mapping[str, str | None] | None = None,
) -> dict[str, str | int]:
    """Query parameters common to E1, E5 and E9 (S4), checked before sending.

    ``sort``: the one value the reference allows per endpoint; ``order``: ``ASC`` only (the query
    enum of S4; ``meta.order`` may say ``DESC``, Q9); ``start_date`` / ``end_date``: RFC 3339
    (the reference gives no format and does not say which timestamp they filter, Q17).
    """
    params: dict[str, str | int] = {}
    if sort is not None:
        params["sort"] = check_choice("sort", sort, sort_values)
    if order is not None:
        params["order"] = check_choice("order", order, ("ASC",))
    if start_date is not None:
        params["start_date"] = check_timestamp("start_date", start_date)
    if end_date is not None:
        params["end_date"] = check_timestamp("end_date", end_date)
    for name, value in (extra or {}).items():
        if value is not None:
            params[name] = value
    return params
