"""Raw requests to a running :class:`Sandbox`, built by hand so every byte on the wire is what
a test says: signed headers (``upvest_async.signing``), the token form, an allocation's items."""

from __future__ import annotations

from urllib.parse import urlencode

from upvest_async.sandbox import Sandbox
from upvest_async.signing import sign_request

FORM_TYPE = "application/x-www-form-urlencoded"
#: The items of a valid allocation (three instruments, weights adding up to 1).
ITEMS = [
    {"instrument_id": "IE00B0M62Q58", "instrument_id_type": "ISIN", "weight": "0.5"},
    {"instrument_id": "US0378331005", "weight": "0.25"},
    {"instrument_id": "c2721bc0-9f65-474b-a846-b237eb17fb05", "instrument_id_type": "UPVEST",
     "weight": "0.25"},
]


def signed(sandbox: Sandbox, method: str, path: str, *, query: str = "", body: bytes = b"",
           extra: dict[str, str] | None = None, created: int | None = None) -> dict[str, str]:
    headers = {
        "accept": "application/json",
        "upvest-api-version": "1",
        "upvest-client-id": sandbox.credentials.client_id,
        **(extra or {}),
    }
    if body:
        headers["content-length"] = str(len(body))
    headers |= sign_request(
        method=method, path=path, query=query, headers=headers, body=body,
        private_key=sandbox.credentials.private_key, key_id=sandbox.credentials.key_id,
        created=created,
    )
    return headers


def token_form(sandbox: Sandbox, scope: str = "positions:read") -> bytes:
    return urlencode({
        "client_id": sandbox.credentials.client_id,
        "client_secret": sandbox.credentials.client_secret,
        "grant_type": "client_credentials",
        "scope": scope,
    }).encode()
