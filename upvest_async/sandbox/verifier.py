"""Verification of HTTP message signatures (draft-ietf-httpbis-message-signatures-15) as the
Upvest API performs it, written independently of :mod:`upvest_async.signing`.

It parses ``signature-input`` and ``signature`` as RFC 8941 dictionaries (``http-sfv``), rebuilds
the signature base from the request *as received* (section 2.5), checks ``content-digest``
against the body bytes, verifies ECDSA P-521/SHA-512 with the key named by ``keyid``, checks
``created``/``expires`` against the clock, and rejects a ``nonce`` seen before.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable, Mapping, Sequence

import attrs
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from http_sfv.dictionary import Dictionary
from http_sfv.item import InnerList, Item

__all__ = ["NonceCache", "SignatureRejected", "SignatureVerifier", "VerifiedSignature"]


class SignatureRejected(Exception):
    """The request's signature is missing, malformed, stale, replayed or does not verify.

    ``reason`` is a short machine-friendly code (``nonce-replayed``, ``bad-signature``, ...).
    """

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        super().__init__(detail)


@attrs.frozen
class VerifiedSignature:
    """What a valid signature said: ``keyid``, ``nonce``, ``created`` and ``components``."""

    keyid: str
    nonce: str
    created: int
    components: tuple[str, ...]


class NonceCache:
    """Remembers nonces until their signature expires (plus the allowed clock skew)."""

    def __init__(self) -> None:
        self._seen: dict[str, float] = {}

    def __len__(self) -> int:
        return len(self._seen)

    def add(self, nonce: str, keep_until: float, now: float) -> bool:
        """Record ``nonce``; ``False`` when it was already recorded and has not expired."""
        if len(self._seen) > 10_000:
            self._seen = {n: t for n, t in self._seen.items() if t > now}
        until = self._seen.get(nonce)
        if until is not None and until > now:
            return False
        self._seen[nonce] = keep_until
        return True


class SignatureVerifier:
    """Verifies request signatures against registered public keys (``keyid`` -> key).

    ``max_skew``: seconds a ``created`` may lie in the future and an ``expires`` in the past;
    ``max_validity``: the longest ``expires - created`` accepted, in seconds.
    """

    def __init__(
        self,
        public_keys: Mapping[str, ec.EllipticCurvePublicKey],
        *,
        clock: Callable[[], float] = time.time,
        max_skew: float = 5.0,
        max_validity: float = 300.0,
    ) -> None:
        self._keys = dict(public_keys)
        self._clock = clock
        self._max_skew = max_skew
        self._max_validity = max_validity
        self.nonces = NonceCache()

    def verify(
        self,
        *,
        method: str,
        path: str,
        query: str,
        headers: Callable[[str], Sequence[str]],
        body: bytes,
    ) -> VerifiedSignature:
        """Verify one request. ``headers(name)`` returns all values of a header (lower-case
        name); ``path``/``query`` are raw as received (query without ``?``).

        Raises :class:`SignatureRejected` with the reason.
        """
        inputs = self._dictionary("signature-input", headers)
        signatures = self._dictionary("signature", headers)
        if headers("upvest-signature-version") != ["15"]:
            raise SignatureRejected("bad-version", "upvest-signature-version must be 15")
        labels = [label for label in inputs if label in signatures]
        if len(labels) != 1:
            raise SignatureRejected("malformed", "expected exactly one signature label")
        label = labels[0]
        inner = inputs[label]
        signature_item = signatures[label]
        if not isinstance(inner, InnerList) or not isinstance(
            signature_item, Item
        ) or not isinstance(signature_item.value, bytes):
            raise SignatureRejected("malformed", "signature-input must be an inner list and "
                                    "signature a byte sequence")
        components = tuple(item.value for item in inner)
        if not all(isinstance(name, str) for name in components):
            raise SignatureRejected("malformed", "covered components must be strings")
        params = dict(inner.params)
        keyid, nonce = params.get("keyid"), params.get("nonce")
        created, expires = params.get("created"), params.get("expires")
        if not (isinstance(keyid, str) and isinstance(nonce, str) and nonce
                and type(created) is int and type(expires) is int):
            raise SignatureRejected(
                "malformed", "keyid, nonce, created and expires are all required"
            )
        self._check_coverage(components, query=query, headers=headers, body=body)
        self._check_digest(headers, body)
        now = self._clock()
        if created > now + self._max_skew:
            raise SignatureRejected("not-yet-valid", "created lies in the future")
        if expires < now - self._max_skew:
            raise SignatureRejected("expired", "the signature has expired")
        if not 0 < expires - created <= self._max_validity:
            raise SignatureRejected("bad-window", "expires must be after created, within limits")
        key = self._keys.get(keyid)
        if key is None:
            raise SignatureRejected("unknown-key", "unknown keyid")
        base = self._base(components, method, path, query, headers, str(inner))
        try:
            key.verify(signature_item.value, base, ec.ECDSA(hashes.SHA512()))
        except InvalidSignature:
            raise SignatureRejected("bad-signature", "the signature does not verify") from None
        if not self.nonces.add(nonce, expires + self._max_skew, now):
            raise SignatureRejected("nonce-replayed", "the nonce was already used")
        return VerifiedSignature(keyid=keyid, nonce=nonce, created=created, components=components)

    @staticmethod
    def _dictionary(
        name: str, headers: Callable[[str], Sequence[str]]
    ) -> Dictionary:
        values = headers(name)
        if not values:
            raise SignatureRejected("missing", f"the {name} header is missing")
        parsed = Dictionary()
        try:
            parsed.parse(", ".join(values).encode("ascii"))
        except (ValueError, UnicodeEncodeError):
            raise SignatureRejected("malformed", f"the {name} header is malformed") from None
        return parsed

    @staticmethod
    def _check_coverage(
        components: Sequence[str],
        *,
        query: str,
        headers: Callable[[str], Sequence[str]],
        body: bytes,
    ) -> None:
        required = ["@method", "@path", "upvest-client-id"]
        if query:
            required.append("@query")
        optional_when_present = ["authorization", "idempotency-key", "accept"]
        if body:
            optional_when_present += ["content-digest", "content-length", "content-type"]
            required.append("content-digest")
        required += [name for name in optional_when_present if headers(name)]
        missing = [name for name in required if name not in components]
        if missing:
            raise SignatureRejected("not-covered", "not covered: " + ", ".join(missing))
        if len(set(components)) != len(components):
            raise SignatureRejected("malformed", "a component is covered twice")

    @staticmethod
    def _check_digest(headers: Callable[[str], Sequence[str]], body: bytes) -> None:
        values = headers("content-digest")
        if not values:
            return
        digests = Dictionary()
        try:
            digests.parse(", ".join(values).encode("ascii"))
        except (ValueError, UnicodeEncodeError):
            raise SignatureRejected("bad-digest", "content-digest is malformed") from None
        item = digests.get("sha-512")
        expected = hashlib.sha512(body).digest()
        if not isinstance(item, Item) or not isinstance(item.value, bytes):
            raise SignatureRejected("bad-digest", "content-digest needs a sha-512 byte sequence")
        if not hmac.compare_digest(item.value, expected):
            raise SignatureRejected("bad-digest", "content-digest does not match the body")

    @staticmethod
    def _base(
        components: Sequence[str],
        method: str,
        path: str,
        query: str,
        headers: Callable[[str], Sequence[str]],
        params: str,
    ) -> bytes:
        lines = []
        for name in components:
            if name == "@method":
                value = method
            elif name == "@path":
                value = path
            elif name == "@query":
                value = "?" + query
            elif name.startswith("@"):
                raise SignatureRejected("unsupported", f"derived component {name} not supported")
            else:
                values = headers(name)
                if not values:
                    raise SignatureRejected("not-present", f"covered header {name} is absent")
                value = ", ".join(v.strip() for v in values)
            lines.append(f'"{name}": {value}')
        lines.append(f'"@signature-params": {params}')
        return "\n".join(lines).encode("utf-8")
