"""Types of the compiled builder (``_build.c``); see ``upvest_async.pagination.positions``."""

from typing import Any

from ..models import Position

def build(data: list[Any], config: tuple[Any, ...], /) -> list[Position] | None:
    """The positions of a page's wire positions, or ``None`` when a value is not canonical.
    Raises ``TypeError`` for a ``config`` that is not the one ``positions`` makes."""
