"""run_slice: one invocation's work — lease, checkpoint, bounded read, filter, write, commit.

Exactly once, without an atomic write across the checkpoint store and the target:
- events keep their ids and go to the target in `$all` order with exact expected revisions;
- the first time a slice touches a target stream it reads the stream's last event and the
  source position recorded in it (`$originalPosition`), and skips every pending event at or
  before that position: a crashed run, or an invocation that lost its lease mid-write, may have
  written them already. Without that metadata it searches the tail for the pending ids;
- an append that meets another revision than expected resynchronises the same way once, then
  stops with a ConflictError rather than write a duplicate;
- the checkpoint is committed under the lease (fencing token + version), only after every write
  up to it succeeded, and only at a source-event boundary.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from core import rules
from core.checkpoint import Checkpoint, CheckpointStore, Lease, Position, SliceRecord
from core.config import JobConfig
from core.errors import (
    ConflictError,
    LeaseLostError,
    OversizeEventError,
    PermanentError,
    RelayError,
)
from core.eventstore import (
    NO_STREAM,
    AppendTooLarge,
    Event,
    EventStore,
    OutEvent,
    StreamTombstoned,
    WrongExpectedRevision,
)
from core.scavenge import ScavengeFilter


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
    seconds: float = 0.0


@dataclass
class _Op:
    """The target writes one source record turns into."""

    source: Event
    kind: rules.Kind
    events: list[OutEvent] = field(default_factory=list)


def _no_step(_: str) -> None:
    return None


@dataclass(frozen=True)
class _Limits:
    start_after: int | None
    stop_at: int | None
    dry_run: bool
    on_step: Callable[[str], None]


class _StreamState:
    """What one slice knows of a target stream: its revision and how far it already goes."""

    def __init__(self, revision: int, marker: int, soft_deleted: bool = False) -> None:
        self.revision = revision  # expected revision for the next append (NO_STREAM if none)
        self.marker = marker  # source position at or before which events are already there
        self.soft_deleted = soft_deleted  # the target's metadata says `$tb` = long.MaxValue


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
) -> SliceResult:
    """One invocation's work. `start_after` is where a job with no checkpoint yet begins
    (exclusive; None = the start of `$all`), `stop_at` the last position a backfill copies
    (inclusive). A dry run reads and plans but neither writes nor commits. `on_step` is
    called at each step boundary ("read", "append", "written", "commit", "committed"): tests
    use it to kill the process at exact points."""
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
            job, source, target, store, lease, checkpoint, budget, result, transform, limits
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
        self.streams: dict[str, _StreamState] = {}
        self.meta_markers: dict[str, int] = {}
        # This slice's events by id and per stream (bounded by the slice budget).
        self.positions_by_id: dict[uuid.UUID, int] = {}
        self.events_per_stream: Counter[str] = Counter()
        self.first_revision: dict[str, int] = {}
        self.scavenge = ScavengeFilter(source) if job.filters.scavenge else None

    # ---------------------------------------------------------------- the slice
    def run(self) -> None:
        if self.checkpoint.position:
            after = self.checkpoint.position.commit
        else:
            after = self.limits.start_after
        events, exhausted = self._read(after)
        self.on_step("read")
        self.result.events_read = len(events)
        ops = [self._plan(e) for e in events]
        if self.limits.dry_run:
            self._report_dry_run(ops, after, exhausted)
            return
        for op in ops:
            if op.kind is rules.Kind.EVENT:
                self.first_revision.setdefault(op.source.stream, op.source.revision)
                self.events_per_stream[op.source.stream] += len(op.events)
                for e in op.events:
                    self.positions_by_id[e.event_id] = op.source.commit_position
        done_position = after
        written = skipped = size = 0
        for group in _runs(ops, self.job.batch.max_events, self.job.batch.max_bytes):
            if time.monotonic() > self.budget.deadline:
                exhausted = False
                break
            self._check_lease()
            try:
                n, b = self._write(group)
            except PermanentError as e:
                raise _at(e, group[0].source) from None
            self.on_step("written")
            written += n
            size += b
            skipped += sum(1 for op in group if not op.events and op.kind is rules.Kind.EVENT)
            skipped += sum(1 for op in group if op.kind is rules.Kind.SKIP)
            done_position = group[-1].source.commit_position
        self.result.events_written = written
        self.result.events_skipped = skipped
        self.result.bytes_written = size
        self.result.position = done_position
        self.result.caught_up = exhausted and done_position == (
            events[-1].commit_position if events else after
        )
        if done_position != after:
            self.on_step("commit")
            self._commit(done_position, written, size, skipped)
            self.on_step("committed")
        head = self.source.head_position()
        self.result.lag_bytes = max(0, head - (done_position or 0))
        self.result.next_action = "idle" if self.result.caught_up else "continue"

    def _report_dry_run(self, ops: list[_Op], after: int | None, exhausted: bool) -> None:
        self.result.events_written = sum(len(op.events) for op in ops)
        self.result.events_skipped = sum(1 for op in ops if not op.events)
        self.result.position = ops[-1].source.commit_position if ops else after
        self.result.caught_up = exhausted
        self.result.next_action = "stop"
        self.result.warnings.append("dry run: nothing was written or committed")

    def _read(self, after: int | None) -> tuple[list[Event], bool]:
        events: list[Event] = []
        size = 0
        limit = self.budget.max_events
        stop_at = self.limits.stop_at
        for event in self.source.read_all_after(after, limit):
            if stop_at is not None and event.commit_position > stop_at:
                return events, True
            events.append(event)
            size += event.size
            if size >= self.budget.max_bytes or time.monotonic() > self.budget.deadline:
                return events, False
        return events, len(events) < limit

    def _plan(self, event: Event) -> _Op:
        kind = rules.classify(event)
        if kind is rules.Kind.SKIP:
            return _Op(event, kind)
        stream = event.stream[2:] if kind is rules.Kind.METADATA else event.stream
        if not self.job.filters.accepts_stream(stream):
            return _Op(event, rules.Kind.SKIP)
        if kind is rules.Kind.TOMBSTONE:
            return _Op(event, kind)
        if kind is rules.Kind.METADATA:
            return _Op(event, kind, [self._metadata_event(event)])
        if not self.job.filters.accepts_event_type(event.type):
            return _Op(event, rules.Kind.SKIP)
        if self.scavenge is not None and self.scavenge.removes(event):
            return _Op(event, rules.Kind.SKIP)
        outputs = rules.apply_transform(self.transform, event) if self.transform else [event]
        with_original = self.job.original_metadata
        return _Op(event, kind, [rules.out_event(o, with_original=with_original) for o in outputs])

    def _metadata_event(self, event: Event) -> OutEvent:
        # The source position goes into the event's own metadata (the server ignores it),
        # never into the stream metadata JSON, so users' stream metadata is unchanged.
        marker = rules.add_original_metadata(b"", event)
        return OutEvent(event.event_id, "$metadata", event.content_type, event.data, marker)

    def _check_lease(self) -> None:
        assert self.lease is not None
        # Before each batch: renew when less than a third of the lease is left (the renewal
        # fails, and the slice stops unwritten, if another invocation took the job over). A
        # lease can only be taken over once expired, so an invocation paused past its lease
        # writes at most the one batch it was in, which the next owner's tail check detects.
        margin = self.job.lease_ttl_seconds / 3
        remaining = (self.lease.expires_at - datetime.now(UTC)).total_seconds()
        if remaining < margin:
            self.lease = self.store.renew(self.lease, self.job.lease_ttl_seconds)

    # ---------------------------------------------------------------- writes
    def _write(self, group: list[_Op]) -> tuple[int, int]:
        head = group[0]
        if head.kind is rules.Kind.SKIP or (
            head.kind is rules.Kind.EVENT and not any(op.events for op in group)
        ):
            return 0, 0
        if head.kind is rules.Kind.TOMBSTONE:
            self.target.tombstone(head.source.stream)
            self.streams.pop(head.source.stream, None)
            return 0, 0
        if head.kind is rules.Kind.METADATA:
            return self._write_metadata(head)
        return self._append(head.source.stream, group)

    def _write_metadata(self, op: _Op) -> tuple[int, int]:
        stream = op.source.stream[2:]
        state = self.streams.get(stream) or self._sync(stream)
        if op.source.commit_position <= state.marker:
            return 0, 0
        event = op.events[0]
        data = self._translate_tb(stream, event.data, op.source.commit_position)
        if _tb(data) == rules.DELETED_STREAM and state.soft_deleted:
            # Deleting again: appending `$tb = long.MaxValue` to the metastream of a stream
            # that is already soft-deleted makes the server *undelete* it (it rewrites `$tb`
            # to the next revision: StorageWriterService.SoftUndeleteMetastream). The target
            # already shows the deletion, and no event of the stream can lie in between.
            self.meta_markers[stream] = op.source.commit_position
            state.marker = op.source.commit_position
            return 0, 0
        self.target.append_any(
            op.source.stream,
            [OutEvent(event.event_id, event.type, event.content_type, data, event.metadata)],
        )
        # A soft delete or undelete moves the target's revisions: learn them again next time.
        self.streams.pop(stream, None)
        self.meta_markers[stream] = op.source.commit_position
        return 1, event.size

    def _translate_tb(self, stream: str, data: bytes, position: int) -> bytes:
        """`$tb` names a source revision; the target's revisions differ, so map it."""
        try:
            metadata = json.loads(data)
        except (ValueError, UnicodeDecodeError):
            return data
        if not isinstance(metadata, dict):
            return data
        tb = metadata.get("$tb")
        if not isinstance(tb, int) or tb == rules.DELETED_STREAM or tb <= 0:
            return data
        translated = self._target_revision_for(stream, tb, position)
        if translated == tb:
            return data
        metadata["$tb"] = translated
        return json.dumps(metadata, separators=(",", ":"), ensure_ascii=False).encode()

    def _target_revision_for(self, stream: str, n: int, position: int) -> int:
        """Target revision of the first replicated event whose source revision is >= n.

        Exact when the target shows the events around that point with their
        `$originalStreamRevision`, or when the source still holds events from n on that the
        target shows (matched by id). Otherwise it counts forward from the stream's last
        replicated event: the events of the stream that follow it in the source's `$all` and
        the job copies, and one for one beyond the source's end.
        """
        tail = self.target.stream_tail(stream, 4096)
        visible = list(tail.events)
        originals = [rules.read_original_revision(e.metadata) for e in visible]
        positions = [rules.read_original_position(e.metadata) for e in visible]
        if visible and None not in originals and None not in positions:
            newest = visible[-1]
            if originals[-1] < n:  # type: ignore[operator]
                return self._count(
                    stream,
                    positions[-1],
                    newest.revision,
                    originals[-1],
                    n,  # type: ignore[arg-type]
                )
            answer = newest.revision
            for event, original in zip(reversed(visible), reversed(originals), strict=True):
                if original < n:  # type: ignore[operator]
                    return answer
                answer = event.revision
            oldest, oldest_original = visible[0], originals[0]
            assert oldest_original is not None
            if oldest.revision == 0 or oldest_original == n:
                return oldest.revision
            # Earlier target events are hidden ($maxCount): count back one for one.
            return max(0, oldest.revision - (oldest_original - n))
        by_id = {e.event_id: e.revision for e in visible}
        try:
            later = self.source.read_stream(stream, from_revision=n, limit=256)
        except StreamTombstoned:
            later = []  # the tombstone follows; the target stream ends deleted all the same
        for event in later:
            if event.event_id in by_id:
                # Count back from it over the source's $all: events between n and it may be
                # hidden from reads on either side.
                return self._count(
                    stream, event.commit_position, by_id[event.event_id], event.revision, n
                )
        last = tail.last_revision if visible else self.target.current_revision(stream)
        before = self.source.stream_records_before(stream, position, 1)
        if not before:
            return self._count(stream, None, last, -1, n)
        anchor = before[0]
        return self._count(
            stream, anchor.commit_position, last, anchor.revision, n, self._replicates(anchor)
        )

    def _count(
        self,
        stream: str,
        anchor: int | None,
        target_last: int,
        source_last: int,
        n: int,
        anchor_copied: bool = True,
    ) -> int:
        """The target revision source revision n lands on, given that the stream's record at
        `$all` position `anchor` (source revision `source_last`, copied or filtered out) is the
        last the target holds up to `target_last`: count the copied records between them in
        the source's `$all`."""
        limit = 10_000
        if n <= source_last:
            copied = int(anchor_copied)
            if anchor is not None and source_last > n:
                for event in self.source.stream_records_before(
                    stream, anchor, min(source_last - n, limit)
                ):
                    if event.revision < n:
                        break
                    copied += self._replicates(event)
            return max(0, target_last + 1 - copied)
        copied = 0
        seen = source_last
        wanted = min(n - source_last - 1, limit)
        for event in self.source.stream_records_after(stream, anchor, wanted) if wanted else ():
            if event.revision >= n:
                break
            seen = event.revision
            copied += self._replicates(event)
        # Revisions the source does not hold yet are taken as copied one for one.
        return target_last + 1 + copied + max(0, n - seen - 1)

    def _replicates(self, event: Event) -> bool:
        return rules.classify(event) is rules.Kind.EVENT and self.job.filters.accepts(
            event.stream, event.type
        )

    def _append(self, stream: str, group: list[_Op]) -> tuple[int, int]:
        state = self.streams.get(stream) or self._sync(stream)
        pending = [op for op in group if op.source.commit_position > state.marker]
        if not pending or not any(op.events for op in pending):
            return 0, 0
        try:
            return self._append_ops(stream, state, pending)
        except WrongExpectedRevision:
            # Someone moved the stream (an invocation that lost its lease, or a crash replay
            # the first check could not see): learn it again and skip what is already there.
            state = self._sync(stream)
            pending = [op for op in pending if op.source.commit_position > state.marker]
            if not pending:
                return 0, 0
            try:
                return self._append_ops(stream, state, pending)
            except WrongExpectedRevision:
                raise ConflictError(stream, state.revision, None) from None

    def _append_ops(self, stream: str, state: _StreamState, ops: list[_Op]) -> tuple[int, int]:
        """Append the ops' events in one call; split in halves if the server finds it too big."""
        events = [e for op in ops for e in op.events]
        if not events:
            return 0, 0
        try:
            self.on_step("append")
            self.target.append(stream, state.revision, events)
        except AppendTooLarge as e:
            if len(ops) > 1:
                half = len(ops) // 2
                n1, b1 = self._append_ops(stream, state, ops[:half])
                n2, b2 = self._append_ops(stream, state, ops[half:])
                return n1 + n2, b1 + b2
            op = ops[0]
            if self.job.dead_letter:
                self._dead_letter(stream, op, sum(x.size for x in events), e.limit)
                state.marker = op.source.commit_position
                return 0, 0
            raise OversizeEventError(
                stream,
                op.source.revision,
                sum(x.size for x in events),
                e.limit or 0,
                hint=f"at source position {op.source.commit_position}; raise the target's "
                "MaxAppendSize or shrink the event with a transform",
            ) from None
        state.revision = (state.revision if state.revision >= 0 else -1) + len(events)
        state.marker = ops[-1].source.commit_position
        return len(events), sum(e.size for e in events)

    def _dead_letter(self, stream: str, op: _Op, size: int, limit: int | None) -> None:
        """Record an event the target refuses, instead of stopping (`dead_letter = true`).

        The record goes to the target's `$esdb-relay-dead-letters-<job>` system stream, with
        where to find the event in the source; the payload itself stays in the source.
        """
        record = {
            "stream": stream,
            "revision": op.source.revision,
            "position": op.source.commit_position,
            "eventId": str(op.source.event_id),
            "type": op.source.type,
            "size": size,
            "limit": limit,
            "reason": "over the target's maximum append size",
        }
        self.target.append_any(
            f"$esdb-relay-dead-letters-{self.job.job_id}",
            [
                OutEvent(
                    rules.derive_id(op.source.event_id, 1_000_000),
                    "DeadLetter",
                    "application/json",
                    json.dumps(record).encode(),
                    b"",
                )
            ],
        )
        self.result.dead_letters += 1
        self.result.warnings.append(
            f"event {op.source.revision} of {stream!r} ({size} bytes) dead-lettered"
        )

    def _sync(self, stream: str) -> _StreamState:
        """Learn the target stream's revision and how far it already goes (see module doc).

        The marker covers the stream and its metadata: both are written in `$all` order, so a
        later record of either means every earlier record of the stream is on the target.
        """
        tail = self.target.stream_tail(stream, 1)
        if tail.tombstoned:
            # Nothing of a stream can follow its tombstone in the source: all of it is there.
            state = _StreamState(NO_STREAM, rules.DELETED_STREAM)
            self.streams[stream] = state
            return state
        marker = self.meta_markers.get(stream, -1)
        meta = self.target.stream_tail("$$" + stream, 1)
        soft_deleted = False
        revision = tail.last_revision
        if meta.events:
            last_meta = meta.events[-1]
            marker = max(marker, rules.read_original_position(last_meta.metadata) or -1)
            soft_deleted = _tb(last_meta.data) == rules.DELETED_STREAM
            if not tail.events:
                # `$tb`/`$maxCount` or a soft delete may hide every event: ask for the revision.
                revision = self.target.current_revision(stream)
        if tail.events:
            last = tail.events[-1]
            found = rules.read_original_position(last.metadata)
            if found is None:
                found = self._search_ids(stream)
                if found < 0 and self._foreign(stream, last):
                    raise ConflictError(
                        stream,
                        None,
                        tail.last_revision,
                        message=(
                            f"target stream {stream!r} already holds events this job did not "
                            f"write (last: revision {last.revision}, type {last.type!r}, id "
                            f"{last.event_id}); nothing was written to it"
                        ),
                    )
            marker = max(marker, found)
        state = _StreamState(revision, marker, soft_deleted)
        self.streams[stream] = state
        return state

    def _foreign(self, stream: str, last: Event) -> bool:
        """Is the target's last event not one of ours? Ours carry `$originalPosition` when the
        job adds it and the metadata allows it; and a stream whose first source event is in
        this slice must be empty on the target unless our events are there."""
        if (
            self.job.original_metadata
            and rules.add_original_metadata(b"", last)
            and (_is_json_object(last.metadata) or not last.metadata.strip())
        ):
            return True
        return self.first_revision.get(stream) == 0

    def _search_ids(self, stream: str) -> int:
        """Without `$originalPosition` on the target: the newest tail event that is one of
        this slice's events marks how far the stream goes. Events of the stream later than
        ours imply all of ours (per-stream order), so the tail need only reach back over this
        slice's events of the stream plus one batch an invocation fenced out could still write.
        """
        depth = self.events_per_stream.get(stream, 0) + self.job.batch.max_events
        tail = self.target.stream_tail(stream, depth)
        for event in reversed(tail.events):
            position = self.positions_by_id.get(event.event_id)
            if position is not None:
                return position
        return -1

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


def _tb(metadata: bytes) -> object:
    try:
        value = json.loads(metadata)
    except (ValueError, UnicodeDecodeError):
        return None
    return value.get("$tb") if isinstance(value, dict) else None


def _is_json_object(data: bytes) -> bool:
    try:
        return isinstance(json.loads(data), dict)
    except (ValueError, UnicodeDecodeError):
        return False


def _runs(ops: list[_Op], max_events: int, max_bytes: int) -> Iterable[list[_Op]]:
    """Consecutive ops of one kind and stream, split by the batch limits."""
    group: list[_Op] = []
    events = size = 0
    for op in ops:
        n = len(op.events)
        b = sum(e.size for e in op.events)
        same = (
            group
            and op.kind is rules.Kind.EVENT
            and group[0].kind is rules.Kind.EVENT
            and group[0].source.stream == op.source.stream
            and events + n <= max_events
            and size + b <= max_bytes
        )
        if group and not same:
            yield group
            group, events, size = [], 0, 0
        group.append(op)
        events += n
        size += b
    if group:
        yield group
