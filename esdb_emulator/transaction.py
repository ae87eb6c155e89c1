"""The multi-stream write of KurrentDB's v2 appends (AppendSession, AppendRecords).

KurrentDB v26.1.0 src/KurrentDB.Core/Services/Storage/StorageWriterService.cs (WritePrepares,
VerifyCommitChecks) and ReaderIndex/IndexWriter.cs (CheckCommit): a write names streams, each
with an expected version, and events, each with the index of its stream; a stream without
events is only checked. Every stream is checked first; then either all events are written in
the request's order (so `$all` keeps that interleaving), or nothing is.

Expected versions: a revision (>= 0), NoStream -1, Any -2, StreamExists -4, SoftDeleted -5, and
long.MaxValue for "tombstoned" (what AppendRecords sends for the Tombstoned state).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from esdb_emulator.store import (
    ANY,
    DELETED_STREAM,
    NO_STREAM,
    STREAM_EXISTS,
    ProposedEvent,
    Record,
    Store,
    is_metastream,
    metastream_of,
    original_stream_of,
)

SOFT_DELETED = -5  # ExpectedVersion.SoftDeleted

OK, IDEMPOTENT, FAILURE, CORRUPTED = "ok", "idempotent", "failure", "corrupted"


@dataclass(frozen=True, slots=True)
class Check:
    """CommitCheckResult: the decision for one stream of the write."""

    decision: str
    expected: int
    current: int
    soft_deleted: bool | None = None
    last: int = -1  # idempotent: the last event number already written
    position: int = -1  # idempotent: that event's position


@dataclass(frozen=True, slots=True)
class Failure:
    """ConsistencyCheckFailure."""

    stream_index: int
    expected: int
    actual: int
    soft_deleted: bool | None


@dataclass(frozen=True, slots=True)
class Written:
    """The write succeeded (or all its events were already written: AlreadyCommitted)."""

    last_event_numbers: list[int]  # per stream; -1 for a check-only stream
    position: int


class ChecksFailed(Exception):
    def __init__(self, failures: list[Failure]) -> None:
        super().__init__(f"{len(failures)} consistency check(s) failed")
        self.failures = failures

    @property
    def stream_deleted(self) -> bool:
        """RequestManagerBase.Handle(ConsistencyChecksFailed): StreamDeleted when a stream is
        tombstoned or soft deleted but expected to exist, else WrongExpectedVersion."""
        return any(
            f.actual == DELETED_STREAM or (f.expected == STREAM_EXISTS and f.soft_deleted is True)
            for f in self.failures
        )


def _last_event_number(store: Store, stream: str) -> int:
    """IndexWriter.GetStreamLastEventNumber: its cache of the versions it wrote, else
    IndexReader.GetStreamLastEventNumberCached, which answers a metastream of a tombstoned
    stream as deleted too. A metastream written before is taken as in the cache (as
    Store.append's check: tests/emulator/test_streams.py pins both paths)."""
    s = store._streams.get(stream)
    if s is not None and s.tombstoned:
        return DELETED_STREAM
    if s is not None and s.last_revision >= 0:
        return s.last_revision
    if is_metastream(stream):
        original = store._streams.get(original_stream_of(stream))
        if original is not None and original.tombstoned:
            return DELETED_STREAM
    return -1


def _written(store: Store, event_id: str, stream: str) -> Record | None:
    found = store._event_index.get(event_id)
    return found if found is not None and found.stream == stream else None


def check_commit(
    store: Store, stream: str, expected: int, events: Sequence[ProposedEvent]
) -> Check:
    """IndexWriter.CheckCommit."""
    current = _last_event_number(store, stream)
    if current == DELETED_STREAM:
        if events:  # nothing is ever appended to a tombstoned stream
            return Check(FAILURE, expected, current, False)
        if expected in (ANY, NO_STREAM, DELETED_STREAM):
            return Check(OK, expected, current, False)
        return Check(FAILURE, expected, current, False)
    if expected == STREAM_EXISTS:
        if store._is_soft_deleted(stream):
            return Check(FAILURE, expected, current, True)
        if current < 0:
            meta = store._streams.get(metastream_of(stream))
            if meta is None or meta.last_revision < 0:
                return Check(FAILURE, expected, current, False)
    if expected in (ANY, STREAM_EXISTS, SOFT_DELETED):
        # Weak idempotency: where the events would be is not known; look them up by id.
        matched: list[Record] = []
        for event in events:
            found = _written(store, event.event_id, stream)
            if found is not None:
                matched.append(found)
                continue
            if matched:
                return Check(CORRUPTED, expected, current)
            break
        if not matched:
            soft_deleted = store._is_soft_deleted(stream)
            if expected == SOFT_DELETED and not soft_deleted:
                return Check(FAILURE, expected, current, soft_deleted)
            return Check(OK, expected, current, soft_deleted)
        return Check(
            IDEMPOTENT, expected, current, None, matched[-1].revision, matched[-1].position
        )
    if expected < current:
        # Strong idempotency: the events must be exactly where the expected version puts them.
        revision = expected
        last: Record | None = None
        for i, event in enumerate(events):
            revision += 1
            found = _written(store, event.event_id, stream)
            if found is not None and found.revision == revision:
                last = found
                continue
            if i > 0:
                return Check(CORRUPTED, expected, current)
            if expected == NO_STREAM and store._is_soft_deleted(stream):
                return Check(OK, expected, current, True)
            return Check(FAILURE, expected, current)
        if last is None:  # no events: only a check
            if expected == NO_STREAM and store._is_soft_deleted(stream):
                return Check(OK, expected, current, True)
            return Check(FAILURE, expected, current)
        return Check(IDEMPOTENT, expected, current, None, last.revision, last.position)
    if expected > current:
        return Check(FAILURE, expected, current)
    return Check(OK, expected, current, store._is_soft_deleted(stream))


def write_events(
    store: Store,
    streams: Sequence[str],
    expected: Sequence[int],
    events: Sequence[ProposedEvent],
    indexes: Sequence[int],
) -> Written:
    """StorageWriterService.WritePrepares: check every stream, then write every event (in the
    order given) or none. Raises ChecksFailed with the failures (and idempotent streams, when
    some but not all of the streams written to are idempotent), as VerifyCommitChecks does."""
    per_stream: list[list[ProposedEvent]] = [[] for _ in streams]
    for event, index in zip(events, indexes, strict=True):
        per_stream[index].append(event)
    with store._lock:
        checks = [
            check_commit(store, stream, version, stream_events)
            for stream, version, stream_events in zip(streams, expected, per_stream, strict=True)
        ]
        _verify(checks, per_stream)
        # WritePreparesStreamInfo.IsSoftDeletedMeta, taken before anything is written.
        undelete_original = [
            is_metastream(stream) and store._is_soft_deleted(original_stream_of(stream))
            for stream in streams
        ]
        latest = [c.current for c in checks]
        position = -1
        for event, index in zip(events, indexes, strict=True):
            latest[index] += 1
            record = store._write(
                streams[index],
                latest[index],
                event.event_id,
                event.type,
                event.content_type,
                event.data,
                event.metadata,
            )
            position = record.position
        # Soft undelete the streams written to (after all the events, as the writer does).
        for i, stream in enumerate(streams):
            if not per_stream[i]:
                continue
            if checks[i].soft_deleted is True:
                store._soft_undelete(stream, recreate_from=checks[i].current + 1)
            if undelete_original[i]:
                original = original_stream_of(stream)
                store._soft_undelete(
                    original, recreate_from=_last_event_number(store, original) + 1
                )
        store._notify()
        last = [latest[i] if per_stream[i] else -1 for i in range(len(streams))]
        return Written(last, position)


def _verify(checks: list[Check], per_stream: list[list[ProposedEvent]]) -> None:
    writing = [i for i, events in enumerate(per_stream) if events]
    if all(c.decision == OK for c in checks):
        return
    idempotent = [i for i in writing if checks[i].decision == IDEMPOTENT]
    if writing and len(idempotent) == len(writing):
        # AlreadyCommitted: a retry of a write that succeeded, whatever the check-only streams
        # say now; the revisions and position are the original write's.
        last = [checks[i].last if per_stream[i] else -1 for i in range(len(checks))]
        raise AlreadyCommitted(Written(last, max(checks[i].position for i in writing)))
    raise ChecksFailed(
        [
            Failure(i, c.expected, c.current, c.soft_deleted)
            for i, c in enumerate(checks)
            if c.decision in (FAILURE, IDEMPOTENT, CORRUPTED)
        ]
    )


class AlreadyCommitted(Exception):
    def __init__(self, written: Written) -> None:
        super().__init__("already committed")
        self.written = written


def write_or_replay(
    store: Store,
    streams: Sequence[str],
    expected: Sequence[int],
    events: Sequence[ProposedEvent],
    indexes: Sequence[int],
) -> Written:
    """write_events, an idempotent replay answering the original revisions and position."""
    try:
        return write_events(store, streams, expected, events, indexes)
    except AlreadyCommitted as replay:
        return replay.written
