"""The v6 signature base and the ``digest`` header, as Upvest's webhook signer builds them.

Source: ``upvestco/httpsignature-proxy`` v1.3.8 (``service/signer/material/material.go``) and
docs.upvest.co "Implementing HTTP Message Signatures v6"; reading W5 of
``docs/guides/api-readings.md``. One line per covered component, ``name: value``, the name
**not** quoted, joined by ``\\n``; then ``@signature-params: <params>`` where ``<params>`` is the
``signature-input`` member value verbatim; no trailing newline. Pure functions, no I/O.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping, Sequence

from .errors import WebhookVerificationError

__all__ = ["DERIVED_COMPONENTS", "digest_value", "signature_base"]

#: Derived components a v6 webhook signature may cover.
DERIVED_COMPONENTS = frozenset({"@method", "@path", "@query"})


def digest_value(body: bytes) -> str:
    """The ``digest`` header value for ``body``: ``SHA-256=<standard base64 of SHA-256>``
    (RFC 3230 instance digest, as Upvest's v6 signer writes it)."""
    return "SHA-256=" + base64.b64encode(hashlib.sha256(body).digest()).decode("ascii")


def signature_base(
    components: Sequence[str],
    *,
    method: str,
    path: str,
    query: str,
    headers: Mapping[str, str],
    signature_params: str,
) -> bytes:
    """Build the v6 signature base as UTF-8 bytes.

    ``components``: the covered component names in ``signature-input`` order; ``method``: the
    request method as received (Upvest sends it upper-case); ``path``: the path without the
    query; ``query``: the raw query without ``?`` (``""`` for none); ``headers``: lower-case
    names to values (trimmed here); ``signature_params``: the member value of
    ``signature-input`` after ``<label>=``, verbatim.

    Raises :class:`~upvest_async.webhooks.WebhookVerificationError`: ``missing-header`` for a
    covered header that is absent, ``unsupported-component`` for another derived component,
    ``insufficient-coverage`` for ``@query`` without a query.
    """
    lines: list[str] = []
    for name in components:
        if name == "@method":
            value = method
        elif name == "@path":
            value = path
        elif name == "@query":
            if not query:
                raise WebhookVerificationError("insufficient-coverage", "@query without a query")
            value = "?" + query
        elif name.startswith("@"):
            raise WebhookVerificationError("unsupported-component")
        else:
            found = headers.get(name)
            if found is None:
                raise WebhookVerificationError("missing-header")
            value = found.strip(" \t")
        lines.append(f"{name}: {value}")
    lines.append(f"@signature-params: {signature_params}")
    try:
        return "\n".join(lines).encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raise WebhookVerificationError("malformed-headers") from None
