"""The prefetch engine: streams of many lists (:mod:`.stream`) under one request gate
(:mod:`.gate`), delivered in order."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import (
    AsyncGenerator,
    Iterable,
)
from typing import Generic, TypeVar

from ..models import Page
from .gate import _Gate
from .stream import PageSource, _Stream

__all__ = ["_Scheduler"]

T = TypeVar("T")
K = TypeVar("K")


class _Scheduler(Generic[K, T]):
    """Streams several lists in order: the list being delivered (the head) and up to
    ``streams - 1`` following ones have their page requests planned (each up to its
    paginator's ``prefetch``); ``gate`` decides which request goes next."""

    def __init__(
        self, sources: Iterable[tuple[K, PageSource[T]]], *, gate: _Gate, streams: int
    ) -> None:
        self._sources = iter(sources)
        self._exhausted = False
        self._started = 0
        self.gate = gate
        self.max_streams = streams
        self.streams: collections.deque[_Stream[K, T]] = collections.deque()
        self.closed = False

    def refill(self) -> None:
        """Plan page requests for the active lists and start following lists."""
        if self.closed:
            return
        for stream in self.streams:
            while stream.can_launch():
                stream.launch()
        while not self._exhausted and len(self.streams) < self.max_streams:
            try:
                key, paginator = next(self._sources)
            except StopIteration:
                self._exhausted = True
                return
            stream = _Stream(self._started, key, paginator, gate=self.gate,
                             refill=self.refill)
            self._started += 1
            self.streams.append(stream)
            stream.start()

    async def pages(self) -> AsyncGenerator[tuple[K, Page[T] | None], None]:
        try:
            self.refill()
            while self.streams:
                stream = self.streams[0]
                self.gate.head = stream.index
                self.gate.wake()
                page = await stream.next()
                if page is None:
                    self.streams.popleft()
                    self.refill()
                yield stream.key, page
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        """Cancel every page request and wait until they are all done."""
        self.closed = True
        slots = [slot for stream in self.streams for slot in stream.slots]
        self.streams.clear()
        self.gate.cancel(slots)
        if slots:
            await asyncio.gather(*(slot.task for slot in slots), return_exceptions=True)
