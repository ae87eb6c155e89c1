"""verify's run: discovery (both `$all`s scanned), the streams checked in order (with workers,
a bounded window at a time), progress saved for a resumed run."""

from __future__ import annotations

import random
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import core.tools.verify.streams as streams
from core import rules
from core.config import JobConfig
from core.errors import StreamTombstoned
from core.eventstore import EventStore
from core.model import Event
from core.shards import ShardPlan
from core.tools.verify.all_records import AllRecords
from core.tools.verify.report import (
    DEFAULT_MAX_DIFFERENCES,
    Difference,
    DifferenceKind,
    Differences,
    StateFile,
    VerifyReport,
    VerifyState,
    fingerprint,
)
from core.tools.verify.streams import StreamCheck, user_stream_of

_ALL = "$all"  # the stream name of a difference in the order of `$all`
_MAX_NOTES = 100


Progress = Callable[[int, int], None]
# (side, commit position reached, that side's `$all` head when its scan began): a known total.
ScanProgress = Callable[[str, int, int], None]

SAMPLE_SCAN = (
    "a sample is drawn from all the source's streams, and EventStoreDB keeps no complete list "
    "of them but `$all` (the $streams projection may be stopped or lag): the source's $all is "
    "scanned once for their names; the target's is not. With --state the list is saved and "
    "a resumed run skips the scan"
)


def verify(
    job: JobConfig,
    source: EventStore,
    target: EventStore,
    *,
    sample: int | None = None,
    seed: int = 0,
    progress: Progress | None = None,
    max_differences: int = DEFAULT_MAX_DIFFERENCES,
    workers: int = 1,
    state: Path | None = None,
    save_every: float = 10.0,
    scan_progress: ScanProgress | None = None,
    plan: ShardPlan | None = None,
) -> VerifyReport:
    """Compare the target with the job's filtered source; see the module doc for the rules.

    `sample=N` checks a deterministic (per `seed`) random sample of N streams and skips the
    scan for extra target streams. `progress(done, total)` is called as streams are checked.
    At most `max_differences` differences are listed (all are counted). `workers > 1` checks
    that many streams concurrently (each holds one page of events per side at a time); the
    report is the same as with one worker. `state`: a file progress is saved to (every
    `save_every` seconds and on interruption) and resumed from; ConfigError if it was written
    for another job, sample or seed. A sharded job (`job.shards > 1`; `plan`, its stored plan,
    attributes each difference to a shard) is compared per stream only: shards do not keep the
    order of `$all` across streams.
    """
    if sample is not None and sample < 0:
        raise ValueError("sample must be >= 0")
    if workers < 1:
        raise ValueError("workers must be >= 1")
    verifier = _Verifier(job, source, target, max_differences, workers, plan)
    if state is not None:
        verifier.saver = StateFile(state, fingerprint(job, sample, seed, max_differences))
    verifier.save_every = save_every
    verifier.scan_progress = scan_progress
    return verifier.run(sample, seed, progress)


# ----------------------------------------------------------------------------- resume state


# ----------------------------------------------------------------------------- internals


