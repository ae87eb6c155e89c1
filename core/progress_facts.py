"""The facts `core/progress.py` measures a job from, and the rules it judges them by.

The stored chains of slices (a job's, or each shard's: checkpoint, lease, history), the records
of `$all` after a checkpoint, the source's write rate, and the models `measure` returns.
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from pydantic import BaseModel

from core import rules
from core.checkpoint import Checkpoint, CheckpointStore, Lease, SliceRecord
from core.config import JobConfig
from core.errors import RelayError
from core.eventstore import EventStore
from core.model import Event

State = Literal[
    "not-started",  # the job never committed and no relay holds its lease
    "copying",  # events are left to copy and a relay is running (lease held, recent slices)
    "following",  # nothing is left to copy now and a relay is alive
    "idle",  # nothing is left to copy now, but no relay has run for longer than the schedule allows
    "stalled",  # the newest slices failed in a row: the job makes no progress
    "behind-and-not-running",  # events are left to copy and no relay is running
]

STALL_AFTER_SLICES = 3
"""Failed slices in a row after which the job is stalled."""
LAG_COUNT_LIMIT = 10_000
"""Records of `$all` read after the checkpoint to count the lag exactly; past it, estimated."""
LAG_COUNT_BYTES = 32 * 1024 * 1024
"""...and at most this many bytes of them (big events): `status --watch` reads it each time."""
CHAIN_GAP_SECONDS = 60.0
"""The longest pause between the slices of a relay that is behind: the CLI starts the next at
once, a cloud function's chained invocation arrives within seconds (an Azure queue trigger
polls at most once a minute). core/invocation.py's CHAIN_ACTIVE_SECONDS says the same."""
SCHEDULE_GRACE_SECONDS = 60.0
"""Added to the schedule's period: a tick may start late, and its slice takes time."""
MIN_GAP_SECONDS = 10.0
"""The shortest pause `allowed_gap` allows, however fast the relay's recent pace."""
PACE_FACTOR = 5.0
"""A relay keeping a regular pace is alive until it missed this many of its own pauses."""
HISTORY_READ = 50
RATE_SAMPLE = 1000
RATE_WINDOW_SECONDS = 300.0


class LeaseInfo(BaseModel):
    owner: str
    expires_at: datetime


class Liveness(BaseModel):
    """Whether the job still makes progress, from its slice history (newest first)."""

    stalled: bool
    failing_slices: int  # failed slices in a row, up to the newest
    last_error: str | None  # the newest slice's error when it failed

    @classmethod
    def from_history(cls, history: list[SliceRecord]) -> Liveness:
        history = slices_of(history)
        failing = 0
        for record in history:
            if not record.error:
                break
            failing += 1
        return cls(
            stalled=failing >= STALL_AFTER_SLICES,
            failing_slices=failing,
            last_error=history[0].error if failing else None,
        )


class ShardProgress(BaseModel):
    """One shard of a sharded job: its own chain, lease and checkpoint."""

    index: int
    key: str  # the shard's own checkpoint, lease and history key
    state: State
    caught_up: bool
    position: int | None  # the shard's checkpoint (None: the start of `$all`)
    lag_bytes: int | None
    lag_events: int | None  # records of its streams after its checkpoint (estimated past the count)
    lag_seconds: float | None
    copy_rate: float | None
    eta_seconds: float | None
    relay_running: bool
    lease: LeaseInfo | None
    last_slice_at: datetime | None
    last_slice_seconds: float | None
    consecutive_failures: int
    last_error: str | None
    events_read: int
    events_written: int
    expected_share: float  # the share of the events the plan gave this shard, from its sample


class Progress(BaseModel):
    job_id: str
    state: State
    caught_up: bool  # true only when nothing is left to copy now
    checked_at: datetime  # when these facts were read
    # positions: the source's head and the committed checkpoint (commit positions, bytes)
    head_position: int | None
    position: int | None
    lag_bytes: int | None
    lag_events: int | None  # None when it cannot be counted or estimated
    lag_events_exact: bool  # counted, rather than estimated from recent slices' bytes per event
    lag_events_counted: int  # records the job copies, counted after the checkpoint (all when exact)
    lag_seconds: float | None  # age of the oldest event not yet copied
    # rates, events/s
    copy_rate: float | None  # over recent slices that had work
    source_write_rate: float | None
    eta_seconds: float | None  # only while a relay runs and gains on the source
    # the relay
    relay_running: bool
    allowed_gap_seconds: float  # the longest pause between slices of a live relay, here
    relay_stopped_at: datetime | None  # a relay said it stopped (`run` ended) and none ran since
    lease: LeaseInfo | None  # the lease while it is held (None: free, released or expired)
    last_slice_at: datetime | None  # when the newest slice (ok or failed) ended
    last_success_at: datetime | None
    last_success_age_seconds: float | None
    last_slice_seconds: float | None  # duration of the newest slice
    consecutive_failures: int
    stalled: bool  # the newest STALL_AFTER_SLICES slices or more all failed
    last_error: str | None
    # totals since the job started (from the checkpoint)
    events_read: int
    events_written: int
    events_skipped: int  # already on the target
    events_filtered: int  # not copied by the job's rules
    dead_lettered: int
    warnings: list[str]
    # a sharded job (its record holds a plan): one row per shard; the figures above are the
    # job's as one (position: the lowest shard checkpoint; totals: the sums)
    shards: list[ShardProgress] = []


