"""Admission of page requests: at most ``concurrency`` in flight, at most ``window``
pages requested and not yet delivered, turns taken in delivery order."""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Iterable
from typing import Any, TypeVar

__all__ = ["_Gate", "_Slot"]

T = TypeVar("T")
K = TypeVar("K")


class _Gate:
    """Turns for page requests, by priority ``(list index, offset)``: at most ``concurrency``
    in flight, and at most ``window`` in flight or fetched and not yet delivered (``held``),
    except for the list being delivered (index ``head`` or below), which only waits for a
    free request."""

    def __init__(self, *, concurrency: int, window: int) -> None:
        self.concurrency = concurrency
        self.window = window
        self.in_flight = 0
        self.held = 0
        self.head = 0
        self._waiting: list[tuple[tuple[int, int], int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def _may_start(self, index: int) -> bool:
        return self.in_flight < self.concurrency and (
            self.in_flight + self.held < self.window or index <= self.head
        )

    async def acquire(self, priority: tuple[int, int]) -> None:
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiting, (priority, next(self._order), turn))
        self.wake()
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():  # granted, then cancelled: give it back
                self.finished(held=False)
            else:
                turn.cancel()  # skipped by wake()
            raise

    def finished(self, *, held: bool) -> None:
        """A request ended; ``held``: it fetched a page that awaits delivery."""
        self.in_flight -= 1
        if held:
            self.held += 1
        self.wake()

    def delivered(self) -> None:
        """A held page was delivered (or dropped)."""
        self.held -= 1
        self.wake()

    def cancel(self, slots: Iterable[_Slot]) -> None:
        """Cancel requests that will not be delivered; release the pages they hold."""
        for slot in slots:
            if slot.holds_page():
                self.delivered()
            else:
                slot.task.cancel()

    def wake(self) -> None:
        while self._waiting:
            priority, _, turn = self._waiting[0]
            if turn.done():
                heapq.heappop(self._waiting)
                continue
            if not self._may_start(priority[0]):
                return
            heapq.heappop(self._waiting)
            self.in_flight += 1
            turn.set_result(None)


class _Slot:
    """One page request: ``offset``, ``limit`` and its task."""

    __slots__ = ("limit", "offset", "task")

    def __init__(self, offset: int, limit: int, task: asyncio.Task[Any]) -> None:
        self.offset = offset
        self.limit = limit
        self.task = task

    def holds_page(self) -> bool:
        """Whether the request is done and fetched a page (held in the gate's window)."""
        task = self.task
        return task.done() and not task.cancelled() and task.exception() is None
