"""The sandbox's webhook signing keys (Upvest's side, distinct from the client's signing key):
ECDSA P-521 key pairs with a key id, published as a JWKS at ``GET /auth/verify_keys``.

Source: W7 of docs/guides/api-readings.md (https://docs.upvest.co/api/Webhook-Subscriptions,
"Get signing keys"); the JWKS shape is the one of
``webhooks_v6_fixtures/jwks.json`` (RFC 7517, RFC 7518 section 6.2).
"""

from __future__ import annotations

import base64
import hashlib
import uuid
from typing import Any

import attrs
from cryptography.hazmat.primitives.asymmetric import ec

__all__ = ["WebhookKey", "WebhookKeys"]

_P521_BYTES = 66  # coordinate length of P-521 (ceil(521 / 8))


def _b64url(number: int) -> str:
    raw = number.to_bytes(_P521_BYTES, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


@attrs.frozen(repr=False)
class WebhookKey:
    """One key pair: ``kid`` (a uuid string) and the P-521 ``private_key`` (never in reprs)."""

    kid: str
    private_key: ec.EllipticCurvePrivateKey

    def __repr__(self) -> str:
        return f"WebhookKey(kid={self.kid!r})"

    def public_jwk(self) -> dict[str, str]:
        """The public half as a JWK: ``kid``, ``kty`` ``EC``, ``crv`` ``P-521``, ``x``, ``y``
        (base64url without padding, 66 bytes each)."""
        numbers = self.private_key.public_key().public_numbers()
        return {"kid": self.kid, "kty": "EC", "crv": "P-521",
                "x": _b64url(numbers.x), "y": _b64url(numbers.y)}

    @classmethod
    def derive(cls, seed: int, generation: int) -> WebhookKey:
        """The key pair number ``generation`` of a sandbox seeded with ``seed``
        (deterministic, so a restarted sandbox publishes the same keys)."""
        digest = hashlib.sha512(f"upvest-async-sandbox-webhooks-{seed}-{generation}".encode())
        material = digest.digest() + hashlib.sha512(digest.digest()).digest()
        # Any integer in [1, 2**520) is a valid P-521 private scalar.
        scalar = int.from_bytes(material) % (2**520 - 1) + 1
        kid = str(uuid.UUID(bytes=material[:16], version=4))
        return cls(kid=kid, private_key=ec.derive_private_key(scalar, ec.SECP521R1()))


class WebhookKeys:
    """The keys the sandbox signs webhooks with: the newest signs, the JWKS lists the newest
    and the older ones still published.

    ``seed``: the keys are deterministic from it. :meth:`rotate` makes a new key pair (new
    ``kid``); with ``keep_old`` the previous keys stay in the JWKS (what a receiver sees
    during a rotation), without it only the new one is published.
    """

    def __init__(self, seed: int = 0) -> None:
        self._seed = seed
        self._generation = 0
        self._published: list[WebhookKey] = [WebhookKey.derive(seed, 0)]

    def __repr__(self) -> str:
        return f"WebhookKeys(current={self.current.kid!r}, published={len(self._published)})"

    @property
    def current(self) -> WebhookKey:
        """The key new signatures are made with."""
        return self._published[-1]

    @property
    def published(self) -> tuple[WebhookKey, ...]:
        """Every key in the JWKS, oldest first."""
        return tuple(self._published)

    def rotate(self, *, keep_old: bool = True) -> WebhookKey:
        """Make and return a new current key; ``keep_old=False`` withdraws the older ones."""
        self._generation += 1
        key = WebhookKey.derive(self._seed, self._generation)
        self._published = [*self._published, key] if keep_old else [key]
        return key

    def jwks(self) -> dict[str, Any]:
        """``{"keys": [JWK, ...]}``, newest first (``GET /auth/verify_keys``)."""
        return {"keys": [key.public_jwk() for key in reversed(self._published)]}
