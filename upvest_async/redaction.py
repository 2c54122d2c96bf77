"""Keeping secrets out of error messages and log lines, even when a server echoes them back.

Each client registers its secrets (the client secret, and every access token it receives) in a
:class:`Secrets` set. :func:`redact` replaces every occurrence of a secret of any live client
(the sets are held weakly, so they go away with their client) by ``<redacted>`` in a text the
SDK puts into an error or a log line: problem details, response bodies and headers kept on an
error, request ids, values quoted by a validation message. Besides the secret itself, its
percent-encoded (form) and JSON-escaped spellings are replaced in raw bodies, and PEM private
key blocks are replaced whole.

Secrets shorter than :data:`MIN_SECRET_LENGTH` characters are not redacted: they cannot be told
apart from ordinary text (real client secrets and access tokens are far longer).
"""

from __future__ import annotations

import collections
import functools
import json
import re
import threading
import weakref
from urllib.parse import quote, quote_plus

__all__ = ["MIN_SECRET_LENGTH", "REDACTED", "Secrets", "redact", "redact_bytes"]

#: What replaces a secret.
REDACTED = "<redacted>"
#: Shorter secrets are not redacted (see the module docs).
MIN_SECRET_LENGTH = 8
#: Access tokens remembered per client (the newest); older ones expired long ago.
TOKENS_KEPT = 32

_PEM = re.compile(
    r"-----BEGIN ([A-Z0-9 ]*)PRIVATE KEY-----.*?(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|\Z)",
    re.DOTALL,
)
_PEM_BYTES = re.compile(_PEM.pattern.encode(), re.DOTALL)

_lock = threading.Lock()
_live: weakref.WeakSet[Secrets] = weakref.WeakSet()


# (json: the escapes of a secret as json.dumps writes request bodies, transport.py)
@functools.lru_cache(maxsize=256)
def _spellings(secret: str) -> tuple[str, ...]:
    """The secret as it may appear in a body: raw, form-encoded, percent-encoded, JSON-escaped."""
    forms = {secret, quote_plus(secret), quote(secret, safe=""),
             json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1],
             secret.replace("/", "\\/")}
    return tuple(sorted(forms, key=len, reverse=True))


class Secrets:
    """The secrets of one client: ``fixed`` ones (the client secret) and the latest
    :data:`TOKENS_KEPT` access tokens. Registered for :func:`redact` while it is alive."""

    def __init__(self, *fixed: str) -> None:
        self._fixed: list[str] = []
        self._tokens: collections.deque[str] = collections.deque(maxlen=TOKENS_KEPT)
        for value in fixed:
            self.add(value)
        with _lock:
            _live.add(self)

    def __repr__(self) -> str:
        return f"Secrets(count={len(self._fixed) + len(self._tokens)})"

    def add(self, value: str, *, token: bool = False) -> None:
        """Redact ``value`` from now on (``token``: an access token, of which only the latest
        are kept)."""
        if not isinstance(value, str) or len(value) < MIN_SECRET_LENGTH:
            return
        with _lock:
            if token:
                if value not in self._tokens:
                    self._tokens.append(value)
            elif value not in self._fixed:
                self._fixed.append(value)

    def values(self) -> list[str]:
        """The registered secrets (longest first)."""
        return sorted([*self._fixed, *self._tokens], key=len, reverse=True)


def _all_spellings() -> list[str]:
    with _lock:
        sets = list(_live)
    values = {value for secrets in sets for value in secrets.values()}
    return sorted({form for value in values for form in _spellings(value)}, key=len,
                  reverse=True)


def redact(text: str) -> str:
    """``text`` with every registered secret, in each of its usual spellings (raw,
    percent-encoded, JSON-escaped), and any PEM private key replaced by ``<redacted>``."""
    if "PRIVATE KEY" in text:
        text = _PEM.sub(REDACTED, text)
    for spelling in _all_spellings():
        if spelling in text:
            text = text.replace(spelling, REDACTED)
    return text


def redact_bytes(body: bytes) -> bytes:
    """:func:`redact` for a raw body (bytes that are not UTF-8 stay as they are)."""
    if b"PRIVATE KEY" in body:
        body = _PEM_BYTES.sub(REDACTED.encode(), body)
    replacement = REDACTED.encode()
    for spelling in _all_spellings():
        encoded = spelling.encode("utf-8", "surrogatepass")
        if encoded in body:
            body = body.replace(encoded, replacement)
    return body
