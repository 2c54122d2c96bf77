"""Parsing ``signature-input`` and ``signature`` (RFC 8941 dictionaries, via ``http-sfv``).

v6 quirks handled here: the member value of ``signature-input`` is kept verbatim, because it is
re-used as is on the ``@signature-params`` line of the base; the params come in any order
(``keyid;created;nonce;expires`` from the proxy, ``keyid;created;expires;nonce`` in the docs);
there is no ``alg``. One signature per request: each header must hold exactly one member, with
the same label. The signature's base64 must be canonical (``http-sfv`` decodes leniently, so
two texts could otherwise decode to the same bytes).
"""

from __future__ import annotations

import attrs
from http_sfv.byteseq import ser_byteseq
from http_sfv.dictionary import Dictionary
from http_sfv.item import InnerList, Item

from .errors import WebhookVerificationError

__all__ = ["SignatureHeader", "parse_signature_headers"]

_MAX_HEADER = 8192


@attrs.frozen
class SignatureHeader:
    """One parsed v6 signature: ``label``; ``components`` (covered names, in order);
    ``params_text`` (the ``signature-input`` member value, verbatim); ``key_id``, ``nonce``,
    ``created`` / ``expires`` (Unix seconds); ``signature`` (DER bytes)."""

    label: str
    components: tuple[str, ...]
    params_text: str
    key_id: str
    nonce: str
    created: int
    expires: int
    signature: bytes = attrs.field(repr=False)


def _dictionary(text: str) -> Dictionary:
    if len(text) > _MAX_HEADER or not text.isascii():
        raise WebhookVerificationError("malformed-signature")
    parsed = Dictionary()
    try:
        parsed.parse(text.encode("ascii"))
    except Exception:  # http-sfv raises ValueError, and worse on some inputs
        raise WebhookVerificationError("malformed-signature") from None
    if len(parsed) != 1:
        raise WebhookVerificationError("malformed-signature", "expected exactly one signature")
    return parsed


def _component(item: object) -> str:
    if not isinstance(item, Item) or not isinstance(item.value, str) or item.params:
        raise WebhookVerificationError("unsupported-component")
    name: str = item.value
    if not name or name != name.lower() or not name.isprintable() or " " in name:
        raise WebhookVerificationError("malformed-signature", "component names are lower-case")
    return name


def parse_signature_headers(signature_input: str, signature: str) -> SignatureHeader:
    """Parse the two header values (already trimmed) into a :class:`SignatureHeader`.

    Raises :class:`~upvest_async.webhooks.WebhookVerificationError` (``malformed-signature``,
    ``unsupported-component``) for anything else than one v6 signature with ``keyid``,
    ``nonce``, ``created`` and ``expires``.
    """
    inputs = _dictionary(signature_input)
    signatures = _dictionary(signature)
    (label, inner), = inputs.items()
    (signature_label, item), = signatures.items()
    if label != signature_label:
        raise WebhookVerificationError("malformed-signature", "labels differ")
    if not isinstance(inner, InnerList):
        raise WebhookVerificationError("malformed-signature", "signature-input is no list")
    if not isinstance(item, Item) or not isinstance(item.value, bytes) or item.params:
        raise WebhookVerificationError("malformed-signature", "signature is no byte sequence")
    if signature != f"{label}={ser_byteseq(item.value)}":
        raise WebhookVerificationError("malformed-signature", "signature is not canonical")
    prefix = f"{label}="
    if not signature_input.startswith(prefix):
        raise WebhookVerificationError("malformed-signature")
    components = tuple(_component(entry) for entry in inner)
    if len(set(components)) != len(components):
        raise WebhookVerificationError("malformed-signature", "a component is covered twice")
    params = dict(inner.params)
    key_id, nonce = params.get("keyid"), params.get("nonce")
    created, expires = params.get("created"), params.get("expires")
    if not (isinstance(key_id, str) and key_id and isinstance(nonce, str) and nonce
            and type(created) is int and type(expires) is int):
        raise WebhookVerificationError(
            "malformed-signature", "keyid, nonce, created and expires are required"
        )
    return SignatureHeader(
        label=label, components=components, params_text=signature_input[len(prefix):],
        key_id=key_id, nonce=nonce, created=created, expires=expires, signature=item.value,
    )
