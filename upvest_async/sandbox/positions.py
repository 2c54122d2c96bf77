"""Positions: ``GET /accounts/{account_id}/positions`` (E16) and
``GET /accounts/{account_id}/positions/{instrument_id}`` (E17)."""

from __future__ import annotations

from aiohttp import web

from .context import STATE_KEY
from .listing import list_response, paging
from .problems import Problem, json_response

__all__ = ["list_positions", "retrieve_position"]


def _account(request: web.Request) -> str:
    tenant = request.app[STATE_KEY].tenant
    account = request.match_info["account_id"]
    if not tenant.has_account(account):
        raise Problem(404, "no such account")
    return account


async def list_positions(request: web.Request) -> web.Response:
    """``GET /accounts/{account_id}/positions`` (E16)."""
    account = _account(request)
    offset, limit = paging(request)
    positions = request.app[STATE_KEY].tenant.positions(account)
    return list_response(positions[offset:offset + limit], len(positions), offset, limit, "id")


async def retrieve_position(request: web.Request) -> web.Response:
    """``GET /accounts/{account_id}/positions/{instrument_id}`` (E17)."""
    account = _account(request)
    raw = request.match_info["instrument_id"].removeprefix("urn:")
    kind, _, value = raw.partition(":")
    if kind not in {"isin", "uuid"} or not value:
        raise Problem(400, "instrument_id must be isin:<ISIN> or uuid:<UUID>")
    for position in request.app[STATE_KEY].tenant.positions(account):
        instrument = position["instrument"]
        if (kind == "isin" and instrument.get("isin") == value) or (
            kind == "uuid" and instrument["uuid"] == value.lower()
        ):
            return json_response(position)
    raise Problem(404, "the account holds no position in this instrument")
