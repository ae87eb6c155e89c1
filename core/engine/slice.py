"""run_slice: one invocation's work — lease, checkpoint, bounded read, filter, write, commit.

Exactly once, without an atomic write across the checkpoint store and the target:
- events keep their ids and go to the target in per-stream order with exact expected revisions;
- the first time a slice touches a target stream it reads the stream's last event and finds
  the source record it came from by its id (core/engine/locate.py: the slice's own records,
  then the place its `$original*` metadata claims, confirmed by the record standing there, then a
  search of the source stream; no value in an event's metadata is trusted), and skips every
  pending event at or before that record: a crashed run, or an invocation that lost its lease
  mid-write, may have written them already. A stream first met at its source revision 0 is
  not read: its append expects NO_STREAM, which the server refuses unless the stream has no
  events or the same ids already stand there (StreamWriter.assumed);
- an append that meets another revision than expected resynchronises the same way once, then
  stops with a ConflictError rather than write a duplicate;
- the checkpoint is committed under the lease (fencing token + version), only after every write
  up to it succeeded, and only at a source-event boundary.

Modes (core/engine/ordered.py, partitioned.py). A reader thread reads and plans the next chunk
of `$all` while the current one is written (core/engine/reader.py). Ordered mode writes in
`$all` order, one append per run of consecutive same-stream events, or, when the target has
KurrentDB's multi-stream append (and the job does not turn it off), one atomic append per batch
of several streams' runs (a conflict resyncs the named stream once). Partitioned mode hashes
each stream (with its metadata and tombstone) to one of N writer threads; a writer learns its
streams' target state while the slice is read, then writes each stream's events of the slice
in as few appends as the batch limits allow, in the stream's order; with multi-stream append,
several of its streams' appends go in one call. Its checkpoint is the low watermark: the
highest position at or below which every op is written. A stop (deadline, error in one
partition) commits that watermark and nothing past it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from core.checkpoint import Checkpoint, CheckpointStore, Lease, Position
from core.engine.budget import Budget, Request, Step
from core.engine.plan import EventOp, Op, SkipOp
from core.engine.reader import ChunkReader
from core.engine.writer import StreamWriter, WriteContext
from core.errors import PermanentError
from core.model import Event


@dataclass
class SliceResult:
    """One slice's outcome. Of the `$all` records it read and dealt with (`events_read`),
    each was copied, skipped (already on the target: a replay, a backfill over copied
    events), filtered (not copied by the job's rules: system records, links, filters, dropped
    by the transform) or dead-lettered (`dead_letter = true`): read = copied + skipped +
    filtered + dead-lettered. `events_written` counts the events appended, which is `copied`
    when every record is one event (a transform may make several or none of one; a tombstone
    appends none)."""

    job_id: str
    status: Literal["ok", "busy", "failed"]
    events_read: int = 0
    events_written: int = 0
    events_skipped: int = 0
    events_filtered: int = 0
    events_dead_lettered: int = 0
    records_copied: int = 0
    bytes_written: int = 0
    from_position: int | None = None
    position: int | None = None
    caught_up: bool = False
    lag_bytes: int | None = None  # source log bytes not yet replicated
    next_action: Literal["continue", "idle", "stop"] = "idle"
    error: str | None = None
    warnings: list[str] = field(default_factory=list)
    lease_holder: str | None = None  # busy: who holds the job's lease
    lease_expires_at: datetime | None = None  # busy: until when
    provenance_dropped: int = 0  # events written without `$original*`: too big with them
    seconds: float = 0.0


class Slice:
    """One slice: read, write (`write_all`, by mode), commit. The job, its connections and
    what the writers share are in `ctx`."""

    def __init__(
        self,
        ctx: WriteContext,
        store: CheckpointStore,
        lease: Lease | None,
        checkpoint: Checkpoint,
        budget: Budget,
        request: Request,
        result: SliceResult,
    ) -> None:
        self.ctx = ctx
        self.store = store
        self.lease = lease
        self.checkpoint = checkpoint
        self.budget = budget
        self.request = request
        self.result = result
        self.writers: list[StreamWriter] = []
        self.written = self.filtered = self.size = 0
        self.records = 0  # records of `$all` written, found there, filtered or dead-lettered
        self.stream_regex: str | None = None  # a shard's: only its streams are read
        self._lock = threading.Lock()  # the lease and the counters, shared by writers

    def write_all(self, reader: ChunkReader, after: int | None) -> tuple[int | None, bool]:
        """Write what the reader reads; (position every write up to which is done, stopped
        early)."""
        raise NotImplementedError

    # ---------------------------------------------------------------- the slice
    def run(self) -> None:
        ctx = self.ctx
        position = self.checkpoint.position
        after = position.commit if position else self.request.start_after
        reader = ChunkReader(
            ctx.source,
            self.budget,
            ctx.job.batch,
            ctx.planner.plan,
            ctx.index,
            after=after,
            stop_at=self.request.stop_at,
            on_chunk=lambda: ctx.on_step(Step.CHUNK),
            stream_regex=self.stream_regex,
            # Partitioned writers write once the read is over: a shard's scan, which may run
            # to the deadline, leaves them half the slice once it holds records.
            read_share=0.5 if ctx.job.mode == "partitioned" else 1.0,
        )
        try:
            if self.request.dry_run:
                ops = reader.read_all()
                ctx.on_step(Step.READ)
                self.result.events_read = reader.events_read
                self._report_dry_run(ops, after, reader.exhausted)
                return
            done_position, stopped = self.write_all(reader, after)
            caught_up = reader.exhausted and not stopped and done_position == reader.last_position
            # A shard's scan says how far the server scanned for it (ChunkReader._scan): past
            # a mark whose records are all written lie, up to it, only other shards' records.
            # Committed whenever that holds, caught up or not, so a shard whose streams are
            # rare in a long stretch of `$all` moves on each slice instead of scanning the
            # same stretch again. Marks never pass `stop_at`.
            done_position = reader.committable(done_position)
            self.finish(reader, after, done_position)
        except BaseException:
            # An append whose outcome is unknown may have moved a stream: forget them all.
            if ctx.known is not None:
                ctx.known.clear()
            raise
        finally:
            reader.close()
            self.result.warnings.extend(ctx.warnings)
            self.result.provenance_dropped += ctx.provenance_dropped
        if ctx.known is not None:
            for writer in self.writers:
                ctx.known.learn(*writer.learned())
        self.result.caught_up = caught_up
        head = ctx.source.head_position()
        self.result.lag_bytes = max(0, head - (done_position or 0))
        self.result.next_action = "idle" if self.result.caught_up else "continue"

    def finish(self, reader: ChunkReader, after: int | None, done_position: int | None) -> None:
        """Report the slice's counts and commit how far it got. The counts are of the records
        dealt with (what the reader read ahead past a stop is read again by the next slice)."""
        r = self.result
        r.events_read = self.records
        r.events_written = self.written
        r.events_filtered = self.filtered
        r.events_dead_lettered = sum(
            1 for p in self.ctx.dead_lettered if done_position is not None and p <= done_position
        )
        r.records_copied = sum(w.records_copied for w in self.writers)
        # What is left was already on the target. Not below zero, should a partitioned
        # writer have landed records past the committed watermark.
        r.events_skipped = max(
            0, r.events_read - r.records_copied - r.events_filtered - r.events_dead_lettered
        )
        r.bytes_written = self.size
        r.position = done_position
        if done_position != after:
            self.ctx.on_step(Step.COMMIT)
            self._commit(done_position)
            self.ctx.on_step(Step.COMMITTED)

    def use_multi_append(self) -> bool:
        # The server stores a v2 append's metadata as properties, so reads show it re-rendered
        # with `$schema.*` keys added (docs/multi-append.md): a job can turn it off.
        return self.ctx.job.multi_append and self.ctx.target.supports_multi_append()

    def count(self, group: list[Op], written: int, size: int) -> None:
        """Count a group of ops dealt with: `written` events of `size` bytes appended."""
        filtered = sum(1 for op in group if _filtered(op))
        with self._lock:
            self.written += written
            self.size += size
            self.filtered += filtered
            self.records += len(group)

    def check_lease(self) -> None:
        assert self.lease is not None
        # Before each batch: renew when less than a third of the lease is left (the renewal
        # fails, and the slice stops unwritten, if another invocation took the job over). A
        # lease can only be taken over once expired, so an invocation paused past its lease
        # writes at most the one batch it was in, which the next owner's tail check detects.
        ttl = self.ctx.job.lease_ttl_seconds
        with self._lock:
            remaining = (self.lease.expires_at - datetime.now(UTC)).total_seconds()
            if remaining < ttl / 3:
                self.lease = self.store.renew(self.lease, ttl)

    def _report_dry_run(self, ops: list[Op], after: int | None, exhausted: bool) -> None:
        """A dry run's figures are what it *would* write: `events_written` counts the events
        the plan holds (the target is not read, so none is known to be there already)."""
        self.result.events_read = len(ops)
        self.result.events_written = sum(len(op.events) for op in ops)
        self.result.events_filtered = sum(1 for op in ops if _filtered(op))
        self.result.records_copied = len(ops) - self.result.events_filtered
        self.result.position = ops[-1].position if ops else after
        self.result.caught_up = exhausted
        self.result.next_action = "continue" if ops and not exhausted else "stop"
        self.result.warnings.append("dry run: planned only, no write and no commit")

    def _commit(self, position: int | None) -> None:
        if position is None:
            return
        c = self.checkpoint
        assert self.lease is not None
        self.checkpoint = self.store.commit(
            self.lease,
            c.model_copy(
                update={
                    "position": Position(commit=position, prepare=position),
                    "events_read": c.events_read + self.result.events_read,
                    "events_written": c.events_written + self.written,
                    "events_skipped": c.events_skipped + self.result.events_skipped,
                    "events_filtered": c.events_filtered + self.result.events_filtered,
                    "events_dead_lettered": c.events_dead_lettered
                    + self.result.events_dead_lettered,
                    "bytes_written": c.bytes_written + self.size,
                    "updated_at": datetime.now(UTC),
                }
            ),
        )


def _filtered(op: Op) -> bool:
    """Not copied by the job's rules: skipped by kind or filter, or dropped by the transform."""
    return isinstance(op, SkipOp) or (isinstance(op, EventOp) and not op.events)


def at(error: PermanentError, event: Event) -> PermanentError:
    """Name where in the source a permanent failure happened (once; an error that names its
    own event, such as an oversize event inside a batch, is left as it is)."""
    where = f"at source position {event.commit_position}"
    if "at source position " not in error.message:
        error.message = f"{error.message} ({where}, event {event.revision} of {event.stream!r})"
        error.args = (error.message,)
    return error
