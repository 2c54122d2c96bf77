"""``WebhookVerifier``: checks a webhook request's v6 signature, then parses its events.

The checks, in order (each failure is a :class:`WebhookVerificationError` with its ``reason``):
body size; method and path; one ``signature-input`` and one ``signature`` (:mod:`.params`);
coverage: ``@method``, ``@path``, ``digest`` when there is a body and ``@query`` when there is a
query; every covered header present, given once, without control characters; ``created`` /
``expires`` against the clock with ``max_skew``; ``digest`` (``SHA-256=``) against the body;
the key named by ``keyid``; ECDSA P-521/SHA-512 over the rebuilt base (:mod:`.base`); and
(:meth:`WebhookVerifier.verify` only) the nonce against the replay cache (:mod:`.replay`). A
:class:`~upvest_async.webhooks.WebhookReceiver` calls :meth:`WebhookVerifier.authenticate`
instead and records the nonce in its event store, in the delivery's transaction. Source:
``docs/guides/api-readings.md``, W5 to W12 (the v6 signature and how the SDK reads its
sources' disagreements).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import attrs
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from ..models.webhooks import WebhookEvent
from .base import DERIVED_COMPONENTS, signature_base
from .errors import WebhookPayloadError, WebhookVerificationError
from .events import parse_batch
from .keys import KeyProvider, WebhookKeys
from .params import SignatureHeader, parse_signature_headers
from .replay import ReplayCache

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_MAX_SKEW",
    "DEFAULT_MAX_VALIDITY",
    "VerifiedSignature",
    "WebhookVerifier",
]

logger = logging.getLogger("upvest_async.webhooks")

#: Largest body accepted, in bytes (Upvest's ``max_package_size`` is set per subscription).
DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024
#: Seconds of clock difference tolerated on ``created`` and ``expires``.
DEFAULT_MAX_SKEW = 10.0
#: Longest ``expires - created`` accepted, in seconds (Upvest's signer uses 60, its docs 5).
DEFAULT_MAX_VALIDITY = 300
_SIGNATURE_HEADERS = ("signature", "signature-input", "digest")
_TCHAR = frozenset("!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")


@attrs.frozen
class VerifiedSignature:
    """What a verified signature said: ``key_id``, ``nonce``, ``created`` and ``expires``
    (Unix seconds) and the covered ``components``; ``keep_until``: Unix seconds until which
    its nonce must be remembered (``expires`` plus the verifier's ``max_skew``: later, the
    signature no longer verifies)."""

    key_id: str
    nonce: str
    created: int
    expires: int
    components: tuple[str, ...]
    keep_until: float


def _clean(value: str) -> bool:
    return not any((ord(c) < 0x20 and c != "\t") or ord(c) == 0x7F for c in value)


def _headers(headers: Mapping[str, str]) -> tuple[dict[str, str], set[str]]:
    lowered: dict[str, str] = {}
    repeated: set[str] = set()
    try:
        items = list(headers.items())
    except Exception:
        raise WebhookVerificationError("malformed-headers") from None
    for name, value in items:
        if not isinstance(name, str) or not isinstance(value, str):
            raise WebhookVerificationError("malformed-headers")
        key = name.lower()
        if key in lowered:
            repeated.add(key)
        else:
            lowered[key] = value
    return lowered, repeated


def _target(method: str, path: str, query: str | None) -> tuple[str, str]:
    if not isinstance(method, str) or not method or not set(method) <= _TCHAR:
        raise WebhookVerificationError("invalid-target")
    if not isinstance(path, str) or not path.startswith("/") or "#" in path:
        raise WebhookVerificationError("invalid-target")
    if query is None:
        bare, _, query = path.partition("?")
    elif isinstance(query, str):
        bare = path
    else:
        raise WebhookVerificationError("invalid-target")
    # The decoded path may hold a space (``%20`` in the URL, signed decoded by Upvest); no
    # other whitespace or control character, in neither part.
    if not all(c.isprintable() and (c == " " or not c.isspace()) for c in bare) or not all(
        c.isprintable() and not c.isspace() for c in query
    ):
        raise WebhookVerificationError("invalid-target")
    return bare, query


def _check_digest(value: str | None, body: bytes) -> None:
    if value is None:
        if body:
            raise WebhookVerificationError("missing-header")
        return
    expected = base64.b64encode(hashlib.sha256(body).digest()).decode("ascii")
    found = [
        given for alg, _, given in (entry.strip().partition("=") for entry in value.split(","))
        if alg.lower() == "sha-256"
    ]
    if len(found) != 1 or not found[0].isascii() or not hmac.compare_digest(found[0], expected):
        raise WebhookVerificationError("digest-mismatch")


class WebhookVerifier:
    """Verifies Upvest's v6 webhook signatures with the keys of ``keys``.

    ``keys``: a :class:`~upvest_async.webhooks.WebhookKeys` (offline, e.g.
    ``WebhookVerifier.from_jwks(jwks)``), a mapping ``kid`` -> P-521 public key, or any
    :class:`~upvest_async.webhooks.KeyProvider` (``client.webhooks`` fetches and refreshes the
    JWKS). ``clock``: Unix time in seconds (injectable for tests); ``max_skew``: seconds of
    clock difference tolerated (10); ``max_validity``: the longest ``expires - created``
    accepted (300 s); ``replay_cache``: a :class:`~upvest_async.webhooks.ReplayCache` (a new
    one of 100,000 entries by default), used by :meth:`verify` and :meth:`unwrap` (a
    :class:`~upvest_async.webhooks.WebhookReceiver` records nonces in its event store instead);
    ``max_body_bytes``: larger bodies are refused (8 MiB).
    """

    def __init__(
        self,
        keys: KeyProvider | Mapping[str, ec.EllipticCurvePublicKey],
        *,
        clock: Callable[[], float] = time.time,
        max_skew: float = DEFAULT_MAX_SKEW,
        max_validity: int = DEFAULT_MAX_VALIDITY,
        replay_cache: ReplayCache | None = None,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    ) -> None:
        self.keys: KeyProvider = WebhookKeys(keys) if isinstance(keys, Mapping) else keys
        self.clock = clock
        self.max_skew = float(max_skew)
        self.max_validity = max_validity
        self.replay_cache = replay_cache if replay_cache is not None else ReplayCache()
        self.max_body_bytes = max_body_bytes

    @classmethod
    def from_jwks(cls, jwks: Mapping[str, Any] | str | bytes, **options: Any) -> WebhookVerifier:
        """A verifier for the keys of a JWKS document (``GET /auth/verify_keys``), offline;
        ``options`` as for the constructor. Raises :class:`~upvest_async.ConfigurationError`
        for an unusable JWKS."""
        return cls(WebhookKeys.from_jwks(jwks), **options)

    def __repr__(self) -> str:
        return f"WebhookVerifier(keys={type(self.keys).__name__}, max_skew={self.max_skew})"

    async def verify(
        self, body: bytes, headers: Mapping[str, str], *, method: str = "POST", path: str,
        query: str | None = None,
    ) -> VerifiedSignature:
        """Verify one request: ``body`` (the exact bytes received), ``headers`` (any case; a
        multidict's repeated names are seen), ``method`` as received, ``path`` as Upvest
        signs it (the decoded path; a ``?query`` part is split off and must be covered).
        ``query``: the raw query without ``?`` (``""`` for none), given apart when the decoded
        path may itself hold a ``?`` (``%3F``); then ``path`` is taken whole.

        Returns the :class:`VerifiedSignature` and records its nonce in ``replay_cache`` (a
        second call with the same signature raises ``replayed``). Raises
        :class:`WebhookVerificationError` and nothing else.
        """
        signature = await self.authenticate(body, headers, method=method, path=path,
                                            query=query)
        self.replay_cache.add(signature.key_id, signature.nonce,
                              keep_until=signature.keep_until, now=self.clock())
        return signature

    async def authenticate(
        self, body: bytes, headers: Mapping[str, str], *, method: str = "POST", path: str,
        query: str | None = None,
    ) -> VerifiedSignature:
        """Every check of :meth:`verify` but the replay check: the nonce is neither looked up
        nor recorded. For a caller that records accepted nonces itself, as the
        :class:`~upvest_async.webhooks.WebhookReceiver` does in its event store (shared by
        every replica, in the delivery's transaction). Arguments as for :meth:`verify`.
        Raises :class:`WebhookVerificationError` and nothing else.
        """
        try:
            return await self._verify(body, headers, method, path, query)
        except WebhookVerificationError:
            raise
        except Exception:
            logger.warning("unexpected error while verifying a webhook", exc_info=True)
            raise WebhookVerificationError("malformed-signature") from None

    async def unwrap(
        self, body: bytes, headers: Mapping[str, str], *, method: str = "POST", path: str,
        query: str | None = None,
    ) -> list[WebhookEvent]:
        """:meth:`verify`, then parse the body into its events, in order.

        Raises :class:`WebhookVerificationError` (signature), or
        :class:`~upvest_async.webhooks.WebhookPayloadError` for a verified body that is not a
        valid batch; nothing else.
        """
        await self.verify(body, headers, method=method, path=path, query=query)
        try:
            return parse_batch(body)
        except WebhookPayloadError:
            raise
        except Exception:
            logger.warning("unexpected error while parsing a webhook", exc_info=True)
            raise WebhookPayloadError("unreadable batch") from None

    def forget(self, signature: VerifiedSignature) -> None:
        """Forget a verified signature's nonce, so that the same signed request verifies
        again (for a delivery that was answered non-200 and will be retried as is)."""
        self.replay_cache.discard(signature.key_id, signature.nonce)

    async def _verify(
        self, body: bytes, headers: Mapping[str, str], method: str, path: str,
        query: str | None = None,
    ) -> VerifiedSignature:
        if not isinstance(body, bytes | bytearray | memoryview):
            raise WebhookVerificationError("malformed-headers", "body must be bytes")
        body = bytes(body)
        if len(body) > self.max_body_bytes:
            raise WebhookVerificationError("body-too-large")
        path, query = _target(method, path, query)
        lowered, repeated = _headers(headers)
        signature_input, signature = lowered.get("signature-input"), lowered.get("signature")
        if signature_input is None or signature is None:
            raise WebhookVerificationError("missing-signature")
        if repeated & set(_SIGNATURE_HEADERS):
            raise WebhookVerificationError("malformed-headers")
        parsed = parse_signature_headers(signature_input.strip(" \t"), signature.strip(" \t"))
        self._check_coverage(parsed, lowered, repeated, body=body, query=query)
        base = signature_base(
            parsed.components, method=method, path=path, query=query, headers=lowered,
            signature_params=parsed.params_text,
        )
        now = self.clock()
        self._check_time(parsed, now)
        _check_digest(lowered.get("digest"), body)
        try:
            key = await self.keys.get_key(parsed.key_id)
        except WebhookVerificationError:
            raise
        except Exception:
            logger.warning("the webhook key provider failed", exc_info=True)
            raise WebhookVerificationError("keys-unavailable") from None
        if key is None:
            raise WebhookVerificationError("unknown-key")
        try:
            key.verify(parsed.signature, base, ec.ECDSA(hashes.SHA512()))
        except (InvalidSignature, ValueError, TypeError):
            raise WebhookVerificationError("bad-signature") from None
        return VerifiedSignature(
            key_id=parsed.key_id, nonce=parsed.nonce, created=parsed.created,
            expires=parsed.expires, components=parsed.components,
            keep_until=parsed.expires + self.max_skew,
        )

    @staticmethod
    def _check_coverage(
        parsed: SignatureHeader,
        headers: Mapping[str, str],
        repeated: set[str],
        *,
        body: bytes,
        query: str,
    ) -> None:
        covered = set(parsed.components)
        needed = {"@method", "@path"} | ({"digest"} if body else set())
        needed |= {"@query"} if query else set()
        if not needed <= covered:
            raise WebhookVerificationError("insufficient-coverage")
        for name in parsed.components:
            if name.startswith("@"):
                if name not in DERIVED_COMPONENTS:
                    raise WebhookVerificationError("unsupported-component")
                continue
            value = headers.get(name)
            if value is None:
                raise WebhookVerificationError("missing-header")
            if name in repeated or not _clean(value):
                raise WebhookVerificationError("malformed-headers")

    def _check_time(self, parsed: SignatureHeader, now: float) -> None:
        if not 0 < parsed.expires - parsed.created <= self.max_validity:
            raise WebhookVerificationError("bad-validity")
        if parsed.created > now + self.max_skew:
            raise WebhookVerificationError("not-yet-valid")
        if parsed.expires < now - self.max_skew:
            raise WebhookVerificationError("expired")