class _Verifier:
    def __init__(
        self,
        job: JobConfig,
        source: EventStore,
        target: EventStore,
        max_differences: int,
        workers: int,
        plan: ShardPlan | None = None,
    ) -> None:
        self.job = job
        self.plan = plan
        self.sharded = plan is not None or job.shards > 1
        self.source = source
        self.target = target
        self.max_differences = max_differences
        self.workers = workers
        self.transform = rules.load_transform(job.transform)
        self.dead = dead_lettered(job, target)
        self.diffs = Differences(max_differences)
        self.extras = Differences(max_differences)
        self.report = VerifyReport(
            job_id=job.job_id,
            transform=job.transform,
            original_metadata=job.original_metadata,
            max_differences=max_differences,
            shards=(plan.count if plan else job.shards) if self.sharded else None,
        )
        self.saver: StateFile | None = None
        self.save_every = 10.0
        self.scan_progress: ScanProgress | None = None
        self.pending_all: dict[str, Difference] = {}

    # ---------------------------------------------------------------------- the run
    def run(self, sample: int | None, seed: int, progress: Progress | None) -> VerifyReport:
        started = time.monotonic()
        resumed = self.saver.load() if self.saver else None
        if resumed is not None:
            ordered, first = resumed.streams, resumed.done
            self.report = report = resumed.report
            self.diffs.items, self.diffs.total = report.differences, report.differences_total
            self.extras.items, self.extras.total = resumed.extras, resumed.extras_total
            self.pending_all = {d.stream: d for d in resumed.pending_all}
            spent = report.seconds
        else:
            ordered, first, spent = self._discover(sample, seed), 0, 0.0
            report = self.report
        total = len(ordered)
        self._save(ordered, first, spent + time.monotonic() - started)
        saved_at = time.monotonic()
        if progress:
            progress(first, total)
        try:
            for done, check in enumerate(self._checks(ordered[first:]), first + 1):
                self._merge(check)
                if self.saver and time.monotonic() - saved_at >= self.save_every:
                    self._save(ordered, done, spent + time.monotonic() - started)
                    saved_at = time.monotonic()
                if progress:
                    progress(done, total)
        except BaseException:
            self._save(ordered, report.streams_checked, spent + time.monotonic() - started)
            raise
        # Extra target streams were found before the checks; they are listed after them.
        self.diffs.total += self.extras.total - len(self.extras.items)
        for difference in self.extras.items:
            self.diffs.append(difference)
        order = self.pending_all.pop(_ALL, None)
        for difference in self.pending_all.values():
            self.diffs.append(difference)
        if order is not None and not self.diffs.total:
            self.diffs.append(order)  # otherwise a consequence of what was found
        report.differences = [self._attributed(d) for d in self.diffs.items]
        report.differences_total = self.diffs.total
        report.seconds = spent + time.monotonic() - started
        report.events_per_second = (
            report.events_compared / report.seconds if report.seconds > 0 else 0.0
        )
        if self.saver:
            self.saver.remove()
        return report

    def _shard_of(self, stream: str) -> int | None:
        return self.plan.shard_of(stream) if self.plan and stream != _ALL else None

    def _count(self, stream: str, n: int = 1) -> None:
        shard = self._shard_of(stream)
        if shard is not None and n:
            by = self.report.differences_by_shard
            by[shard] = by.get(shard, 0) + n

    def _attributed(self, difference: Difference) -> Difference:
        shard = self._shard_of(difference.stream)
        return difference if shard is None else difference.model_copy(update={"shard": shard})

    def _discover(self, sample: int | None, seed: int) -> list[str]:
        """The streams to check, in order; with no sample, also the extra target streams."""
        report = self.report
        report.sample, report.seed = sample, seed
        tally = self._all_records() if sample is None else None
        streams = self._user_streams(self.source, self.job.filters.accepts_stream, tally)
        report.streams_in_source = len(streams)
        ordered = sorted(streams)
        if sample is not None:
            ordered = sorted(random.Random(seed).sample(ordered, min(sample, len(ordered))))
            report.sampled_streams = list(ordered)
            report.notes.append(SAMPLE_SCAN)
        else:
            self._find_extra_streams(streams, tally)
        if tally is not None:
            for found in tally.differences(streams):
                kind = DifferenceKind.ALL_ORDER if found.stream is None else None
                stream = found.stream or _ALL
                self.pending_all[stream] = Difference(
                    stream=stream, kind=kind or DifferenceKind.ALL_RECORDS, detail=found.detail
                )
        if self.transform is not None:
            report.notes.append(
                f"transform {self.job.transform} applied to the source events before comparing"
            )
        if self.sharded:
            report.notes.append(
                f"sharded job ({report.shards} shards): each stream is compared, events in "
                "order; the order of $all across streams is not, as shards do not keep it"
                + (
                    ""
                    if self.plan
                    else " (no shard plan is stored yet: differences are not attributed to shards)"
                )
            )
        for difference in self.pending_all.values():
            self._count(difference.stream)
        return ordered

    def _save(self, ordered: list[str], done: int, seconds: float) -> None:
        if self.saver is None:
            return
        report = self.report.model_copy(
            update={
                "differences": list(self.diffs.items),
                "differences_total": self.diffs.total,
                "seconds": seconds,
            }
        )
        self.saver.save(
            VerifyState(
                fingerprint=self.saver.fingerprint,
                streams=ordered,
                done=done,
                report=report,
                extras=list(self.extras.items),
                extras_total=self.extras.total,
                pending_all=list(self.pending_all.values()),
            )
        )

    def _check(self, name: str) -> StreamCheck:
        check = StreamCheck(self, name)
        check.run(name)
        return check

    def _checks(self, names: list[str]) -> Iterator[StreamCheck]:
        """The checks of `names`, in order; with workers, a bounded window runs concurrently."""
        if self.workers <= 1:
            for name in names:
                yield self._check(name)
            return
        with ThreadPoolExecutor(self.workers, thread_name_prefix="verify") as pool:
            window: deque[Future[StreamCheck]] = deque()
            for name in names:
                window.append(pool.submit(self._check, name))
                if len(window) >= 2 * self.workers:
                    yield window.popleft().result()
            while window:
                yield window.popleft().result()

    def _merge(self, check: StreamCheck) -> None:
        report = self.report
        report.streams_checked += 1
        if check.diffs.total:
            report.streams_differing += 1
            if self.pending_all.pop(check.name, None) is not None:  # found by the reads too
                self._count(check.name, -1)
            self._count(check.name, check.diffs.total)
        else:
            report.streams_equal += 1
        report.events_compared += check.events_compared
        report.events_unverified += check.events_unverified
        report.events_dead_lettered += check.events_dead_lettered
        report.notes.extend(check.notes[: max(0, _MAX_NOTES - len(report.notes))])
        self.diffs.total += check.diffs.total - len(check.diffs.items)
        for difference in check.diffs.items:
            self.diffs.append(difference)

    # ------------------------------------------------------------------ discovery
    def _scan(self, store: EventStore, side: str) -> Iterator[Event]:
        position: int | None = None
        head = store.head_position() if self.scan_progress else 0
        while True:
            n = 0
            for event in store.read_all_after(position, streams.PAGE):
                n += 1
                position = event.commit_position
                yield event
            if self.scan_progress:
                done = head if n < streams.PAGE else min(position or 0, head)
                self.scan_progress(side, done, max(head, position or 0))
            if n < streams.PAGE:
                return

    def _all_records(self) -> AllRecords | None:
        """The `$all` tallies (all_records.py), unless the scavenge filter makes them depend on
        when it ran."""
        if self.job.filters.scavenge:
            self.report.notes.append(
                "scavenge: events hidden from stream reads are not compared in $all"
            )
            return None
        dead = self.dead
        filters, transform = self.job.filters, self.transform

        def copied_ids(event: Event) -> list[uuid.UUID]:
            if rules.copied_kind(filters, event) is not rules.Kind.EVENT:
                return []
            if (event.stream, event.revision) in dead:
                return []
            outputs = rules.apply_transform(transform, event) if transform else [event]
            return [output.event_id for output in outputs]

        # Shards keep each stream's order, never the order across shards.
        ordered = self.job.mode == "ordered" and self.job.shards == 1 and not self.sharded
        return AllRecords(copied_ids, ordered)

    def _user_streams(
        self, store: EventStore, accepts: Callable[[str], bool], tally: AllRecords | None
    ) -> set[str]:
        names: set[str] = set()
        for event in self._scan(store, "source"):
            name = user_stream_of(event)
            if name is not None and name not in names and accepts(name):
                names.add(name)
            if tally is not None:
                tally.add_source(event)
        return names

    def _find_extra_streams(self, expected: set[str], tally: AllRecords | None) -> None:
        self.report.extra_streams_checked = True
        seen: set[str] = set()
        accepts = self.job.filters.accepts_stream
        for event in self._scan(self.target, "target"):
            if tally is not None and _is_user_event(event) and accepts(event.stream):
                tally.add_target(event)
            name = user_stream_of(event)
            if name is None or name in expected or name in seen:
                continue
            seen.add(name)
            self._count(name)
            self.extras.add(
                name,
                DifferenceKind.EXTRA_STREAM,
                "on the target but not in the source"
                + ("" if self.job.filters.accepts_stream(name) else " (excluded by the filters)"),
            )
        self.report.extra_streams = len(seen)


def dead_lettered(job: JobConfig, target: EventStore) -> set[tuple[str, int]]:
    """(stream, source revision) of the events the job dead-lettered: its dead-letter stream
    on the target (`dead_letter = true`) lists them; they are reported as dead-lettered, not
    as missing."""
    dead: set[tuple[str, int]] = set()
    try:
        letters = target.read_stream(rules.dead_letter_stream(job.job_id))
    except StreamTombstoned:
        return dead
    for letter in letters:
        record = rules.json_object(letter.data) or {}
        stream, revision = record.get("stream"), record.get("revision")
        if isinstance(stream, str) and isinstance(revision, int):
            dead.add((stream, revision))
    return dead


def _is_user_event(event: Event) -> bool:
    return not event.stream.startswith("$") and not event.type.startswith("$")
