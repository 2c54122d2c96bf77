"""The keys under which the sandbox's application carries its state and each request carries
what the middlewares learned about it, and the handler type.

A leaf: it imports nothing of the sandbox at run time, so that every module (the handlers, the
middlewares, :mod:`.problems`, :mod:`.idempotency`) can read the state without importing
:mod:`.state`, which builds on them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from .state import SandboxState

__all__ = [
    "FAULT_KEY",
    "NONCE_KEY",
    "REQUEST_ID_KEY",
    "STATE_KEY",
    "THROTTLED_KEY",
    "Handler",
]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: The application's :class:`~.state.SandboxState`.
STATE_KEY: web.AppKey[SandboxState] = web.AppKey("state")
#: The ``upvest-request-id`` the sandbox gave the request.
REQUEST_ID_KEY = web.RequestKey("request_id", str)
#: The nonce of the request's verified signature.
NONCE_KEY = web.RequestKey("nonce", str)
#: The fault injected into the request (one of :data:`~.faults.FAULT_KINDS`).
FAULT_KEY = web.RequestKey("fault", str)
#: Whether the rate limit answered the request 429.
THROTTLED_KEY = web.RequestKey("throttled", bool)
