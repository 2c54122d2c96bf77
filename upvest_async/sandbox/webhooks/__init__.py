"""Upvest's webhook sending side, in the embedded sandbox (WEBHOOKS.md)."""

from .keys import WebhookKey, WebhookKeys
from .signer import (
    SIGNATURE_LIFETIME,
    body_digest,
    format_signature_params,
    sign_base,
    sign_webhook,
    signature_base,
)

__all__ = [
    "SIGNATURE_LIFETIME",
    "WebhookKey",
    "WebhookKeys",
    "body_digest",
    "format_signature_params",
    "sign_base",
    "sign_webhook",
    "signature_base",
]
