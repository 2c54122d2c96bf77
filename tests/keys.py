"""Temporary re-export of :mod:`tests.support.keys`, removed when the webhook
receiver's tests move (issue 20)."""

from tests.support.keys import *  # noqa: F403
