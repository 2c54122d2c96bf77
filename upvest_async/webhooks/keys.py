"""Upvest's webhook verification keys: a JWKS of EC P-521 keys, parsed with ``joserfc``.

Source: API reference "Webhook Subscriptions", "Get signing keys" (``GET /auth/verify_keys``):
EC keys with ``kid``, ``kty: "EC"``, ``crv: "P-521"``, ``x``, ``y``. A signature's ``keyid``
is matched against ``kid``.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping
from typing import Any, Protocol

import attrs
import orjson
from cryptography.hazmat.primitives.asymmetric import ec
from joserfc.jwk import ECKey

from ..errors import ConfigurationError

__all__ = ["MAX_JWKS_KEYS", "KeyProvider", "WebhookKeys", "parse_jwks"]

#: A JWKS with more keys than this is refused.
MAX_JWKS_KEYS = 64


class KeyProvider(Protocol):
    """Where a :class:`~upvest_async.webhooks.WebhookVerifier` finds the key of a ``keyid``:
    :class:`WebhookKeys` (offline, fixed), or ``client.webhooks`` (fetched, refreshed on an
    unknown key id)."""

    async def get_key(self, key_id: str) -> ec.EllipticCurvePublicKey | None:
        """The P-521 public key named ``key_id``, or ``None`` when there is none.

        May raise :class:`~upvest_async.webhooks.WebhookVerificationError`
        (``keys-unavailable``) when the keys cannot be had right now."""
        ...


def parse_jwks(document: Any) -> dict[str, ec.EllipticCurvePublicKey]:
    """Parse a JWKS (``{"keys": [...]}``, as a mapping, JSON text or bytes) into ``kid`` ->
    P-521 public key.

    Keys that are not EC P-521 signature keys, have no ``kid``, or do not import (a point off
    the curve) are skipped. Raises :class:`ValueError` when the document is not a JWKS, holds
    more than :data:`MAX_JWKS_KEYS` keys, names a ``kid`` twice, or has no usable key.
    """
    if isinstance(document, bytes | str):
        try:
            document = orjson.loads(document)
        except orjson.JSONDecodeError:  # (a ValueError; also for nesting beyond 1024 levels)
            raise ValueError("the JWKS is not JSON") from None
    entries = document.get("keys") if isinstance(document, Mapping) else None
    if not isinstance(entries, list):
        raise ValueError('a JWKS is an object with a "keys" list')
    if len(entries) > MAX_JWKS_KEYS:
        raise ValueError(f"the JWKS holds more than {MAX_JWKS_KEYS} keys")
    keys: dict[str, ec.EllipticCurvePublicKey] = {}
    seen: set[str] = set()
    for entry in entries:
        if not isinstance(entry, Mapping):
            continue
        kid = entry.get("kid")
        if not isinstance(kid, str) or not kid:
            continue
        if kid in seen:
            raise ValueError("the JWKS names a kid twice")
        seen.add(kid)
        if entry.get("kty") != "EC" or entry.get("crv") != "P-521":
            continue
        if entry.get("use", "sig") != "sig":
            continue
        public = {name: entry[name] for name in ("kty", "crv", "x", "y") if name in entry}
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                imported = ECKey.import_key(public).public_key
        except Exception:  # joserfc raises ValueError, binascii.Error, KeyError, ...
            continue
        if isinstance(imported, ec.EllipticCurvePublicKey) and isinstance(
            imported.curve, ec.SECP521R1
        ):
            keys[kid] = imported
    if not keys:
        raise ValueError("the JWKS holds no usable EC P-521 key")
    return keys


def _copy(keys: Mapping[str, ec.EllipticCurvePublicKey]) -> dict[str, ec.EllipticCurvePublicKey]:
    return dict(keys)


@attrs.frozen
class WebhookKeys:
    """A fixed set of verification keys: ``kid`` -> EC P-521 public key.

    Build it with :meth:`from_jwks` (the JWKS of ``GET /auth/verify_keys``) or from
    ``cryptography`` keys. It is a :class:`KeyProvider`, so
    ``WebhookVerifier(WebhookKeys.from_jwks(jwks))`` verifies offline.
    """

    keys: Mapping[str, ec.EllipticCurvePublicKey] = attrs.field(converter=_copy)

    @classmethod
    def from_jwks(cls, document: Mapping[str, Any] | str | bytes) -> WebhookKeys:
        """Parse a JWKS (see :func:`parse_jwks`); raises
        :class:`~upvest_async.ConfigurationError` when it is unusable."""
        try:
            return cls(parse_jwks(document))
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from None

    def __contains__(self, key_id: object) -> bool:
        return key_id in self.keys

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys)

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def key_ids(self) -> list[str]:
        """The ``kid`` of every key, in JWKS order."""
        return list(self.keys)

    async def get_key(self, key_id: str) -> ec.EllipticCurvePublicKey | None:
        """The key named ``key_id``, or ``None``."""
        return self.keys.get(key_id)
