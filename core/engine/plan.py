"""The plan of one `$all` record: the target writes it becomes (core/rules.py says which).

One `Planner` per slice applies the job's filters, the scavenge filter and the transform, so
the engine, the search for where a target event came from (core/engine/locate.py) and the `$tb`
translation (core/engine/truncation.py) count the same events.
"""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from core import rules
from core.config import JobConfig
from core.errors import RelayError, TransformError
from core.eventstore import EventStore
from core.model import Event, OutEvent
from core.scavenge import ScavengeFilter


@dataclass(slots=True)
class Op:
    """The target writes one source record turns into: one class per kind of record.

    `stream` (the target stream the op belongs to), `position` (its source record's) and
    `size` (of its events, as the server counts them) are worked out once, when the op is
    made (its events are not changed after): the engine asks for them several times per
    record."""

    source: Event
    events: list[OutEvent] = field(default_factory=list)
    stream: str = field(init=False, repr=False, compare=False)
    position: int = field(init=False, repr=False, compare=False)
    size: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        source = self.source
        self.stream = source.stream
        self.position = source.commit_position
        size = 0
        for event in self.events:  # (a loop: no generator per op)
            size += event.size
        self.size = size


class EventOp(Op):
    """A user event: the events the target gets from it (none when the transform dropped it)."""

    __slots__ = ()


class MetadataOp(Op):
    """A `$metadata` record of a user stream's `$$` stream: one `$metadata` event."""

    __slots__ = ()

    def __post_init__(self) -> None:
        super().__post_init__()
        self.stream = self.source.stream[2:]  # it belongs to its stream


class TombstoneOp(Op):
    """A user stream's tombstone: the target stream is tombstoned."""

    __slots__ = ()


class SkipOp(Op):
    """A record the job does not copy (system records, links, filtered out)."""

    __slots__ = ()


class Planner:
    def __init__(
        self, job: JobConfig, source: EventStore, transform: rules.Transform | None
    ) -> None:
        self.filters = job.filters
        matcher = job.filters.matcher
        # No stream or event-type filter: every record is what rules.classify makes it.
        self.filtered = any(
            (
                matcher.include_streams,
                matcher.exclude_streams,
                matcher.include_prefixes,
                matcher.exclude_prefixes,
                matcher.include_types,
                matcher.exclude_types,
            )
        )
        self.with_original = job.original_metadata
        self.transform = transform
        self.scavenge = ScavengeFilter(source) if job.filters.scavenge else None

    def plan(self, event: Event) -> Op:
        kind = rules.copied_kind(self.filters, event) if self.filtered else rules.classify(event)
        if kind is rules.Kind.TOMBSTONE:
            return TombstoneOp(event)
        if kind is rules.Kind.METADATA:
            # The position goes into the `$metadata` event's own metadata (the server ignores
            # it), never into the stream metadata JSON: users' stream metadata is unchanged.
            return MetadataOp(event, [rules.out_event(event, with_original=True)])
        if kind is rules.Kind.SKIP or (self.scavenge and self.scavenge.removes(event)):
            return SkipOp(event)
        with_original = self.with_original
        if self.transform is None:
            return EventOp(event, [rules.out_event(event, with_original=with_original)])
        outputs = rules.apply_transform(self.transform, event)
        return EventOp(event, [rules.out_event(o, with_original=with_original) for o in outputs])

    def copies(self, event: Event) -> int:
        """How many events the target stream gets from this record of its stream."""
        op = self.plan(event)
        return len(op.events) if isinstance(op, EventOp) else 0

    def produced(self, event: Event, event_id: uuid.UUID) -> bool:
        """Could this source record have produced a target event with this id? Ids are
        kept; a transform's outputs have the ids it gives them (rules.apply_transform)."""
        if event_id == event.event_id:
            return True
        if self.transform is None or rules.classify(event) is not rules.Kind.EVENT:
            return False
        try:
            return any(o.event_id == event_id for o in rules.apply_transform(self.transform, event))
        except TransformError:
            return False


@dataclass(frozen=True, slots=True)
class Origin:
    """The source record a target event was copied from."""

    position: int
    revision: int


class SliceIndex:
    """This slice's planned records by (target stream, event id), and the first source
    revision of each stream (bounded by the slice budget), filled as chunks are planned. The
    id search needs all of it, so it waits for the whole read."""

    def __init__(self) -> None:
        # (position, revision) of each planned event by (stream, the event id's integer: a
        # UUID hashes through a Python method, an int does not): an Origin is made only
        # when asked for.
        self.origins: dict[tuple[str, int], tuple[int, int]] = {}
        self.events_per_stream: Counter[str] = Counter()
        self.first_revision: dict[str, int] = {}
        self._complete = threading.Event()
        self._failed = False
        self.awaited = False  # a writer waits for the whole read: the reader must not wait

    def add(self, ops: Iterable[Op]) -> None:
        origins = self.origins
        first_revision = self.first_revision
        per_stream = self.events_per_stream
        for op in ops:
            events = op.events
            if isinstance(op, EventOp):
                source = op.source
                stream = source.stream
                if stream not in first_revision:
                    first_revision[stream] = source.revision
                per_stream[stream] += len(events)
            elif isinstance(op, MetadataOp):
                source = op.source
                stream = source.stream
            else:
                continue
            origin = (source.commit_position, source.revision)
            for e in events:
                origins[(stream, e.event_id.int)] = origin

    def origin(self, stream: str, event_id: uuid.UUID) -> Origin | None:
        """Where in this slice the target event `event_id` of `stream` (or of a `$$` metadata
        stream) comes from, if the slice has read it yet."""
        found = self.origins.get((stream, event_id.int))
        return Origin(*found) if found is not None else None

    def finish(self, ok: bool) -> None:
        self._failed = not ok
        self._complete.set()

    def wait_complete(self) -> None:
        self.awaited = True
        self._complete.wait()
        if self._failed:
            # Deciding what a stream holds from a partial index could write a duplicate.
            raise RelayError("the slice's read stopped before the id search could finish")
