"""run_slice: one invocation's work — lease, checkpoint, bounded read, filter, write, commit.

Exactly once, without an atomic write across the checkpoint store and the target:
- events keep their ids and go to the target in per-stream order with exact expected revisions;
- the first time a slice touches a target stream it reads the stream's last event and finds
  the source record it came from by its id (core/engine/locate.py: the slice's own records, then the
  place its `$original*` metadata claims, confirmed by the record standing there, then a
  search of the source stream; no value in an event's metadata is trusted), and skips every
  pending event at or before that record: a crashed run, or an invocation that lost its lease
  mid-write, may have written them already. A stream first met at its source revision 0 is
  not read: its append expects NO_STREAM, which the server refuses unless the stream has no
  events or the same ids already stand there (StreamWriter.assumed);
- an append that meets another revision than expected resynchronises the same way once, then
  stops with a ConflictError rather than write a duplicate;
- the checkpoint is committed under the lease (fencing token + version), only after every write
  up to it succeeded, and only at a source-event boundary.

Modes. A reader thread reads and plans the next chunk of `$all` while the current one is
written (core/engine/reader.py). Ordered mode writes in `$all` order, one append per run of
consecutive same-stream events, or, when the target has KurrentDB's multi-stream append (and
the job does not turn it off), one atomic append per batch of several streams' runs (a conflict
resyncs the named stream once). Partitioned mode hashes each stream (with its metadata and
tombstone) to one of N writer threads; a writer learns its streams' target state while the
slice is read, then writes each stream's events of the slice in as few appends as the batch
limits allow, in the stream's order; with multi-stream append, several of its streams' appends
go in one call. Its checkpoint is the low watermark: the highest position
at or below which every op is written. A stop (deadline, error in one partition) commits that
watermark and nothing past it.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from core import rules
from core.checkpoint import Checkpoint, CheckpointStore, Lease, Position, SliceRecord
from core.config import JobConfig
from core.engine.batching import ordered_batches, packed_batches, runs, stream_batches
from core.engine.known_streams import KnownStreams
from core.engine.plan import Op, Planner, SliceIndex
from core.engine.reader import ChunkReader, ReadLimits
from core.engine.watermark import Watermark, partition_of
from core.engine.writer import StreamWriter, WriteContext
from core.errors import LeaseLostError, PermanentError, RelayError
from core.eventstore import EventStore
from core.model import Event

# Ordered mode learns the state of a chunk's new target streams with this many reads at once.
SYNC_THREADS = 16


@dataclass(frozen=True)
class Budget:
    max_events: int
    max_bytes: int
    deadline: float  # time.monotonic() value after which no new batch starts

    @classmethod
    def from_job(cls, job: JobConfig, remaining_seconds: float | None = None) -> Budget:
        seconds = job.budget.effective_deadline(remaining_seconds)
        return cls(job.budget.max_events, job.budget.max_bytes, time.monotonic() + seconds)


@dataclass
class SliceResult:
    job_id: str
    status: Literal["ok", "busy", "failed"]
    events_read: int = 0
    events_written: int = 0
    events_skipped: int = 0
    bytes_written: int = 0
    from_position: int | None = None
    position: int | None = None
    caught_up: bool = False
    lag_bytes: int | None = None  # source log bytes not yet replicated
    next_action: Literal["continue", "idle", "stop"] = "idle"
    error: str | None = None
    warnings: list[str] = field(default_factory=list)
    dead_letters: int = 0
    provenance_dropped: int = 0  # events written without `$original*`: too big with them
    seconds: float = 0.0


def _no_step(_: str) -> None:
    return None


@dataclass(frozen=True)
class _Limits:
    start_after: int | None
    stop_at: int | None
    dry_run: bool
    on_step: Callable[[str], None]


def run_slice(
    job: JobConfig,
    source: EventStore,
    target: EventStore,
    store: CheckpointStore,
    budget: Budget,
    *,
    owner: str | None = None,
    transform: rules.Transform | None = None,
    start_after: int | None = None,
    stop_at: int | None = None,
    dry_run: bool = False,
    on_step: Callable[[str], None] | None = None,
    known: KnownStreams | None = None,
) -> SliceResult:
    """One invocation's work. `start_after` is where a job with no checkpoint yet begins
    (exclusive; None = the start of `$all`), `stop_at` the last position a backfill copies
    (inclusive). A dry run reads and plans but neither writes nor commits. `on_step` is
    called at each step boundary ("read", "append", "written", "commit", "committed", and
    "chunk" on the reader thread each time a chunk of `$all` is read and planned): tests use
    it to kill the process at exact points. Writer threads call it concurrently. `known` is
    what earlier slices of this process learned about target streams (core/engine/known_streams.py):
    the slice uses it instead of reading those streams, and leaves what it learned there."""
    owner = owner or f"relay-{uuid.uuid4().hex[:12]}"
    started_at = datetime.now(UTC)
    started = time.monotonic()
    result = SliceResult(job.job_id, "ok")
    limits = _Limits(start_after, stop_at, dry_run, on_step or _no_step)
    if dry_run:
        checkpoint = store.load(job.job_id) or Checkpoint(job_id=job.job_id)
        source.retry_deadline = target.retry_deadline = budget.deadline
        _Slice(
            job, source, target, store, None, checkpoint, budget, result, transform, limits
        ).run()
        result.seconds = time.monotonic() - started
        return result
    try:
        lease = store.acquire(job.job_id, owner, job.lease_ttl_seconds)
    except LeaseLostError as e:
        result.status = "busy"
        result.error = str(e)
        result.next_action = "stop"
        return result
    checkpoint = store.load(job.job_id) or Checkpoint(job_id=job.job_id)
    # Transient failures are retried with backoff, but never past the slice's deadline.
    source.retry_deadline = target.retry_deadline = budget.deadline
    result.from_position = checkpoint.position.commit if checkpoint.position else None
    try:
        _Slice(
            job, source, target, store, lease, checkpoint, budget, result, transform, limits, known
        ).run()
    except RelayError as e:
        result.status = "failed"
        result.error = str(e)
        result.next_action = "stop"
        raise
    finally:
        result.seconds = time.monotonic() - started
        _record(store, lease, result, started_at)
        store.release(lease)
    return result


def _record(
    store: CheckpointStore, lease: Lease, result: SliceResult, started_at: datetime
) -> None:
    def pos(value: int | None) -> Position | None:
        return Position(commit=value, prepare=value) if value is not None else None

    # History is informational: a failure to record it must not hide the slice's own outcome.
    with contextlib.suppress(RelayError):
        store.record_slice(
            lease,
            SliceRecord(
                job_id=result.job_id,
                started_at=started_at,
                finished_at=datetime.now(UTC),
                owner=lease.owner,
                events_read=result.events_read,
                events_written=result.events_written,
                events_skipped=result.events_skipped,
                bytes_written=result.bytes_written,
                from_position=pos(result.from_position),
                to_position=pos(result.position),
                caught_up=result.caught_up,
                error=result.error,
            ),
        )


class _Slice:
    def __init__(
        self,
        job: JobConfig,
        source: EventStore,
        target: EventStore,
        store: CheckpointStore,
        lease: Lease | None,
        checkpoint: Checkpoint,
        budget: Budget,
        result: SliceResult,
        transform: rules.Transform | None,
        limits: _Limits,
        known: KnownStreams | None = None,
    ) -> None:
        self.job = job
        self.source = source
        self.target = target
        self.store = store
        self.lease = lease
        self.checkpoint = checkpoint
        self.budget = budget
        self.result = result
        self.transform = transform
        self.limits = limits
        self.on_step = limits.on_step
        self.index = SliceIndex()
        self.planner = Planner(job, source, transform)
        self.ctx = WriteContext(
            job, source, target, self.index, self.on_step, known, planner=self.planner
        )
        # A range of a backfill: the main job may have copied past it.
        self.ctx.ahead = limits.start_after is not None or limits.stop_at is not None
        self.writers: list[StreamWriter] = []
        self.reader: ChunkReader | None = None
        self.multi = False  # writes go by multi-stream append (set when the writing starts)
        self.written = self.skipped = self.size = 0
        self._lock = threading.Lock()  # the lease and the counters, shared by writers

    # ---------------------------------------------------------------- the slice
    def run(self) -> None:
        if self.checkpoint.position:
            after = self.checkpoint.position.commit
        else:
            after = self.limits.start_after
        batch = self.job.batch
        self.reader = reader = ChunkReader(
            self.source,
            ReadLimits(
                after=after,
                max_events=self.budget.max_events,
                max_bytes=self.budget.max_bytes,
                deadline=self.budget.deadline,
                stop_at=self.limits.stop_at,
                chunk_events=batch.max_events,
                chunk_bytes=batch.max_bytes,
            ),
            self.planner.plan,
            self.index,
            on_chunk=lambda: self.on_step("chunk"),
        )
        try:
            if self.limits.dry_run:
                ops = reader.read_all()
                self.on_step("read")
                self.result.events_read = reader.events_read
                self._report_dry_run(ops, after, reader.exhausted)
                return
            if self.job.mode == "partitioned":
                done_position, stopped = self._run_partitioned(reader, after)
            else:
                done_position, stopped = self._run_ordered(reader, after)
            self._finish(after, done_position)
        except BaseException:
            # An append whose outcome is unknown may have moved a stream: forget them all.
            if self.ctx.known is not None:
                self.ctx.known.clear()
            raise
        finally:
            reader.close()
            self.result.warnings.extend(self.ctx.warnings)
            self.result.dead_letters += self.ctx.dead_letters
            self.result.provenance_dropped += self.ctx.provenance_dropped
        if self.ctx.known is not None:
            for writer in self.writers:
                self.ctx.known.learn(*writer.learned())
        self.result.caught_up = (
            reader.exhausted and not stopped and done_position == reader.last_position
        )
        head = self.source.head_position()
        self.result.lag_bytes = max(0, head - (done_position or 0))
        self.result.next_action = "idle" if self.result.caught_up else "continue"

    def _finish(self, after: int | None, done_position: int | None) -> None:
        """Report the slice's counts and commit how far it got."""
        assert self.reader is not None
        self.result.events_read = self.reader.events_read
        self.result.events_written = self.written
        self.result.events_skipped = self.skipped
        self.result.bytes_written = self.size
        self.result.position = done_position
        if done_position != after:
            self.on_step("commit")
            self._commit(done_position, self.written, self.size, self.skipped)
            self.on_step("committed")

    def _run_ordered(self, reader: ChunkReader, after: int | None) -> tuple[int | None, bool]:
        """Write in `$all` order; (position every write up to which is done, stopped early)."""
        writer = StreamWriter(self.ctx)
        self.writers.append(writer)
        multi = self.multi = self._use_multi_append()
        batches = ordered_batches if multi else runs
        write = writer.write_batch if multi else writer.write
        done = after
        first = True
        with ThreadPoolExecutor(SYNC_THREADS, thread_name_prefix="relay-sync") as pool:
            while True:
                ops = reader.next_ops()
                if first:
                    self.on_step("read")
                    first = False
                if ops is None:
                    return done, False
                writer.prefetch(ops, pool)
                for group in batches(ops, self.job.batch.max_events, self.job.batch.max_bytes):
                    if time.monotonic() > self.budget.deadline:
                        return done, True
                    self._check_lease()
                    try:
                        n, b = write(group)
                    except PermanentError as e:
                        raise _at(e, group[0].source) from None
                    self.on_step("written")
                    self._count(group, n, b)
                    done = group[-1].position

    def _run_partitioned(self, reader: ChunkReader, after: int | None) -> tuple[int | None, bool]:
        """Dispatch each stream's ops to its partition's writer thread; (low watermark,
        stopped early). A writer's error stops every writer after its current append; the
        watermark is committed, then the error raised."""
        partitions = self.job.partitions
        self.multi = self._use_multi_append()
        watermark = Watermark(after)
        stop = threading.Event()
        deadline_hit = threading.Event()
        errors: list[tuple[BaseException, Op]] = []
        inboxes: list[queue.SimpleQueue[list[Op] | None]] = [
            queue.SimpleQueue() for _ in range(partitions)
        ]
        writers = [
            threading.Thread(
                target=self._partition,
                args=(inbox, watermark, stop, deadline_hit, errors),
                name=f"relay-writer-{i}",
                daemon=True,
            )
            for i, inbox in enumerate(inboxes)
        ]
        for thread in writers:
            thread.start()
        try:
            first = True
            while not stop.is_set():
                ops = reader.next_ops()
                if first:
                    self.on_step("read")
                    first = False
                if ops is None:
                    break
                watermark.add(op.position for op in ops)
                shares: list[list[Op]] = [[] for _ in range(partitions)]
                skipped = []
                for op in ops:
                    if op.kind is rules.Kind.SKIP:
                        skipped.append(op)
                    else:
                        shares[partition_of(op.stream, partitions)].append(op)
                self._count(skipped, 0, 0)
                watermark.done(op.position for op in skipped)
                for inbox, share in zip(inboxes, shares, strict=True):
                    if share:
                        inbox.put(share)
        except BaseException:
            stop.set()
            raise
        finally:
            for inbox in inboxes:
                inbox.put(None)
            for thread in writers:
                thread.join()
        if errors:
            error, op = errors[0]
            if not isinstance(error, LeaseLostError):
                self._finish(after, watermark.position)
            if isinstance(error, PermanentError):
                raise _at(error, op.source)
            raise error
        return watermark.position, deadline_hit.is_set()

    def _partition(
        self,
        inbox: queue.SimpleQueue[list[Op] | None],
        watermark: Watermark,
        stop: threading.Event,
        deadline_hit: threading.Event,
        errors: list[tuple[BaseException, Op]],
    ) -> None:
        """One partition's writer thread: its streams' state is its own. While the slice is
        read it learns the state of its streams on the target (reads only); once the read is
        over it writes each stream's events of the whole slice in as few appends as the batch
        limits allow."""
        writer = StreamWriter(self.ctx)
        with self._lock:
            self.writers.append(writer)
        batch = self.job.batch
        ops: list[Op] = []
        while (item := inbox.get()) is not None:
            ops.extend(item)
            firsts: dict[str, Op] = {}
            for op in item:
                firsts.setdefault(op.stream, op)
            for stream, first in firsts.items():
                if stop.is_set():
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
            if stop.is_set():
                return
            if time.monotonic() > self.budget.deadline:
                deadline_hit.set()
                stop.set()
                return
            try:
                self._check_lease()
                n, b = writer.write_pack(pack)
            except BaseException as e:  # raised by the coordinator after every writer stopped
                if isinstance(e, RelayError) and len(pack) > 1:
                    # Its streams one by one: those that can be written are.
                    if self._write_groups(writer, pack, watermark, errors):
                        continue
                else:
                    with self._lock:
                        errors.append((e, pack[0][0]))
                stop.set()
                return
            self._written(pack, n, b, watermark)

    def _write_groups(
        self,
        writer: StreamWriter,
        pack: list[list[Op]],
        watermark: Watermark,
        errors: list[tuple[BaseException, Op]],
    ) -> bool:
        """A pack's streams one by one, after its multi-stream append failed: the streams that
        can be written are, and the watermark stops just below the one that cannot. False if
        one failed (its error recorded)."""
        for group in pack:
            try:
                n, b = writer.write(group)
            except BaseException as e:
                with self._lock:
                    errors.append((e, group[0]))
                return False
            self._written([group], n, b, watermark)
        return True

    def _written(self, pack: list[list[Op]], n: int, b: int, watermark: Watermark) -> None:
        done = [op for group in pack for op in group]
        self.on_step("written")
        self._count(done, n, b)
        watermark.done(op.position for op in done)

    def _use_multi_append(self) -> bool:
        # The server stores a v2 append's metadata as properties, so reads show it re-rendered
        # with `$schema.*` keys added (core/multi_append.py): a job can turn it off.
        return self.job.multi_append and self.target.supports_multi_append()

    def _count(self, group: list[Op], written: int, size: int) -> None:
        skipped = sum(
            1
            for op in group
            if op.kind is rules.Kind.SKIP or (op.kind is rules.Kind.EVENT and not op.events)
        )
        with self._lock:
            self.written += written
            self.size += size
            self.skipped += skipped

    def _report_dry_run(self, ops: list[Op], after: int | None, exhausted: bool) -> None:
        self.result.events_written = sum(len(op.events) for op in ops)
        self.result.events_skipped = sum(1 for op in ops if not op.events)
        self.result.position = ops[-1].position if ops else after
        self.result.caught_up = exhausted
        self.result.next_action = "stop"
        self.result.warnings.append("dry run: nothing was written or committed")

    def _check_lease(self) -> None:
        assert self.lease is not None
        # Before each batch: renew when less than a third of the lease is left (the renewal
        # fails, and the slice stops unwritten, if another invocation took the job over). A
        # lease can only be taken over once expired, so an invocation paused past its lease
        # writes at most the one batch it was in, which the next owner's tail check detects.
        margin = self.job.lease_ttl_seconds / 3
        with self._lock:
            remaining = (self.lease.expires_at - datetime.now(UTC)).total_seconds()
            if remaining < margin:
                self.lease = self.store.renew(self.lease, self.job.lease_ttl_seconds)

    def _commit(self, position: int | None, written: int, size: int, skipped: int) -> None:
        if position is None:
            return
        c = self.checkpoint
        assert self.lease is not None
        stored = self.store.commit(
            self.lease,
            c.model_copy(
                update={
                    "position": Position(commit=position, prepare=position),
                    "events_read": c.events_read + self.result.events_read,
                    "events_written": c.events_written + written,
                    "events_skipped": c.events_skipped + skipped,
                    "bytes_written": c.bytes_written + size,
                    "updated_at": datetime.now(UTC),
                }
            ),
        )
        self.checkpoint = stored


def _at(error: PermanentError, event: Event) -> PermanentError:
    """Name where in the source a permanent failure happened (once)."""
    where = f"at source position {event.commit_position}"
    if where not in error.message:
        error.message = f"{error.message} ({where}, event {event.revision} of {event.stream!r})"
        error.args = (error.message,)
    return error
