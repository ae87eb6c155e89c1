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

A sharded job (its record holds a plan, core/shards.py) is measured as one over its shards'
chains (`measure_sharded`): one read of `$all` after the lowest shard checkpoint, each record
counted for the shard its stream belongs to; caught up only when every shard is. The facts and
models live in core/progress_facts.py.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from core.checkpoint import CheckpointStore, SliceRecord
from core.config import JobConfig
from core.eventstore import EventStore
from core.model import Event
from core.progress_facts import (
    LAG_COUNT_BYTES,
    LAG_COUNT_LIMIT,
    MIN_GAP_SECONDS,
    SCHEDULE_GRACE_SECONDS,
    STALL_AFTER_SLICES,
    ChainFacts,
    LeaseInfo,
    Liveness,
    Pending,
    Progress,
    ShardProgress,
    State,
    allowed_gap,
    chain_state,
    copied,
    copy_rate_of,
    estimate_lag,
    job_warnings,
    live_lease,
    pending_after,
    scan_all,
    slice_seconds,
    slices_of,
    source_write_rate,
)
from core.shards import ShardPlan


def measure(
    job: JobConfig,
    source: EventStore,
    store: CheckpointStore,
    *,
    now: datetime | None = None,
    count_limit: int = LAG_COUNT_LIMIT,
) -> Progress:
    """The job's progress now. `now` is the store's clock (tests move it); RelayError when the
    source or the store cannot be read. A job whose record holds a shard plan is measured as
    one over its shards (`measure_sharded`)."""
    now = now or datetime.now(UTC)
    job_id = job.job_id
    checkpoint = store.load(job_id)
    if checkpoint is not None and checkpoint.shards is not None:
        return measure_sharded(job, checkpoint.shards, source, store, now, count_limit)
    chain = ChainFacts.of(job, store, job_id, now, checkpoint)
    history = chain.history
    head = source.head_position()
    position = chain.position
    lag_bytes = max(0, head - (position or 0))
    pending = pending_after(job, source, position, count_limit)
    lag_events = (
        pending.counted if pending.exact else estimate_lag(pending, position, head, history)
    )
    caught_up = pending.exact and pending.counted == 0
    lag_seconds: float | None = 0.0 if caught_up else None
    if pending.oldest_created is not None:
        lag_seconds = max(0.0, (now - pending.oldest_created).total_seconds())

    liveness = chain.liveness
    running = chain.running
    state = chain_state(chain.started, running, liveness, caught_up)

    copy_rate = copy_rate_of(history)
    write_rate = source_write_rate(source, now)
    net = (copy_rate or 0.0) - (write_rate or 0.0)
    eta = None
    if state == "copying" and lag_events is not None and net > 0:
        eta = lag_events / net
    newest, success, lease = chain.newest, chain.success, chain.lease
    warnings = job_warnings(
        state,
        caught_up,
        copy_rate,
        write_rate,
        liveness,
        pending,
        job,
        count_limit,
        chain.total("events_dead_lettered"),
        chain.stopped_at is not None,
    )
    if job.shards > 1:
        warnings.insert(
            0,
            f"this job is split into {job.shards} shards when its first shard starts; no shard "
            "has started yet (the job's record holds no shard plan), so it is measured as one",
        )
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
        allowed_gap_seconds=chain.gap,
        relay_stopped_at=chain.stopped_at,
        lease=LeaseInfo(owner=lease.owner, expires_at=lease.expires_at) if lease else None,
        **_slice_facts(newest, success, liveness, now),
        events_read=chain.total("events_read"),
        events_written=chain.total("events_written"),
        events_skipped=chain.total("events_skipped"),
        events_filtered=chain.total("events_filtered"),
        dead_lettered=chain.total("events_dead_lettered"),
        warnings=warnings,
    )


def _slice_facts(
    newest: SliceRecord | None, success: SliceRecord | None, liveness: Liveness, now: datetime
) -> dict[str, Any]:
    """What the newest slice, the newest successful one and the run of failures say."""
    return {
        "last_slice_at": newest.finished_at if newest else None,
        "last_success_at": success.finished_at if success else None,
        "last_success_age_seconds": (now - success.finished_at).total_seconds()
        if success
        else None,
        "last_slice_seconds": slice_seconds(newest) if newest else None,
        "consecutive_failures": liveness.failing_slices,
        "stalled": liveness.stalled,
        "last_error": liveness.last_error,
    }


