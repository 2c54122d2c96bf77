"""HTTP endpoints of the sandbox's webhook side: ``GET /auth/verify_keys`` (the JWKS) and the
subscriptions ``POST/GET /webhooks``, ``GET/PATCH/DELETE /webhooks/{webhook_id}``.

Scopes (the sandbox's own table, ``sandbox/scopes.py``, checked by its auth middleware):
``webhooks:read`` for the GETs (``webhooks:admin`` also satisfies it), ``webhooks:admin``
otherwise. Bodies: ``title`` (string, 1 to 256 characters), ``url`` (loopback only:
:func:`~.subscriptions.check_url`), ``type`` (array of categories or ``ALL``), ``enabled``
(boolean, default true), ``config`` (``delay`` duration string, at least ``"1s"``, default
``"1s"``; ``max_package_size`` bytes, 1024 to 10485760, default 65536). POST requires
``title``, ``url`` and ``type``; PATCH takes any of them. A malformed body is a 400, a URL off
loopback or a delay below 1 s a 422, an unknown id a 404; DELETE answers 204. The list takes
``offset``/``limit`` and is sorted by ``created_at``.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ..bodies import ObjectReader, canonical_uuid, read_json
from ..context import STATE_KEY
from ..listing import list_response, paging
from ..problems import Problem, json_response
from ..scopes import VERIFY_KEYS_PATH
from .engine import WebhookEngine
from .subscriptions import (
    DEFAULT_MAX_PACKAGE_SIZE,
    Subscription,
    check_types,
    check_url,
    parse_delay,
)

__all__ = ["add_webhook_routes"]

_FIELDS = ("title", "url", "type", "enabled", "config")
_MIN_PACKAGE, _MAX_PACKAGE = 1024, 10 * 1024 * 1024


def _engine(request: web.Request) -> WebhookEngine:
    engine = request.app[STATE_KEY].webhooks
    if engine is None:
        raise Problem(404, "this sandbox has no webhooks")
    return engine


def _subscription(request: web.Request) -> tuple[WebhookEngine, Subscription]:
    engine = _engine(request)
    webhook_id = canonical_uuid(request.match_info["webhook_id"])
    subscription = engine.subscriptions.get(webhook_id or "")
    if subscription is None:
        raise Problem(404, "no such webhook subscription")
    return engine, subscription


def _unprocessable(error: ValueError) -> Problem:
    return Problem(422, str(error))


def _read(body: Any, *, creating: bool) -> dict[str, Any]:
    """The fields given in ``body``, checked; 400 for syntax, 422 for refused values."""
    reader = ObjectReader(body, "", _FIELDS)
    fields: dict[str, Any] = {}
    if creating or reader.has("title"):
        title = reader.text("title")
        if not 1 <= len(title) <= 256:
            raise Problem(400, "title: must be 1 to 256 characters")
        fields["title"] = title
    if creating or reader.has("url"):
        try:
            fields["url"] = check_url(reader.text("url"))
        except ValueError as error:
            raise _unprocessable(error) from None
    if creating or reader.has("type"):
        if not reader.has("type"):
            raise Problem(400, "type: is required")
        try:
            fields["type"] = check_types(body["type"])
        except ValueError as error:
            raise Problem(400, str(error)) from None
    if reader.has("enabled"):
        fields["enabled"] = reader.boolean("enabled", default=True)
    if reader.has("config"):
        config = ObjectReader(body["config"], "config", ("delay", "max_package_size"))
        if config.has("delay"):
            delay = config.text("delay")
            try:
                fields["delay_seconds"] = parse_delay(delay)
            except ValueError as error:
                raise _unprocessable(error) from None
            fields["delay"] = delay
        if config.has("max_package_size"):
            size = body["config"]["max_package_size"]
            if isinstance(size, bool) or not isinstance(size, int):
                raise Problem(400, "config.max_package_size: must be an integer (bytes)")
            if not _MIN_PACKAGE <= size <= _MAX_PACKAGE:
                raise Problem(
                    422, f"config.max_package_size: must be {_MIN_PACKAGE} to {_MAX_PACKAGE}"
                )
            fields["max_package_size"] = size
    return fields


async def verify_keys(request: web.Request) -> web.Response:
    """``GET /auth/verify_keys``: the JWKS of the keys webhooks are signed with (newest
    first)."""
    return json_response(_engine(request).keys.jwks())


async def create_webhook(request: web.Request) -> web.Response:
    """``POST /webhooks``: create a subscription; answers it."""
    engine = _engine(request)
    fields = _read(await read_json(request), creating=True)
    subscription = engine.subscribe(
        fields["url"], title=fields["title"], types=fields["type"],
        enabled=fields.get("enabled", True), delay=fields.get("delay", "1s"),
        delay_seconds=fields.get("delay_seconds", 1.0),
        max_package_size=fields.get("max_package_size", DEFAULT_MAX_PACKAGE_SIZE),
    )
    return json_response(subscription.to_json())


async def list_webhooks(request: web.Request) -> web.Response:
    """``GET /webhooks``: the subscriptions, ``meta`` + ``data``, by ``created_at``."""
    offset, limit = paging(request)
    items = sorted(_engine(request).subscriptions.values(), key=lambda s: (s.created_at, s.id))
    page = [s.to_json() for s in items[offset:offset + limit]]
    return list_response(page, len(items), offset, limit, "created_at")


async def retrieve_webhook(request: web.Request) -> web.Response:
    """``GET /webhooks/{webhook_id}``."""
    return json_response(_subscription(request)[1].to_json())


async def update_webhook(request: web.Request) -> web.Response:
    """``PATCH /webhooks/{webhook_id}``: set the fields given; answers the subscription."""
    engine, subscription = _subscription(request)
    for name, value in _read(await read_json(request), creating=False).items():
        setattr(subscription, name, value)
    engine.changed(subscription)
    return json_response(subscription.to_json())


async def delete_webhook(request: web.Request) -> web.Response:
    """``DELETE /webhooks/{webhook_id}``: 204; its undelivered events are dropped."""
    engine, subscription = _subscription(request)
    engine.unsubscribe(subscription.id)
    return web.Response(status=204)


def add_webhook_routes(app: web.Application) -> None:
    """Register the JWKS and subscription endpoints on ``app``."""
    router = app.router
    router.add_get(VERIFY_KEYS_PATH, verify_keys)
    router.add_post("/webhooks", create_webhook)
    router.add_get("/webhooks", list_webhooks)
    router.add_get("/webhooks/{webhook_id}", retrieve_webhook)
    router.add_patch("/webhooks/{webhook_id}", update_webhook)
    router.add_delete("/webhooks/{webhook_id}", delete_webhook)
