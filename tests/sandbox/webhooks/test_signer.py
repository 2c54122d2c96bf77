"""The sandbox's v6 webhook signer and keys, pinned to the known answers captured from Upvest's
own signer (``tests/fixtures/webhooks_v6/``), and checked with ``cryptography`` directly.

The sandbox builds the signature base and the ``digest`` header with its own code, not the
client's (``upvest_async.webhooks.base``, pinned to the same answers in
``tests/webhooks/test_verifier.py``): two readings of Upvest's format, each held to Upvest's own
signatures."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from http_sfv.dictionary import Dictionary
from http_sfv.item import InnerList
from hypothesis import given, settings
from hypothesis import strategies as st
from support.fixtures import WEBHOOKS_V6 as FIXTURES

from upvest_async.sandbox.webhooks import WebhookKeys, format_signature_params, sign_webhook
from upvest_async.sandbox.webhooks.signer import digest_header as body_digest
from upvest_async.sandbox.webhooks.signer import signature_base as build_base

KNOWN = sorted(p for p in FIXTURES.glob("*.json") if p.name != "jwks.json")
KEYS = WebhookKeys(seed=11)


def signature_base(components: list[str], params: str, *, method: str, path: str, query: str,
                   headers: dict[str, str]) -> str:
    """The sandbox's base builder, as text, over the components of a request as received:
    ``@method`` as sent, ``@path``, ``@query`` (``?`` and the raw query), header values
    trimmed. A component the request lacks is a :class:`KeyError`."""
    derived = {"@method": method, "@path": path, "@query": f"?{query}" if query else None}
    covered: list[tuple[str, str]] = []
    for name in components:
        value = derived[name] if name.startswith("@") else headers[name].strip(" \t")
        if value is None:
            raise KeyError(name)
        covered.append((name, value))
    return build_base(covered, params).decode()


def load(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(path.read_text())
    return loaded


def parse_input(value: str) -> tuple[list[str], dict[str, Any], str]:
    """Components, params and the raw params text of ``sig1`` in a ``signature-input``."""
    parsed = Dictionary()
    parsed.parse(value.encode("ascii"))
    inner = parsed["sig1"]
    assert isinstance(inner, InnerList)
    components = [str(item.value) for item in inner]
    return components, dict(inner.params), value.removeprefix("sig1=")


def received_headers(fixture: dict[str, Any]) -> dict[str, str]:
    joined: dict[str, list[str]] = {}
    for name, value in fixture["received"]["headers"]:
        joined.setdefault(name.lower(), []).append(value)
    return {name: ", ".join(values) for name, values in joined.items()}


def verify(public: ec.EllipticCurvePublicKey, base: str, signature_header: str) -> bool:
    der = base64.b64decode(signature_header.removeprefix("sig1=:").removesuffix(":"),
                           validate=True)
    try:
        public.verify(der, base.encode(), ec.ECDSA(hashes.SHA512()))
    except InvalidSignature:
        return False
    return True


@pytest.mark.skipif(not KNOWN, reason="v6 fixtures not available")
@pytest.mark.parametrize("path", KNOWN, ids=lambda p: p.stem)
def test_base_builder_matches_the_proxy_and_fixture_signatures_verify(path: Path) -> None:
    fixture = load(path)
    received = fixture["received"]
    headers = received_headers(fixture)
    components, params, raw = parse_input(headers["signature-input"])
    # The params writer reproduces the proxy's text from the parsed values.
    assert format_signature_params(
        components, keyid=params["keyid"], created=params["created"], nonce=params["nonce"],
        expires=params["expires"],
    ) == raw
    base = signature_base(components, raw, method=received["method"], path=received["path"],
                          query=received["raw_query"], headers=headers)
    public = serialization.load_pem_public_key(fixture["public_key_pem"].encode())
    assert isinstance(public, ec.EllipticCurvePublicKey)
    if fixture["expect_verify"]:
        assert base == fixture["proxy_signature_base"]
        assert verify(public, base, headers["signature"])
        body = base64.b64decode(received["body_b64"])
        if body:
            assert headers["digest"] == body_digest(body)
    else:  # quirk: the proxy signed the first list item only; the faithful base differs
        assert base != fixture["proxy_signature_base"]
        assert not verify(public, base, headers["signature"])
        assert verify(public, fixture["proxy_signature_base"], headers["signature"])


def test_our_signatures_verify_over_the_rebuilt_base() -> None:
    keys = WebhookKeys(seed=3)
    body = b'{"payload":[]}'
    added = sign_webhook(keys.current, method="post", path="/hooks/upvest", query="a=1&b=2",
                         headers={"Content-Type": "application/json"}, body=body,
                         created=1_796_160_436, nonce="0123456789abcdef")
    assert added["digest"] == body_digest(body)
    components, params, raw = parse_input(added["signature-input"])
    assert components == ["content-type", "@method", "@path", "@query", "digest"]
    assert params == {"keyid": keys.current.kid, "created": 1_796_160_436,
                      "nonce": "0123456789abcdef", "expires": 1_796_160_496}
    headers = {"content-type": "application/json", "digest": added["digest"]}
    base = signature_base(components, raw, method="POST", path="/hooks/upvest", query="a=1&b=2",
                          headers=headers)
    assert base == (
        "content-type: application/json\n@method: POST\n@path: /hooks/upvest\n@query: ?a=1&b=2\n"
        f"digest: {added['digest']}\n@signature-params: {raw}"
    )
    public = keys.current.private_key.public_key()
    assert verify(public, base, added["signature"])
    assert not verify(public, base.replace("/hooks/upvest", "/hooks/upvesT"), added["signature"])


def test_empty_body_has_no_digest_and_nonces_differ() -> None:
    key = WebhookKeys().current
    one = sign_webhook(key, method="POST", path="/h", query="", headers={}, body=b"", created=1)
    two = sign_webhook(key, method="POST", path="/h", query="", headers={}, body=b"", created=1)
    assert "digest" not in one
    assert parse_input(one["signature-input"])[0] == ["@method", "@path"]
    assert parse_input(one["signature-input"])[1]["nonce"] != parse_input(
        two["signature-input"])[1]["nonce"]


def test_params_refuse_what_cannot_be_an_sfv_string() -> None:
    with pytest.raises(ValueError):
        format_signature_params(['a"b'], keyid="k", created=1, nonce="n", expires=2)


def test_keys_jwks_shape_determinism_and_rotation() -> None:
    fixture = json.loads((FIXTURES / "jwks.json").read_text())
    keys = WebhookKeys(seed=1)
    jwks = keys.jwks()
    assert [set(k) for k in jwks["keys"]] == [set(k) for k in fixture["keys"]]
    jwk = jwks["keys"][0]
    assert (jwk["kty"], jwk["crv"], len(jwk["x"]), len(jwk["y"])) == ("EC", "P-521", 88, 88)
    assert WebhookKeys(seed=1).jwks() == jwks and WebhookKeys(seed=2).jwks() != jwks
    numbers = keys.current.private_key.public_key().public_numbers()
    assert int.from_bytes(base64.urlsafe_b64decode(jwk["x"] + "==")) == numbers.x
    old = keys.current.kid
    new = keys.rotate()
    assert new.kid != old and keys.current is new
    assert [k["kid"] for k in keys.jwks()["keys"]] == [new.kid, old]
    newest = keys.rotate(keep_old=False)
    assert [k["kid"] for k in keys.jwks()["keys"]] == [newest.kid]
    secret = str(keys.current.private_key.private_numbers().private_value)
    assert secret not in repr(keys.current) + repr(keys)
    assert repr(keys.current) == f"WebhookKey(kid={newest.kid!r})"


@settings(max_examples=40, deadline=None)
@given(
    body=st.binary(max_size=300),
    path=st.from_regex(r"/[A-Za-z0-9/_.%-]{0,40}", fullmatch=True),
    query=st.from_regex(r"([a-z0-9=&%]{1,30})?", fullmatch=True),
    flip=st.integers(min_value=0),
)
def test_signatures_verify_and_any_changed_body_byte_breaks_the_digest(
    body: bytes, path: str, query: str, flip: int
) -> None:
    key = KEYS.current
    added = sign_webhook(key, method="POST", path=path, query=query,
                         headers={"content-type": "application/json"}, body=body, created=7)
    components, _, raw = parse_input(added["signature-input"])
    headers = {"content-type": "application/json", **added}
    base = signature_base(components, raw, method="POST", path=path, query=query,
                          headers=headers)
    assert verify(key.private_key.public_key(), base, added["signature"])
    assert ("digest" in components) == bool(body) and ("@query" in components) == bool(query)
    if body:
        changed = bytearray(body)
        changed[flip % len(body)] ^= 0x01
        assert body_digest(bytes(changed)) != added["digest"]
