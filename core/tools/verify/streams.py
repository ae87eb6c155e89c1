"""verify's comparison of one stream: its state, its metadata and its visible events, in lock
step, one page per side; a stream that diverges is classified (missing, extra, different,
out of order)."""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import pairwise, zip_longest
from typing import TYPE_CHECKING, Any

from core import rules
from core.errors import StreamTombstoned
from core.eventstore import EventStore
from core.model import DELETED_STREAM, Event
from core.tools.verify.prints import Print, short
from core.tools.verify.report import DifferenceKind, Differences

if TYPE_CHECKING:
    from core.tools.verify.run import _Verifier

PAGE = 1000  # records per read, for `$all` and stream reads


@dataclass(slots=True)
class Side:
    """One side's view of a stream: its state, metadata and first page of visible events."""

    tombstoned: bool = False
    metadata: dict[str, Any] = field(default_factory=dict)
    first_page: list[Event] = field(default_factory=list)

    @property
    def soft_deleted(self) -> bool:
        return not self.tombstoned and self.metadata.get("$tb") == DELETED_STREAM

    @property
    def state(self) -> str:
        if self.tombstoned:
            return "tombstoned"
        return "soft-deleted" if self.soft_deleted else "live"


class StreamCheck:
    """The comparison of one stream; its own differences and counts, merged by the caller."""

    def __init__(self, verifier: _Verifier, name: str) -> None:
        self.name = name
        self.job = verifier.job
        self.source = verifier.source
        self.target = verifier.target
        self.transform = verifier.transform
        self.dead = verifier.dead
        self.events_dead_lettered = 0
        self.diffs = Differences(verifier.max_differences)
        self.events_compared = 0
        self.events_unverified = 0
        self.notes: list[str] = []

    def _open(self, store: EventStore, name: str) -> Side:
        try:
            first = store.read_stream(name, limit=PAGE)
            metadata = store.stream_metadata(name)
        except StreamTombstoned:
            return Side(tombstoned=True)
        return Side(False, metadata if isinstance(metadata, dict) else {}, first)

    def run(self, name: str) -> None:
        src = self._open(self.source, name)
        tgt = self._open(self.target, name)
        if src.state != tgt.state:
            detail = f"source is {src.state}, target is {tgt.state}"
            if tgt.state == "live":
                detail += f" ({'with' if tgt.first_page else 'no'} visible events)"
            self.diffs.add(name, DifferenceKind.DELETED_STATE, detail)
            return
        if src.tombstoned:
            return
        self._compare_metadata(name, src.metadata, tgt.metadata)
        if src.soft_deleted:
            return
        self._compare_events(name, src, tgt)

    def _compare_metadata(self, name: str, source: dict, target: dict) -> None:
        keys = sorted((set(source) | set(target)) - {"$tb"})
        different = [k for k in keys if source.get(k, _ABSENT) != target.get(k, _ABSENT)]
        if not different:
            return
        parts = []
        for key in different[:5]:
            s, t = source.get(key, _ABSENT), target.get(key, _ABSENT)
            parts.append(f"{key}: source {short(s, 30)}, target {short(t, 30)}")
        more = f" (+{len(different) - 5} more keys)" if len(different) > 5 else ""
        self.diffs.add(
            name, DifferenceKind.METADATA, "stream metadata differs: " + "; ".join(parts) + more
        )

    # ------------------------------------------------------------------- events
    def _visible(self, store: EventStore, name: str, first: list[Event]) -> Iterator[Event]:
        page = first
        while True:
            yield from page
            if len(page) < PAGE:
                return
            page = store.read_stream(name, from_revision=page[-1].revision + 1, limit=PAGE)

    def _skips(self, event: Event) -> bool:
        kind = rules.classify(event)
        return kind is not rules.Kind.EVENT or not self.job.filters.accepts_event_type(event.type)

    def _expected(self, events: Iterable[Event]) -> Iterator[Print]:
        """The source's visible events as the relay writes them to the target."""
        with_original = self.job.original_metadata
        multi_append = self.job.multi_append
        for event in events:
            if self._skips(event):
                continue
            if (event.stream, event.revision) in self.dead:
                self.events_dead_lettered += 1  # in the job's dead-letter stream instead
                continue
            outputs = rules.apply_transform(self.transform, event) if self.transform else [event]
            for output in outputs:
                out = rules.out_event(output, with_original=with_original)
                yield Print.expected(out, event.revision, multi_append)

    def _actual(self, name: str, first: list[Event]) -> Iterator[Print]:
        for event in self._visible(self.target, name, first):
            yield Print.of(event)

    def _compare_events(self, name: str, src: Side, tgt: Side) -> None:
        source_events: Iterable[Event] = self._visible(self.source, name, src.first_page)
        max_count = src.metadata.get("$maxCount")
        reshaped = False  # the target's `$maxCount` window cannot be the source's
        if isinstance(max_count, int) and not isinstance(max_count, bool) and max_count > 0:
            # Bounded: the source shows at most `$maxCount` events.
            window = list(source_events)
            reshaped = self.transform is not None or any(self._skips(e) for e in window)
            source_events = window
        expected = self._expected(source_events)
        actual = self._actual(name, tgt.first_page)
        if reshaped and self.transform is not None:
            # A transform that makes several events of one leaves the target's `$maxCount`
            # window shorter than the source's: only the last `$maxCount` expected events
            # can show there.
            buffered = list(expected)
            hidden = max(0, len(buffered) - max_count)
            if hidden:
                self.events_unverified += hidden
                self.notes.append(
                    f"{name}: {hidden} expected event(s) not verifiable: the target's $maxCount "
                    "hides them (the transform made more events than the source has)"
                )
            expected = iter(buffered[hidden:])
        matched = 0
        rest_expected: list[Print] = []
        rest_actual: list[Print] = []
        for e, a in zip_longest(expected, actual):
            if e is not None and a is not None and e.event_id == a.event_id:
                matched += 1
                problem = e.mismatch(a)
                if problem:
                    self._different(name, e, a, problem)
                continue
            rest_expected = [e] if e is not None else []
            rest_actual = [a] if a is not None else []
            rest_expected.extend(expected)
            rest_actual.extend(actual)
            break
        self.events_compared += matched + max(len(rest_expected), len(rest_actual))
        if not rest_expected and not rest_actual:
            return
        if matched == 0 and not rest_actual and not tgt.metadata:
            first = rest_expected[0]
            self.diffs.add(
                name,
                DifferenceKind.MISSING_STREAM,
                f"{len(rest_expected)} event(s) expected from source revision {first.revision}; "
                "the target has neither events nor metadata for the stream",
                source_revision=first.revision,
                event_id=first.event_id,
            )
            return
        if matched == 0 and (reshaped or _has_max_age(src.metadata)):
            wanted = {p.event_id for p in rest_expected}
            skip = 0
            while skip < len(rest_actual) and rest_actual[skip].event_id not in wanted:
                skip += 1
            if skip:
                self.events_unverified += skip
                self.notes.append(
                    f"{name}: {skip} older target event(s) not verifiable: the source stream no "
                    "longer shows them ($maxAge, or a $maxCount window over records the job "
                    "does not copy)"
                )
                del rest_actual[:skip]
        self._classify(name, rest_expected, rest_actual)

    def _different(self, name: str, e: Print, a: Print, detail: str) -> None:
        self.diffs.add(
            name,
            DifferenceKind.DIFFERENT_EVENT,
            detail,
            source_revision=e.revision,
            target_revision=a.revision,
            event_id=e.event_id,
        )

    def _classify(self, name: str, expected: list[Print], actual: list[Print]) -> None:
        """Name the differences of two diverging event sequences.

        Events in both, in the longest run that keeps the source order, are anchors; the other
        common events are out of order. Between two anchors, source-only and target-only events
        are paired as different events (another id at that place); the rest are missing/extra.
        """
        index = {p.event_id: i for i, p in enumerate(expected)}
        seen: set[str] = set()
        common: list[tuple[int, int]] = []  # (position in actual, position in expected)
        duplicates: set[int] = set()
        for j, p in enumerate(actual):
            if p.event_id in seen:
                duplicates.add(j)
                continue
            seen.add(p.event_id)
            if p.event_id in index:
                common.append((j, index[p.event_id]))
        anchors = _longest_increasing(common)
        anchor_set = set(anchors)
        for j, i in common:
            if (j, i) in anchor_set:
                problem = expected[i].mismatch(actual[j])
                if problem:
                    self._different(name, expected[i], actual[j], problem)
            else:
                self.diffs.add(
                    name,
                    DifferenceKind.ORDER,
                    f"out of order: source revision {expected[i].revision} is at another place "
                    "on the target",
                    source_revision=expected[i].revision,
                    target_revision=actual[j].revision,
                    event_id=expected[i].event_id,
                )
        in_actual = {i for _, i in common}
        bounds = [(-1, -1), *anchors, (len(actual), len(expected))]
        for (j0, i0), (j1, i1) in pairwise(bounds):
            only_expected = [expected[i] for i in range(i0 + 1, i1) if i not in in_actual]
            only_actual = [
                actual[j]
                for j in range(j0 + 1, j1)
                if actual[j].event_id not in index and j not in duplicates
            ]
            for e, a in zip(only_expected, only_actual, strict=False):
                detail = f"another event at this place: target holds {a.event_id}"
                problem = e.mismatch(a)
                self._different(name, e, a, detail + (f" ({problem})" if problem else ""))
            for e in only_expected[len(only_actual) :]:
                self.diffs.add(
                    name,
                    DifferenceKind.MISSING_EVENT,
                    f"source revision {e.revision} is not on the target",
                    source_revision=e.revision,
                    event_id=e.event_id,
                )
            for a in only_actual[len(only_expected) :]:
                self.diffs.add(
                    name,
                    DifferenceKind.EXTRA_EVENT,
                    f"target revision {a.revision} is not in the source",
                    target_revision=a.revision,
                    event_id=a.event_id,
                )
        for j in sorted(duplicates):
            self.diffs.add(
                name,
                DifferenceKind.EXTRA_EVENT,
                f"target revision {actual[j].revision} repeats an event id already in the stream",
                target_revision=actual[j].revision,
                event_id=actual[j].event_id,
            )


