"""Log lines about what unauthenticated clients cause, kept short and rare: anyone who can
connect to a webhook receiver can send malformed, slow or unsigned requests, and each must cost
at most one WARNING line without traceback per kind and interval, never an ERROR (the webhooks
guide, docs/guides/webhooks.md, "A complete receiver")."""

from __future__ import annotations

import logging
import time
from typing import Any

from aiohttp.http_exceptions import HttpProcessingError

__all__ = ["DEFAULT_WARNING_INTERVAL", "MalformedRequestFilter", "WarningThrottle"]

logger = logging.getLogger("upvest_async.webhooks")

#: Seconds between two WARNING lines of one kind about what unauthenticated clients cause.
DEFAULT_WARNING_INTERVAL = 60.0


class WarningThrottle:
    """At most one log line per ``interval`` seconds per kind."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._last: dict[str, float] = {}
        self._skipped: dict[str, int] = {}

    def note(self, kind: str) -> str | None:
        """``None`` when a line of ``kind`` was logged less than ``interval`` seconds ago (this
        one is counted, not logged); else the suffix of the line to log: empty, or how many
        were not logged since the last one."""
        now = time.monotonic()
        last = self._last.get(kind)
        if last is not None and now - last < self.interval:
            self._skipped[kind] = self._skipped.get(kind, 0) + 1
            return None
        self._last[kind] = now
        skipped = self._skipped.pop(kind, 0)
        return f" ({skipped} more since the last such warning, not logged)" if skipped else ""

    def warning(self, kind: str, message: str, *args: Any) -> None:
        """Log ``message % args`` on the webhooks logger as a WARNING, unless throttled."""
        suffix = self.note(kind)
        if suffix is not None:
            logger.warning(message + suffix.replace("%", "%%"), *args)


class MalformedRequestFilter(logging.Filter):
    """A filter for aiohttp's ``aiohttp.server`` logger. aiohttp logs every request it cannot
    parse (malformed headers or chunk framing, before any handler runs) as an ERROR with a
    traceback: anyone who can connect can fill a log. With this filter such a record becomes
    one WARNING line without traceback, ``Error handling request from <address>: malformed
    request (<exception class>)``, at most one per ``interval`` seconds; the next one counts
    those not logged. Other records pass unchanged.

    ``webhooks listen`` installs it; in your process:
    ``logging.getLogger("aiohttp.server").addFilter(MalformedRequestFilter())``.
    """

    def __init__(self, interval: float = DEFAULT_WARNING_INTERVAL) -> None:
        super().__init__()
        self._throttle = WarningThrottle(interval)

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite (or drop, when throttled) a record of a malformed request; keep others."""
        error = record.exc_info[1] if record.exc_info else None
        if not isinstance(error, HttpProcessingError):
            return True
        suffix = self._throttle.note("malformed-request")
        if suffix is None:
            return False
        record.msg = f"{record.getMessage()}: malformed request ({type(error).__name__})" \
            f"{suffix}"
        record.args = None
        record.exc_info = record.exc_text = None
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True
