"""The sandbox's scope table: it guards every route, and it agrees with the client's own reading
(``upvest_async.scopes``) for every endpoint: the scope the client asks for opens the endpoint
in the sandbox, and a token of any single scope opens it on both sides or on neither."""

from __future__ import annotations

import re
import uuid

import pytest
from aiohttp import web

from upvest_async import scopes as client_scopes
from upvest_async.sandbox import Sandbox
from upvest_async.sandbox.scopes import (
    ALL_SCOPES,
    ENDPOINT_SCOPES,
    TOKEN_PATH,
    VERIFY_KEYS_PATH,
    accepted_scopes,
    check_every_route_has_scopes,
)

#: Every scope either side names (the client's constants included).
SCOPES = sorted(ALL_SCOPES | {
    client_scopes.POSITIONS_READ, client_scopes.PORTFOLIOS_READ, client_scopes.PORTFOLIOS_ADMIN,
    client_scopes.WEBHOOKS_READ, client_scopes.WEBHOOKS_ADMIN,
})


def concrete(template: str) -> str:
    """The route template with every ``{name}`` filled by a uuid, as a request path."""
    return re.sub(r"\{[a-z_]+\}", lambda _: str(uuid.uuid4()), template)


def routes(app: web.Application) -> set[tuple[str, str]]:
    return {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None and route.method != "HEAD"
    }


def test_the_table_lists_exactly_the_routes_behind_a_token() -> None:
    served = routes(Sandbox(accounts=1, positions_per_account=1).app)
    assert served - set(ENDPOINT_SCOPES) == {("POST", TOKEN_PATH)}
    assert set(ENDPOINT_SCOPES) <= served
    assert len(ENDPOINT_SCOPES) == 23  # 17 Portfolios and Positions endpoints, JWKS, 5 webhooks


@pytest.mark.parametrize(("method", "template"), sorted(ENDPOINT_SCOPES))
def test_the_client_and_the_sandbox_agree_on_every_endpoint(method: str, template: str) -> None:
    path = concrete(template)
    needed = client_scopes.required_scope(method, path)
    accepted = accepted_scopes(method, template)
    assert needed in accepted  # the token the client asks for opens the endpoint
    for scope in SCOPES:
        assert client_scopes.satisfies(frozenset({scope}), needed) == (scope in accepted), scope


def test_the_fixed_paths_agree_with_the_client() -> None:
    assert (TOKEN_PATH, VERIFY_KEYS_PATH) == (client_scopes.TOKEN_PATH,
                                              client_scopes.VERIFY_KEYS_PATH)
    assert client_scopes.required_scope("POST", TOKEN_PATH) is None


def test_head_reads_as_get_and_an_unknown_endpoint_opens_to_no_scope() -> None:
    assert accepted_scopes("head", "/webhooks") == accepted_scopes("GET", "/webhooks") == {
        "webhooks:read", "webhooks:admin"}
    assert accepted_scopes("PUT", "/webhooks") == frozenset()
    assert accepted_scopes("GET", "/accounts") == frozenset()


def test_a_route_missing_from_the_table_stops_the_app_from_being_built() -> None:
    app = web.Application()

    async def handler(request: web.Request) -> web.Response:
        raise AssertionError  # pragma: no cover

    app.router.add_post(TOKEN_PATH, handler)
    app.router.add_get("/portfolios/allocations", handler)
    check_every_route_has_scopes(app)
    app.router.add_get("/accounts/{account_id}/orders", handler)
    with pytest.raises(RuntimeError, match=r"GET /accounts/\{account_id\}/orders"):
        check_every_route_has_scopes(app)
