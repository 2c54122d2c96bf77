"""Shapes shared by every resource: open enums, list ``meta`` and pages.

Source: S5 (``meta``) and S3 (problem details) of the API readings,
``docs/guides/api-readings.md``.
"""

from __future__ import annotations

import enum
from typing import Any, Generic, TypeVar

import attrs

__all__ = ["Meta", "OpenEnum", "Page", "Problem", "SortOrder"]

T = TypeVar("T")


class OpenEnum(enum.StrEnum):
    """A string enum that accepts values Upvest's reference does not list (forward
    compatibility).

    An unknown value becomes a pseudo-member whose ``value`` is the string received; it compares
    equal to that string and is written back unchanged.
    """

    @classmethod
    def _missing_(cls, value: object) -> Any:
        if not isinstance(value, str):
            return None
        member = str.__new__(cls, value)
        member._name_ = value
        member._value_ = value
        return member


class SortOrder(OpenEnum):
    """``meta.order`` (S5): ``ASC`` or ``DESC``."""

    ASC = "ASC"
    DESC = "DESC"


@attrs.frozen
class Meta:
    """The ``meta`` object of a list response (S5).

    ``offset``: items skipped before this page; ``limit``: the page size asked for; ``count``:
    items in this page; ``total_count``: items in the whole list; ``sort`` / ``order``: the
    ordering, when the API reports it.
    """

    offset: int
    limit: int
    count: int
    total_count: int
    sort: str | None = None
    order: SortOrder | None = None


@attrs.frozen
class Page(Generic[T]):
    """One page of a list endpoint: ``items`` (the ``data`` array, typed) and ``meta``."""

    items: list[T]
    meta: Meta


@attrs.frozen
class Problem:
    """Problem details of an error response (RFC 9457; S3). ``status`` is the HTTP status;
    the reference's examples use bare slugs as ``type`` (``bad_request``), and every 503 example
    reads ``method_not_allowed`` (Q2): key on ``status``, not on ``type``."""

    status: int | None = None
    type: str | None = None
    title: str | None = None
    detail: str | None = None
    instance: str | None = None
    request_id: str | None = None
