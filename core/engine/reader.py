"""The moving parts of a slice around the writes: a reader thread that reads and plans the
next chunk of `$all` while the current one is written, the low watermark of partitioned mode,
and the stable hash that sends a stream to its partition."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from core.config import BatchConfig
from core.engine.budget import Budget
from core.engine.plan import Op, SliceIndex
from core.eventstore import EventStore, Scanned
from core.eventstore.scans import Scan
from core.model import Event

_DONE = object()
# Chunks the reader may be ahead of the writer. Beyond them it waits, so a slice's events are
# not all in memory at once (the slice budget still bounds the whole read).
READ_AHEAD_CHUNKS = 8
# How often a consumer waiting for the reader looks at what else may end the wait (a stop of
# the process, for a shard's scan; the reader's end, when closing).
_POLL_SECONDS = 0.1


@dataclass(frozen=True, slots=True)
class ScanMark:
    """The server scanned `$all` up to `scanned_to` (inclusive) for a shard; every record of
    its streams up to there was read before the mark, the last of them at `last_record`
    (None: none in this slice). `end`: the scan reached the end of `$all` or `stop_at`."""

    scanned_to: int
    last_record: int | None
    end: bool


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
        read_share: float = 1.0,
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
        # The part of the slice's time a shard's scan may spend once it holds records: less
        # than all of it when they are written only after the read (partitioned mode).
        self.read_share = read_share
        # A shard's scan: how far the server scanned `$all` for it (records it skipped
        # included), at each of its marks (`_scan`), in order.
        self.marks: list[ScanMark] = []
        self._last_read: int | None = None  # the last record read, on the reader thread
        # A shard's scan in flight: `close()` and a stop (SIGTERM, Ctrl-C: the budget's)
        # close it from the consumer's thread, since between the server's checkpoints it may
        # say nothing for long and the reader thread waits inside it.
        self._scan_items: Scan | None = None
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
        if self.stream_regex is not None:
            return self._scan(self.stream_regex)
        budget = self.budget
        chunk: list[Event] = []
        chunk_size = total_size = count = 0
        events = self.source.read_all_after(self.after, budget.max_events)
        try:
            for event in events:
                if self._stop.is_set():
                    return False
                if self.stop_at is not None and event.commit_position > self.stop_at:
                    self.exhausted = True  # a record past `stop_at`: all up to it were read
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
        finally:
            close = getattr(events, "close", None)
            if close is not None:
                close()
        if chunk:
            self._hand_over(chunk)
        return not self._stop.is_set()

    def _scan(self, stream_regex: str) -> bool:
        """A shard's read: a filtered catch-up subscription (EventStore.scan_all_after), which
        says how far the server scanned even where none of the shard's records stand. Each
        mark becomes a `ScanMark`: the slice may commit its position once every record read
        before it is written. The read ends at the budget (events, bytes, deadline: the
        call's own timeout, so a scan that finds nothing cannot outlive the slice), at a
        record past `stop_at`, or when the server caught up with the end of `$all`
        (`exhausted`). `caught_up` comes after a checkpoint at the start of the server's
        last page, not at the head, so the head read before the subscription is what it
        proves scanned then: every record up to that head was scanned, and records appended
        later come after it. Old servers send no `caught_up`: a shard there ends each slice
        at its deadline, with its last checkpoint."""
        budget = self.budget
        chunk: list[Event] = []
        chunk_size = total_size = count = since_mark = 0
        head = self.source.head_position()
        stop_at = self.stop_at
        now = time.monotonic()
        read_until = now + max(0.0, budget.deadline - now) * self.read_share
        items = self.source.scan_all_after(self.after, stream_regex, budget.deadline)
        self._scan_items = items
        if self._stop.is_set() or budget.expired():
            items.close()  # closed or stopped before the scan was there to close
        try:
            for item in items:
                if self._stop.is_set():
                    return False
                if isinstance(item, Scanned):
                    if chunk and not since_mark:
                        # A whole checkpoint interval without a record of the shard: the
                        # records held go to the writer now, not when the chunk fills (the
                        # scan may find no more before the deadline, and a mark counts only
                        # once the records before it are written). Where records keep coming,
                        # chunks fill as usual and appends stay as large.
                        self._hand_over(chunk)
                        chunk, chunk_size = [], 0
                    since_mark = 0
                    position = item.position
                    if item.caught_up:
                        position = max(position or 0, head) or None  # 0: nothing was scanned
                    end = item.caught_up or (
                        stop_at is not None and position is not None and position >= stop_at
                    )
                    if position is not None:
                        self._mark(position if stop_at is None else min(position, stop_at), end)
                    if end:
                        self.exhausted = True
                        break
                    if budget.expired() or (count and time.monotonic() > read_until):
                        break
                    continue
                if stop_at is not None and item.commit_position > stop_at:
                    # A record past `stop_at`: every one up to it was scanned.
                    self.exhausted = True
                    self._mark(stop_at, True)
                    break
                chunk.append(item)
                self._last_read = item.commit_position
                count += 1
                since_mark += 1
                size = item.size
                chunk_size += size
                total_size += size
                if count >= budget.max_events or total_size >= budget.max_bytes:
                    break
                if budget.expired() or time.monotonic() > read_until:
                    break
                if len(chunk) >= self.chunk.max_events or chunk_size >= self.chunk.max_bytes:
                    self._hand_over(chunk)
                    chunk, chunk_size = [], 0
        finally:
            items.close()
        if chunk:
            self._hand_over(chunk)
        return not self._stop.is_set()

    def _close_scan(self) -> None:
        """End a shard's scan in flight now, from the consumer's thread: the reader thread
        then hands over what it holds and finishes (a scan's marks and records stay as they
        were: the slice commits what is written, as at its deadline)."""
        items = self._scan_items
        if items is not None:
            items.close()

    def _mark(self, position: int, end: bool) -> None:
        """Record that the server scanned up to `position` (only ever up)."""
        if self.marks and position <= self.marks[-1].scanned_to:
            return
        self.marks.append(ScanMark(position, self._last_read, end))

    def committable(self, done_position: int | None) -> int | None:
        """The furthest position a slice that wrote every record up to `done_position` may
        commit: the highest mark whose records read before it are all written (never past
        `stop_at`: marks are clamped to it), or `done_position` when higher or none holds."""
        best = done_position
        for mark in list(self.marks):
            written = mark.last_record is None or (
                done_position is not None and mark.last_record <= done_position
            )
            if written and (best is None or mark.scanned_to > best):
                best = mark.scanned_to
        return best

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
        ops = self._take(self._get())
        while ops is not None and not self._finished:
            try:
                more = self._take(self._queue.get_nowait())
            except queue.Empty:
                break
            if more:
                ops.extend(more)
        return ops

    def _get(self) -> object:
        """The next chunk (or the end). A shard's scan may say nothing until its deadline:
        while waiting, a stop of the process (the budget's `stop`: SIGTERM, Ctrl-C) closes
        it, so the slice ends after the append in flight, not at the server's next
        checkpoint or the deadline."""
        stop = self.budget.stop
        if self.stream_regex is None or stop is None:
            return self._queue.get()

        def close_on_stop() -> bool:
            if stop.is_set():
                self._close_scan()  # (one not begun yet is closed as it begins: `_scan`)
            return True  # the closed scan's reader hands over what it holds, then _DONE

        return self._wait(close_on_stop)

    def _wait(self, idle: Callable[[], bool]) -> object | None:
        """The next item of the queue; while none comes, `idle()` at each poll, until it
        says to wait no more (then None)."""
        while True:
            try:
                return self._queue.get(timeout=_POLL_SECONDS)
            except queue.Empty:
                if not idle():
                    return None

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
        """Stop reading (if still reading) and let the thread end (a shard's scan closed,
        however long the server would have said nothing)."""
        self._stop.set()
        self._close_scan()
        while not self._finished:
            item = self._wait(self._thread.is_alive)
            if item is None:
                break
            if item is _DONE:
                self._finished = True
        self._thread.join(timeout=30)
