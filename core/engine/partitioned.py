"""Partitioned mode: each stream (with its metadata and tombstone) hashed to one of N writer
threads, each writing its streams' events of the slice in the streams' order, several streams
per call with KurrentDB's multi-stream append. The checkpoint is the low watermark: the highest
position at or below which every op is written. A stop (deadline, an error in one partition)
commits that watermark and nothing past it."""

from __future__ import annotations

import contextlib
import queue
import threading

from core.engine.batching import packed_batches, stream_batches
from core.engine.budget import Step
from core.engine.plan import Op, SkipOp
from core.engine.reader import ChunkReader
from core.engine.slice import Slice, at
from core.engine.watermark import Watermark, partition_of
from core.engine.writer import StreamWriter
from core.errors import LeaseLostError, PermanentError, RelayError

Inbox = queue.SimpleQueue[list[Op] | None]


class PartitionedSlice(Slice):
    def write_all(self, reader: ChunkReader, after: int | None) -> tuple[int | None, bool]:
        """Dispatch each stream's ops to its partition's writer thread. A writer's error stops
        every writer after its current append; the watermark is committed, then the error
        raised."""
        partitions = self.ctx.job.partitions
        self.multi = self.use_multi_append()
        self.watermark = Watermark(after)
        self.stop = threading.Event()
        self.deadline_hit = threading.Event()
        self.errors: list[tuple[BaseException, Op]] = []
        inboxes: list[Inbox] = [queue.SimpleQueue() for _ in range(partitions)]
        writers = [
            threading.Thread(
                target=self._partition, args=(inbox,), name=f"relay-writer-{i}", daemon=True
            )
            for i, inbox in enumerate(inboxes)
        ]
        for thread in writers:
            thread.start()
        try:
            self._dispatch(reader, inboxes)
        except BaseException:
            self.stop.set()
            raise
        finally:
            for inbox in inboxes:
                inbox.put(None)
            for thread in writers:
                thread.join()
        if self.errors:
            error, op = self.errors[0]
            if not isinstance(error, LeaseLostError):
                self.finish(reader, after, self.watermark.position)
            if isinstance(error, PermanentError):
                raise at(error, op.source)
            raise error
        return self.watermark.position, self.deadline_hit.is_set()

    def _dispatch(self, reader: ChunkReader, inboxes: list[Inbox]) -> None:
        first = True
        while not self.stop.is_set():
            ops = reader.next_ops()
            if first:
                self.ctx.on_step(Step.READ)
                first = False
            if ops is None:
                return
            self.watermark.add(op.position for op in ops)
            shares: list[list[Op]] = [[] for _ in inboxes]
            skipped = []
            for op in ops:
                if isinstance(op, SkipOp):
                    skipped.append(op)
                else:
                    shares[partition_of(op.stream, len(inboxes))].append(op)
            self.count(skipped, 0, 0)
            self.watermark.done(op.position for op in skipped)
            for inbox, share in zip(inboxes, shares, strict=True):
                if share:
                    inbox.put(share)

    def _partition(self, inbox: Inbox) -> None:
        """One partition's writer thread: its streams' state is its own. While the slice is
        read it learns the state of its streams on the target (reads only); once the read is
        over it writes each stream's events of the whole slice in as few appends as the batch
        limits allow."""
        writer = StreamWriter(self.ctx)
        with self._lock:
            self.writers.append(writer)
        batch = self.ctx.job.batch
        ops: list[Op] = []
        while (item := inbox.get()) is not None:
            ops.extend(item)
            firsts: dict[str, Op] = {}
            for op in item:
                firsts.setdefault(op.stream, op)
            for stream, first in firsts.items():
                if self.stop.is_set():
                    return
                if writer.unknown(stream, first):
                    # A failure here is met again, in order, by the stream's first write.
                    with contextlib.suppress(RelayError):
                        writer.sync(stream)
        groups = stream_batches(ops, batch.max_events, batch.max_bytes)
        if self.multi:
            packs = packed_batches(groups, batch.max_events, batch.max_bytes)
        else:
            packs = ([group] for group in groups)
        for pack in packs:
            if self.stop.is_set():
                return
            if self.budget.expired():
                self.deadline_hit.set()
                self.stop.set()
                return
            try:
                self.check_lease()
                n, b = writer.write_pack(pack)
            except BaseException as e:  # raised by the coordinator after every writer stopped
                if isinstance(e, RelayError) and len(pack) > 1:
                    # Its streams one by one: those that can be written are.
                    if self._write_groups(writer, pack):
                        continue
                else:
                    with self._lock:
                        self.errors.append((e, pack[0][0]))
                self.stop.set()
                return
            self._written(pack, n, b)

    def _write_groups(self, writer: StreamWriter, pack: list[list[Op]]) -> bool:
        """A pack's streams one by one, after its multi-stream append failed: the streams that
        can be written are, and the watermark stops just below the one that cannot. False if
        one failed (its error recorded)."""
        for group in pack:
            try:
                n, b = writer.write(group)
            except BaseException as e:
                with self._lock:
                    self.errors.append((e, group[0]))
                return False
            self._written([group], n, b)
        return True

    def _written(self, pack: list[list[Op]], n: int, b: int) -> None:
        done = [op for group in pack for op in group]
        self.ctx.on_step(Step.WRITTEN)
        self.count(done, n, b)
        self.watermark.done(op.position for op in done)