def measure_sharded(
    job: JobConfig,
    plan: ShardPlan,
    source: EventStore,
    store: CheckpointStore,
    now: datetime,
    count_limit: int = LAG_COUNT_LIMIT,
) -> Progress:
    """A sharded job's progress as one, with each shard's. The lag is one read of `$all` after
    the lowest shard checkpoint (the same caps as a job's), each record counted for the shard
    whose regex passes its stream, when it lies after that shard's checkpoint and the job
    copies it. The job is caught up only when every shard is; its copy rate is the sum of the
    shards'; its ETA the longest of theirs, only while every shard behind runs and gains."""
    chains = [ChainFacts.read(job, store, s.key, now) for s in plan.shards(job.job_id)]
    positions = [c.position for c in chains]
    lowest = None if None in positions else min(p for p in positions if p is not None)
    head = source.head_position()
    counted = [0] * plan.count
    oldest: list[datetime | None] = [None] * plan.count

    shard_of: dict[str, int] = {}  # a stream's shard, by the stored regexes, once a stream

    def visit(event: Event) -> None:
        i = shard_of.get(event.stream)
        if i is None:
            i = shard_of[event.stream] = _shard_index(plan, event.stream)
        after = positions[i] is None or event.commit_position > (positions[i] or 0)
        if after and copied(job, event):
            counted[i] += 1
            if oldest[i] is None:
                oldest[i] = event.created

    exact, scanned_to = scan_all(source, lowest, count_limit, LAG_COUNT_BYTES, visit)
    write_rate = source_write_rate(source, now)
    planned = sum(plan.expected_events)
    shards = []
    for i, chain in enumerate(chains):
        pending = Pending(
            counted=counted[i], exact=exact, oldest_created=oldest[i], scanned_to=scanned_to
        )
        share = plan.expected_events[i] / planned if planned else 1 / plan.count
        shards.append(_shard(i, plan, job, chain, pending, head, now, write_rate, share))

    caught_up = all(s.caught_up for s in shards)
    lag_events = (
        None
        if any(s.lag_events is None for s in shards)
        else sum(s.lag_events or 0 for s in shards)
    )
    waiting = [o for o in oldest if o is not None]
    lag_seconds: float | None = 0.0 if caught_up else None
    if waiting:
        lag_seconds = max(0.0, (now - min(waiting)).total_seconds())
    state = _job_state(shards)
    rates = [s.copy_rate for s in shards if s.copy_rate]
    copy_rate = sum(rates) if rates else None
    behind = [s for s in shards if not s.caught_up]
    eta = None
    if state == "copying" and all(s.eta_seconds is not None for s in behind):
        eta = max((s.eta_seconds or 0.0 for s in behind), default=0.0)
    failing = max(chains, key=lambda c: c.liveness.failing_slices)
    stalled = [s for s, c in zip(shards, chains, strict=True) if c.liveness.stalled]
    liveness = Liveness(
        stalled=bool(stalled),
        failing_slices=failing.liveness.failing_slices,
        last_error=_shard_error(shards),
    )
    newest = max((c.newest for c in chains if c.newest), key=_finished, default=None)
    successes = [c.success for c in chains if c.success]
    success = max(successes, key=_finished, default=None)
    stops = [c.stopped_at for c in chains]
    stopped_at = None if None in stops else max(t for t in stops if t is not None)
    job_lease = live_lease(store, job.job_id, now)  # held while planning
    dead = sum(c.total("events_dead_lettered") for c in chains)
    warnings = job_warnings(
        state,
        caught_up,
        copy_rate,
        write_rate,
        liveness,
        Pending(counted=sum(counted), exact=exact, oldest_created=None, scanned_to=scanned_to),
        job,
        count_limit,
        dead,
        stopped_at is not None,
    )
    warnings += _shard_warnings(shards, state)
    return Progress(
        job_id=job.job_id,
        state=state,
        caught_up=caught_up,
        checked_at=now,
        head_position=head,
        position=lowest,
        lag_bytes=max(0, head - (lowest or 0)),
        lag_events=lag_events,
        lag_events_exact=exact,
        lag_events_counted=sum(counted),
        lag_seconds=lag_seconds,
        copy_rate=copy_rate,
        source_write_rate=write_rate,
        eta_seconds=eta,
        relay_running=all(c.running for c in chains),
        allowed_gap_seconds=max(c.gap for c in chains),
        relay_stopped_at=stopped_at,
        lease=LeaseInfo(owner=job_lease.owner, expires_at=job_lease.expires_at)
        if job_lease
        else None,
        **_slice_facts(newest, success, liveness, now),
        events_read=sum(c.total("events_read") for c in chains),
        events_written=sum(c.total("events_written") for c in chains),
        events_skipped=sum(c.total("events_skipped") for c in chains),
        events_filtered=sum(c.total("events_filtered") for c in chains),
        dead_lettered=dead,
        warnings=warnings,
        shards=shards,
    )


