"""The pure signing module: known answers, signature base shape, independent verification."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from support.keys import PASSPHRASE, p521_key, pem

from upvest_async import SigningKeyError
from upvest_async.keys import load_signing_key
from upvest_async.signing import content_digest, sign_request

CLIENT_ID = "ebabcf4d-61c3-4942-875c-e265a7c2d062"


@pytest.mark.parametrize(
    ("body", "digest"),
    [
        (b'{"hello": "world"}', "sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrI"
                               "iYllu7BNNyealdVLvRwEmTHWXvJwew==:"),
        (b'{"key": "value"}', "sha-512=:Hd9/AvGZkbjitW1+Ml8Fg1ux1mtcDYe6mLQjDyoowIWa3LM/PmwN2v9O"
                             "+MjtQGrCA3EQWUL54dlgxKHyYbrucw==:"),
    ],
)
def test_content_digest_known_answers(body: bytes, digest: str) -> None:
    assert content_digest(body) == digest


def _verify_independently(headers: dict[str, str], base_lines: list[str]) -> None:
    """Rebuild the base by hand from the expected lines and check the ECDSA signature."""
    params = headers["signature-input"].removeprefix("sig1=")
    base = "\n".join([*base_lines, f'"@signature-params": {params}']).encode()
    signature = base64.b64decode(headers["signature"].removeprefix("sig1=:").removesuffix(":"))
    p521_key().public_key().verify(signature, base, ec.ECDSA(hashes.SHA512()))


def test_post_signature_covers_body_headers_and_verifies() -> None:
    body = b'{"key": "value"}'
    request_headers = {
        "Accept": "application/json",
        "Authorization": "Bearer c2VjcmV0Cg==",
        "Content-Type": "application/json",
        "Content-Length": "16",
        "Idempotency-Key": "f1150421-2e34-42b6-aae9-52ef157065b9",
        "upvest-client-id": CLIENT_ID,
        "User-Agent": "not signed",
        "upvest-api-version": "1",
    }
    added = sign_request(
        method="post", path="/portfolios/allocations", query="", headers=request_headers,
        body=body, private_key=p521_key(), key_id="key-1", created=1_700_000_000,
        nonce="n-1",
    )
    assert added["upvest-signature-version"] == "15"
    assert added["content-digest"] == content_digest(body)
    assert added["signature-input"] == (
        'sig1=("@method" "@path" "accept" "authorization" "content-digest" "content-length" '
        '"content-type" "idempotency-key" "upvest-client-id");keyid="key-1";'
        'created=1700000000;expires=1700000010;nonce="n-1"'
    )
    _verify_independently(added, [
        '"@method": POST',
        '"@path": /portfolios/allocations',
        '"accept": application/json',
        '"authorization": Bearer c2VjcmV0Cg==',
        f'"content-digest": {content_digest(body)}',
        '"content-length": 16',
        '"content-type": application/json',
        '"idempotency-key": f1150421-2e34-42b6-aae9-52ef157065b9',
        f'"upvest-client-id": {CLIENT_ID}',
    ])


def test_query_is_covered_only_when_present() -> None:
    headers = {"accept": "application/json", "upvest-client-id": CLIENT_ID}
    with_query = sign_request(
        method="GET", path="/portfolios/allocations", query="limit=100&offset=200",
        headers=headers, body=b"", private_key=p521_key(), key_id="k", created=1, nonce="a",
    )
    assert '"@query"' in with_query["signature-input"]
    assert "content-digest" not in with_query
    _verify_independently(with_query, [
        '"@method": GET', '"@path": /portfolios/allocations',
        '"@query": ?limit=100&offset=200', '"accept": application/json',
        f'"upvest-client-id": {CLIENT_ID}',
    ])
    without = sign_request(
        method="GET", path="/x", query="", headers=headers, body=b"",
        private_key=p521_key(), key_id="k",
    )
    assert '"@query"' not in without["signature-input"]


def test_every_signature_has_a_fresh_nonce_and_current_created() -> None:
    import time

    nonces = set()
    for _ in range(20):
        added = sign_request(method="GET", path="/x", query="", headers={}, body=b"",
                             private_key=p521_key(), key_id="k")
        params = added["signature-input"]
        nonces.add(params.split('nonce="')[1].split('"')[0])
        created = int(params.split("created=")[1].split(";")[0])
        assert abs(created - time.time()) < 5
    assert len(nonces) == 20


@pytest.mark.parametrize("traditional", [True, False])
@pytest.mark.parametrize("passphrase", [None, PASSPHRASE])
def test_keys_load_from_ec_and_pkcs8_pem(traditional: bool, passphrase: str | None) -> None:
    text = pem(p521_key(), traditional=traditional, passphrase=passphrase)
    loaded = load_signing_key(text.decode(), passphrase)
    assert loaded.private_numbers() == p521_key().private_numbers()


@pytest.mark.parametrize(
    ("key", "passphrase", "message"),
    [
        (pem(p521_key(), passphrase=PASSPHRASE), "wrong", "wrong passphrase"),
        (pem(p521_key(), passphrase=PASSPHRASE), None, "passphrase is required"),
        (pem(p521_key()), PASSPHRASE, "not encrypted"),
        (b"-----BEGIN PRIVATE KEY-----\ngarbage\n-----END PRIVATE KEY-----\n", None,
         "not a readable PEM"),
        (b"not a key at all", None, "not a readable PEM"),
        (pem(rsa.generate_private_key(public_exponent=65537, key_size=2048)), None, "EC P-521"),
        (pem(ec.generate_private_key(ec.SECP256R1())), None, "secp256r1"),
    ],
)
def test_unusable_keys_raise_typed_errors_without_secrets(
    key: bytes, passphrase: str | None, message: str
) -> None:
    with pytest.raises(SigningKeyError, match=message) as caught:
        load_signing_key(key, passphrase)
    text = str(caught.value)
    assert PASSPHRASE not in text and "wrong" not in text.replace("wrong passphrase", "")
    assert "BEGIN" not in text