def _has_max_age(metadata: dict) -> bool:
    max_age = metadata.get("$maxAge")
    return isinstance(max_age, int) and not isinstance(max_age, bool) and max_age > 0


class _Absent:
    def __repr__(self) -> str:
        return "(absent)"


_ABSENT: Any = _Absent()


def _longest_increasing(pairs: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The longest subsequence of `pairs` (ordered by their first item) whose second items
    increase: the common events that keep the source's order."""
    tails: list[int] = []  # smallest last second-item of an increasing run of each length
    tail_at: list[int] = []  # index in pairs of that last item
    previous: list[int] = [-1] * len(pairs)
    for k, (_, i) in enumerate(pairs):
        n = bisect.bisect_left(tails, i)
        if n == len(tails):
            tails.append(i)
            tail_at.append(k)
        else:
            tails[n] = i
            tail_at[n] = k
        previous[k] = tail_at[n - 1] if n > 0 else -1
    out: list[tuple[int, int]] = []
    k = tail_at[-1] if tail_at else -1
    while k >= 0:
        out.append(pairs[k])
        k = previous[k]
    return out[::-1]


def user_stream_of(event: Event) -> str | None:
    kind = rules.classify(event)
    if kind is rules.Kind.SKIP:
        return None
    return event.stream[2:] if kind is rules.Kind.METADATA else event.stream
