"""``KeyCache``: verification keys fetched from the API, cached, refreshed on rotation.

One fetch at a time (single-flight: concurrent callers share it). A signature naming an unknown
``keyid`` triggers a refresh, after which (and after a failed fetch) no fetch starts for
``min_refresh_interval`` seconds, so requests with random key ids cannot make the receiver
fetch per request. Keys older than ``max_age`` seconds are refreshed on next use (so a key
Upvest withdrew stops verifying); if that refresh fails the cached keys stay in use.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from cryptography.hazmat.primitives.asymmetric import ec

from .errors import WebhookVerificationError
from .keys import WebhookKeys

__all__ = ["DEFAULT_KEYS_MAX_AGE", "DEFAULT_MIN_REFRESH_INTERVAL", "KeyCache"]

logger = logging.getLogger("upvest_async.webhooks")

#: Seconds a fetched JWKS is used before it is fetched again.
DEFAULT_KEYS_MAX_AGE = 3600.0
#: Least seconds between two fetches caused by unknown key ids (or after a failed fetch).
DEFAULT_MIN_REFRESH_INTERVAL = 60.0


class KeyCache:
    """Caches the :class:`~upvest_async.webhooks.WebhookKeys` returned by ``fetch``.

    ``clock``: monotonic seconds (injectable). It is a
    :class:`~upvest_async.webhooks.KeyProvider`.
    """

    def __init__(
        self,
        fetch: Callable[[], Awaitable[WebhookKeys]],
        *,
        max_age: float = DEFAULT_KEYS_MAX_AGE,
        min_refresh_interval: float = DEFAULT_MIN_REFRESH_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self.max_age = max_age
        self.min_refresh_interval = min_refresh_interval
        self._clock = clock
        self._keys: WebhookKeys | None = None
        self._fetched_at = 0.0
        self._blocked_until = float("-inf")
        self._inflight: asyncio.Future[WebhookKeys] | None = None
        #: Fetches started so far.
        self.fetches = 0

    @property
    def keys(self) -> WebhookKeys | None:
        """The cached keys, ``None`` before the first successful fetch."""
        return self._keys

    def _may_fetch(self) -> bool:
        return self._inflight is not None or self._clock() >= self._blocked_until

    def _block(self) -> None:
        self._blocked_until = self._clock() + self.min_refresh_interval

    async def _run(self) -> WebhookKeys:
        try:
            keys = await self._fetch()
        except BaseException:
            self._block()
            raise
        self._keys, self._fetched_at = keys, self._clock()
        return keys

    def _done(self, future: asyncio.Future[WebhookKeys]) -> None:
        self._inflight = None
        if not future.cancelled():
            future.exception()  # retrieved here; the callers see it through shield()

    async def refresh(self) -> WebhookKeys:
        """Fetch now (joining a fetch in flight); raises what ``fetch`` raises."""
        if self._inflight is None:
            self.fetches += 1
            self._inflight = asyncio.ensure_future(self._run())
            self._inflight.add_done_callback(self._done)
        return await asyncio.shield(self._inflight)

    async def get(self) -> WebhookKeys:
        """The cached keys, fetched first when there are none or they are older than
        ``max_age``; raises what ``fetch`` raises when there are no keys to return."""
        if self._keys is None:
            return await self.refresh()
        if self._clock() - self._fetched_at >= self.max_age and self._may_fetch():
            try:
                return await self.refresh()
            except Exception:
                logger.warning("refreshing the webhook keys failed; using cached keys",
                               exc_info=True)
        return self._keys

    async def get_key(self, key_id: str) -> ec.EllipticCurvePublicKey | None:
        """The key named ``key_id``; refreshes once (rate-limited) when it is unknown.

        Raises :class:`~upvest_async.webhooks.WebhookVerificationError` ``keys-unavailable``
        when no keys could be fetched at all."""
        try:
            if self._keys is None and not self._may_fetch():
                raise WebhookVerificationError("keys-unavailable")
            keys = await self.get()
            key = keys.keys.get(key_id)
            if key is None and self._may_fetch():
                if self._inflight is None:
                    self._block()
                key = (await self.refresh()).keys.get(key_id)
            return key
        except WebhookVerificationError:
            raise
        except Exception:
            logger.warning("fetching the webhook keys failed", exc_info=True)
            raise WebhookVerificationError("keys-unavailable") from None
