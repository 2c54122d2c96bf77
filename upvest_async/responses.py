"""What a call returns besides its model: the raw response, and capturing it per task."""

from __future__ import annotations

import contextvars
from collections.abc import Mapping
from typing import Any, Generic, TypeVar

import attrs

from .json_body import parse_json

__all__ = ["APIResponse", "RawResponse", "capture_responses", "record_response"]

T = TypeVar("T")


@attrs.frozen
class RawResponse:
    """A 2xx response: ``status``, ``headers`` (lower-case names), ``body`` bytes, and
    ``attempts`` (how many attempts the call took, 1 when the first one succeeded)."""

    method: str
    path: str
    status: int
    headers: Mapping[str, str]
    body: bytes
    attempts: int

    @property
    def request_id(self) -> str | None:
        """The ``upvest-request-id`` response header."""
        return self.headers.get("upvest-request-id")

    def json(self) -> Any:
        """The body parsed as JSON by :func:`~upvest_async.json_body.parse_json` (raises
        :class:`~upvest_async.errors.ResponseValidationError` when it is not JSON)."""
        return parse_json(self.body, what=f"{self.method} {self.path}",
                          request_id=self.request_id)


@attrs.frozen
class APIResponse(Generic[T]):
    """A call's parsed result with its HTTP details (see
    :meth:`~upvest_async.UpvestClient.with_raw_response`).

    ``parsed``: the model the method returns; ``raw``: the last :class:`RawResponse` of the call
    (for a list, the last page read). Shortcuts: ``status``, ``headers``, ``request_id``,
    ``attempts``.
    """

    parsed: T
    raw: RawResponse

    @property
    def status(self) -> int:
        """The HTTP status of ``raw`` (a 2xx)."""
        return self.raw.status

    @property
    def headers(self) -> Mapping[str, str]:
        """The headers of ``raw``, with lower-case names."""
        return self.raw.headers

    @property
    def request_id(self) -> str | None:
        """The ``upvest-request-id`` header of ``raw``, or ``None`` when the server sent none."""
        return self.raw.request_id

    @property
    def attempts(self) -> int:
        """How many attempts the call took (1 when the first one succeeded)."""
        return self.raw.attempts


_captured: contextvars.ContextVar[list[RawResponse] | None] = contextvars.ContextVar(
    "upvest_async_captured_responses", default=None
)


def record_response(response: RawResponse) -> None:
    """Hand ``response`` to the capture active in this task, if any."""
    sink = _captured.get()
    if sink is not None:
        sink.append(response)


def capture_responses() -> tuple[list[RawResponse], contextvars.Token[list[RawResponse] | None]]:
    """Start capturing the responses of calls made by the current task; reset with the token."""
    sink: list[RawResponse] = []
    return sink, _captured.set(sink)


def stop_capture(token: contextvars.Token[list[RawResponse] | None]) -> None:
    """End a capture started by :func:`capture_responses`."""
    _captured.reset(token)
