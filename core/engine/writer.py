"""How one slice writes planned ops to the target: per-stream sync, exact expected revisions,
resync once then ConflictError, oversize splits and dead letters (see core/engine/slice.py's
docstring for the exactly-once argument).

A `StreamWriter` owns the per-stream state of the streams it writes. Ordered mode has one;
partitioned mode has one per partition, and a stream (with its `$$` metadata stream and its
tombstone) always goes to the same partition, so no state is shared between threads.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Executor
from dataclasses import dataclass, field

from core import rules
from core.config import JobConfig
from core.engine.batching import by_run
from core.engine.budget import Step
from core.engine.known_streams import KnownState, KnownStreams
from core.engine.locate import Locator, Missing
from core.engine.plan import (
    EventOp,
    MetadataOp,
    Op,
    Origin,
    Planner,
    SkipOp,
    SliceIndex,
    TombstoneOp,
)
from core.engine.truncation import Truncation
from core.errors import (
    AppendTooLarge,
    ConflictError,
    MultiAppendConflict,
    MultiAppendUnsupported,
    OversizeEventError,
    RelayError,
    StreamTombstoned,
    WrongExpectedRevision,
)
from core.eventstore import EventStore
from core.eventstore.v2 import event_problem
from core.model import DELETED_STREAM, NO_STREAM, OutEvent, StreamAppend

__all__ = ["Op", "SliceIndex", "StreamWriter", "TargetStream", "WriteContext"]


@dataclass
class WriteContext:
    """What every writer of a slice shares (read-only, or guarded by `lock`)."""

    job: JobConfig
    source: EventStore
    target: EventStore
    index: SliceIndex
    on_step: Callable[[str], None]
    known: KnownStreams | None = None  # what earlier slices of this process learned
    planner: Planner | None = None  # the slice's; made from the job (no transform) if None
    warnings: list[str] = field(default_factory=list)
    dead_lettered: list[int] = field(default_factory=list)  # their source positions
    provenance_dropped: int = 0  # events written without the keys the relay adds (size)
    lock: threading.Lock = field(default_factory=threading.Lock)
    # The target's head, read before the slice's first append to an assumed stream
    # (`StreamWriter.assumed`); an append whose answer lies at or before it wrote nothing.
    head: int | None = None
    replaying: bool = False  # such an answer came: this slice reads streams, assumes none
    # The target may hold this job's events past the slice (a backfill range, a replay): a
    # stream's last event that the source hides is then looked for in the target's `$all`.
    ahead: bool = False

    def note_head(self) -> None:
        with self.lock:
            if self.head is None:
                self.head = self.target.head_position()

    def wrote_nothing(self, position: int | None) -> bool:
        """Was an append answered with events already on the target (the server's idempotent
        replay)? A new write's position is past every position before it."""
        if self.head is None:
            return False
        if position is None or position <= self.head:
            self.replaying = True
            return True
        return False

    def __post_init__(self) -> None:
        if self.planner is None:
            self.planner = Planner(self.job, self.source, None)
        self.locator = Locator(self.source, self.planner, self.index)
        letters = rules.dead_letter_stream(self.job.job_id) if self.job.dead_letter else None
        self.truncation = Truncation(self.source, self.target, self.planner, letters)


class TargetStream:
    """What one slice knows of a target stream: its revision and how far it already goes."""

    def __init__(
        self,
        revision: int,
        marker: int,
        soft_deleted: bool = False,
        exact: bool = True,
        meta_synced: bool = True,
    ) -> None:
        self.revision = revision  # expected revision for the next append (NO_STREAM if none)
        self.marker = marker  # source position at or before which events are already there
        self.soft_deleted = soft_deleted  # the target's metadata says `$tb` = long.MaxValue
        # The marker covers every record up to `revision`. Not so when it was found by
        # searching for this slice's ids: later slices' events may lie beyond it.
        self.exact = exact
        # False when assumed rather than read (`StreamWriter.assumed`): the target's metadata
        # stream was never looked at, so a metadata write reads the stream first.
        self.meta_synced = meta_synced


