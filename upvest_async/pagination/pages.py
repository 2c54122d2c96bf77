"""Decoding one list response: the ``data`` + ``meta`` envelope (S4, S5) into a typed page."""

from __future__ import annotations

from typing import Any, TypeVar

from ..converter import structure
from ..errors import ResponseValidationError
from ..json_body import parse_json
from ..models import Meta, Page
from ..models.positions import PositionRecord
from ..records import position_records

__all__ = ["is_int", "parse_envelope", "parse_page", "structure_items"]

T = TypeVar("T")

def parse_page(body: bytes, item_type: type[T], *, request_id: str | None = None) -> Page[T]:
    """Decode a list response body into a :class:`Page` of ``item_type``.

    Raises :class:`~upvest_async.errors.ResponseValidationError` when the body is not JSON,
    lacks ``data``/``meta``, or an item does not match ``item_type`` (naming the first one,
    ``$[3].quantity``).
    """
    meta, data = parse_envelope(body, request_id)
    return Page(items=structure_items(data, item_type, request_id), meta=meta)


def parse_envelope(body: bytes, request_id: str | None,
                   item_type: type[Any] | None = None) -> tuple[Meta, list[Any]]:
    """The typed ``meta`` and the decoded (not yet typed) ``data`` items of a list response
    body (``item_type`` is not used: every item type is decoded alike)."""
    document: Any = parse_json(body, what="list page", request_id=request_id)
    if not isinstance(document, dict) or not isinstance(document.get("data"), list):
        raise ResponseValidationError("expected an object with a data array", path="$.data",
                                      request_id=request_id)
    return structure(document.get("meta"), Meta, request_id=request_id), document["data"]


def structure_items(data: list[Any], item_type: type[T], request_id: str | None) -> list[T]:
    """``data`` as ``item_type`` items, through the converter (``list[item_type]``);
    :class:`PositionRecord` items are the decoded objects, validated as ``Position``
    (:func:`upvest_async.records.position_records`)."""
    if item_type is PositionRecord:
        records: list[T] = position_records(data, request_id=request_id)  # type: ignore[assignment]
        return records
    items: list[T] = structure(data, list[item_type], request_id=request_id)  # type: ignore[valid-type]
    return items


def is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
