"""Which OAuth2 scopes open which endpoint of the sandbox, and the sandbox's own fixed paths.

The sandbox's own reading of Upvest's API reference, independent of the client's (the tests
compare the two for every endpoint, so a misreading on either side shows). Each operation of the
reference names its "Required scopes" under the ``oauth-client-credentials`` security scheme:

- Portfolios (https://docs.upvest.co/api/portfolios): the operations that only read (the GETs)
  list two scopes, ``portfolios:read`` and ``portfolios:admin`` (the rendered page glues them
  into ``portfolios:readportfolios:admin``); the operations that write (POST, PUT, PATCH,
  DELETE) list ``portfolios:admin`` alone.
- Positions (https://docs.upvest.co/api/Positions): ``positions:read`` for both operations.
- Webhook subscriptions and their signing keys
  (https://docs.upvest.co/api/Webhook-Subscriptions): ``webhooks:read`` or ``webhooks:admin``
  to read (the JWKS at ``GET /auth/verify_keys`` and the subscriptions), ``webhooks:admin`` to
  create, change or delete a subscription.

A list of two scopes is read as "either one is enough": a token granted any scope of an
endpoint's set may call it (so an admin token may also read). The token endpoint
(https://docs.upvest.co/api/access-tokens) needs no access token and so no scope.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from aiohttp import web

__all__ = [
    "ALL_SCOPES",
    "ENDPOINT_SCOPES",
    "TOKEN_PATH",
    "VERIFY_KEYS_PATH",
    "accepted_scopes",
    "check_every_route_has_scopes",
]

#: OAuth2 client credentials grant (https://docs.upvest.co/api/access-tokens).
TOKEN_PATH: Final = "/auth/token"
#: The webhook signing keys as a JWKS (https://docs.upvest.co/api/Webhook-Subscriptions).
VERIFY_KEYS_PATH: Final = "/auth/verify_keys"

_READ_PORTFOLIOS = frozenset({"portfolios:read", "portfolios:admin"})
_WRITE_PORTFOLIOS = frozenset({"portfolios:admin"})
_READ_POSITIONS = frozenset({"positions:read"})
_READ_WEBHOOKS = frozenset({"webhooks:read", "webhooks:admin"})
_WRITE_WEBHOOKS = frozenset({"webhooks:admin"})

#: ``(method, route template)`` to the scopes of which a token needs one, for every endpoint
#: the sandbox serves behind an access token.
ENDPOINT_SCOPES: Final[Mapping[tuple[str, str], frozenset[str]]] = {
    ("GET", "/portfolios/allocations"): _READ_PORTFOLIOS,
    ("POST", "/portfolios/allocations"): _WRITE_PORTFOLIOS,
    ("GET", "/portfolios/allocations/{allocation_id}"): _READ_PORTFOLIOS,
    ("PUT", "/portfolios/allocations/{allocation_id}"): _WRITE_PORTFOLIOS,
    ("GET", "/portfolios/configurations"): _READ_PORTFOLIOS,
    ("POST", "/portfolios/configurations"): _WRITE_PORTFOLIOS,
    ("GET", "/portfolios/configurations/{account_id}"): _READ_PORTFOLIOS,
    ("PATCH", "/portfolios/configurations/{account_id}"): _WRITE_PORTFOLIOS,
    ("GET", "/portfolios/orders"): _READ_PORTFOLIOS,
    ("POST", "/portfolios/orders"): _WRITE_PORTFOLIOS,
    ("GET", "/portfolios/orders/{portfolio_order_id}"): _READ_PORTFOLIOS,
    ("DELETE", "/portfolios/orders/{portfolio_order_id}"): _WRITE_PORTFOLIOS,
    ("POST", "/portfolios/{account_id}/liquidation_request"): _WRITE_PORTFOLIOS,
    ("POST", "/portfolios/rebalancings/executions"): _WRITE_PORTFOLIOS,
    ("GET", "/portfolios/rebalancings/executions/{execution_id}"): _READ_PORTFOLIOS,
    ("GET", "/accounts/{account_id}/positions"): _READ_POSITIONS,
    ("GET", "/accounts/{account_id}/positions/{instrument_id}"): _READ_POSITIONS,
    ("GET", VERIFY_KEYS_PATH): _READ_WEBHOOKS,
    ("GET", "/webhooks"): _READ_WEBHOOKS,
    ("POST", "/webhooks"): _WRITE_WEBHOOKS,
    ("GET", "/webhooks/{webhook_id}"): _READ_WEBHOOKS,
    ("PATCH", "/webhooks/{webhook_id}"): _WRITE_WEBHOOKS,
    ("DELETE", "/webhooks/{webhook_id}"): _WRITE_WEBHOOKS,
}

#: Every scope some endpoint accepts: what the sandbox's registered client may ask for.
ALL_SCOPES: Final = frozenset().union(*ENDPOINT_SCOPES.values())


def accepted_scopes(method: str, route: str) -> frozenset[str]:
    """The scopes that open ``method`` on the route template ``route`` (a token needs one of
    them); ``HEAD`` is read as ``GET``. An endpoint missing from :data:`ENDPOINT_SCOPES` gets
    the empty set, so no token opens it (fail closed)."""
    method = method.upper()
    return ENDPOINT_SCOPES.get(("GET" if method == "HEAD" else method, route), frozenset())


def check_every_route_has_scopes(app: web.Application) -> None:
    """Raise :class:`RuntimeError` naming the routes of ``app`` (but the token endpoint) that
    :data:`ENDPOINT_SCOPES` does not list, so a new endpoint cannot go unguarded."""
    missing = sorted(
        f"{route.method} {route.resource.canonical}"
        for route in app.router.routes()
        if route.resource is not None
        and route.resource.canonical != TOKEN_PATH
        and route.method != "HEAD"
        and (route.method, route.resource.canonical) not in ENDPOINT_SCOPES
    )
    if missing:
        raise RuntimeError("routes without scopes: " + ", ".join(missing))
