"""Parsing a verified webhook body ``{"payload": [event, ...]}`` into :class:`WebhookEvent`.

Source: ``docs/guides/api-readings.md``, W2 (delivery) and W3 (event types). Known types get
typed objects through the package converter (unknown fields, like ``available_for_instruction``
or ``settled_quantity`` of a position, are ignored); other types keep their object as parsed
JSON. Numbers with a fraction parse as :class:`~decimal.Decimal`, never ``float``.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from ..converter import structure
from ..errors import ResponseValidationError
from ..json_body import NotJSONError, parse_json_exact
from ..models import PortfoliosAllocation, PortfoliosOrder, Position
from ..models.webhooks import RebalancingExecutionOrder, WebhookEvent, WebhookEventType
from .errors import WebhookPayloadError

__all__ = ["MAX_BODY_DEPTH", "MAX_EVENTS", "dumps_json", "object_type", "parse_batch"]

#: A batch with more events than this is refused.
MAX_EVENTS = 10_000

#: The deepest nesting of arrays and objects in a webhook body (the batch object is level 1,
#: ``payload`` 2, an event 3, its ``object`` 4); a body nested deeper is refused. Upvest's
#: documented events nest fewer than 10 levels. 64 keeps every recursive walk of an event
#: (:func:`dumps_json`, the typed conversion, ``repr``, ``json.dumps`` or ``copy.deepcopy`` in
#: a handler) far from Python's recursion limit (1000 frames): what the parser accepts, the
#: code after it handles.
MAX_BODY_DEPTH = 64

_BY_PREFIX: tuple[tuple[str, type[Any]], ...] = (
    ("PORTFOLIO_ORDER.", PortfoliosOrder),
    ("PORTFOLIO_ALLOCATION.", PortfoliosAllocation),
    ("REBALANCING_EXECUTION_ORDER.", RebalancingExecutionOrder),
)


def object_type(event_type: str) -> type[Any] | None:
    """The model of an event type's ``object``; ``None`` for a type kept as parsed JSON."""
    if event_type == "POSITION.UPDATED":
        return Position
    for prefix, model in _BY_PREFIX:
        if event_type.startswith(prefix):
            return model
    return None


def _structure(data: Any, cls: type[Any], path: str) -> Any:
    try:
        return structure(data, cls)
    except ResponseValidationError as exc:
        where = exc.path[1:] if exc.path.startswith("$") else ""
        raise WebhookPayloadError(f"{cls.__name__}: does not match", path=path + where) from None


def _field(value: Any, cls: type[Any], path: str) -> Any:
    if not isinstance(value, str):
        raise WebhookPayloadError("must be a string", path=path)
    try:
        return structure(value, cls)
    except ResponseValidationError:
        raise WebhookPayloadError(f"must be a {cls.__name__}", path=path) from None


def _event(data: Any, path: str) -> WebhookEvent:
    if not isinstance(data, dict):
        raise WebhookPayloadError("an event is an object", path=path)
    kind = data.get("type")
    if not isinstance(kind, str) or not kind:
        raise WebhookPayloadError("type must be a non-empty string", path=path + ".type")
    if "object" not in data:
        raise WebhookPayloadError("object is required", path=path + ".object")
    event_id = _field(data.get("id"), uuid.UUID, path + ".id")
    created_at = _field(data.get("created_at"), datetime, path + ".created_at")
    webhook_id = _field(data.get("webhook_id"), uuid.UUID, path + ".webhook_id")
    model = object_type(kind)
    raw_object = data["object"]
    obj = raw_object if model is None else _structure(raw_object, model, path + ".object")
    return WebhookEvent(
        id=event_id, type=WebhookEventType(kind), created_at=created_at,
        webhook_id=webhook_id, object=obj, raw=data,
    )


def parse_batch(body: bytes) -> list[WebhookEvent]:
    """Parse a webhook body into its events, in order.

    Raises :class:`~upvest_async.webhooks.WebhookPayloadError` when the body is not UTF-8 JSON
    (:func:`~upvest_async.json_body.parse_json_exact`) nested at most :data:`MAX_BODY_DEPTH`
    levels, not ``{"payload": [...]}`` (at most :data:`MAX_EVENTS` events), or an event lacks
    a valid ``id`` / ``created_at`` / ``webhook_id`` / ``type`` / ``object``, or a known
    type's object does not match its model (the error names the path, e.g.
    ``$.payload[0].object.quantity``).
    """
    try:
        document = parse_json_exact(body, max_depth=MAX_BODY_DEPTH)
    except NotJSONError as exc:
        raise WebhookPayloadError(f"not UTF-8 JSON ({exc.reason})") from None
    payload = document.get("payload") if isinstance(document, dict) else None
    if not isinstance(payload, list):
        raise WebhookPayloadError('a batch is an object with a "payload" list')
    if len(payload) > MAX_EVENTS:
        raise WebhookPayloadError(f"more than {MAX_EVENTS} events", path="$.payload")
    return [_event(item, f"$.payload[{index}]") for index, item in enumerate(payload)]


# (json, not orjson: what parse_json_exact read may hold lone surrogates and Decimals,
# which orjson cannot encode)
def dumps_json(value: Any) -> str:
    """Serialize parsed JSON (as :func:`parse_batch` makes it) back to compact JSON text,
    writing :class:`~decimal.Decimal` numbers as the digits received (never via ``float``)."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        items = (f"{json.dumps(str(k))}:{dumps_json(v)}" for k, v in value.items())
        return "{" + ",".join(items) + "}"
    if isinstance(value, list):
        return "[" + ",".join(dumps_json(item) for item in value) + "]"
    return json.dumps(value, ensure_ascii=False)
