"""Webhook subscriptions of the sandbox: the resource of ``/webhooks`` (W4 of
docs/guides/api-readings.md; https://docs.upvest.co/api/Webhook-Subscriptions) and the
loopback rule for their URLs.

A subscription: ``id`` (uuid), ``created_at``/``updated_at`` (RFC 3339), ``title``, ``url``,
``type`` (event categories such as ``POSITION``, ``PORTFOLIO_ORDER``, exact event types, or
``ALL``), ``enabled``, ``config`` (``delay``: a duration string of at least ``1s`` such as
``"5s"`` or ``"1500ms"``, the time Upvest gathers events before it sends a package;
``max_package_size``: bytes of one request body).

Network rule: the sandbox only ever connects to loopback, so ``url`` must be ``http://`` with
host ``127.0.0.1``, ``localhost`` or ``[::1]`` (any port), without user info or fragment.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Final

import attrs
from yarl import URL

__all__ = [
    "DEFAULT_MAX_PACKAGE_SIZE",
    "LOOPBACK_HOSTS",
    "Subscription",
    "check_types",
    "check_url",
    "matches",
    "parse_delay",
]

#: Hosts a subscription URL may name.
LOOPBACK_HOSTS: Final = frozenset({"127.0.0.1", "localhost", "::1"})
#: ``config.max_package_size`` when none is given, bytes.
DEFAULT_MAX_PACKAGE_SIZE: Final = 65_536
_DURATION: Final = re.compile(r"(?:(\d+(?:\.\d+)?)(ms|s|m|h))")
_UNITS: Final = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_TYPE: Final = re.compile(r"[A-Z][A-Z0-9_]*(?:\.[A-Z][A-Z0-9_]*)?")


def check_url(url: str) -> str:
    """``url`` when it is an ``http://`` URL of a loopback host; else :class:`ValueError`
    saying why (the sandbox never connects anywhere else)."""
    if not isinstance(url, str) or not url or len(url) > 2048:
        raise ValueError("url: must be a non-empty string of at most 2048 characters")
    try:
        parsed = URL(url)
        port = parsed.port
    except ValueError:
        raise ValueError("url: is not a valid URL") from None
    if parsed.scheme != "http" or not parsed.absolute:
        raise ValueError("url: must be an absolute http:// URL (the sandbox sends plain HTTP)")
    if parsed.host not in LOOPBACK_HOSTS:
        raise ValueError(
            "url: the sandbox delivers to loopback only: host must be 127.0.0.1, localhost "
            "or [::1]"
        )
    if parsed.user is not None or parsed.password is not None or parsed.fragment:
        raise ValueError("url: must not carry user info or a fragment")
    if port is None:
        raise ValueError("url: has no port")
    return url


def parse_delay(text: str) -> float:
    """Seconds of a duration string (``"1s"``, ``"1500ms"``, ``"1m30s"``); :class:`ValueError`
    when malformed or below one second."""
    if not isinstance(text, str) or not text or not re.fullmatch(f"{_DURATION.pattern}+", text):
        raise ValueError('config.delay: must be a duration such as "1s", "1500ms" or "1m30s"')
    seconds = sum(float(n) * _UNITS[unit] for n, unit in _DURATION.findall(text))
    if seconds < 1.0:
        raise ValueError("config.delay: must be at least 1s")
    return seconds


def check_types(value: object) -> list[str]:
    """A non-empty list of event categories, event types or ``ALL``; :class:`ValueError`."""
    if not isinstance(value, list) or not value:
        raise ValueError("type: must be a non-empty array of event categories or ALL")
    for item in value:
        if not isinstance(item, str) or not _TYPE.fullmatch(item):
            raise ValueError(f"type: {item!r} is not an event category (e.g. POSITION) or ALL")
    return list(dict.fromkeys(value))


def matches(types: Sequence[str], event_type: str) -> bool:
    """Whether a subscription of ``types`` receives ``event_type``: ``ALL``, its category (the
    part before the dot) or the exact type."""
    return "ALL" in types or event_type in types or event_type.partition(".")[0] in types


@attrs.define
class Subscription:
    """One subscription. ``delay_seconds`` is ``config.delay`` in seconds (0 for subscriptions
    given as ``Sandbox(webhook_urls=...)``: send as soon as events are there)."""

    id: str
    created_at: str
    updated_at: str
    title: str
    url: str
    type: list[str]
    enabled: bool
    delay: str
    delay_seconds: float
    max_package_size: int

    def to_json(self) -> dict[str, Any]:
        """The subscription as ``/webhooks`` answers it."""
        return {
            "id": self.id, "created_at": self.created_at, "updated_at": self.updated_at,
            "title": self.title, "url": self.url, "type": list(self.type),
            "enabled": self.enabled,
            "config": {"delay": self.delay, "max_package_size": self.max_package_size},
        }
