"""Where a target event came from: the source record that produced it, found by its id.

How far a target stream already goes is told by its last event: every record of the stream
up to the source record it was copied from is on the target (streams are written in order).
That event's metadata may say where it came from (`$originalStreamRevision`,
`$originalPosition`), but a user's metadata can hold those keys too — data migrated before,
by esdb-relay or any other tool — so such a claim is only a place to look. It counts once the
source record standing there has the event's id (ids are kept: the user's metadata cannot
move a record of the source). Without a claim that holds, the source stream is searched by
id around the slice. Nothing an event carries can steer the answer.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from enum import Enum

from core import rules
from core.engine.plan import Origin, Planner, SliceIndex
from core.errors import PermanentError, StreamTombstoned
from core.eventstore import EventStore
from core.model import Event

PAGE = 500


class Missing(Enum):
    """Why no source record of the stream was found for a target event."""

    FOREIGN = "foreign"  # the source stream shows its whole history, and not this event
    HIDDEN = "hidden"  # not among what the source stream shows: it hides older records


class Locator:
    def __init__(self, source: EventStore, planner: Planner, index: SliceIndex) -> None:
        self.source = source
        self.planner = planner
        self.index = index

    def locate(self, stream: str, event: Event, around: int | None = None) -> Origin | Missing:
        """The source record of `stream` (a user stream or its `$$` metadata stream) that
        produced the target's `event`. `around`: where to start searching, the stream's first
        source revision in this slice (None: from the stream's end)."""
        origin = self.index.origin(stream, event.event_id)
        if origin is None:
            origin = self.claimed(stream, event)
        return origin if origin is not None else self._search(stream, event.event_id, around)

    def claimed(self, stream: str, event: Event) -> Origin | None:
        """The source record the target event's metadata names, if it has the event's id."""
        revision = rules.read_original_revision(event.metadata)
        if revision is not None and revision >= 0:
            try:
                found = self.source.read_stream(stream, from_revision=revision, limit=1)
            except StreamTombstoned:
                found = []
            if found and found[0].revision == revision:
                return self._if_produced(found[0], event.event_id)
        position = rules.read_original_position(event.metadata)
        if position is not None and position >= 0:
            # The record may be hidden from stream reads (`$maxCount`, `$tb`); `$all` keeps it.
            try:
                record = self.source.record_at(position)
            except (StreamTombstoned, PermanentError):  # not a position the server can read
                return None
            if record is not None and record.stream == stream:
                return self._if_produced(record, event.event_id)
        return None

    def _if_produced(self, record: Event, event_id: uuid.UUID) -> Origin | None:
        if self.planner.produced(record, event_id):
            return Origin(record.commit_position, record.revision)
        return None

    def _search(self, stream: str, event_id: uuid.UUID, around: int | None) -> Origin | Missing:
        """Backwards from just before `around`, then forwards from it, page by page: the
        record is usually the one just before the slice. Every way a stream hides records
        hides its oldest ones, so a search that saw revision 0 saw the whole history."""
        whole = False
        if around is None or around > 0:
            for record in self._backwards(stream, None if around is None else around - 1):
                if self.planner.produced(record, event_id):
                    return Origin(record.commit_position, record.revision)
                whole = record.revision == 0
        if around is not None:
            for record in self._forwards(stream, around):
                if self.planner.produced(record, event_id):
                    return Origin(record.commit_position, record.revision)
                whole = whole or record.revision == 0
        return Missing.FOREIGN if whole else Missing.HIDDEN

    def _backwards(self, stream: str, start: int | None) -> Iterator[Event]:
        while start is None or start >= 0:
            try:
                page = self.source.read_stream_backwards(stream, start, PAGE)
            except StreamTombstoned:
                return
            yield from page
            if len(page) < PAGE:
                return
            start = page[-1].revision - 1

    def _forwards(self, stream: str, start: int) -> Iterator[Event]:
        while True:
            try:
                page = self.source.read_stream(stream, from_revision=start, limit=PAGE)
            except StreamTombstoned:
                return
            yield from page
            if len(page) < PAGE:
                return
            start = page[-1].revision + 1
