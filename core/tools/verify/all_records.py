"""verify's `$all` comparison: what stream reads cannot show.

Stream reads hide records (`$tb`, `$maxCount`, `$maxAge`, soft deletes) that `$all` still
delivers to subscriptions and projections. While verify scans both `$all`s to find the
streams, it tallies per stream the events the job copies from the source and the user events
the target holds: their count and an order-free digest of their ids, two numbers a stream.
In ordered mode it also digests the sequence of copied events in `$all` order on each side.
Not with the scavenge filter: which hidden records it skipped depends on when it ran.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from core.model import Event

_MASK = (1 << 128) - 1


@dataclass(slots=True)
class _Tally:
    count: int = 0
    digest: int = 0  # sum of the ids' hashes, modulo 2^128: the same in any order

    def add(self, event_id: uuid.UUID) -> None:
        self.count += 1
        self.digest = (self.digest + _hash(event_id)) & _MASK


def _hash(event_id: uuid.UUID) -> int:
    return int.from_bytes(hashlib.blake2b(event_id.bytes, digest_size=16).digest(), "big")


@dataclass(frozen=True, slots=True)
class AllDifference:
    stream: str | None  # None: the order of `$all` as a whole
    detail: str


class AllRecords:
    def __init__(self, copied_ids: Callable[[Event], list[uuid.UUID]], ordered: bool) -> None:
        """`copied_ids`: the ids of the events the job writes to the target for a source
        record ([] for a record it skips)."""
        self.copied_ids = copied_ids
        self.ordered = ordered
        self.source: dict[str, _Tally] = {}
        self.target: dict[str, _Tally] = {}
        self._source_order = hashlib.sha256()
        self._target_order = hashlib.sha256()

    def add_source(self, event: Event) -> None:
        for event_id in self.copied_ids(event):
            self.source.setdefault(event.stream, _Tally()).add(event_id)
            if self.ordered:
                self._source_order.update(_key(event.stream, event_id))

    def add_target(self, event: Event) -> None:
        self.target.setdefault(event.stream, _Tally()).add(event.event_id)
        if self.ordered:
            self._target_order.update(_key(event.stream, event.event_id))

    def differences(self, streams: Iterable[str]) -> Iterator[AllDifference]:
        """Per stream of `streams` (the source's: other target streams are extra streams),
        then the order."""
        for stream in sorted(streams):
            source = self.source.get(stream, _Tally())
            target = self.target.get(stream, _Tally())
            if source != target:
                same = " (as many, other ids)" if source.count == target.count else ""
                yield AllDifference(
                    stream,
                    f"$all holds {source.count} event(s) of the stream the job copies on the "
                    f"source, {target.count} on the target{same}: events stream reads do not "
                    "show ($tb, $maxCount, $maxAge, soft deletes) are missing, extra or "
                    "duplicated",
                )
        if self.ordered and self._source_order.digest() != self._target_order.digest():
            yield AllDifference(
                None,
                "the target's $all holds the copied events in another order than the "
                "source's (ordered mode keeps it)",
            )


def _key(stream: str, event_id: uuid.UUID) -> bytes:
    return stream.encode() + b"\x00" + event_id.bytes