def _shard(
    index: int,
    plan: ShardPlan,
    job: JobConfig,
    chain: ChainFacts,
    pending: Pending,
    head: int,
    now: datetime,
    write_rate: float | None,
    share: float,
) -> ShardProgress:
    position = chain.position
    caught_up = pending.exact and pending.counted == 0
    lag_events = (
        pending.counted if pending.exact else estimate_lag(pending, position, head, chain.history)
    )
    lag_seconds: float | None = 0.0 if caught_up else None
    if pending.oldest_created is not None:
        lag_seconds = max(0.0, (now - pending.oldest_created).total_seconds())
    state = chain_state(chain.started, chain.running, chain.liveness, caught_up)
    rate = copy_rate_of(chain.history)
    net = (rate or 0.0) - (write_rate or 0.0) * share  # its streams' part of the source's writes
    eta = None
    if caught_up:
        eta = 0.0
    elif state == "copying" and lag_events is not None and net > 0:
        eta = lag_events / net
    newest, lease = chain.newest, chain.lease
    return ShardProgress(
        index=index,
        key=plan.shard(job.job_id, index).key,
        state=state,
        caught_up=caught_up,
        position=position,
        lag_bytes=max(0, head - (position or 0)),
        lag_events=lag_events,
        lag_seconds=lag_seconds,
        copy_rate=rate,
        eta_seconds=eta,
        relay_running=chain.running,
        lease=LeaseInfo(owner=lease.owner, expires_at=lease.expires_at) if lease else None,
        last_slice_at=newest.finished_at if newest else None,
        last_slice_seconds=slice_seconds(newest) if newest else None,
        consecutive_failures=chain.liveness.failing_slices,
        last_error=chain.liveness.last_error,
        events_read=chain.total("events_read"),
        events_written=chain.total("events_written"),
        expected_share=share,
    )


_STATE_ORDER: tuple[State, ...] = (
    "stalled",
    "behind-and-not-running",
    "copying",
    "idle",
    "following",
)


def _job_state(shards: list[ShardProgress]) -> State:
    """The job's state from its shards': not started while none has; else the worst shard's,
    a shard that never started counting as one no relay runs (behind, or idle)."""
    if all(s.state == "not-started" for s in shards):
        return "not-started"
    states = {_as_started(s) for s in shards}
    return next(s for s in _STATE_ORDER if s in states)


def _as_started(shard: ShardProgress) -> State:
    if shard.state != "not-started":
        return shard.state
    return "idle" if shard.caught_up else "behind-and-not-running"


def _shard_error(shards: list[ShardProgress]) -> str | None:
    failing = max(shards, key=lambda s: s.consecutive_failures)
    if not failing.last_error:
        return None
    return f"shard {failing.index}: {failing.last_error}"


def _shard_warnings(shards: list[ShardProgress], state: State) -> list[str]:
    warnings = []
    waiting = [s.index for s in shards if s.state in ("not-started", "behind-and-not-running")]
    if waiting and state != "not-started":
        warnings.append(
            f"shard(s) {', '.join(map(str, waiting))} have events to copy and no relay running "
            "them: start them (esdb-relay run --shard I, or check the deployed chains)"
        )
    return warnings


def _shard_index(plan: ShardPlan, stream: str) -> int:
    """The shard of `stream` by the stored regexes: the first of shards 0..K-2 whose regex
    passes it, else the last (whose regex passes exactly the names the others do not: its
    negative lookahead over every listed suffix is the costly one to run)."""
    compiled = plan.compiled
    return next((i for i in range(plan.count - 1) if compiled[i].search(stream)), plan.count - 1)


def _finished(record: SliceRecord) -> datetime:
    return record.finished_at


def history_of(store: CheckpointStore, job_id: str, limit: int = 20) -> list[SliceRecord]:
    """The job's slice records, newest first: a sharded job's are its shards' (each record's
    `job_id` names its shard's key), merged by when they ended."""
    checkpoint = store.load(job_id)
    if checkpoint is None or checkpoint.shards is None:
        return store.history(job_id, limit=limit)
    records = [
        r for shard in checkpoint.shards.shards(job_id) for r in store.history(shard.key, limit)
    ]
    return sorted(records, key=_finished, reverse=True)[:limit]


__all__ = [
    "LAG_COUNT_LIMIT",
    "MIN_GAP_SECONDS",
    "SCHEDULE_GRACE_SECONDS",
    "STALL_AFTER_SLICES",
    "LeaseInfo",
    "Liveness",
    "Pending",
    "Progress",
    "ShardProgress",
    "State",
    "allowed_gap",
    "copied",
    "history_of",
    "measure",
    "measure_sharded",
    "pending_after",
    "slices_of",
    "source_write_rate",
]