class Pending(BaseModel):
    """What lies after the checkpoint, as far as `pending_after` read."""

    counted: int  # records the job copies
    exact: bool  # the end of `$all` was reached: `counted` is all of them
    oldest_created: datetime | None  # of the first such record
    scanned_to: int | None  # commit position of the last record read (any kind)


def pending_after(
    job: JobConfig,
    source: EventStore,
    position: int | None,
    limit: int = LAG_COUNT_LIMIT,
    max_bytes: int = LAG_COUNT_BYTES,
    matches: Callable[[str], object] | None = None,
) -> Pending:
    """Read `$all` after `position` (None: from the start), at most `limit` records and about
    `max_bytes` of them, and count those the job copies (by its filters and kinds of record,
    as the engine plans); with `matches`, only those of the streams it passes (a shard's)."""
    counted = 0
    oldest: datetime | None = None

    def visit(event: Event) -> None:
        nonlocal counted, oldest
        if (matches is None or matches(event.stream)) and copied(job, event):
            counted += 1
            if oldest is None:
                oldest = event.created

    exact, last = scan_all(source, position, limit, max_bytes, visit)
    return Pending(counted=counted, exact=exact, oldest_created=oldest, scanned_to=last)


def scan_all(
    source: EventStore,
    position: int | None,
    limit: int,
    max_bytes: int,
    visit: Callable[[Event], None],
) -> tuple[bool, int | None]:
    """Hand each record of `$all` after `position` to `visit`, at most `limit` records and
    about `max_bytes` of them: whether the end of `$all` was reached, and the commit position
    of the last record read."""
    read = size = 0
    last = position
    while read < limit and size < max_bytes:
        want = min(1000, limit - read)
        n = 0
        events = source.read_all_after(last, want)
        for event in events:
            n += 1
            last = event.commit_position
            size += event.size
            visit(event)
            if size >= max_bytes:
                close = getattr(events, "close", None)
                if close is not None:
                    close()  # the rest of the page is not needed
                break
        read += n
        if n < want and size < max_bytes:
            return True, last
    return False, last


def copied(job: JobConfig, event: Event) -> bool:
    """Whether the job copies this `$all` record (its kind and filters; not the transform,
    which runs only when the record is copied)."""
    return rules.copied_kind(job.filters, event) is not rules.Kind.SKIP


def live_lease(store: CheckpointStore, key: str, now: datetime) -> Lease | None:
    """The lease held under `key` now (None: free, or expired)."""
    lease = store.lease_info(key)
    return lease if lease is not None and not lease.expired(now) else None


@dataclass(frozen=True)
class ChainFacts:
    """What the store says of one chain of slices (a job's, or one shard's)."""

    checkpoint: Checkpoint | None
    history: list[SliceRecord]  # slices only, newest first
    stopped_at: datetime | None  # a relay said it stopped, and none ran since
    lease: Lease | None  # held now
    liveness: Liveness
    gap: float
    running: bool

    @classmethod
    def read(cls, job: JobConfig, store: CheckpointStore, key: str, now: datetime) -> ChainFacts:
        return cls.of(job, store, key, now, store.load(key))

    @classmethod
    def of(
        cls,
        job: JobConfig,
        store: CheckpointStore,
        key: str,
        now: datetime,
        checkpoint: Checkpoint | None,
    ) -> ChainFacts:
        records = store.history(key, limit=HISTORY_READ)
        stopped_at = records[0].finished_at if records and records[0].stopped else None
        history = slices_of(records)
        lease = live_lease(store, key, now)
        gap = allowed_gap(job, history)
        recent = (
            stopped_at is None
            and bool(history)
            and (now - history[0].finished_at).total_seconds() <= gap
        )
        return cls(
            checkpoint=checkpoint,
            history=history,
            stopped_at=stopped_at,
            lease=lease,
            liveness=Liveness.from_history(history),
            gap=gap,
            running=lease is not None or recent,
        )

    @property
    def position(self) -> int | None:
        cp = self.checkpoint
        return cp.position.commit if cp and cp.position else None

    @property
    def started(self) -> bool:
        return self.checkpoint is not None or bool(self.history)

    @property
    def newest(self) -> SliceRecord | None:
        return self.history[0] if self.history else None

    @property
    def success(self) -> SliceRecord | None:
        return next((h for h in self.history if not h.error), None)

    def total(self, name: str) -> int:
        return getattr(self.checkpoint, name) if self.checkpoint else 0


def slices_of(history: list[SliceRecord]) -> list[SliceRecord]:
    """The slice records of a history, without the records of relays that stopped."""
    return [h for h in history if not h.stopped]


