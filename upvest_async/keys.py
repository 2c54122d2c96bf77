"""Loading the HTTP-signing private key (ECDSA P-521) from PEM."""

from __future__ import annotations

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from .errors import SigningKeyError

__all__ = ["PrivateKeyInput", "load_signing_key"]

#: What the client accepts as ``private_key``: PEM text or bytes, or a loaded key.
PrivateKeyInput = str | bytes | ec.EllipticCurvePrivateKey


def load_signing_key(
    key: PrivateKeyInput, passphrase: str | bytes | None = None
) -> ec.EllipticCurvePrivateKey:
    """Load a P-521 private key from PEM (``BEGIN EC PRIVATE KEY`` or PKCS#8 ``BEGIN PRIVATE KEY``,
    encrypted or not).

    Raises :class:`SigningKeyError` when the PEM is garbage, the passphrase is wrong, missing or
    given for an unencrypted key, the key is not an EC key, or its curve is not P-521 (Upvest's
    signing algorithm is ECDSA P-521/SHA-512). Messages never include the key or the passphrase.
    """
    if isinstance(key, ec.EllipticCurvePrivateKey):
        loaded: object = key
    else:
        pem = key.encode("utf-8") if isinstance(key, str) else key
        secret = passphrase.encode("utf-8") if isinstance(passphrase, str) else passphrase
        if not secret:
            secret = None
        try:
            loaded = load_pem_private_key(pem, password=secret)
        except TypeError as exc:
            # cryptography raises TypeError for "encrypted but no password" and the reverse.
            if secret is None:
                raise SigningKeyError(
                    "the private key is encrypted: a passphrase is required"
                ) from None
            raise SigningKeyError(
                "a passphrase was given but the private key is not encrypted"
            ) from exc.__cause__
        except (ValueError, UnsupportedAlgorithm):
            reason = (
                "wrong passphrase or corrupt key" if secret is not None
                else "not a readable PEM private key"
            )
            raise SigningKeyError(f"cannot load the private key: {reason}") from None
    if not isinstance(loaded, ec.EllipticCurvePrivateKey):
        raise SigningKeyError(
            f"the private key is a {type(loaded).__name__.lstrip('_')}, "
            "but Upvest signing needs an EC P-521 key"
        )
    if not isinstance(loaded.curve, ec.SECP521R1):
        raise SigningKeyError(
            f"the EC private key is on curve {loaded.curve.name}, but Upvest signing needs "
            "P-521 (secp521r1)"
        )
    return loaded
