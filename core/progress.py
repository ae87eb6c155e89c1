"""One truth for a job's progress, computed from live facts when asked.

`status`, the handlers' status action, `cutover`, the metrics and the dashboard all read a
`Progress` from `measure()`; none of them derives its own. Every figure states what is true
now, or is None when the tool cannot know it (a store without history, a source whose created
times are missing).

The facts: the source's head and the records of `$all` after the committed checkpoint (read,
up to `LAG_COUNT_LIMIT` of them, and judged by the job's own rules), the job's stored lease and
its slice history. The rules:

- `caught_up` only when no record the job copies lies after the checkpoint now;
- a relay *runs* while it holds the lease, or while its last slice ended no longer ago than
  the relay's own pace allows (`allowed_gap`); the state follows from that and the lag;
- an ETA only while a relay runs and gains on the source.
"""

from __future__ import annotations

import itertools
import statistics
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel

from core import rules
from core.checkpoint import CheckpointStore, SliceRecord
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
) -> Pending:
    """Read `$all` after `position` (None: from the start), at most `limit` records and about
    `max_bytes` of them, and count those the job copies (by its filters and kinds of record,
    as the engine plans)."""
    counted = 0
    oldest: datetime | None = None
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
            if copied(job, event):
                counted += 1
                if oldest is None:
                    oldest = event.created
            if size >= max_bytes:
                close = getattr(events, "close", None)
                if close is not None:
                    close()  # the rest of the page is not needed
                break
        read += n
        if n < want and size < max_bytes:
            return Pending(counted=counted, exact=True, oldest_created=oldest, scanned_to=last)
    return Pending(counted=counted, exact=False, oldest_created=oldest, scanned_to=last)


def copied(job: JobConfig, event: Event) -> bool:
    """Whether the job copies this `$all` record (its kind and filters; not the transform,
    which runs only when the record is copied)."""
    return rules.copied_kind(job.filters, event) is not rules.Kind.SKIP


def measure(
    job: JobConfig,
    source: EventStore,
    store: CheckpointStore,
    *,
    now: datetime | None = None,
    count_limit: int = LAG_COUNT_LIMIT,
) -> Progress:
    """The job's progress now. `now` is the store's clock (tests move it); RelayError when the
    source or the store cannot be read."""
    now = now or datetime.now(UTC)
    job_id = job.job_id
    checkpoint = store.load(job_id)
    records = store.history(job_id, limit=HISTORY_READ)
    stopped_at = records[0].finished_at if records and records[0].stopped else None
    stopped = stopped_at is not None  # the relay said it stopped, and none ran since
    history = slices_of(records)
    stored_lease = store.lease_info(job_id)
    lease = stored_lease if stored_lease is not None and not stored_lease.expired(now) else None
    head = source.head_position()
    position = checkpoint.position.commit if checkpoint and checkpoint.position else None
    lag_bytes = max(0, head - (position or 0))
    pending = pending_after(job, source, position, count_limit)
    lag_events = pending.counted if pending.exact else _estimate(pending, position, head, history)
    caught_up = pending.exact and pending.counted == 0
    lag_seconds: float | None = 0.0 if caught_up else None
    if pending.oldest_created is not None:
        lag_seconds = max(0.0, (now - pending.oldest_created).total_seconds())

    liveness = Liveness.from_history(history)
    gap = allowed_gap(job, history)
    newest = history[0] if history else None
    recent = (
        not stopped and newest is not None and (now - newest.finished_at).total_seconds() <= gap
    )
    running = lease is not None or recent
    state = _state(checkpoint is not None or bool(history), running, liveness, caught_up)

    copy_rate = _copy_rate(history)
    write_rate = source_write_rate(source, now)
    net = (copy_rate or 0.0) - (write_rate or 0.0)
    eta = None
    if state == "copying" and lag_events is not None and net > 0:
        eta = lag_events / net
    success = next((h for h in history if not h.error), None)
    return Progress(
        job_id=job_id,
        state=state,
        caught_up=caught_up,
        checked_at=now,
        head_position=head,
        position=position,
        lag_bytes=lag_bytes,
        lag_events=lag_events,
        lag_events_exact=pending.exact,
        lag_events_counted=pending.counted,
        lag_seconds=lag_seconds,
        copy_rate=copy_rate,
        source_write_rate=write_rate,
        eta_seconds=eta,
        relay_running=running,
        allowed_gap_seconds=gap,
        relay_stopped_at=stopped_at,
        lease=LeaseInfo(owner=lease.owner, expires_at=lease.expires_at) if lease else None,
        last_slice_at=newest.finished_at if newest else None,
        last_success_at=success.finished_at if success else None,
        last_success_age_seconds=(now - success.finished_at).total_seconds() if success else None,
        last_slice_seconds=_seconds(newest) if newest else None,
        consecutive_failures=liveness.failing_slices,
        stalled=liveness.stalled,
        last_error=liveness.last_error,
        events_read=checkpoint.events_read if checkpoint else 0,
        events_written=checkpoint.events_written if checkpoint else 0,
        events_skipped=checkpoint.events_skipped if checkpoint else 0,
        events_filtered=checkpoint.events_filtered if checkpoint else 0,
        dead_lettered=checkpoint.events_dead_lettered if checkpoint else 0,
        warnings=_warnings(
            state,
            caught_up,
            copy_rate,
            write_rate,
            liveness,
            pending,
            job,
            count_limit,
            checkpoint.events_dead_lettered if checkpoint else 0,
            stopped,
        ),
    )


