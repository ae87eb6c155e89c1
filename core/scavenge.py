"""The scavenge filter: drop the events a scavenge of the source would remove.

A scavenge deletes the events of hard- or soft-deleted streams, events before `$tb`, beyond
`$maxCount` and older than `$maxAge`. A migration need not copy them. Whether an event is
scavengeable depends on its stream's *current* state in the source, read once per stream per
slice (the cache lives as long as one slice, so memory stays bounded by the slice).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from core.errors import StreamTombstoned
from core.eventstore import EventStore
from core.model import DELETED_STREAM, Event


@dataclass(frozen=True)
class _StreamRules:
    deleted: bool
    truncate_before: int
    keep_after: int  # revisions <= this are beyond $maxCount (-1: none)
    max_age: timedelta | None


class ScavengeFilter:
    def __init__(self, source: EventStore, now: datetime | None = None) -> None:
        self.source = source
        self.now = now or datetime.now(UTC)
        self._rules: dict[str, _StreamRules] = {}

    def removes(self, event: Event) -> bool:
        rules = self._rules.get(event.stream) or self._load(event.stream)
        if rules.deleted or event.revision < rules.truncate_before:
            return True
        if event.revision <= rules.keep_after:
            return True
        if rules.max_age is not None and event.created is not None:
            return event.created < self.now - rules.max_age
        return False

    def truncates_before(self, stream: str) -> int:
        """Revisions below this are removed (a deleted stream: all of them)."""
        rules = self._rules.get(stream) or self._load(stream)
        return DELETED_STREAM if rules.deleted else rules.truncate_before

    def _load(self, stream: str) -> _StreamRules:
        try:
            tail = self.source.stream_tail(stream, 1)
        except StreamTombstoned:
            tail = None
        if tail is None or tail.tombstoned:
            rules = _StreamRules(True, 0, -1, None)
        else:
            metadata = self.source.stream_metadata(stream)
            tb = metadata.get("$tb")
            max_count = metadata.get("$maxCount")
            max_age = metadata.get("$maxAge")
            keep_after = -1
            if isinstance(max_count, int) and max_count > 0 and tail.last_revision >= 0:
                keep_after = tail.last_revision - max_count
            rules = _StreamRules(
                deleted=tb == DELETED_STREAM,
                truncate_before=tb if isinstance(tb, int) else 0,
                keep_after=keep_after,
                max_age=timedelta(seconds=max_age)
                if isinstance(max_age, int) and max_age > 0
                else None,
            )
        self._rules[stream] = rules
        return rules