def allowed_gap(job: JobConfig, history: list[SliceRecord]) -> float:
    """The longest pause after its newest slice for which a relay still counts as running.

    A relay that was behind starts its next slice at once (CHAIN_GAP_SECONDS at most); a
    caught-up one waits for its schedule (`job.schedule_seconds`, plus
    SCHEDULE_GRACE_SECONDS). Where the history shows a
    faster pace of that kind (`esdb-relay run` follows every second), PACE_FACTOR missed
    pauses of that pace (MIN_GAP_SECONDS at least) are allowed instead.
    """
    scheduled = job.schedule_seconds + SCHEDULE_GRACE_SECONDS
    if not history:
        return scheduled
    caught_up = history[0].caught_up
    cap = scheduled if caught_up else min(scheduled, CHAIN_GAP_SECONDS)
    pauses = [
        (later.started_at - earlier.finished_at).total_seconds()
        for later, earlier in itertools.pairwise(history[:11])
        if earlier.caught_up == caught_up
    ]
    if len(pauses) < 3:
        return cap
    return min(cap, max(MIN_GAP_SECONDS, PACE_FACTOR * statistics.median(pauses)))


def source_write_rate(source: EventStore, now: datetime) -> float | None:
    """Events/s appended to the source over the last few minutes (from created times)."""
    try:
        events = source.last_events(RATE_SAMPLE)
    except RelayError:
        return None
    times = [e.created for e in events if e.created]
    if not times:
        return 0.0
    recent = [t for t in times if (now - t).total_seconds() <= RATE_WINDOW_SECONDS]
    if len(recent) < len(times):
        return len(recent) / RATE_WINDOW_SECONDS
    span = (now - min(times)).total_seconds()
    return len(times) / span if span > 0 else None


def chain_state(started: bool, running: bool, liveness: Liveness, caught_up: bool) -> State:
    if not started and not running:
        return "not-started"
    if liveness.stalled:
        return "stalled"
    if caught_up:
        return "following" if running else "idle"
    return "copying" if running else "behind-and-not-running"


def slice_seconds(record: SliceRecord) -> float:
    return (record.finished_at - record.started_at).total_seconds()


def copy_rate_of(history: list[SliceRecord]) -> float | None:
    """Records/s dealt with by the recent slices that had work (while they ran)."""
    busy = [h for h in history if h.events_read and not h.error][:20]
    seconds = sum(slice_seconds(h) for h in busy)
    events = sum(h.events_read for h in busy)
    return events / seconds if seconds > 0 and events else None


def estimate_lag(
    pending: Pending, position: int | None, head: int, history: list[SliceRecord]
) -> int | None:
    """Records left when too many to count: those counted, plus the rest of the log at the
    density the count found (or, when it found none, the density of recent slices)."""
    start = position or 0
    scanned_to = max(start, pending.scanned_to or start)  # a shard may be ahead of the count
    scanned = scanned_to - start
    rest = max(0, head - scanned_to)
    if pending.counted and scanned > 0:
        return pending.counted + round(rest * pending.counted / scanned)
    spans = [
        (h.to_position.commit - (h.from_position.commit if h.from_position else 0), h.events_read)
        for h in history
        if h.to_position and h.events_read and not h.error
    ]
    span = sum(b for b, _ in spans)
    if span <= 0:
        return None
    return pending.counted + round(rest * sum(n for _, n in spans) / span)


def job_warnings(
    state: State,
    caught_up: bool,
    copy_rate: float | None,
    write_rate: float | None,
    liveness: Liveness,
    pending: Pending,
    job: JobConfig,
    count_limit: int,
    dead_lettered: int,
    stopped: bool,
) -> list[str]:
    warnings = []
    if not caught_up and copy_rate and write_rate is not None and write_rate > 0.5 * copy_rate:
        warnings.append(
            f"the source takes {write_rate:,.0f} events/s, not well below the relay's "
            f"{copy_rate:,.0f} events/s: the copy may never catch up. Raise the relay's "
            "rate (partitioned mode, bigger slices) or lower the source's write load"
        )
    if liveness.stalled:
        warnings.append(
            f"stalled: the last {liveness.failing_slices} slices failed, the job makes no "
            f"progress: {liveness.last_error}"
        )
    if state == "behind-and-not-running":
        warnings.append(
            "events are left to copy and no relay is running: start one (esdb-relay run, or "
            "check the deployed schedule and the function's logs)"
        )
    if dead_lettered:
        warnings.append(
            f"{dead_lettered:,} event(s) dead-lettered: too big for the target, they are listed "
            f"in the target's {rules.dead_letter_stream(job.job_id)} stream, not copied"
        )
    if state == "idle" and stopped:
        warnings.append(
            "the relay stopped (its `run` ended) and none has run since: new events will not "
            "be copied until one runs"
        )
    elif state == "idle":
        warnings.append(
            f"no relay has run for longer than the schedule allows (the job's schedule_seconds, "
            f"{job.schedule_seconds:g}s, and {SCHEDULE_GRACE_SECONDS:g}s of grace): new events "
            "will not be copied until one runs"
        )
    if not pending.exact:
        warnings.append(
            f"more than {count_limit:,} records (or {LAG_COUNT_BYTES // 2**20} MiB) after the "
            "checkpoint: the events left are estimated from the part counted"
        )
    return warnings
