"""HTTP message signatures for the Upvest Investment API: pure functions, no I/O.

Implements the subset of draft-ietf-httpbis-message-signatures-15 ("v15") that Upvest requires
(see Upvest's "Implementing HTTP message signatures v15"): ECDSA P-521 with SHA-512, DER-encoded
signature bytes, label ``sig1``, and the parameters ``keyid``, ``created``, ``expires`` and a fresh
``nonce`` per request. ``content-digest`` follows draft-ietf-httpbis-digest-headers (``sha-512``).

The signature base is one line per covered component, in the order of the covered components,
joined by ``\\n`` with no trailing newline; the last line is ``"@signature-params": `` followed by
the exact value that goes into ``signature-input`` after ``sig1=`` (draft 15, section 2.5).
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from collections.abc import Mapping, Sequence

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

__all__ = [
    "COVERED_HEADERS",
    "SIGNATURE_LABEL",
    "SIGNATURE_VERSION",
    "content_digest",
    "covered_components",
    "serialize_signature_params",
    "sign_request",
    "signature_base",
]

#: Value of the ``upvest-signature-version`` header.
SIGNATURE_VERSION = "15"
#: The signature label used in ``signature-input`` and ``signature``.
SIGNATURE_LABEL = "sig1"
#: Headers covered when present, in this order (Upvest's list; derived components come first).
COVERED_HEADERS: tuple[str, ...] = (
    "accept",
    "authorization",
    "content-digest",
    "content-length",
    "content-type",
    "idempotency-key",
    "upvest-client-id",
)
#: Seconds between ``created`` and ``expires`` (Upvest's reference signers use 10).
DEFAULT_EXPIRES_IN = 10


def content_digest(body: bytes) -> str:
    """Return the ``content-digest`` value ``sha-512=:<base64>:`` of the exact body bytes.

    Source: draft-ietf-httpbis-digest-headers, section 2 (SHA-512 algorithm key ``sha-512``).
    """
    return "sha-512=:" + base64.b64encode(hashlib.sha512(body).digest()).decode("ascii") + ":"


def covered_components(query: str, headers: Mapping[str, str]) -> list[str]:
    """Return the covered component names for a request, in signature order.

    ``@method`` and ``@path`` always; ``@query`` only when ``query`` is non-empty; then each of
    :data:`COVERED_HEADERS` that is present in ``headers`` (names compared lower-case).
    """
    names = ["@method", "@path"]
    if query:
        names.append("@query")
    present = {name.lower() for name in headers}
    names.extend(name for name in COVERED_HEADERS if name in present)
    return names


def _sf_string(value: str) -> str:
    """Serialize ``value`` as an RFC 8941 sf-string (quoted, ``"`` and ``\\`` escaped)."""
    if not (value.isascii() and value.isprintable()):
        raise ValueError("signature parameter strings must be printable ASCII")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def serialize_signature_params(
    components: Sequence[str], *, key_id: str, created: int, expires: int, nonce: str
) -> str:
    """Serialize the ``@signature-params`` value: ``("@method" ...);keyid=..;created=..;...``.

    The same string is the value of ``signature-input`` after ``sig1=`` and the last line of the
    signature base (draft 15, section 2.3).
    """
    inner = " ".join(_sf_string(name) for name in components)
    return (
        f"({inner});keyid={_sf_string(key_id)};created={created};expires={expires}"
        f";nonce={_sf_string(nonce)}"
    )


def signature_base(
    components: Sequence[str],
    *,
    method: str,
    path: str,
    query: str,
    headers: Mapping[str, str],
    signature_params: str,
) -> bytes:
    """Build the signature base (draft 15, section 2.5) as UTF-8 bytes.

    ``path`` is the raw URL path as sent (``/accounts/.../positions``); ``query`` is the raw query
    string as sent, without the leading ``?`` (``""`` when there is none). ``headers`` maps
    lower-case header names to their values. Raises :class:`KeyError` naming a covered header
    that is absent, and :class:`ValueError` for ``@query`` without a query.
    """
    lines: list[str] = []
    for name in components:
        if name == "@method":
            value = method.upper()
        elif name == "@path":
            value = path or "/"
        elif name == "@query":
            if not query:
                raise ValueError('"@query" is covered but the request has no query')
            value = "?" + query
        elif name.startswith("@"):
            raise ValueError(f"unsupported derived component {name!r}")
        else:
            value = headers[name].strip()
        lines.append(f'"{name}": {value}')
    lines.append(f'"@signature-params": {signature_params}')
    return "\n".join(lines).encode("utf-8")


def sign_request(
    *,
    method: str,
    path: str,
    query: str,
    headers: Mapping[str, str],
    body: bytes,
    private_key: ec.EllipticCurvePrivateKey,
    key_id: str,
    created: int | None = None,
    expires_in: int = DEFAULT_EXPIRES_IN,
    nonce: str | None = None,
) -> dict[str, str]:
    """Sign one request attempt and return the headers to add to it.

    ``headers`` are the request's headers (any case); covered ones are those of
    :func:`covered_components`. When ``body`` is non-empty, ``content-digest`` over the exact bytes
    is added and covered. ``created`` defaults to the current Unix time in seconds, ``expires`` is
    ``created + expires_in`` seconds, and ``nonce`` defaults to 32 random bytes, URL-safe base64.

    Returns the headers ``content-digest`` (when there is a body), ``signature-input``,
    ``signature`` and ``upvest-signature-version``.
    """
    lowered = {name.lower(): value for name, value in headers.items()}
    added: dict[str, str] = {}
    if body:
        added["content-digest"] = lowered["content-digest"] = content_digest(body)
        lowered.setdefault("content-length", str(len(body)))
    components = covered_components(query, lowered)
    created = int(time.time()) if created is None else created
    params = serialize_signature_params(
        components,
        key_id=key_id,
        created=created,
        expires=created + expires_in,
        nonce=nonce if nonce is not None else secrets.token_urlsafe(32),
    )
    base = signature_base(
        components, method=method, path=path, query=query, headers=lowered,
        signature_params=params,
    )
    signature = private_key.sign(base, ec.ECDSA(hashes.SHA512()))
    added["signature-input"] = f"{SIGNATURE_LABEL}={params}"
    added["signature"] = f"{SIGNATURE_LABEL}=:{base64.b64encode(signature).decode('ascii')}:"
    added["upvest-signature-version"] = SIGNATURE_VERSION
    return added