class StreamWriter:
    def __init__(self, ctx: WriteContext) -> None:
        self.ctx = ctx
        self.source = ctx.source
        self.target = ctx.target
        self.streams: dict[str, TargetStream] = {}
        self.meta_markers: dict[str, int] = {}
        self.forgotten: set[str] = set()  # streams whose revisions this slice stopped knowing
        # Source records whose writes this writer made land (events appended, metadata
        # written, streams tombstoned); a record found already there is not one of them.
        self.records_copied = 0

    def state(self, stream: str, first: Op | None = None) -> TargetStream:
        """The stream's state: known to this slice, known from an earlier slice, assumed from
        `first` (the stream's first op this writer meets), or read."""
        return (
            self.streams.get(stream)
            or self.known(stream)
            or self.assumed(stream, first)
            or self.sync(stream)
        )

    def assumed(self, stream: str, first: Op | None) -> TargetStream | None:
        """A stream first met at its source revision 0 is taken to be absent on the target,
        without reading it: its appends expect NO_STREAM, and the server checks that. Such an
        append lands only if the target stream has no events (then none of ours is there: a
        soft delete keeps a stream's revisions, a tombstone refuses the append), or the same
        ids already stand at the same revisions (an idempotent replay, nothing written
        twice). Anything else is refused, and the writer reads the stream as for any other
        refused append. This is the common case of a backfill from the start of `$all`:
        every stream's first event is its revision 0, and the relay reads no target stream.
        The metadata stream stays unread until a metadata write needs it (`meta_synced`).
        A replay over a target that already has the events (a crash before the commit, a
        lost checkpoint) is told by the position the server answers with (`wrote_nothing`):
        it is not counted as written, and the rest of the slice reads streams instead."""
        if self.ctx.replaying or not isinstance(first, EventOp):
            return None
        if first.source.revision != 0:
            return None
        self.ctx.note_head()
        # Not `exact` until an append confirms it: an unconfirmed guess is not cached.
        state = TargetStream(NO_STREAM, -1, exact=False, meta_synced=False)
        self.streams[stream] = state
        return state

    def unknown(self, stream: str, first: Op) -> bool:
        """Must the stream be read before `first`, its first op this writer meets, is written?
        (False also when its state is assumed: `assumed` records it.)"""
        return not (stream in self.streams or self.known(stream) or self.assumed(stream, first))

    def known(self, stream: str) -> TargetStream | None:
        """What an earlier slice of this process ended with, if it is still in the cache. It
        may be stale (something else wrote the stream since): then the exact expected revision
        makes the append fail and the writer reads the stream (`_append`, `_multi`), so nothing
        lands twice or out of place (core/engine/known_streams.py)."""
        cached = self.ctx.known.get(stream) if self.ctx.known is not None else None
        if cached is None:
            return None
        state = TargetStream(
            cached.revision, cached.marker, cached.soft_deleted, meta_synced=cached.meta_synced
        )
        self.streams[stream] = state
        return state

    def learned(self) -> tuple[dict[str, KnownState], set[str]]:
        """What this writer ends the slice knowing, and the streams it stopped knowing."""
        states = {
            stream: KnownState(st.revision, st.marker, st.soft_deleted, st.meta_synced)
            for stream, st in self.streams.items()
            if st.exact
        }
        return states, self.forgotten - states.keys()

    def write(self, group: list[Op]) -> tuple[int, int]:
        """Write a group of ops of one stream; (events written, bytes written)."""
        match group[0]:
            case SkipOp():
                return 0, 0
            case TombstoneOp(source=tombstone):
                self.target.tombstone(tombstone.stream)
                self.streams.pop(tombstone.stream, None)
                self.forgotten.add(tombstone.stream)
                self.records_copied += 1
                return 0, 0
            case MetadataOp() as op:
                return self._write_metadata(op)
            case _ if not any(op.events for op in group):
                return 0, 0  # events the transform dropped
            case op:
                return self._append(op.stream, group)

    # ------------------------------------------------------------------ metadata
    def _write_metadata(self, op: MetadataOp) -> tuple[int, int]:
        stream = op.stream
        state = self.state(stream)
        if not state.meta_synced:
            state = self.sync(stream)
        if op.position <= state.marker:
            return 0, 0
        event = op.events[0]
        data = self._translate_tb(stream, event.data, op.position)
        if _tb(data) == DELETED_STREAM and state.soft_deleted:
            # Deleting again: appending `$tb = long.MaxValue` to the metastream of a stream
            # that is already soft-deleted makes the server *undelete* it (it rewrites `$tb`
            # to the next revision: StorageWriterService.SoftUndeleteMetastream). The target
            # already shows the deletion, and no event of the stream can lie in between.
            self.meta_markers[stream] = op.position
            state.marker = op.position
            return 0, 0
        self.target.append_any(
            op.source.stream,
            [OutEvent(event.event_id, event.type, event.content_type, data, event.metadata)],
        )
        # A soft delete or undelete moves the target's revisions: learn them again next time.
        self.streams.pop(stream, None)
        self.forgotten.add(stream)
        self.meta_markers[stream] = op.position
        self.records_copied += 1
        return 1, event.size

    def _translate_tb(self, stream: str, data: bytes, position: int) -> bytes:
        """`$tb` names a source revision; the target's revisions differ, so map it."""
        metadata = rules.json_object(data)
        if metadata is None:
            return data
        tb = metadata.get("$tb")
        if not isinstance(tb, int) or isinstance(tb, bool):
            return data
        if tb == DELETED_STREAM or tb <= 0:
            return data
        translated = self.ctx.truncation.target_revision(stream, tb, position)
        if translated == tb:
            return data
        metadata["$tb"] = translated
        return json.dumps(metadata, separators=(",", ":"), ensure_ascii=False).encode()

    # ------------------------------------------------------------------ events
    def _append(self, stream: str, group: list[Op]) -> tuple[int, int]:
        state = self.state(stream, group[0])
        pending = [op for op in group if op.position > state.marker]
        if not pending or not any(op.events for op in pending):
            return 0, 0
        try:
            return self._append_ops(stream, state, pending)
        except (WrongExpectedRevision, StreamTombstoned):
            # Someone moved the stream (an invocation that lost its lease, or a crash replay
            # the first check could not see, or an assumed state was wrong): learn it again
            # and skip what is already there (all of it, when the stream is tombstoned).
            if state.revision == NO_STREAM:
                self.ctx.ahead = True  # a stream taken to be new is there: a replay
            state = self.sync(stream)
            pending = [op for op in pending if op.position > state.marker]
            if not pending:
                return 0, 0
            try:
                return self._append_ops(stream, state, pending)
            except WrongExpectedRevision as e:
                raise ConflictError(stream, state.revision, e.actual) from None

    def _append_ops(self, stream: str, state: TargetStream, ops: list[Op]) -> tuple[int, int]:
        """Append the ops' events in one call; split in halves if the server finds it too big."""
        events = [e for op in ops for e in op.events]
        if not events:
            return 0, 0
        try:
            self.ctx.on_step(Step.APPEND)
            position = self.target.append(stream, state.revision, events)
        except AppendTooLarge as e:
            if len(ops) > 1:
                half = len(ops) // 2
                n1, b1 = self._append_ops(stream, state, ops[:half])
                n2, b2 = self._append_ops(stream, state, ops[half:])
                return n1 + n2, b1 + b2
            op = ops[0]
            plain = [x.without_provenance() for x in op.events]
            if plain != op.events:
                # Too big with the keys the relay adds: it goes as the user wrote it.
                n, b = self._append_ops(stream, state, [EventOp(op.source, plain)])
                if n:
                    with self.ctx.lock:
                        self.ctx.provenance_dropped += n
                        self.ctx.warnings.append(
                            f"event {op.source.revision} of {stream!r} written without the "
                            f"$original* keys: with them it is over the target's maximum "
                            f"append size ({e.limit} bytes)"
                        )
                return n, b
            if self.ctx.job.dead_letter:
                self._dead_letter(stream, op, sum(x.size for x in events), e.limit)
                state.marker = op.position
                return 0, 0
            raise OversizeEventError(
                stream,
                op.source.revision,
                sum(x.size for x in events),
                e.limit or 0,
                position=op.position,
                hint="the size counts nothing the relay adds (original_metadata = false would "
                "not help: this event was already sent without the $original* keys). Raise the "
                "target's MaxAppendSize, shrink the event with a transform, or set "
                "dead_letter = true to record it in the target's "
                f"{rules.dead_letter_stream(self.ctx.job.job_id)} stream and carry on",
            ) from None
        state.revision = (state.revision if state.revision >= 0 else -1) + len(events)
        state.marker = ops[-1].position
        state.exact = True  # what was just appended is the stream's end
        if self.ctx.wrote_nothing(position):
            state.exact = False  # the stream may go further: not for the cache
            return 0, 0
        self.records_copied += len(ops)
        return len(events), sum(e.size for e in events)

    # ------------------------------------------------------------------ multi-stream
    def write_batch(self, group: list[Op]) -> tuple[int, int]:
        """Write a group from `ordered_batches`: consecutive runs of several streams go in one
        atomic multi-stream append, in `$all` order, each stream at its exact revision."""
        parts = by_run(group)
        if not isinstance(group[0], EventOp) or len(parts) == 1:
            return self.write(group)
        return self._multi(parts, frozenset())

    def write_pack(self, pack: list[list[Op]]) -> tuple[int, int]:
        """Write a pack from `packed_batches`: its streams' groups in one atomic multi-stream
        append (a group that is not plain events, alone as `write` does)."""
        if len(pack) == 1:
            return self.write(pack[0])
        return self._multi([(group[0].source.stream, group) for group in pack], frozenset())

    def _multi(
        self, parts: list[tuple[str, list[Op]]], resynced: frozenset[str]
    ) -> tuple[int, int]:
        plans: list[tuple[str, TargetStream, list[Op]]] = []
        appends: list[StreamAppend] = []
        for stream, ops in parts:  # (loops, no generators: this runs once per stream)
            state = self.state(stream, ops[0])
            marker = state.marker
            pending = ops if ops[0].position > marker else [o for o in ops if o.position > marker]
            events = [e for op in pending for e in op.events]
            if events:
                plans.append((stream, state, pending))
                appends.append(StreamAppend(stream, state.revision, events))
        if len(plans) <= 1:
            return self._one_by_one(plans)
        try:
            self.ctx.on_step(Step.APPEND)
            position = self.target.multi_append(appends)
        except (MultiAppendConflict, StreamTombstoned) as e:
            # As a single append's resync (see module doc), once per stream: learn the named
            # streams again, drop what is already there, retry the rest.
            actual = e.streams if isinstance(e, MultiAppendConflict) else {e.stream or "": None}
            named = [s for s in actual if any(s == stream for stream, _, _ in plans)]
            again = [s for s in named if s in resynced]
            if not named or again:
                stream = (again or [plans[0][0]])[0]
                expected = next((st.revision for s, st, _ in plans if s == stream), None)
                raise ConflictError(stream, expected, actual.get(stream)) from None
            for stream in named:
                if any(s == stream and st.revision == NO_STREAM for s, st, _ in plans):
                    self.ctx.ahead = True  # a stream taken to be new is there: a replay
                self.sync(stream)
            return self._multi([(s, ops) for s, _, ops in plans], resynced | set(named))
        except AppendTooLarge:
            # Halves of whole streams (each stream's ops stay together and in order); a
            # single stream is split by `_append`.
            half = len(plans) // 2
            n1, b1 = self._multi([(s, ops) for s, _, ops in plans[:half]], resynced)
            n2, b2 = self._multi([(s, ops) for s, _, ops in plans[half:]], resynced)
            return n1 + n2, b1 + b2
        except MultiAppendUnsupported:
            return self._apart(plans, resynced)
        written = size = records = 0
        for (_, state, ops), append in zip(plans, appends, strict=True):
            n = len(append.events)
            state.revision = (state.revision if state.revision >= 0 else -1) + n
            state.marker = ops[-1].position
            state.exact = True
            written += n
            records += len(ops)
            for op in ops:
                size += op.size  # its events' sizes
        if self.ctx.wrote_nothing(position):
            for _, state, _ in plans:
                state.exact = False
            return 0, 0
        self.records_copied += records
        return written, size

    def _apart(
        self, plans: list[tuple[str, TargetStream, list[Op]]], resynced: frozenset[str]
    ) -> tuple[int, int]:
        """The streams could not go as one multi-stream append. Those with events the v2 API
        cannot carry (metadata that is not a JSON object, ...) go alone by the v1 append, byte
        for byte, and the stretches between them by multi-stream append, in order; without
        such streams (the server lacks the call, ...) every stream goes alone."""
        odd = [i for i, (_, _, ops) in enumerate(plans) if _any_problem(ops)]
        if not odd or len(odd) == len(plans):
            return self._one_by_one(plans)
        written = size = start = 0
        for i in [*odd, len(plans)]:
            stretch = [(stream, ops) for stream, _, ops in plans[start:i]]
            parts = [self._multi(stretch, resynced)] if stretch else []
            if i < len(plans):
                parts.append(self._one_by_one([plans[i]]))
            for n, b in parts:
                written += n
                size += b
            start = i + 1
        return written, size

    def _one_by_one(self, plans: list[tuple[str, TargetStream, list[Op]]]) -> tuple[int, int]:
        written = size = 0
        for stream, _, ops in plans:
            n, b = self._append(stream, ops)
            written += n
            size += b
        return written, size

    def _dead_letter(self, stream: str, op: Op, size: int, limit: int | None) -> None:
        """Record an event the target refuses, instead of stopping (`dead_letter = true`).

        The record goes to the target's `$esdb-relay-dead-letters-<job>` system stream, with
        where to find the event in the source; the payload itself stays in the source.
        """
        record = {
            "stream": stream,
            "revision": op.source.revision,
            "position": op.position,
            "eventId": str(op.source.event_id),
            "type": op.source.type,
            "size": size,
            "limit": limit,
            "reason": "over the target's maximum append size",
        }
        self.target.append_any(
            rules.dead_letter_stream(self.ctx.job.job_id),
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
        with self.ctx.lock:
            self.ctx.dead_lettered.append(op.position)
            self.ctx.warnings.append(
                f"event {op.source.revision} of {stream!r} ({size} bytes) dead-lettered"
            )

    # ------------------------------------------------------------------ sync
    def prefetch(self, ops: Iterable[Op], pool: Executor) -> None:
        """Sync, concurrently, the streams these ops write that this slice has not synced yet.
        Only reads: the same as syncing each at its first write, done earlier. A stream whose
        sync fails is left to its first write, which fails (or succeeds) in order."""
        firsts: dict[str, Op] = {}
        for op in ops:
            if not isinstance(op, SkipOp):
                firsts.setdefault(op.stream, op)
        wanted = [stream for stream, first in firsts.items() if self.unknown(stream, first)]

        def sync(stream: str) -> None:
            with contextlib.suppress(RelayError):
                self.sync(stream)

        for _ in pool.map(sync, wanted):
            pass

    def sync(self, stream: str) -> TargetStream:
        """Learn the target stream's revision and how far it already goes: the source record
        its last event came from (core/engine/locate.py; never what an event's metadata claims).

        The marker covers the stream and its metadata: both are written in `$all` order, so a
        later record of either means every earlier record of the stream is on the target.
        """
        tail = self.target.stream_tail(stream, 1)
        if tail.tombstoned:
            # Nothing of a stream can follow its tombstone in the source: all of it is there.
            state = TargetStream(NO_STREAM, DELETED_STREAM)
            self.streams[stream] = state
            return state
        marker = self.meta_markers.get(stream, -1)
        meta = self.target.stream_tail("$$" + stream, 1)
        soft_deleted = False
        revision = tail.last_revision
        if meta.events:
            last_meta = meta.events[-1]
            # Not found: a `$metadata` record the target server wrote itself (an undelete).
            origin = self.ctx.locator.locate("$$" + stream, last_meta)
            if isinstance(origin, Origin):
                marker = max(marker, origin.position)
            soft_deleted = _tb(last_meta.data) == DELETED_STREAM
            if not tail.events:
                # `$tb`/`$maxCount` or a soft delete may hide every event: ask for the revision.
                revision = self.target.current_revision(stream)
        exact = True
        if tail.events:
            last = tail.events[-1]
            first = self.ctx.index.first_revision.get(stream)
            origin = self.ctx.locator.locate(stream, last, around=first)
            if isinstance(origin, Origin):
                marker = max(marker, origin.position)
            else:
                # Not the source's (FOREIGN), or hidden from its stream reads now (truncated,
                # soft-deleted): written by a zombie past this slice's events, or before them.
                found = -1 if origin is Missing.FOREIGN else self._search_ids(stream)
                if (
                    found < 0
                    and origin is Missing.HIDDEN
                    and (self.ctx.ahead or self.ctx.replaying)
                ):
                    found = self._search_target_all(stream)
                if found >= 0:
                    marker = max(marker, found)
                    exact = False  # the tail's own origin is unknown: not for the cache
                elif origin is Missing.FOREIGN or first == 0:
                    # The source shows the stream's whole history without this event, or the
                    # stream's first source record is in this slice: ours cannot be before it.
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
                # Otherwise it lies in what the source hides now: before this slice.
        state = TargetStream(revision, marker, soft_deleted, exact)
        self.streams[stream] = state
        return state

    def _search_target_all(self, stream: str) -> int:
        """The newest of this slice's events among the stream's records in the target's
        `$all` (hidden ones included), searched from the end: a scan of the target's log, so
        only when the target may hold events past the slice."""
        index = self.ctx.index
        index.wait_complete()
        before: int | None = None
        while True:
            page = self.target.stream_records_backwards(stream, before, 500)
            for record in page:
                origin = index.origin(stream, record.event_id)
                if origin is not None:
                    return origin.position
            if len(page) < 500:
                return -1
            before = page[-1].commit_position

    def _search_ids(self, stream: str) -> int:
        """The newest tail event that is one of this slice's events marks how far the stream
        goes. Events of the stream later than ours imply all of ours (per-stream order), so
        the tail need only reach back over this slice's events of the stream plus one batch
        an invocation fenced out could still write."""
        index = self.ctx.index
        index.wait_complete()
        depth = index.events_per_stream.get(stream, 0) + self.ctx.job.batch.max_events
        tail = self.target.stream_tail(stream, depth)
        for event in reversed(tail.events):
            origin = index.origin(stream, event.event_id)
            if origin is not None:
                return origin.position
        return -1


def _tb(metadata: bytes) -> object:
    try:
        value = json.loads(metadata)
    except (ValueError, UnicodeDecodeError):
        return None
    return value.get("$tb") if isinstance(value, dict) else None


def _any_problem(ops: list[Op]) -> bool:
    return any(event_problem(e) for op in ops for e in op.events)
