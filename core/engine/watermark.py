"""Partitioned mode's bookkeeping: the low watermark it commits, and the stable hash that sends
a stream to its writer."""

from __future__ import annotations

import threading
import zlib
from collections import deque
from collections.abc import Iterable


class Watermark:
    """The highest source position P such that every op at or below P is done. Ops are added
    in `$all` order, before any of them can be done; `done` may come in any order."""

    def __init__(self, start: int | None) -> None:
        self.position = start
        self._pending: deque[int] = deque()
        self._done: set[int] = set()
        self._lock = threading.Lock()

    def add(self, positions: Iterable[int]) -> None:
        with self._lock:
            self._pending.extend(positions)

    def done(self, positions: Iterable[int]) -> None:
        with self._lock:
            self._done.update(positions)
            while self._pending and self._pending[0] in self._done:
                p = self._pending.popleft()
                self._done.discard(p)
                self.position = p


def partition_of(stream: str, partitions: int) -> int:
    """A stable hash (the same in every process and run, unlike `hash()`)."""
    return zlib.crc32(stream.encode()) % partitions
