"""Idempotency keys of the sandbox's mutating Portfolios endpoints (S1 ``idempotency-key``).

The ``idempotency-key`` header (a uuid) is required on E2, E6, E8, E10, E11 and E14 and honoured
when present on E4 and E13, which the reference prints without it (Q15). Keys are scoped per
``upvest-client-id``; a request's fingerprint is its method, raw path with query and the
SHA-256 of its body. With a key already claimed:

- same fingerprint, first request answered: the stored response is replayed byte for byte
  (status, body, content type) with ``upvest-idempotent-replay: true``; nothing is created.
  Only the ``upvest-request-id`` header is new (a replayed problem keeps its first
  ``request_id`` in the body);
- different fingerprint (whether or not the first request is still running): 422 problem,
  ``type`` ``idempotency_key_reused``;
- same fingerprint while the first request is still running: 409 problem, ``type``
  ``idempotency_key_in_progress``.

A response is stored only when its status is below 500 (4xx problems included); a 5xx or an
unexpected exception releases the key so that a retry executes again. :func:`idempotent` wraps
the handlers, so it runs after the authentication middleware: a request refused there never
claims a key. While a handler runs, :func:`current_key` tells which key it claimed (the store
uses it to count duplicates created under different keys).

Injected faults (:mod:`.faults`) wrap all of this: a lost response is one whose handler ran and
whose answer was stored here before the connection was dropped (or a 504 was sent instead), so a
retry with the same key gets the replay.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import enum
import functools
import hashlib
from collections.abc import Callable
from typing import TYPE_CHECKING

import attrs
from aiohttp import web

from .bodies import canonical_uuid
from .context import STATE_KEY, Handler
from .problems import Problem, problem_for

if TYPE_CHECKING:
    from .state import SandboxState

__all__ = [
    "REPLAY_HEADER",
    "Claim",
    "IdempotencyStore",
    "StoredResponse",
    "current_key",
    "fingerprint",
    "idempotent",
]

#: Response header marking a replayed response.
REPLAY_HEADER = "upvest-idempotent-replay"

_CURRENT_KEY: contextvars.ContextVar[tuple[str, str] | None] = contextvars.ContextVar(
    "upvest_sandbox_idempotency_key", default=None
)


def current_key() -> tuple[str, str] | None:
    """``(client id, idempotency key)`` claimed by the handler running in this task, ``None``
    outside :func:`idempotent` handlers or for a request without a key."""
    return _CURRENT_KEY.get()


class Claim(enum.Enum):
    """What :meth:`IdempotencyStore.claim` found for a key."""

    CLAIMED = "claimed"  # the key was free and now belongs to this request
    REPLAY = "replay"  # same request answered before: replay its response
    IN_PROGRESS = "in_progress"  # same request still running
    REUSED = "reused"  # the key belongs to a different request


@attrs.frozen
class StoredResponse:
    """A stored answer: ``status``, ``body`` bytes, ``content_type`` (``None`` for 204)."""

    status: int
    body: bytes
    content_type: str | None

    def replay(self) -> web.Response:
        """The stored answer again, marked with ``upvest-idempotent-replay: true``."""
        headers = {REPLAY_HEADER: "true"}
        if self.content_type is not None:
            headers["Content-Type"] = self.content_type
        return web.Response(status=self.status, body=self.body or None, headers=headers)


@attrs.define
class _Entry:
    fingerprint: str
    response: StoredResponse | None = None  # None while the first request is running


def fingerprint(method: str, raw_path_qs: str, body: bytes) -> str:
    """``METHOD raw-path?query sha256-hex-of-body``."""
    return f"{method.upper()} {raw_path_qs} {hashlib.sha256(body).hexdigest()}"


class IdempotencyStore:
    """Claimed keys and stored responses by ``(client id, key)``.

    At most ``max_entries`` keys are kept; beyond that the oldest answered ones are forgotten
    (keys still in progress are never dropped).
    """

    def __init__(self, max_entries: int = 100_000) -> None:
        self.max_entries = max_entries
        self._entries: collections.OrderedDict[tuple[str, str], _Entry] = (
            collections.OrderedDict()
        )

    def __len__(self) -> int:
        return len(self._entries)

    def claim(self, scope: str, key: str, digest: str) -> tuple[Claim, StoredResponse | None]:
        """Claim ``key`` of client ``scope`` for the request whose :func:`fingerprint` is
        ``digest``; the stored response comes with :attr:`Claim.REPLAY`."""
        entry = self._entries.get((scope, key))
        if entry is None:
            self._entries[(scope, key)] = _Entry(digest)
            self._forget_oldest()
            return Claim.CLAIMED, None
        if entry.fingerprint != digest:
            return Claim.REUSED, None
        if entry.response is None:
            return Claim.IN_PROGRESS, None
        return Claim.REPLAY, entry.response

    def complete(self, scope: str, key: str, response: StoredResponse) -> None:
        """Store the answer of the request that claimed ``key``."""
        self._entries[(scope, key)].response = response

    def release(self, scope: str, key: str) -> None:
        """Forget ``key`` (its request failed with a 5xx or did not finish)."""
        self._entries.pop((scope, key), None)

    def _forget_oldest(self) -> None:
        while len(self._entries) > self.max_entries:
            oldest = next(
                (k for k, entry in self._entries.items() if entry.response is not None), None
            )
            if oldest is None:
                return
            del self._entries[oldest]


def _key(request: web.Request, required: bool) -> str | None:
    raw = request.headers.get("idempotency-key")
    if raw is None:
        if required:
            raise Problem(400, "idempotency-key: header is required")
        return None
    key = canonical_uuid(raw)
    if key is None:
        raise Problem(400, "idempotency-key: must be a UUID (8-4-4-4-12 hex)")
    return key


async def _pause(state: SandboxState) -> None:
    if state.mutation_delay > 0:
        await asyncio.sleep(state.mutation_delay)


def _stored(response: web.StreamResponse) -> StoredResponse | None:
    if not isinstance(response, web.Response) or response.status >= 500:
        return None
    body = response.body
    if body is not None and not isinstance(body, bytes):
        return None  # a streamed payload cannot be replayed; the handlers never produce one
    return StoredResponse(response.status, body or b"", response.headers.get("Content-Type"))


def idempotent(*, required: bool) -> Callable[[Handler], Handler]:
    """Wrap a mutating handler with the idempotency rules of this module.

    ``required``: a missing ``idempotency-key`` is a 400 (else the request simply runs without
    replay protection). A malformed key is always a 400. After the key is claimed the handler
    sleeps ``state.mutation_delay`` seconds, then runs; :class:`Problem` it raises is turned
    into its response here so 4xx answers are stored and replayed too.
    """

    def wrap(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def run(request: web.Request) -> web.StreamResponse:
            state = request.app[STATE_KEY]
            key = _key(request, required)
            if key is None:
                await _pause(state)
                return await handler(request)
            scope = request.headers.get("upvest-client-id", "")
            digest = fingerprint(
                request.method, request.rel_url.raw_path_qs, await request.read()
            )
            claim, stored = state.idempotency.claim(scope, key, digest)
            if claim is Claim.REUSED:
                raise Problem(
                    422, "idempotency-key: already used with a different request",
                    type_slug="idempotency_key_reused",
                )
            if claim is Claim.IN_PROGRESS:
                raise Problem(
                    409, "idempotency-key: a request with this key is still being processed",
                    type_slug="idempotency_key_in_progress",
                )
            if stored is not None:
                state.counters.idempotent_replays += 1
                return stored.replay()
            answer: StoredResponse | None = None
            token = _CURRENT_KEY.set((scope, key))
            try:
                await _pause(state)
                try:
                    response = await handler(request)
                except Problem as problem:
                    response = problem_for(request, problem)
                answer = _stored(response)
                return response
            finally:
                _CURRENT_KEY.reset(token)
                if answer is None:
                    state.idempotency.release(scope, key)
                else:
                    state.idempotency.complete(scope, key, answer)

        return run

    return wrap
