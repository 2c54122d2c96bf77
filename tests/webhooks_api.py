"""Temporary re-export of :mod:`tests.support.webhooks_api`, removed when the webhook
receiver's tests move (issue 20)."""

from tests.support.webhooks_api import *  # noqa: F403
