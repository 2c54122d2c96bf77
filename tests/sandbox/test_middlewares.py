"""The sandbox's auth middleware enforces its own scope table over HTTP: for every endpoint and
every scope, a token of that one scope is refused 403 exactly when the table does not list it.
Requests are signed by Upvest's reference signer (``upvest-investment-api``), not the client."""

from __future__ import annotations

import re
import uuid
from urllib.parse import urlencode

import aiohttp
from upvest_investment_api import UpvestHttpMessageSigner
from yarl import URL

from upvest_async.sandbox import Sandbox
from upvest_async.sandbox.scopes import ALL_SCOPES, ENDPOINT_SCOPES, TOKEN_PATH

FORM_TYPE = "application/x-www-form-urlencoded"


async def _send(session: aiohttp.ClientSession, signer: UpvestHttpMessageSigner, base: str,
                method: str, path: str, *, token: str | None = None,
                form: bytes = b"") -> tuple[int, object]:
    given = {"content-type": FORM_TYPE} if form else {}
    if token is not None:
        given["authorization"] = f"Bearer {token}"
    _, _, added, body, _ = signer.sign_request(
        method=method, url=base + path, headers_in=given, body=form or None)
    headers = given | {name: str(value) for name, value in added.items()}
    async with session.request(method, URL(base + path, encoded=True), headers=headers,
                               data=body or None) as response:
        return response.status, await response.json(content_type=None)


async def test_every_endpoint_opens_to_exactly_its_scopes() -> None:
    async with Sandbox(accounts=1, positions_per_account=2, seed=3) as sandbox, \
            aiohttp.ClientSession() as session:
        credentials = sandbox.credentials
        signer = UpvestHttpMessageSigner(
            private_key_pem=credentials.private_key_pem().encode(),
            private_key_passphrase=credentials.passphrase.encode(),
            key_id=credentials.key_id, client_id=credentials.client_id,
        )
        tokens: dict[str, str] = {}
        for scope in sorted(ALL_SCOPES):
            form = urlencode({"client_id": credentials.client_id,
                              "client_secret": credentials.client_secret,
                              "grant_type": "client_credentials", "scope": scope}).encode()
            status, answer = await _send(session, signer, sandbox.base_url, "POST", TOKEN_PATH,
                                         form=form)
            assert status == 200 and isinstance(answer, dict), answer
            tokens[scope] = answer["access_token"]
        wrong = []
        for (method, template), accepted in sorted(ENDPOINT_SCOPES.items()):
            path = re.sub(r"\{[a-z_]+\}", lambda _: str(uuid.uuid4()), template)
            for scope, token in tokens.items():
                status, _ = await _send(session, signer, sandbox.base_url, method, path,
                                        token=token)
                if (status == 403) != (scope not in accepted):
                    wrong.append(f"{method} {template} with {scope}: {status}")
        assert wrong == []
        assert sandbox.counters.forbidden == sum(
            len(ALL_SCOPES - accepted) for accepted in ENDPOINT_SCOPES.values())
        assert sandbox.counters.bad_signatures == 0
