"""A client for an embedded sandbox, as users build one."""

from __future__ import annotations

from typing import Any

from upvest_async import UpvestClient
from upvest_async.sandbox import Sandbox


def client_for(sandbox: Sandbox, **overrides: Any) -> UpvestClient:
    """An :class:`UpvestClient` for the started ``sandbox``: ``sandbox.client_settings()``,
    with ``overrides`` (any constructor keyword) taking precedence."""
    return UpvestClient(**{**sandbox.client_settings(), **overrides})
