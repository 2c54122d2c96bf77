"""The least OAuth2 scope each endpoint needs.

Source: the "Required Scopes" of each endpoint in Upvest's API reference, gathered in the index
of ``docs/guides/api-readings.md`` (endpoints E1 to E17). Reading Q6 of that page:
the GET endpoints of /portfolios print ``portfolios:readportfolios:admin``; the SDK reads this as
"either scope is enough" and asks for the lesser one, ``portfolios:read``. A cached token granted
``portfolios:admin`` is also used for those reads (see :func:`satisfies`).
"""

from __future__ import annotations

__all__ = [
    "PORTFOLIOS_ADMIN",
    "PORTFOLIOS_READ",
    "POSITIONS_READ",
    "TOKEN_PATH",
    "VERIFY_KEYS_PATH",
    "WEBHOOKS_ADMIN",
    "WEBHOOKS_READ",
    "required_scope",
    "satisfies",
]

TOKEN_PATH = "/auth/token"
POSITIONS_READ = "positions:read"
PORTFOLIOS_READ = "portfolios:read"
PORTFOLIOS_ADMIN = "portfolios:admin"
WEBHOOKS_READ = "webhooks:read"
WEBHOOKS_ADMIN = "webhooks:admin"
#: Upvest's webhook verification keys (JWKS), API reference "Webhook Subscriptions".
VERIFY_KEYS_PATH = "/auth/verify_keys"

#: Scopes that also grant another (Q6: the admin scope is accepted where read is).
_IMPLIED: dict[str, frozenset[str]] = {
    PORTFOLIOS_READ: frozenset({PORTFOLIOS_ADMIN}),
    WEBHOOKS_READ: frozenset({WEBHOOKS_ADMIN}),
}


def required_scope(method: str, path: str) -> str | None:
    """Return the least scope for ``method`` on the URL ``path``; ``None`` for the token endpoint.

    ``/accounts/{account_id}/positions...`` (E16, E17): ``positions:read``. ``/portfolios...``
    (E1 to E15): ``portfolios:read`` for GET, ``portfolios:admin`` otherwise.
    ``GET /auth/verify_keys`` (the webhook JWKS): ``webhooks:read`` (``webhooks:admin`` also
    satisfies it). ``/webhooks...`` (subscriptions, reading W4): ``webhooks:read`` for GET,
    ``webhooks:admin`` otherwise. Unknown paths get ``None`` (the configured scopes are used).
    """
    if path == TOKEN_PATH:
        return None
    if path == VERIFY_KEYS_PATH:
        return WEBHOOKS_READ
    if path == "/webhooks" or path.startswith("/webhooks/"):
        return WEBHOOKS_READ if method.upper() in {"GET", "HEAD"} else WEBHOOKS_ADMIN
    if path.startswith("/accounts/") and "/positions" in path:
        return POSITIONS_READ
    if path.startswith("/portfolios"):
        return PORTFOLIOS_READ if method.upper() in {"GET", "HEAD"} else PORTFOLIOS_ADMIN
    return None


def satisfies(granted: frozenset[str], needed: str) -> bool:
    """Whether a token granted ``granted`` scopes may call an endpoint needing ``needed``."""
    return needed in granted or bool(granted & _IMPLIED.get(needed, frozenset()))
