"""Client construction: from_env variants, early key errors, no secrets in reprs."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from support.clients import client_for
from support.keys import PASSPHRASE, p521_key, pem

from upvest_async import ConfigurationError, SigningKeyError, UpvestClient
from upvest_async.sandbox import Sandbox

CLIENT_ID = "ebabcf4d-61c3-4942-875c-e265a7c2d062"
SECRET = "s3cr3t-client-secret-value"


def env(**extra: str) -> dict[str, str]:
    return {
        "UPVEST_API_CLIENT_ID": CLIENT_ID,
        "UPVEST_API_CLIENT_SECRET": SECRET,
        "UPVEST_API_KEY_ID": "key-1",
        "UPVEST_API_HTTP_SIGN_PRIVATE_KEY_PASSPHRASE": PASSPHRASE,
        **extra,
    }


def key_text() -> str:
    return pem(p521_key(), passphrase=PASSPHRASE).decode()


def test_from_env_reads_pem_text_file_and_base64(tmp_path: Path) -> None:
    path = tmp_path / "key.pem"
    path.write_text(key_text())
    variants = [
        {"UPVEST_API_HTTP_SIGN_PRIVATE_KEY": key_text()},
        {"UPVEST_API_HTTP_SIGN_PRIVATE_KEY": key_text().replace("\n", "\\n")},
        {"UPVEST_API_HTTP_SIGN_PRIVATE_KEY_FILENAME": str(path)},
        {"UPVEST_API_HTTP_SIGN_PRIVATE_KEY_BASE64": base64.b64encode(key_text().encode()).decode()},
    ]
    for variant in variants:
        client = UpvestClient.from_env(env(**variant))
        assert client._private_key.private_numbers() == p521_key().private_numbers()
        assert str(client.base_url) == "https://sandbox.upvest.co"


def test_from_env_overrides_and_scopes() -> None:
    client = UpvestClient.from_env(
        env(UPVEST_API_HTTP_SIGN_PRIVATE_KEY=key_text(),
            UPVEST_API_SCOPES="positions:read, portfolios:read",
            UPVEST_API_BASE_URL="https://api.upvest.co"),
        max_retries=10, timeout=30.0,
    )
    assert client.max_retries == 10 and client.timeout == 30.0
    assert client.scopes == ("positions:read", "portfolios:read")
    assert str(client.base_url) == "https://api.upvest.co"


def test_from_env_names_missing_variables_only() -> None:
    with pytest.raises(ConfigurationError) as caught:
        UpvestClient.from_env({"UPVEST_API_CLIENT_SECRET": SECRET})
    message = str(caught.value)
    assert "UPVEST_API_CLIENT_ID" in message and "UPVEST_API_KEY_ID" in message
    assert SECRET not in message
    with pytest.raises(ConfigurationError, match="HTTP_SIGN_PRIVATE_KEY"):
        UpvestClient.from_env(env())


def test_wrong_passphrase_fails_at_construction() -> None:
    with pytest.raises(SigningKeyError, match="wrong passphrase") as caught:
        UpvestClient.from_env(env(UPVEST_API_HTTP_SIGN_PRIVATE_KEY=key_text(),
                                  UPVEST_API_HTTP_SIGN_PRIVATE_KEY_PASSPHRASE="nope-nope"))
    assert "nope-nope" not in str(caught.value)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"client_id": "not-a-uuid"}, "client_id"),
        ({"client_secret": ""}, "client_secret"),
        ({"base_url": "http://api.upvest.co"}, "https://"),
        ({"base_url": "ftp://x"}, "https://"),
        ({"max_retries": -1}, "max_retries"),
        ({"timeout": 0}, "timeout"),
        ({"scopes": "positions:read"}, "scopes"),
    ],
)
def test_bad_settings_are_configuration_errors(overrides: dict[str, object], message: str) -> None:
    settings: dict[str, object] = {
        "client_id": CLIENT_ID, "client_secret": SECRET, "key_id": "k",
        "private_key": key_text(), "private_key_passphrase": PASSPHRASE,
    }
    with pytest.raises(ConfigurationError, match=message):
        UpvestClient(**{**settings, **overrides})  # type: ignore[arg-type]


async def test_reprs_never_show_secrets(sandbox: Sandbox) -> None:
    async with client_for(sandbox) as client:
        [p async for p in client.positions.list(sandbox.tenant.account_ids[0], max_items=1)]
        token = client._tokens._tokens[0]
        texts = [repr(client), repr(client._tokens), repr(token), repr(sandbox.credentials),
                 repr(client.positions), repr(client.stats)]
    secrets = [sandbox.credentials.client_secret, sandbox.credentials.passphrase, token.value,
               "PRIVATE KEY"]
    for text in texts:
        for secret in secrets:
            assert secret not in text
