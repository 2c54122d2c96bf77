"""Upvest's "v6" HTTP message signatures, as the webhook sender makes them.

The format is the one of Upvest's own signer, ``upvestco/httpsignature-proxy`` v1.3.8
(WEBHOOKS.md "Signatures"; docs.upvest.co "Implementing HTTP Message Signatures v6"):

- signature base: built by :func:`upvest_async.webhooks.base.signature_base`, the receiver's
  own builder (one implementation of the v6 base for both sides, pinned to the fixtures):
  one line ``name: value`` per covered component, names **not** quoted, then
  ``@signature-params: <params>``; the signing (the sandbox's key, Upvest's side) is here;
- params: ``("n1" "n2" ...);keyid="<kid>";created=<unix s>;nonce="<nonce>";expires=<unix s>``;
- headers: ``digest: SHA-256=<base64>`` for a non-empty body, ``signature-input: sig1=<params>``,
  ``signature: sig1=:<base64 DER ECDSA P-521/SHA-512>:`` (standard padded base64).
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Mapping, Sequence

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from ...webhooks.base import digest_value, signature_base
from .keys import WebhookKey

__all__ = [
    "SIGNATURE_LIFETIME",
    "format_signature_params",
    "sign_base",
    "sign_webhook",
]

#: Seconds between ``created`` and ``expires`` (the proxy's 60 s).
SIGNATURE_LIFETIME = 60


def format_signature_params(
    components: Sequence[str], *, keyid: str, created: int, nonce: str, expires: int
) -> str:
    """The v6 params in the proxy's order: ``("a" "b");keyid="..";created=..;nonce="..";
    expires=..``. Raises :class:`ValueError` for a component or parameter that cannot be
    written as an RFC 8941 string."""
    for text in (*components, keyid, nonce):
        if '"' in text or "\\" in text or not text.isprintable() or not text.isascii():
            raise ValueError(f"cannot be written into signature params: {text!r}")
    listed = " ".join(f'"{name}"' for name in components)
    return f'({listed});keyid="{keyid}";created={created};nonce="{nonce}";expires={expires}'


def sign_base(base: bytes, private_key: ec.EllipticCurvePrivateKey) -> str:
    """ECDSA P-521 over SHA-512 of the signature ``base``, DER, standard padded base64."""
    der = private_key.sign(base, ec.ECDSA(hashes.SHA512()))
    return base64.b64encode(der).decode("ascii")


def sign_webhook(
    key: WebhookKey,
    *,
    method: str,
    path: str,
    query: str,
    headers: Mapping[str, str],
    body: bytes,
    created: int,
    nonce: str | None = None,
) -> dict[str, str]:
    """Sign one request; returns the headers to add: ``digest`` (non-empty body only),
    ``signature-input`` and ``signature``.

    Covered, in this order: every name of ``headers`` (lower-cased; the sender passes
    ``content-type``), ``@method``, ``@path``, ``@query`` (with a query) and ``digest`` (with a
    body). ``created``: unix seconds; ``expires`` is ``created + 60``; ``nonce``: 16 random hex
    digits unless given.
    """
    covered = {name.lower(): value for name, value in headers.items()}
    components = [*covered, "@method", "@path"]
    if query:
        components.append("@query")
    if body:
        covered["digest"] = digest_value(body)
        components.append("digest")
    params = format_signature_params(
        components, keyid=key.kid, created=created,
        nonce=nonce if nonce is not None else secrets.token_hex(8),
        expires=created + SIGNATURE_LIFETIME,
    )
    base = signature_base(components, method=method.upper(), path=path, query=query,
                          headers=covered, signature_params=params)
    added = {"digest": covered["digest"]} if body else {}
    added["signature-input"] = f"sig1={params}"
    added["signature"] = f"sig1=:{sign_base(base, key.private_key)}:"
    return added
