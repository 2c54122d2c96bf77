"""Temporary re-export of :mod:`tests.support.webhooks_signer`, removed when the webhook
receiver's tests move (issue 20)."""

from tests.support.webhooks_signer import *  # noqa: F403
