"""The emulator's data model: one in-memory transaction log (`$all`) and its stream index.

The write rules follow EventStoreDB's `IndexWriter.CheckCommit` and `StorageWriterService`
(EventStore/EventStore, src/EventStore.Core/Services/Storage/): expected-version checks,
idempotent appends by event id, soft delete as `$tb = long.MaxValue` stream metadata (which
replaces the stream's other metadata keys), soft "undelete" on the next append (a further
`$metadata` event written after the new events, `$tb` set to the first new revision), and
tombstones as a `$streamDeleted` record whose revision is `long.MaxValue`.
"""

from __future__ import annotations

import bisect
import json
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

# Expected-version sentinels, as in EventStore.Core.Data.ExpectedVersion.
ANY = -2
NO_STREAM = -1
STREAM_EXISTS = -4

DELETED_STREAM = 2**63 - 1  # EventNumber.DeletedStream (long.MaxValue)
METADATA_EVENT_TYPE = "$metadata"
TOMBSTONE_EVENT_TYPE = "$streamDeleted"
JSON = "application/json"
OCTET_STREAM = "application/octet-stream"

# Size of a record's fixed header in the emulated log; positions advance by record size so
# they look like the byte offsets of the real server's transaction file.
_RECORD_OVERHEAD = 80


@dataclass(frozen=True, slots=True)
class ProposedEvent:
    event_id: str
    type: str
    content_type: str
    data: bytes
    metadata: bytes = b""

    @property
    def size(self) -> int:
        # Event.SizeOnDisk in the real server: data + metadata + 2 bytes per type character.
        return len(self.data) + len(self.metadata) + 2 * len(self.type)


@dataclass(frozen=True, slots=True)
class Record:
    stream: str
    revision: int
    event_id: str
    type: str
    content_type: str
    data: bytes
    metadata: bytes
    created: int  # 100 ns ticks since the Unix epoch, as the gRPC API reports them
    position: int  # commit == prepare position in this emulator


@dataclass(slots=True)
class _Stream:
    name: str
    records: list[Record] = field(default_factory=list)
    tombstoned: bool = False

    @property
    def last_revision(self) -> int:
        return self.records[-1].revision if self.records else -1


class WrongExpectedVersion(Exception):
    def __init__(self, stream: str, expected: int, actual: int):
        super().__init__(
            f"WrongExpectedVersion. Stream: {stream}, Expected version: {expected}, "
            f"Actual version: {actual}"
        )
        self.stream = stream
        self.expected = expected
        self.actual = actual


class StreamDeleted(Exception):
    def __init__(self, stream: str):
        super().__init__(f"Event stream '{stream}' is deleted.")
        self.stream = stream


class StreamNotFound(Exception):
    def __init__(self, stream: str):
        super().__init__(f"Event stream '{stream}' is not found.")
        self.stream = stream


@dataclass(frozen=True, slots=True)
class WriteResult:
    first_revision: int
    last_revision: int  # -1 when nothing was written to a stream that does not exist
    position: int


def visible_in_all(record: Record) -> bool:
    """EventFilter.DefaultAllFilter in the real server, applied to every `$all` read and `$all`
    persistent subscription: `$epoch-information` and the checkpoint / parked-message streams
    of persistent subscriptions to `$all` never appear in `$all`."""
    stream = record.stream
    if not stream.startswith("$"):
        return True
    if stream == "$epoch-information":
        return False
    return not (
        stream.startswith("$persistentsubscription-$all::")
        and stream.endswith(("-checkpoint", "-parked"))
    )


def metastream_of(name: str) -> str:
    return "$$" + name


def original_stream_of(metastream: str) -> str:
    return metastream[2:]


def is_metastream(name: str) -> bool:
    return name.startswith("$$")


def now_ticks() -> int:
    return time.time_ns() // 100


def parse_metadata(raw: bytes) -> dict:
    """Stream metadata as the server reads it: invalid or non-object JSON counts as empty."""
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return {}
    return value if isinstance(value, dict) else {}