def slices_of(history: list[SliceRecord]) -> list[SliceRecord]:
    """The slice records of a history, without the records of relays that stopped."""
    return [h for h in history if not h.stopped]


def allowed_gap(job: JobConfig, history: list[SliceRecord]) -> float:
    """The longest pause after its newest slice for which a relay still counts as running.

    A relay that was behind starts its next slice at once (CHAIN_GAP_SECONDS at most); a
    caught-up one waits for its schedule (`job.schedule_seconds`). Where the history shows a
    faster pace of that kind (`esdb-relay run` follows every second), PACE_FACTOR missed
    pauses of that pace (MIN_GAP_SECONDS at least) are allowed instead.
    """
    if not history:
        return job.schedule_seconds
    caught_up = history[0].caught_up
    cap = job.schedule_seconds if caught_up else min(job.schedule_seconds, CHAIN_GAP_SECONDS)
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


def _state(started: bool, running: bool, liveness: Liveness, caught_up: bool) -> State:
    if not started and not running:
        return "not-started"
    if liveness.stalled:
        return "stalled"
    if caught_up:
        return "following" if running else "idle"
    return "copying" if running else "behind-and-not-running"


def _seconds(record: SliceRecord) -> float:
    return (record.finished_at - record.started_at).total_seconds()


def _copy_rate(history: list[SliceRecord]) -> float | None:
    """Records/s dealt with by the recent slices that had work (while they ran)."""
    busy = [h for h in history if h.events_read and not h.error][:20]
    seconds = sum(_seconds(h) for h in busy)
    events = sum(h.events_read for h in busy)
    return events / seconds if seconds > 0 and events else None


def _estimate(
    pending: Pending, position: int | None, head: int, history: list[SliceRecord]
) -> int | None:
    """Records left when too many to count: those counted, plus the rest of the log at the
    density the count found (or, when it found none, the density of recent slices)."""
    start = position or 0
    scanned = (pending.scanned_to or start) - start
    rest = max(0, head - (pending.scanned_to or start))
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


def _warnings(
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
            f"no relay has run for longer than the schedule allows ({job.schedule_seconds:g}s, "
            "the job's schedule_seconds): new events will not be copied until one runs"
        )
    if not pending.exact:
        warnings.append(
            f"more than {count_limit:,} records (or {LAG_COUNT_BYTES // 2**20} MiB) after the "
            "checkpoint: the events left are estimated from the part counted"
        )
    return warnings


__all__ = [
    "LAG_COUNT_LIMIT",
    "STALL_AFTER_SLICES",
    "LeaseInfo",
    "Liveness",
    "Pending",
    "Progress",
    "State",
    "allowed_gap",
    "measure",
    "pending_after",
    "slices_of",
    "source_write_rate",
]
