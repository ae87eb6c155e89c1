"""The event and append types of esdb-relay, defined once (no database client here).

`Event` is a record read from a server, `OutEvent` one to append; `StreamAppend` one stream's
part of a multi-stream append; `StreamTail` the end of a stream as a read found it.
"""

from __future__ import annotations

import functools
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID

NO_STREAM = -1  # the expected revision of a stream that does not exist
DELETED_STREAM = 2**63 - 1  # the revision of a tombstone record


@dataclass(frozen=True, slots=True)
class Member:
    """A cluster member as gossip reports it."""

    state: str  # leader, follower, readonlyreplica or other
    host: str
    port: int


@dataclass(frozen=True, slots=True)
class Event:
    """One record read from `$all` or a stream."""

    stream: str
    revision: int
    event_id: UUID
    type: str
    content_type: str
    data: bytes
    metadata: bytes
    created: datetime | None
    commit_position: int
    prepare_position: int

    @property
    def size(self) -> int:
        return size_on_disk(self.type, self.data, self.metadata)


def size_on_disk(type_: str, data: bytes, metadata: bytes) -> int:
    """An event's size as the server counts it for the maximum append size (Event.SizeOnDisk)."""
    return len(data) + len(metadata) + 2 * len(type_)


@dataclass(frozen=True, slots=True)
class OutEvent:
    """An event to append: ids, types, payloads and content types kept byte for byte.

    `plain` is the user's metadata when the relay inserted its provenance keys into it
    (core/rules.py), None when `metadata` is the user's own bytes. `parsed` is the JSON
    object `metadata` holds, when the planner parsed it on the way (core/rules.py), so the v2
    request builder does not parse it again (core/eventstore/v2.py); None when not known. It
    is never changed after."""

    event_id: UUID
    type: str
    content_type: str
    data: bytes
    metadata: bytes
    plain: bytes | None = None
    parsed: dict[str, object] | None = field(default=None, compare=False, repr=False)

    @property
    def size(self) -> int:
        return size_on_disk(self.type, self.data, self.metadata)

    def without_provenance(self) -> OutEvent:
        """The event as the user wrote it, without the keys the relay added."""
        if self.plain is None:
            return self
        return OutEvent(self.event_id, self.type, self.content_type, self.data, self.plain)


@dataclass(frozen=True, slots=True)
class StreamTail:
    """The end of a stream: its last events (oldest first) and its current revision."""

    events: tuple[Event, ...]
    last_revision: int  # NO_STREAM when the stream has no visible events
    tombstoned: bool = False


@dataclass(frozen=True)
class StreamAppend:
    """One stream's part of a multi-stream append."""

    stream: str
    expected_revision: int  # exact revision, or NO_STREAM
    events: list[OutEvent]


@functools.lru_cache(maxsize=4096)  # event types repeat; bounded
def is_schema_name(name: str) -> bool:
    """KurrentDB's SchemaNameValidator (the emulator checks with the same rule)."""
    # SchemaNameValidator: ^[\p{L}\p{N}_.$:-]+$ and NFC.
    return (
        bool(name)
        and unicodedata.is_normalized("NFC", name)
        and all(c.isalnum() or c in "_.$:-" for c in name)
    )
