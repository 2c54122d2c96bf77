"""``client.webhooks``: the JWKS from ``GET /auth/verify_keys`` (scope ``webhooks:read``),
cached, refreshed once on an unknown key id (single-flight, rate-limited), and ``unwrap``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from support.keys import p521_key
from support.webhooks_api import StubAPI
from support.webhooks_signer import KEY_ID, batch, event, jwks, position, sign

from upvest_async import (
    Position,
    ResponseValidationError,
    UpvestClient,
    WebhookKeys,
    WebhookVerificationError,
)
from upvest_async.scopes import required_scope

KEY = p521_key()
BODY = batch(event("POSITION.UPDATED", position()))


@pytest.fixture
async def api() -> AsyncIterator[StubAPI]:
    async with StubAPI(jwks((KEY.public_key(), KEY_ID))) as running:
        yield running


@pytest.fixture
async def client(api: StubAPI) -> AsyncIterator[UpvestClient]:
    async with UpvestClient(**api.client_settings()) as opened:
        yield opened


def signed(key: ec.EllipticCurvePrivateKey = KEY, key_id: str = KEY_ID) -> dict[str, str]:
    return sign(BODY, key=key, key_id=key_id, created=int(time.time()))


def test_scope_of_verify_keys() -> None:
    assert required_scope("GET", "/auth/verify_keys") == "webhooks:read"


async def test_verify_keys_fetches_once_and_caches(api: StubAPI, client: UpvestClient) -> None:
    keys = await client.webhooks.verify_keys()
    assert isinstance(keys, WebhookKeys) and keys.key_ids == [KEY_ID]
    assert await client.webhooks.verify_keys() is keys
    assert api.key_fetches == 1 and api.scopes == ["webhooks:read"]
    await client.webhooks.verify_keys(refresh=True)
    assert api.key_fetches == 2


async def test_unwrap_verifies_and_types(api: StubAPI, client: UpvestClient) -> None:
    events = await client.webhooks.unwrap(BODY, signed(), method="POST", path="/hooks")
    assert isinstance(events[0].object, Position)
    with pytest.raises(WebhookVerificationError) as caught:
        await client.webhooks.unwrap(BODY, signed(), path="/other")
    assert caught.value.reason == "bad-signature"


async def test_key_rotation_refreshes_once(api: StubAPI, client: UpvestClient) -> None:
    await client.webhooks.unwrap(BODY, signed(), path="/hooks")
    new = ec.generate_private_key(ec.SECP521R1())
    api.jwks = jwks((KEY.public_key(), KEY_ID), (new.public_key(), "rotated"))
    events = await client.webhooks.unwrap(BODY, signed(new, "rotated"), path="/hooks")
    assert len(events) == 1 and api.key_fetches == 2


async def test_random_key_ids_cannot_make_it_fetch_per_request(
    api: StubAPI, client: UpvestClient
) -> None:
    await client.webhooks.verify_keys()
    other = ec.generate_private_key(ec.SECP521R1())

    async def attempt(i: int) -> str:
        try:
            await client.webhooks.unwrap(BODY, signed(other, f"random-{i}"), path="/hooks")
        except WebhookVerificationError as exc:
            return exc.reason
        return "ok"

    reasons = await asyncio.gather(*(attempt(i) for i in range(30)))
    reasons += [await attempt(i) for i in range(30, 40)]
    assert set(reasons) == {"unknown-key"}
    assert api.key_fetches == 2  # the first fetch, and one shared refresh


async def test_concurrent_first_use_is_single_flight(api: StubAPI, client: UpvestClient) -> None:
    results = await asyncio.gather(
        *(client.webhooks.unwrap(BODY, signed(), path="/hooks") for _ in range(10))
    )
    assert all(len(events) == 1 for events in results) and api.key_fetches == 1


async def test_unavailable_keys_are_a_transient_verification_error(
    api: StubAPI, client: UpvestClient
) -> None:
    api.status = 500
    with pytest.raises(WebhookVerificationError) as caught:
        await client.with_options(max_retries=0).webhooks.unwrap(BODY, signed(), path="/hooks")
    assert caught.value.reason == "keys-unavailable" and caught.value.transient
    # Rate-limited: the next request does not fetch again at once.
    fetches = api.key_fetches
    with pytest.raises(WebhookVerificationError):
        await client.webhooks.unwrap(BODY, signed(), path="/hooks")
    assert api.key_fetches == fetches


async def test_a_body_that_is_no_jwks(api: StubAPI, client: UpvestClient) -> None:
    api.jwks = {"keys": [{"kid": "x", "kty": "EC", "crv": "P-256"}]}
    with pytest.raises(ResponseValidationError):
        await client.webhooks.verify_keys()
    with pytest.raises(WebhookVerificationError) as caught:
        await client.webhooks.unwrap(BODY, signed(), path="/hooks")
    assert caught.value.reason == "keys-unavailable"


async def test_with_options_view_shares_keys_verifier_and_replay_cache(
    api: StubAPI, client: UpvestClient
) -> None:
    view = client.with_options(timeout=5.0)
    assert view.webhooks is not client.webhooks and view.webhooks._client is view
    assert view.webhooks.keys is client.webhooks.keys
    assert view.webhooks.verifier is client.webhooks.verifier
    headers = signed()
    assert len(await view.webhooks.unwrap(BODY, headers, path="/hooks")) == 1
    with pytest.raises(WebhookVerificationError) as caught:  # replayed through the original
        await client.webhooks.unwrap(BODY, headers, path="/hooks")
    assert caught.value.reason == "replayed" and api.key_fetches == 1
