"""Decoding one list response: the ``data`` + ``meta`` envelope (S4, S5) into a typed page."""

from __future__ import annotations

from typing import Any, TypeVar

from ..converter import converter, structure
from ..errors import ResponseValidationError
from ..json_body import parse_json
from ..models import Meta, Page
from ..models.positions import Position, PositionRecord
from .wire import decode_positions_page

__all__ = ["is_int", "parse_envelope", "parse_page", "structure_items"]

T = TypeVar("T")

def parse_page(body: bytes, item_type: type[T], *, request_id: str | None = None) -> Page[T]:
    """Decode a list response body into a :class:`Page` of ``item_type``.

    Raises :class:`~upvest_async.errors.ResponseValidationError` when the body is not JSON,
    lacks ``data``/``meta``, or an item does not match ``item_type`` (naming the first one,
    ``$[3].quantity``).
    """
    meta, data = parse_envelope(body, request_id, item_type)
    return Page(items=structure_items(data, item_type, request_id), meta=meta)


def parse_envelope(body: bytes, request_id: str | None,
                   item_type: type[Any] | None = None) -> tuple[Meta, list[Any]]:
    """The typed ``meta`` and the raw ``data`` items of a list response body: decoded JSON,
    or for ``item_type`` :class:`Position` the :class:`~.wire.WirePosition`\\ s of a page of
    exactly the seed's shape (:func:`~.wire.decode_positions_page`; the same values, the same
    errors, decoded faster), which :func:`structure_items` accepts alike."""
    if item_type is Position:
        wire = decode_positions_page(body)
        if wire is not None:
            raw_meta, items = wire
            meta = _flat_meta(raw_meta, request_id)
            if meta is not None:
                return meta, items
    document: Any = parse_json(body, what="list page", request_id=request_id)
    if not isinstance(document, dict) or not isinstance(document.get("data"), list):
        raise ResponseValidationError("expected an object with a data array", path="$.data",
                                      request_id=request_id)
    return structure(document.get("meta"), Meta, request_id=request_id), document["data"]


_SCALARS = frozenset({str, int, float, bool, type(None)})


def _flat_meta(raw: bytes, request_id: str | None) -> Meta | None:
    """The ``meta`` of a page msgspec decoded, when it is a valid ``Meta`` object of scalars
    only (as every ``meta`` of the seeds is); else ``None``, and the whole body takes the JSON
    path, so that an error is always that path's own (and no nesting reaches msgspec but the
    page's four levels)."""
    try:
        value = parse_json(raw, what="list page", request_id=request_id)
        if type(value) is not dict or not _SCALARS.issuperset(map(type, value.values())):
            return None
        meta: Meta = structure(value, Meta, request_id=request_id)
    except ResponseValidationError:
        return None
    return meta


def structure_items(data: list[Any], item_type: type[T], request_id: str | None) -> list[T]:
    """``data`` as ``item_type`` items; :class:`PositionRecord` items are the raw objects,
    validated as ``Position`` (:func:`upvest_async.records.position_records`)."""
    if item_type is PositionRecord:
        from ..records import position_records

        records: list[T] = position_records(data, request_id=request_id)  # type: ignore[assignment]
        return records
    if item_type is Position:
        from .positions import structure_positions

        positions: list[T] = structure_positions(data, request_id)  # type: ignore[assignment]
        return positions
    hook = converter.get_structure_hook(item_type)
    try:
        return [hook(item, item_type) for item in data]
    except Exception:
        # The whole list again through the usual path, for its error naming the first item.
        items: list[T] = structure(data, list[item_type], request_id=request_id)  # type: ignore[valid-type]
        return items


def is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)

