"""Errors of webhook verification and parsing.

Both derive from :class:`~upvest_async.UpvestError`. Messages are one line and never quote header
values, signatures, keys or body bytes (a sender can put anything there).
"""

from __future__ import annotations

from ..errors import StoreUnavailableError, UpvestError

__all__ = [
    "REASONS",
    "TRANSIENT_REASONS",
    "StoreUnavailableError",
    "WebhookPayloadError",
    "WebhookVerificationError",
]

#: Every ``reason`` code of :class:`WebhookVerificationError`, with what it means.
REASONS: dict[str, str] = {
    "body-too-large": "the body is larger than the verifier's max_body_bytes",
    "invalid-target": "the method or path given to the verifier is not a valid request target",
    "malformed-headers": "a header name or value is unusable (not text, control characters, "
                         "or a signature-relevant header given twice)",
    "missing-signature": "signature or signature-input is absent",
    "malformed-signature": "signature or signature-input is not a valid v6 signature",
    "unsupported-component": "a covered component is not @method, @path, @query or a header",
    "insufficient-coverage": "@method, @path, digest (with a body) or @query (with a query) "
                             "is not covered",
    "missing-header": "a covered header is absent from the request",
    "bad-validity": "expires is not after created, or the window is longer than allowed",
    "not-yet-valid": "created lies in the future (beyond the allowed clock skew)",
    "expired": "expires lies in the past (beyond the allowed clock skew)",
    "digest-mismatch": "the digest header is malformed, lacks SHA-256, or does not match the body",
    "unknown-key": "the signature's keyid is not in the JWKS",
    "keys-unavailable": "the JWKS could not be fetched (transient: retry later)",
    "bad-signature": "the ECDSA P-521/SHA-512 signature does not verify over the signature base",
    "replayed": "this signature (key id and nonce) was already accepted",
    "replay-cache-full": "the replay cache is full of unexpired signatures (transient)",
}

#: Reasons that say nothing about the request itself: the sender should retry later.
TRANSIENT_REASONS = frozenset({"keys-unavailable", "replay-cache-full"})


class WebhookVerificationError(UpvestError):
    """A webhook request's signature is missing, malformed, expired, made with an unknown key,
    does not cover the minimum, has a non-matching digest, does not verify, or is replayed.

    ``reason``: a short stable code, one of :data:`REASONS` (``"bad-signature"``,
    ``"expired"``, ...). ``transient``: whether the cause lies on the receiving side (keys could
    not be fetched, replay cache full), so the sender should retry later. ``str(error)`` never
    quotes request data.
    """

    def __init__(self, reason: str, message: str | None = None) -> None:
        self.reason = reason
        super().__init__(f"webhook verification failed ({reason}): {message or REASONS[reason]}")

    @property
    def transient(self) -> bool:
        """Whether the sender should retry later (see :data:`TRANSIENT_REASONS`)."""
        return self.reason in TRANSIENT_REASONS


class WebhookPayloadError(UpvestError):
    """A verified webhook body is not a valid batch ``{"payload": [event, ...]}``.

    ``path``: where in the body (``$.payload[2].object.quantity``); the message names the rule
    broken, never the values.
    """

    def __init__(self, message: str, *, path: str = "$") -> None:
        self.path = path
        super().__init__(f"webhook body is not a valid event batch at {path}: {message}")

