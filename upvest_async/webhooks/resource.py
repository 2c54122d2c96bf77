"""``client.webhooks``: Upvest's webhook verification keys and verified, typed events.

Source: API reference "Webhook Subscriptions", "Get signing keys" (``GET /auth/verify_keys``,
scope ``webhooks:read``; https://docs.upvest.co/api/Webhook-Subscriptions); reading W7 of
``docs/guides/api-readings.md``.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives.asymmetric import ec

from ..errors import ResponseValidationError
from ..models.webhooks import WebhookEvent
from ..resources._base import Resource
from ..scopes import VERIFY_KEYS_PATH
from .keys import WebhookKeys, parse_jwks
from .remote import KeyCache
from .verifier import VerifiedSignature, WebhookVerifier

if TYPE_CHECKING:
    from ..client import UpvestClient

__all__ = ["Webhooks"]


class Webhooks(Resource):
    """Webhooks of the configured API (scope ``webhooks:read`` for the keys).

    ``client.webhooks`` is a :class:`~upvest_async.webhooks.KeyProvider`: its keys come from
    ``GET /auth/verify_keys``, cached, refreshed when a signature names an unknown key id
    (single-flight, at most once per ``keys.min_refresh_interval`` seconds, 60) and after
    ``keys.max_age`` seconds (3600). ``verifier`` is the
    :class:`~upvest_async.webhooks.WebhookVerifier` used by :meth:`unwrap` (build your own with
    ``WebhookVerifier(client.webhooks, ...)`` for other clock or skew settings).
    """

    def __init__(self, client: UpvestClient) -> None:
        super().__init__(client)
        #: The key cache (``fetches``, ``max_age``, ``min_refresh_interval``).
        self.keys = KeyCache(self._fetch)
        self.verifier = WebhookVerifier(self)

    def for_client(self, client: UpvestClient) -> Webhooks:
        """This namespace for ``client`` (a :meth:`~upvest_async.UpvestClient.with_options`
        view): the same ``keys`` cache and ``verifier`` (so the same replay cache); the keys
        are fetched through the client that made the cache."""
        view = copy.copy(self)
        view._client = client
        return view

    async def _fetch(self) -> WebhookKeys:
        response = await self._client._request("GET", VERIFY_KEYS_PATH)
        try:
            return WebhookKeys(parse_jwks(response.body))
        except ValueError as exc:
            raise ResponseValidationError(
                str(exc), path=VERIFY_KEYS_PATH, request_id=response.request_id
            ) from None

    async def verify_keys(self, *, refresh: bool = False) -> WebhookKeys:
        """Upvest's webhook verification keys: ``GET /auth/verify_keys`` (a JWKS of EC P-521
        keys), cached; ``refresh=True`` fetches again now.

        Raises the usual API errors (:class:`~upvest_async.APIStatusError` subclasses, e.g.
        :class:`~upvest_async.PermissionDeniedError` without ``webhooks:read``,
        :class:`~upvest_async.APIConnectionError`), and
        :class:`~upvest_async.ResponseValidationError` for a body that is no JWKS with a usable
        key.
        """
        return await (self.keys.refresh() if refresh else self.keys.get())

    async def get_key(self, key_id: str) -> ec.EllipticCurvePublicKey | None:
        """The key named ``key_id`` (see :meth:`KeyCache.get_key
        <upvest_async.webhooks.KeyCache.get_key>`)."""
        return await self.keys.get_key(key_id)

    async def verify(
        self, body: bytes, headers: Mapping[str, str], *, method: str = "POST", path: str,
        query: str | None = None,
    ) -> VerifiedSignature:
        """Verify a webhook request's v6 signature (see
        :meth:`WebhookVerifier.verify <upvest_async.webhooks.WebhookVerifier.verify>`)."""
        return await self.verifier.verify(body, headers, method=method, path=path, query=query)

    async def unwrap(
        self, body: bytes, headers: Mapping[str, str], *, method: str = "POST", path: str,
        query: str | None = None,
    ) -> list[WebhookEvent]:
        """Verify a webhook request and return its events, in order.

        ``body``: the exact bytes received; ``headers``: the request headers (any case);
        ``method``: as received; ``path``: the request path as Upvest signs it (decoded; a
        ``?query`` part must be covered by the signature); ``query``: the raw query, given
        apart when the decoded path may hold a ``?`` (see
        :meth:`WebhookVerifier.verify <upvest_async.webhooks.WebhookVerifier.verify>`). Each
        event's ``object`` is typed for the known types (:class:`~upvest_async.WebhookEvent`).

        Raises :class:`~upvest_async.WebhookVerificationError` (``.reason``) when the
        signature is missing, malformed, expired, made with a key the JWKS does not hold, does
        not cover ``@method``, ``@path`` and (with a body) ``digest``, has a non-matching
        digest, does not verify, or is replayed, or when the keys cannot be fetched
        (``keys-unavailable``, transient); :class:`~upvest_async.WebhookPayloadError` for a
        verified body that is not a valid batch. Nothing else.
        """
        return await self.verifier.unwrap(body, headers, method=method, path=path, query=query)
