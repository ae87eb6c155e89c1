"""The moving parts of a slice around the writes: a reader thread that reads and plans the
next chunk of `$all` while the current one is written, the low watermark of partitioned mode,
and the stable hash that sends a stream to its partition."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

from core.config import BatchConfig
from core.engine.budget import Budget
from core.engine.plan import Op, SliceIndex
from core.eventstore import EventStore
from core.model import Event

_DONE = object()
# Chunks the reader may be ahead of the writer. Beyond them it waits, so a slice's events are
# not all in memory at once (the slice budget still bounds the whole read).
READ_AHEAD_CHUNKS = 8


class ChunkReader:
    """Reads one slice of `$all` on a background thread and plans it, chunk by chunk, into a
    queue, at most `READ_AHEAD_CHUNKS` ahead of the consumer. Except while the id search
    (core/engine/writer.py) waits for the whole read (`SliceIndex.awaited`): the consumer
    takes no chunks then, so the reader goes on to the end of the slice, whose budget bounds
    it."""

    def __init__(
        self,
        source: EventStore,
        budget: Budget,
        chunk: BatchConfig,
        plan: Callable[[Event], Op],
        index: SliceIndex,
        *,
        after: int | None = None,
        stop_at: int | None = None,
        on_chunk: Callable[[], None] = lambda: None,
        stream_regex: str | None = None,
    ) -> None:
        """Reads `$all` after `after` (exclusive; None = its start) up to `stop_at`
        (inclusive; None = its end) within the budget, in chunks of one append's size; only
        the records of the streams `stream_regex` passes, when given (a shard's)."""
        self.source = source
        self.on_chunk = on_chunk
        self.budget = budget
        self.chunk = chunk
        self.after = after
        self.stop_at = stop_at
        self.plan = plan
        self.index = index
        self.events_read = 0
        self.last_position: int | None = after
        self.exhausted = False  # the read reached the end of `$all` (or stop_at)
        self.stream_regex = stream_regex
        # A filtered read that reached the end: the position up to which the server scanned
        # `$all` for it (records it skipped included), see `_read`.
        self.scanned_to: int | None = None
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._room = threading.Condition()  # the consumer took a chunk
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._finished = False
        self._thread = threading.Thread(target=self._run, name="relay-reader", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------- the thread
    def _run(self) -> None:
        ok = False
        try:
            ok = self._read()
        except BaseException as e:  # handed over to the consumer, raised there
            self._error = e
        finally:
            self.index.finish(ok)
            self._put(_DONE)

    def _read(self) -> bool:
        budget = self.budget
        chunk: list[Event] = []
        chunk_size = total_size = count = 0
        # A filtered read that gives fewer records than asked ran to the end of `$all` as it
        # stood when the server got to it, which is at or past the head read before it: every
        # record up to that head was scanned, and none of them past the last one given passed
        # the filter. So a shard may commit that head though none of its records stands there:
        # no record of its streams lies between its last record and the head, and records
        # appended later come after the head. Without this, a shard whose streams are quiet
        # would stay at its last record, scanning the same stretch of `$all` every slice.
        head = self.source.head_position() if self.stream_regex is not None else None
        events = self.source.read_all_after(self.after, budget.max_events, self.stream_regex)
        try:
            for event in events:
                if self._stop.is_set():
                    return False
                if self.stop_at is not None and event.commit_position > self.stop_at:
                    # A record past `stop_at` (filtered or not): all up to it were scanned.
                    self.exhausted = True
                    self.scanned_to = self.stop_at if head is not None else None
                    break
                chunk.append(event)
                count += 1
                size = event.size
                chunk_size += size
                total_size += size
                if total_size >= budget.max_bytes or budget.expired():
                    break
                if len(chunk) >= self.chunk.max_events or chunk_size >= self.chunk.max_bytes:
                    self._hand_over(chunk)
                    chunk, chunk_size = [], 0
            else:
                self.exhausted = count < budget.max_events
                if self.exhausted and head:  # 0: the log was empty, nothing was scanned
                    self.scanned_to = head if self.stop_at is None else min(head, self.stop_at)
        finally:
            close = getattr(events, "close", None)
            if close is not None:
                close()
        if chunk:
            self._hand_over(chunk)
        return not self._stop.is_set()

    def _hand_over(self, chunk: list[Event]) -> None:
        ops = [self.plan(e) for e in chunk]
        self.index.add(ops)
        self.events_read += len(chunk)
        self.last_position = chunk[-1].commit_position
        self._put(ops)
        self.on_chunk()

    def _put(self, item: object) -> None:
        if item is not _DONE:
            with self._room:
                while (
                    self._queue.qsize() >= READ_AHEAD_CHUNKS
                    and not self.index.awaited
                    and not self._stop.is_set()
                ):
                    # The timeout notices the id search starting to wait.
                    self._room.wait(0.05)
        if self._stop.is_set() and item is not _DONE:
            return  # the consumer has gone
        self._queue.put(item)

    # ------------------------------------------------------------- the consumer
    def next_ops(self) -> list[Op] | None:
        """Wait for at least one chunk, then take every chunk already read (so writes batch
        over as much as the read is ahead). None when the slice's read is over."""
        if self._finished:
            return None
        ops = self._take(self._queue.get())
        while ops is not None and not self._finished:
            try:
                more = self._take(self._queue.get_nowait())
            except queue.Empty:
                break
            if more:
                ops.extend(more)
        return ops

    def _take(self, item: object) -> list[Op] | None:
        with self._room:
            self._room.notify()
        if item is _DONE:
            self._finished = True
            self._thread.join()
            if self._error is not None:
                raise self._error
            return None
        assert isinstance(item, list)
        return item

    def read_all(self) -> list[Op]:
        ops: list[Op] = []
        while (more := self.next_ops()) is not None:
            ops.extend(more)
        return ops

    def close(self) -> None:
        """Stop reading (if still reading) and let the thread end."""
        self._stop.set()
        while not self._finished:
            try:
                item = self._queue.get(timeout=0.1)
            except queue.Empty:
                if not self._thread.is_alive():
                    break
                continue
            if item is _DONE:
                self._finished = True
        self._thread.join(timeout=30)
