"""v6 webhook signature verification: Upvest's own known answers, single-byte mutations of every
covered part, each rejection reason, and a property test over random mutations."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.fixtures import WEBHOOKS_V6 as FIXTURES
from support.keys import p521_key
from support.webhooks_signer import KEY_ID, batch, event, jwks, position, sign

from upvest_async import UpvestError, WebhookKeys, WebhookVerificationError, WebhookVerifier
from upvest_async.webhooks import REASONS, ReplayCache, signature_base
from upvest_async.webhooks.params import parse_signature_headers

# Requests signed by Upvest's own signer, httpsignature-proxy v1.3.8 (see the README there).
NAMES = sorted(p.stem for p in FIXTURES.glob("*_*.json"))
GOOD = [name for name in NAMES if not name.startswith("quirk_")]
NOW = 1_796_160_436


def load(name: str) -> dict[str, Any]:
    fixture: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text())
    received = fixture["received"]
    headers = {k: v for k, v in received["headers"]}
    created = parse_signature_headers(
        headers["Signature-Input"], headers["Signature"]
    ).created
    target = received["path"] + (f"?{received['raw_query']}" if received["raw_query"] else "")
    return {
        "fixture": fixture, "headers": headers, "created": created, "method": received["method"],
        "path": target, "body": base64.b64decode(received["body_b64"]),
    }


def fixture_verifier(created: int) -> WebhookVerifier:
    return WebhookVerifier.from_jwks((FIXTURES / "jwks.json").read_bytes(), clock=lambda: created)


_RUNNER = asyncio.Runner()


def run(verifier: WebhookVerifier, body: bytes, headers: dict[str, str], method: str,
        path: str) -> Any:
    return _RUNNER.run(verifier.verify(body, headers, method=method, path=path))


def reason_of(verifier: WebhookVerifier, body: bytes, headers: dict[str, str],
              method: str = "POST", path: str = "/hooks") -> str:
    with pytest.raises(WebhookVerificationError) as caught:
        run(verifier, body, headers, method, path)
    assert caught.value.reason in REASONS
    return caught.value.reason


def test_fixtures_are_present() -> None:
    assert len(GOOD) >= 4 and any(name.startswith("quirk_") for name in NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_known_answers(name: str) -> None:
    case = load(name)
    verifier = fixture_verifier(case["created"])
    if case["fixture"]["expect_verify"]:
        verified = run(verifier, case["body"], case["headers"], case["method"], case["path"])
        assert verified.key_id == case["fixture"]["key_id"]
        assert verified.created == case["created"] and verified.expires == case["created"] + 60
    else:
        assert reason_of(verifier, case["body"], case["headers"], case["method"],
                         case["path"]) == "bad-signature"


@pytest.mark.parametrize("name", GOOD)
def test_our_base_is_the_proxy_base(name: str) -> None:
    case = load(name)
    lowered = {k.lower(): v for k, v in case["headers"].items()}
    parsed = parse_signature_headers(lowered["signature-input"], lowered["signature"])
    path, _, query = case["path"].partition("?")
    base = signature_base(parsed.components, method=case["method"], path=path, query=query,
                          headers=lowered, signature_params=parsed.params_text)
    assert base == case["fixture"]["proxy_signature_base"].encode()


def _flip(text: str, index: int) -> str:
    char = text[index]
    new = chr(ord(char) ^ 1)
    if not new.isprintable():
        new = "A" if char != "A" else "B"
    return text[:index] + new + text[index + 1:]


@pytest.mark.parametrize("name", GOOD)
def test_every_single_byte_change_of_a_covered_part_is_rejected(name: str) -> None:
    case = load(name)
    verifier = fixture_verifier(case["created"])
    verifier.replay_cache = ReplayCache()
    lowered = {k.lower(): v for k, v in case["headers"].items()}
    components = parse_signature_headers(
        lowered["signature-input"], lowered["signature"]
    ).components
    mutations: list[tuple[str, bytes, dict[str, str], str, str]] = []
    for i in range(len(case["method"])):
        mutations.append(("method", case["body"], lowered, _flip(case["method"], i),
                          case["path"]))
    for i in range(len(case["path"])):
        mutations.append(("path", case["body"], lowered, case["method"],
                          _flip(case["path"], i)))
    for i in range(len(case["body"])):
        changed_body = bytearray(case["body"])
        changed_body[i] ^= 0x01
        mutations.append(("body", bytes(changed_body), lowered, case["method"], case["path"]))
    for header in [c for c in components if not c.startswith("@")] + [
        "signature-input", "signature"
    ]:
        for i in range(len(lowered[header])):
            changed = {**lowered, header: _flip(lowered[header], i)}
            mutations.append((header, case["body"], changed, case["method"], case["path"]))
    assert len(mutations) > 300
    for part, body, headers, method, path in mutations:
        with pytest.raises(WebhookVerificationError):
            run(verifier, body, headers, method, path)
            pytest.fail(f"a change of {part} verified")
    # The unchanged request still verifies (the mutations were rejected for their change).
    run(verifier, case["body"], lowered, case["method"], case["path"])


# ---- each rejection reason, with fresh signatures ------------------------------------------

KEY = p521_key()
BODY = batch(event("POSITION.UPDATED", position()))


def verifier(**options: Any) -> WebhookVerifier:
    return WebhookVerifier({KEY_ID: KEY.public_key()}, clock=lambda: NOW, **options)


def test_fresh_signature_verifies_once_then_is_replayed() -> None:
    v = verifier()
    headers = sign(BODY, key=KEY, created=NOW)
    assert run(v, BODY, headers, "POST", "/hooks").components[-1] == "digest"
    assert reason_of(v, BODY, headers) == "replayed"
    v.forget(run(verifier(), BODY, headers, "POST", "/hooks"))  # forgetting is harmless
    other = verifier()
    first = run(other, BODY, headers, "POST", "/hooks")
    other.forget(first)
    run(other, BODY, headers, "POST", "/hooks")  # accepted again after forget()


def test_params_in_the_docs_order_and_a_query() -> None:
    headers = sign(BODY, key=KEY, created=NOW, params_order="docs", query="a=1&b=%20")
    run(verifier(), BODY, headers, "POST", "/hooks?a=1&b=%20")


def test_header_names_in_any_case() -> None:
    headers = {k.title(): v for k, v in sign(BODY, key=KEY, created=NOW).items()}
    run(verifier(), BODY, headers, "POST", "/hooks")


@pytest.mark.parametrize(("change", "reason"), [
    (lambda h: h.pop("signature"), "missing-signature"),
    (lambda h: h.pop("signature-input"), "missing-signature"),
    (lambda h: h.update(signature="sig1=:AAAA:"), "bad-signature"),
    (lambda h: h.update(signature="sig1=abc"), "malformed-signature"),
    (lambda h: h.update({"signature-input": "sig1=garbage("}), "malformed-signature"),
    (lambda h: h.update(signature=h["signature"] + ", sig2=:AAAA:"), "malformed-signature"),
    (lambda h: h.update(signature=h["signature"].replace("sig1", "sig2")), "malformed-signature"),
    (lambda h: h.pop("content-type"), "missing-header"),
    (lambda h: h.pop("digest"), "missing-header"),
    (lambda h: h.update(digest="SHA-256=" + "A" * 43 + "="), "digest-mismatch"),
    (lambda h: h.update(digest="SHA-512=abc"), "digest-mismatch"),
    (lambda h: h.update({"content-type": "application/json\n@method: GET"}), "malformed-headers"),
])
def test_rejections(change: Any, reason: str) -> None:
    headers = sign(BODY, key=KEY, created=NOW)
    change(headers)
    assert reason_of(verifier(), BODY, headers) == reason


def test_non_canonical_base64_signature_is_rejected() -> None:
    headers = sign(BODY, key=KEY, created=NOW)
    text = headers["signature"]
    encoded = text[len("sig1=:"):-1]
    raw = base64.b64decode(encoded)
    # Same bytes, but with non-zero unused bits in the last base64 character (if padded).
    if encoded.endswith("="):
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
        last = encoded.rstrip("=")[-1]
        twin = alphabet[alphabet.index(last) ^ 1]
        lenient = encoded.rstrip("=")[:-1] + twin + "=" * (len(encoded) - len(encoded.rstrip("=")))
        assert base64.b64decode(lenient) == raw
        headers["signature"] = f"sig1=:{lenient}:"
        assert reason_of(verifier(), BODY, headers) == "malformed-signature"


def test_coverage_minimum() -> None:
    no_digest = sign(BODY, key=KEY, created=NOW,
                     components=["content-type", "@method", "@path"])
    assert reason_of(verifier(), BODY, no_digest) == "insufficient-coverage"
    no_path = sign(BODY, key=KEY, created=NOW, components=["@method", "digest"])
    assert reason_of(verifier(), BODY, no_path) == "insufficient-coverage"
    no_query = sign(BODY, key=KEY, created=NOW)
    assert reason_of(verifier(), BODY, no_query, path="/hooks?x=1") == "insufficient-coverage"
    empty = sign(b"", key=KEY, created=NOW, components=["@method", "@path"])
    run(verifier(), b"", empty, "POST", "/hooks")  # no body: digest not needed
    odd = sign(BODY, key=KEY, created=NOW)
    odd["signature-input"] = odd["signature-input"].replace('"@path"', '"@path" "@authority"')
    assert reason_of(verifier(), BODY, odd) == "unsupported-component"
    odd["signature-input"] = odd["signature-input"].replace('"@authority"', '"accept";sf')
    assert reason_of(verifier(), BODY, odd) == "unsupported-component"


def test_time_window() -> None:
    headers = sign(BODY, key=KEY, created=NOW, expires_in=60)
    late = WebhookVerifier({KEY_ID: KEY.public_key()}, clock=lambda: NOW + 60 + 11)
    assert reason_of(late, BODY, headers) == "expired"
    skewed = WebhookVerifier({KEY_ID: KEY.public_key()}, clock=lambda: NOW + 60 + 9)
    run(skewed, BODY, headers, "POST", "/hooks")
    early = WebhookVerifier({KEY_ID: KEY.public_key()}, clock=lambda: NOW - 11)
    assert reason_of(early, BODY, headers) == "not-yet-valid"
    assert reason_of(verifier(), BODY, sign(BODY, key=KEY, created=NOW, expires_in=0)) == (
        "bad-validity")
    assert reason_of(verifier(), BODY, sign(BODY, key=KEY, created=NOW, expires_in=301)) == (
        "bad-validity")


def test_unknown_key_and_wrong_key() -> None:
    other = ec.generate_private_key(ec.SECP521R1())
    assert reason_of(verifier(), BODY, sign(BODY, key=KEY, created=NOW, key_id="nope")) == (
        "unknown-key")
    assert reason_of(verifier(), BODY, sign(BODY, key=other, created=NOW)) == "bad-signature"


def test_limits_and_targets() -> None:
    headers = sign(BODY, key=KEY, created=NOW)
    assert reason_of(verifier(max_body_bytes=10), BODY, headers) == "body-too-large"
    assert reason_of(verifier(), BODY, headers, path="hooks") == "invalid-target"
    assert reason_of(verifier(), BODY, headers, method="PO ST") == "invalid-target"
    assert reason_of(verifier(), BODY, headers, method="post") == "bad-signature"
    for bad in ("/a\nb", "/a\tb", "/a?b c", "/a\u2028b", "/a#b"):
        assert reason_of(verifier(), BODY, headers, path=bad) == "invalid-target"
    # A decoded space in the path is signed as is (Upvest signs the decoded path).
    spaced = sign(BODY, key=KEY, created=NOW, path="/hooks/a b")
    assert run(verifier(), BODY, spaced, "POST", "/hooks/a b").key_id == KEY_ID


def test_a_query_given_apart_lets_the_decoded_path_hold_a_question_mark() -> None:
    headers = sign(BODY, key=KEY, created=NOW, path="/hooks/a?b", query="x=1")
    assert _RUNNER.run(verifier().verify(BODY, headers, path="/hooks/a?b", query="x=1"))
    # Split at the first "?", the same target means another path and query: refused.
    assert reason_of(verifier(), BODY, headers, path="/hooks/a?b?x=1") == "bad-signature"
    with pytest.raises(WebhookVerificationError) as caught:
        _RUNNER.run(verifier().verify(BODY, headers, path="/hooks/a?b", query=b"x=1"))  # type: ignore[arg-type]
    assert caught.value.reason == "invalid-target"


def test_repeated_headers_in_a_multidict_are_refused() -> None:
    from multidict import CIMultiDict

    headers = CIMultiDict(sign(BODY, key=KEY, created=NOW))
    headers.add("Content-Type", "text/plain")
    with pytest.raises(WebhookVerificationError) as caught:
        asyncio.run(verifier().verify(BODY, headers, path="/hooks"))
    assert caught.value.reason == "malformed-headers"


def test_replay_cache_is_bounded_and_fails_closed() -> None:
    v = verifier(replay_cache=ReplayCache(max_entries=2))
    for _ in range(2):
        run(v, BODY, sign(BODY, key=KEY, created=NOW), "POST", "/hooks")
    assert reason_of(v, BODY, sign(BODY, key=KEY, created=NOW)) == "replay-cache-full"
    later = {"now": NOW + 200}
    v.clock = lambda: later["now"]
    run(v, BODY, sign(BODY, key=KEY, created=NOW + 200), "POST", "/hooks")  # expired purged


def test_error_is_an_upvest_error_without_request_data() -> None:
    headers = sign(BODY, key=KEY, created=NOW, key_id="secret-looking-key-id")
    with pytest.raises(UpvestError) as caught:
        run(verifier(), BODY, headers, "POST", "/hooks")
    assert "secret-looking" not in str(caught.value)
    assert isinstance(caught.value, WebhookVerificationError) and caught.value.transient is False


def test_jwks_parsing() -> None:
    document = jwks((KEY.public_key(), "a"))
    document["keys"] += [{"kid": "rsa", "kty": "RSA", "n": "AQAB", "e": "AQAB"},
                         {"kid": "p256", "kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"},
                         {"kid": "bad", "kty": "EC", "crv": "P-521", "x": "AAAA", "y": "AAAA"},
                         "junk", {"kty": "EC"}]
    keys = WebhookKeys.from_jwks(document)
    assert keys.key_ids == ["a"] and "a" in keys and len(keys) == 1
    from upvest_async import ConfigurationError
    for bad in [{}, {"keys": "x"}, b"not json", {"keys": []},
                {"keys": [jwks((KEY.public_key(), "a"))["keys"][0]] * 2}]:
        with pytest.raises(ConfigurationError):
            WebhookKeys.from_jwks(bad)  # type: ignore[arg-type]


# ---- property: random mutations never verify, and only WebhookVerificationError escapes ----

SIGNED = sign(BODY, key=KEY, created=NOW, nonce="0000000001")
COVERED = ["content-type", "upvest-client-id", "digest", "signature-input", "signature"]


@st.composite
def mutated(draw: st.DrawFn) -> tuple[bytes, dict[str, str]]:
    body = bytearray(BODY)
    headers = dict(SIGNED)
    for _ in range(draw(st.integers(1, 3))):
        target = draw(st.sampled_from(["body", *COVERED]))
        how = draw(st.sampled_from(["replace", "insert", "delete", "drop", "random"]))
        if target == "body":
            if how == "drop":
                body = bytearray()
                continue
            if how == "random":
                body = bytearray(draw(st.binary(max_size=64)))
                continue
            at = draw(st.integers(0, max(len(body) - 1, 0)))
            if how == "replace" and body:
                body[at] ^= draw(st.integers(1, 255))
            elif how == "insert":
                body.insert(at, draw(st.integers(0, 255)))
            elif body:
                del body[at]
            continue
        value = headers.get(target, "")
        if how == "drop":
            headers.pop(target, None)
            continue
        if how == "random":
            headers[target] = draw(st.text(max_size=80))
            continue
        at = draw(st.integers(0, max(len(value) - 1, 0)))
        char = draw(st.characters(codec="utf-8"))
        if how == "replace" and value:
            if value[at] == char:
                continue
            value = value[:at] + char + value[at + 1:]
        elif how == "insert":
            value = value[:at] + char + value[at:]
        elif value:
            value = value[:at] + value[at + 1:]
        headers[target] = value
    return bytes(body), headers


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_random_mutations_never_verify(case: tuple[bytes, dict[str, str]]) -> None:
    body, headers = case
    if body == BODY and all(
        headers.get(name, "").strip(" \t") == SIGNED[name] for name in COVERED
    ) and all(name in headers for name in COVERED):
        return  # the mutations cancelled out (or only added surrounding whitespace)
    try:
        run(verifier(), body, headers, "POST", "/hooks")
    except WebhookVerificationError:
        return
    pytest.fail("a mutated request verified")


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.sampled_from(["signature", "signature-input", "digest", "content-type",
                                        "x"]), st.text(max_size=120)), st.binary(max_size=64),
       st.text(max_size=20))
def test_garbage_raises_only_verification_errors(
    headers: dict[str, str], body: bytes, path: str
) -> None:
    with pytest.raises(WebhookVerificationError):
        run(verifier(), body, headers, "POST", "/" + path)
