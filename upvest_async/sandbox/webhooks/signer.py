"""Upvest's "v6" HTTP message signatures, as the webhook sender makes them.

The sandbox's own reading, independent of the client's verifier (the tests pin it to requests
signed by Upvest's own signer). Sources: docs.upvest.co "Implementing HTTP Message Signatures
v6" (https://docs.upvest.co/documentation/tutorials/http_signatures/implementing_http_signatures_v6),
the IETF draft it follows
(https://datatracker.ietf.org/doc/html/draft-ietf-httpbis-message-signatures-06), and the
signer Upvest publishes, ``httpsignature-proxy`` v1.3.8, the last release that signs v6
(https://github.com/upvestco/httpsignature-proxy/tree/v1.3.8):

- signature base (:func:`signature_base`): one line ``name: value`` per covered component in
  the order of ``signature-input``, the name **not** quoted (unlike the draft; Upvest's signer
  writes it so), values of headers trimmed, ``@method`` upper-case, ``@path`` the path,
  ``@query`` ``?`` and the raw query; then ``@signature-params: <params>``; lines joined by
  ``\n``, no newline at the end;
- params: ``("n1" "n2" ...);keyid="<kid>";created=<unix s>;nonce="<nonce>";expires=<unix s>``;
- headers: ``digest: SHA-256=<base64>`` for a non-empty body (:func:`digest_header`),
  ``signature-input: sig1=<params>``,
  ``signature: sig1=:<base64 DER ECDSA P-521/SHA-512>:`` (standard padded base64).
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Mapping, Sequence

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from .keys import WebhookKey

__all__ = [
    "SIGNATURE_LIFETIME",
    "digest_header",
    "format_signature_params",
    "sign_base",
    "sign_webhook",
    "signature_base",
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


def digest_header(body: bytes) -> str:
    """The ``digest`` header of ``body``: the instance digest of RFC 3230 section 4.3.2 with
    the ``SHA-256`` algorithm of RFC 5843 (base64 of the 32-byte SHA-256 of the body, standard
    alphabet, padded), as the v6 page of docs.upvest.co describes it."""
    encoded = base64.standard_b64encode(hashlib.sha256(body).digest())
    return "SHA-256=" + encoded.decode("ascii")


def signature_base(covered: Sequence[tuple[str, str]], params: str) -> bytes:
    """The v6 signature base, UTF-8: ``covered`` as ``(component name, value)`` pairs in the
    order of the params' list (values as they go into the base: see the module docs), then the
    ``@signature-params`` line with ``params`` verbatim."""
    lines = [f"{name}: {value}" for name, value in covered]
    lines.append(f"@signature-params: {params}")
    return "\n".join(lines).encode("utf-8")


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
    covered = [(name.lower(), value.strip(" \t")) for name, value in headers.items()]
    covered += [("@method", method.upper()), ("@path", path)]
    if query:
        covered.append(("@query", "?" + query))
    added: dict[str, str] = {}
    if body:
        added["digest"] = digest_header(body)
        covered.append(("digest", added["digest"]))
    params = format_signature_params(
        [name for name, _ in covered], keyid=key.kid, created=created,
        nonce=nonce if nonce is not None else secrets.token_hex(8),
        expires=created + SIGNATURE_LIFETIME,
    )
    added["signature-input"] = f"sig1={params}"
    added["signature"] = f"sig1=:{sign_base(signature_base(covered, params), key.private_key)}:"
    return added