class Store:
    """Thread-safe in-memory event store with EventStoreDB's write and read rules."""

    def __init__(self, *, seed_system_events: bool = True) -> None:
        self._lock = threading.RLock()
        self._log: list[Record] = []
        self._positions: list[int] = []  # parallel to _log, for bisecting by position
        self._streams: dict[str, _Stream] = {}
        self._event_index: dict[str, Record] = {}  # event id -> record, for idempotency
        self._next_position = 0
        self.changed = threading.Condition(self._lock)
        if seed_system_events:
            self._seed_system_events()

    # ----------------------------------------------------------------- state
    @property
    def last_position(self) -> int:
        with self._lock:
            return self._positions[-1] if self._positions else 0

    @property
    def head_position(self) -> int:
        """Position a reader at the end of `$all` stands at (the next record's position)."""
        with self._lock:
            return self._next_position

    def __len__(self) -> int:
        with self._lock:
            return len(self._log)

    # ----------------------------------------------------------------------- writes
    def append(self, stream: str, expected: int, events: Sequence[ProposedEvent]) -> WriteResult:
        with self._lock:
            s = self._streams.get(stream)
            current, soft_deleted = self._check_commit(stream, s, expected, events)
            if isinstance(current, WriteResult):  # idempotent replay
                return current
            undelete_original = is_metastream(stream) and self._is_soft_deleted(
                original_stream_of(stream)
            )
            first = current + 1
            # An empty append still writes an (invisible) empty prepare in the real server
            # (StorageWriterService WriteEvents: "else prepares.Add(... -1 ...)"), so it gets a
            # position of its own rather than the stream's last position (-1 for a new stream).
            position = self._next_position
            if not events:
                self._next_position += _RECORD_OVERHEAD + len(stream.encode())
            for i, event in enumerate(events):
                record = self._write(
                    stream,
                    first + i,
                    event.event_id,
                    event.type,
                    event.content_type,
                    event.data,
                    event.metadata,
                )
                position = record.position
            if soft_deleted:  # even for an empty append (StorageWriterService: IsSoftDeleted)
                self._soft_undelete(stream, recreate_from=current + 1)
            elif undelete_original:
                original = self._streams.get(original_stream_of(stream))
                self._soft_undelete(
                    original_stream_of(stream),
                    recreate_from=(original.last_revision if original else -1) + 1,
                )
            self._notify()
            last = first + len(events) - 1 if events else current
            return WriteResult(first, last, position)

    def delete(self, stream: str, expected: int) -> int:
        """Soft delete: `$tb` = long.MaxValue in the stream's metadata. Returns the position."""
        with self._lock:
            s = self._streams.get(stream)
            current, _ = self._check_commit(stream, s, expected, [_delete_marker()])
            if isinstance(current, WriteResult):
                current = current.last_revision
            meta = self._streams.get(metastream_of(stream))
            if (s is None or s.last_revision < 0) and (meta is None or meta.last_revision < 0):
                raise WrongExpectedVersion(stream, expected, -1)
            record = self._write_metadata(stream, _compact_json({"$tb": DELETED_STREAM}))
            self._notify()
            return record.position

    def tombstone(self, stream: str, expected: int) -> int:
        with self._lock:
            s = self._streams.get(stream)
            _current, _ = self._check_commit(stream, s, expected, [_delete_marker()])
            record = self._write(
                stream,
                DELETED_STREAM,
                str(uuid.uuid4()),
                TOMBSTONE_EVENT_TYPE,
                OCTET_STREAM,
                b"",
                b"",
            )
            self._streams[stream].tombstoned = True
            self._notify()
            return record.position

    def set_metadata(self, stream: str, metadata: dict) -> WriteResult:
        """Convenience for seeding: append a `$metadata` event to `$$stream`."""
        event = ProposedEvent(
            str(uuid.uuid4()), METADATA_EVENT_TYPE, JSON, json.dumps(metadata).encode()
        )
        return self.append(metastream_of(stream), ANY, [event])

    def _check_commit(
        self, stream: str, s: _Stream | None, expected: int, events: Sequence[ProposedEvent]
    ) -> tuple[int | WriteResult, bool]:
        """IndexWriter.CheckCommit: (current version, soft deleted), or an idempotent result."""
        if s is not None and s.tombstoned:
            raise StreamDeleted(stream)
        if is_metastream(stream) and (s is None or s.last_revision < 0):
            # The metastream of a tombstoned stream, never written: IndexWriter's
            # GetStreamLastEventNumber finds no version of it in its cache and asks the
            # IndexReader, whose GetStreamLastEventNumberCached answers "if this is metastream
            # -- check if original stream was deleted, if yes -- metastream is deleted as
            # well": a write to it is refused, StreamDeleted. (A metastream written before the
            # tombstone is in the writer's cache of versions and is still written, as a real
            # node does; tests/emulator/test_streams.py pins both.)
            original = self._streams.get(original_stream_of(stream))
            if original is not None and original.tombstoned:
                raise StreamDeleted(stream)
        current = s.last_revision if s else -1
        soft_deleted = self._is_soft_deleted(stream)
        if expected == STREAM_EXISTS:
            if soft_deleted:
                raise StreamDeleted(stream)
            if current < 0:
                meta = self._streams.get(metastream_of(stream))
                if meta is None or meta.last_revision < 0:
                    raise WrongExpectedVersion(stream, expected, current)
        if expected in (ANY, STREAM_EXISTS):
            matched: list[Record] = []
            for event in events:
                found = self._event_index.get(event.event_id)
                if found is None or found.stream != stream:
                    if matched:  # CorruptedIdempotency is reported as a wrong expected version
                        raise WrongExpectedVersion(stream, expected, current)
                    return current, soft_deleted
                matched.append(found)
            if not matched:
                return current, soft_deleted
            return WriteResult(
                matched[0].revision, matched[-1].revision, matched[-1].position
            ), False
        if expected < current:
            revision = expected
            matched = []
            for event in events:
                revision += 1
                found = self._event_index.get(event.event_id)
                if found is not None and found.stream == stream and found.revision == revision:
                    matched.append(found)
                    continue
                if matched:
                    raise WrongExpectedVersion(stream, expected, current)
                if expected == NO_STREAM and soft_deleted:
                    return current, True
                raise WrongExpectedVersion(stream, expected, current)
            if not matched:
                raise WrongExpectedVersion(stream, expected, current)
            return WriteResult(
                matched[0].revision, matched[-1].revision, matched[-1].position
            ), False
        if expected > current:
            raise WrongExpectedVersion(stream, expected, current)
        return current, soft_deleted

    def _soft_undelete(self, stream: str, recreate_from: int) -> None:
        meta_stream = self._streams.get(metastream_of(stream))
        if meta_stream is None or not meta_stream.records:
            return
        raw = meta_stream.records[-1].data
        try:
            value = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            return  # the real server leaves corrupted metadata alone
        if not isinstance(value, dict):
            return
        value["$tb"] = recreate_from
        self._write_metadata(stream, _compact_json(value))

    def _write_metadata(self, stream: str, data: bytes) -> Record:
        meta_name = metastream_of(stream)
        meta = self._streams.get(meta_name)
        revision = (meta.last_revision if meta else -1) + 1
        return self._write(
            meta_name, revision, str(uuid.uuid4()), METADATA_EVENT_TYPE, JSON, data, b""
        )

    def _write(
        self,
        stream: str,
        revision: int,
        event_id: str,
        type_: str,
        content_type: str,
        data: bytes,
        metadata: bytes,
    ) -> Record:
        position = self._next_position
        record = Record(
            stream, revision, event_id, type_, content_type, data, metadata, now_ticks(), position
        )
        self._next_position += _record_size(record)
        self._log.append(record)
        self._positions.append(position)
        s = self._streams.get(stream)
        if s is None:
            s = self._streams[stream] = _Stream(stream)
        s.records.append(record)
        if revision != DELETED_STREAM:
            self._event_index[event_id] = record
        return record

    def _notify(self) -> None:
        self.changed.notify_all()

    def _seed_system_events(self) -> None:
        # A fresh EventStoreDB database already holds a few system records in `$all`
        # (the default users and the scavenges stream); a migration tool must skip them.
        user = {
            "loginName": "admin",
            "fullName": "Event Store Administrator",
            "groups": ["$admins"],
        }
        for stream, type_, data in (
            ("$users", "$User", b"admin"),
            ("$user-admin", "$UserCreated", json.dumps(user).encode()),
            ("$scavenges", "$scavengeIndexInitialized", b"{}"),
        ):
            event = ProposedEvent(str(uuid.uuid4()), type_, JSON, data)
            self.append(stream, ANY, [event])

    # ------------------------------------------------------------------------ reads
    def _is_soft_deleted(self, stream: str) -> bool:
        return self.stream_metadata(stream).get("$tb") == DELETED_STREAM

    def stream_metadata(self, stream: str) -> dict:
        with self._lock:
            meta = self._streams.get(metastream_of(stream))
            if meta is None or not meta.records or is_metastream(stream):
                return {}
            return parse_metadata(meta.records[-1].data)

    def stream_state(self, stream: str) -> tuple[int, bool]:
        """(last revision or -1, tombstoned)."""
        with self._lock:
            s = self._streams.get(stream)
            return (s.last_revision if s else -1, bool(s and s.tombstoned))

    def visible_records(self, stream: str, now: int | None = None) -> list[Record]:
        """Records a stream read returns, after `$tb`, `$maxCount` and `$maxAge`.

        Raises StreamDeleted for a tombstoned stream and StreamNotFound when the stream has
        no events or is soft deleted (reads of such a stream report "stream not found").
        """
        with self._lock:
            s = self._streams.get(stream)
            if s is not None and s.tombstoned:
                raise StreamDeleted(stream)
            if is_metastream(stream):
                # IndexReader.GetStreamLastEventNumberCached: "if this is metastream -- check if
                # original stream was deleted, if yes -- metastream is deleted as well".
                original = self._streams.get(original_stream_of(stream))
                if original is not None and original.tombstoned:
                    raise StreamDeleted(stream)
            if s is None or not s.records:
                raise StreamNotFound(stream)
            if is_metastream(stream):
                return s.records[-1:]  # metastreams carry an implicit $maxCount of 1
            meta = self.stream_metadata(stream)
            truncate_before = meta.get("$tb")
            if truncate_before == DELETED_STREAM:
                raise StreamNotFound(stream)
            records = s.records
            if isinstance(truncate_before, int) and truncate_before > 0:
                records = [r for r in records if r.revision >= truncate_before]
            max_count = meta.get("$maxCount")
            if isinstance(max_count, int) and max_count > 0:
                records = records[-max_count:]
            max_age = meta.get("$maxAge")
            if isinstance(max_age, int) and max_age > 0:
                cutoff = (now if now is not None else now_ticks()) - max_age * 10_000_000
                records = [r for r in records if r.created >= cutoff]
            return list(records)

    def all_index_from(self, position: int) -> int:
        """Index in the log of the first record at or after `position`."""
        with self._lock:
            return bisect.bisect_left(self._positions, position)

    def all_index_ending_by(self, position: int) -> int:
        """Index of the last record that ends at or before `position` (-1 if none).

        Where a backwards `$all` read from `position` starts: AllReader.
        ReadAllEventsBackwardInternal takes records whose post-position is <= pos, so the
        record *at* `position` is excluded.
        """
        with self._lock:
            index = bisect.bisect_left(self._positions, position) - 1
            if index >= 0 and self._positions[index] + _record_size(self._log[index]) > position:
                index -= 1
            return index

    def log_slice(self, start: int, stop: int) -> list[Record]:
        with self._lock:
            return self._log[start:stop]

    def record_at(self, index: int) -> Record | None:
        with self._lock:
            return self._log[index] if 0 <= index < len(self._log) else None

    def resolve_link(self, data: bytes) -> Record | None:
        """Target of a `$>` link event (`revision@stream`), or None if it no longer exists."""
        try:
            revision_text, stream = data.decode().split("@", 1)
            revision = int(revision_text)
        except (ValueError, UnicodeDecodeError):
            return None
        try:
            records = self.visible_records(stream)
        except (StreamDeleted, StreamNotFound):
            return None
        for record in records:
            if record.revision == revision:
                return record
        return None

    def stream_names(self) -> list[str]:
        with self._lock:
            return list(self._streams)

    def iter_all(self) -> Iterator[Record]:
        with self._lock:
            return iter(list(self._log))

    # ----------------------------------------------------------------- snapshots
    def export_records(self) -> list[Record]:
        with self._lock:
            return list(self._log)

    def load_records(self, records: Sequence[Record], next_position: int) -> None:
        """Replace the whole content (used when loading a snapshot)."""
        with self._lock:
            self._log = []
            self._positions = []
            self._streams = {}
            self._event_index = {}
            for r in records:
                self._log.append(r)
                self._positions.append(r.position)
                s = self._streams.get(r.stream)
                if s is None:
                    s = self._streams[r.stream] = _Stream(r.stream)
                s.records.append(r)
                if r.revision == DELETED_STREAM:
                    s.tombstoned = True
                else:
                    self._event_index[r.event_id] = r
            self._next_position = next_position
            self._notify()


def _record_size(record: Record) -> int:
    return (
        _RECORD_OVERHEAD
        + len(record.stream.encode())
        + len(record.type)
        + len(record.data)
        + len(record.metadata)
    )


def _compact_json(value: dict) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _delete_marker() -> ProposedEvent:
    return ProposedEvent(str(uuid.uuid4()), TOMBSTONE_EVENT_TYPE, OCTET_STREAM, b"")
