"""`$tb` (truncate before) in target revisions.

`$tb = n` hides a stream's events before revision n. The target's revisions differ from the
source's: the job may skip events (event-type filters, the scavenge filter, a transform that
drops or splits, dead letters) and the stream may start later on the target. So n becomes T,
the target revision of the first event the target gets from source revision n or later.

When a stream's `$metadata` record is written, every record of the stream before it in `$all`
is on the target and nothing after it (streams are written in order), so with R the target
stream's last revision (-1 if none):

    T = R + 1 - (events copied from records before it with revision >= n)
              + (events copied from records after it with revision < n)

counted with the slice's planner, so exactly the events this job writes. Revisions the source
does not hold yet count one for one (unless the scavenge filter will drop them: below the
source's current `$tb`). Records before the job's start are not on the target; they can only
make T negative, and T is never below 0. Both sums read the stream's records in the source's
`$all` (stream reads hide records before `$tb`), stopping at the first record past n.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

from core.engine.plan import Planner
from core.errors import StreamTombstoned
from core.eventstore import EventStore
from core.model import Event

PAGE = 500


class Truncation:
    def __init__(
        self,
        source: EventStore,
        target: EventStore,
        planner: Planner,
        dead_letter_stream: str | None,
    ) -> None:
        self.source = source
        self.target = target
        self.planner = planner
        self.dead_letter_stream = dead_letter_stream

    def target_revision(self, stream: str, n: int, position: int) -> int:
        """T for `$tb = n` set by the stream's `$metadata` record at `position`."""
        last = self._target_last_revision(stream)
        before = 0
        newest_before: int | None = None
        for record in self._records(stream, position, backwards=True):
            newest_before = record.revision if newest_before is None else newest_before
            if record.revision < n:
                break
            before += self._copies(record)
        after = 0
        seen = -1 if newest_before is None else newest_before
        if seen < n - 1:
            for record in self._records(stream, position, backwards=False):
                if record.revision >= n:
                    break
                after += self._copies(record)
                seen = record.revision
            after += self._beyond_source(stream, seen, n)
        return max(0, last + 1 - before + after)

    def _target_last_revision(self, stream: str) -> int:
        tail = self.target.stream_tail(stream, 1)
        if tail.events:
            return tail.last_revision
        return self.target.current_revision(stream)  # `$tb`/`$maxCount` may hide every event

    def _beyond_source(self, stream: str, seen: int, n: int) -> int:
        """Revisions the source has not written yet, up to n - 1: one copy each, or none when
        the scavenge filter will drop them (they are below the source's `$tb`)."""
        missing = max(0, n - 1 - seen)
        scavenge = self.planner.scavenge
        if missing and scavenge is not None and scavenge.truncates_before(stream) >= n:
            return 0
        return missing

    def _copies(self, record: Event) -> int:
        copies = self.planner.copies(record)
        dead = copies and self.dead_letter_stream is not None
        if dead and record.revision in self._dead_letters().get(record.stream, set()):
            return 0
        return copies

    def _records(self, stream: str, position: int, *, backwards: bool) -> Iterator[Event]:
        """The stream's records in the source's `$all` before (newest first) or after
        `position`, page by page; tombstones end them."""
        cursor = position
        while True:
            if backwards:
                page = self.source.stream_records_backwards(stream, cursor, PAGE)
            else:
                page = self.source.stream_records_after(stream, cursor, PAGE)
            for record in page:
                if record.type == "$streamDeleted":
                    return
                yield record
            if len(page) < PAGE:
                return
            cursor = page[-1].commit_position

    def _dead_letters(self) -> dict[str, set[int]]:
        """Source revisions the job dead-lettered, per stream (read each time: the slice may
        have just added one)."""
        dead: dict[str, set[int]] = {}
        assert self.dead_letter_stream is not None
        try:
            letters = self.target.read_stream(self.dead_letter_stream)
        except StreamTombstoned:
            letters = []
        for letter in letters:
            try:
                record = json.loads(letter.data)
                dead.setdefault(record["stream"], set()).add(record["revision"])
            except (ValueError, KeyError, TypeError):
                continue
        return dead
