"""`run_slice`: one invocation's work — the lease, the checkpoint, the slice of the job's mode
(core/engine/slice.py has the exactly-once argument), the slice's record in the history."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from core import rules
from core.checkpoint import Checkpoint, CheckpointStore, Lease, Position, SliceRecord
from core.config import JobConfig
from core.engine.budget import Budget, Request
from core.engine.collector import tune_once as tune_collector
from core.engine.known_streams import KnownStreams
from core.engine.ordered import OrderedSlice
from core.engine.partitioned import PartitionedSlice
from core.engine.plan import Planner, SliceIndex
from core.engine.slice import Slice, SliceResult
from core.engine.writer import WriteContext
from core.errors import ConfigError, LeaseLostError, RelayError
from core.eventstore import EventStore
from core.shard_plans import check_unsharded
from core.shards import Shard


def _no_step(_: str) -> None:
    return None


def run_slice(
    job: JobConfig,
    source: EventStore,
    target: EventStore,
    store: CheckpointStore,
    budget: Budget,
    *,
    owner: str | None = None,
    transform: rules.Transform | None = None,
    start_after: int | None = None,
    stop_at: int | None = None,
    dry_run: bool = False,
    on_step: Callable[[str], None] | None = None,
    known: KnownStreams | None = None,
    shard: Shard | None = None,
) -> SliceResult:
    """One invocation's work (see core/engine/budget.py's `Request` for `start_after`,
    `stop_at` and `dry_run`). `on_step` is called at each step boundary (`Step`): tests use it
    to kill the process at exact points; writer threads call it concurrently. `known` is what
    earlier slices of this process learned about target streams
    (core/engine/known_streams.py): the slice uses it instead of reading those streams, and
    leaves what it learned there.

    `shard`: one shard of a sharded job (core/shards.py): the slice runs under the shard's own
    key (lease, checkpoint, history), reads only the shard's streams, and its checkpoint
    moves past the records of other shards it passed over. Without one, a job split into
    shards is refused (its own record holds the plan, no position)."""
    tune_collector()
    owner = owner or f"relay-{uuid.uuid4().hex[:12]}"
    started_at = datetime.now(UTC)
    started = time.monotonic()
    check_shard(job, store, shard)
    key = shard.key if shard is not None else job.job_id
    result = SliceResult(key, "ok")
    request = Request(start_after, stop_at, dry_run)
    ctx = WriteContext(
        job,
        source,
        target,
        SliceIndex(),
        on_step or _no_step,
        known,
        planner=Planner(job, source, transform),
        ahead=request.is_range,
    )
    # Transient failures are retried with backoff, but never past the slice's deadline.
    source.retry_deadline = target.retry_deadline = budget.deadline
    source.stop = target.stop = budget.stop  # and never once the process is asked to stop
    if dry_run:
        checkpoint = store.load(key) or Checkpoint(job_id=key)
        if shard is None:
            check_unsharded(checkpoint, job.shards)
        if start_after is not None and (
            checkpoint.position is None or start_after > checkpoint.position.commit
        ):
            # A plan of a range goes on after its previous slice's end (Relay.plan).
            checkpoint = checkpoint.model_copy(
                update={"position": Position(commit=start_after, prepare=start_after)}
            )
        _slice(job, shard, ctx, store, None, checkpoint, budget, request, result).run()
        result.seconds = time.monotonic() - started
        return result
    try:
        lease = store.acquire(key, owner, job.lease_ttl_seconds)
    except LeaseLostError as e:
        result.status = "busy"
        result.error = str(e)
        result.lease_holder = e.holder
        result.lease_expires_at = e.expires_at
        result.next_action = "stop"
        return result
    checkpoint = store.load(key) or Checkpoint(job_id=key)
    result.from_position = checkpoint.position.commit if checkpoint.position else None
    try:
        if shard is None:
            check_unsharded(checkpoint, job.shards)  # under the job's lease: its record
        _slice(job, shard, ctx, store, lease, checkpoint, budget, request, result).run()
    except RelayError as e:
        result.status = "failed"
        result.error = str(e)
        result.next_action = "stop"
        raise
    finally:
        result.seconds = time.monotonic() - started
        _record(store, lease, result, started_at)
        store.release(lease)
    return result


def driver(job: JobConfig) -> type[Slice]:
    """The slice of the job's mode."""
    return PartitionedSlice if job.mode == "partitioned" else OrderedSlice


def _slice(job: JobConfig, shard: Shard | None, *args: Any) -> Slice:
    slice_ = driver(job)(*args)
    slice_.stream_regex = shard.regex if shard is not None else None
    return slice_


def check_shard(job: JobConfig, store: CheckpointStore, shard: Shard | None) -> None:
    """Refuse a slice that does not fit the job's plan, stored in the job's own record: a
    job split into shards run as one chain, a job of one chain run as a shard, a shard of
    another split than the stored one."""
    if shard is None:
        if job.shards > 1:
            raise ConfigError(
                f"job {job.job_id!r} has {job.shards} shards: each runs as its own chain",
                hint=f"run one process per shard with --shard 0..{job.shards - 1}",
            )
        return  # and check_unsharded, once its record is loaded
    if shard.job_id != job.job_id:
        raise ConfigError(f"{shard} belongs to job {shard.job_id!r}, not {job.job_id!r}")
    record = store.load(job.job_id)
    plan = record.shards if record is not None else None
    if plan is None:
        raise ConfigError(
            f"job {job.job_id!r} has no shard plan stored: {shard} cannot run",
            hint="run it through esdb-relay run --shard (it fixes the plan first)",
        )
    if job.shards != plan.count or shard.count != plan.count:
        raise ConfigError(
            f"job {job.job_id!r} was split into {plan.count} shards when it started; this "
            f"configuration says shards = {job.shards} ({shard})",
            hint=f"set shards = {plan.count} (a job's shards are fixed for its life), or "
            "start a new job id to copy with another split",
        )
    if shard.regex != plan.regexes[shard.index]:
        raise ConfigError(
            f"{shard} of job {job.job_id!r} reads {shard.regex!r}, but the stored plan says "
            f"{plan.regexes[shard.index]!r}",
            hint="take the shard from the stored plan (Relay.shard_plan())",
        )


def _record(
    store: CheckpointStore, lease: Lease, result: SliceResult, started_at: datetime
) -> None:
    def pos(value: int | None) -> Position | None:
        return Position(commit=value, prepare=value) if value is not None else None

    # History is informational: a failure to record it must not hide the slice's own outcome.
    with contextlib.suppress(RelayError):
        store.record_slice(
            lease,
            SliceRecord(
                job_id=result.job_id,
                started_at=started_at,
                finished_at=datetime.now(UTC),
                owner=lease.owner,
                events_read=result.events_read,
                events_written=result.events_written,
                events_skipped=result.events_skipped,
                events_filtered=result.events_filtered,
                events_dead_lettered=result.events_dead_lettered,
                bytes_written=result.bytes_written,
                from_position=pos(result.from_position),
                to_position=pos(result.position),
                lag_bytes=result.lag_bytes,
                caught_up=result.caught_up,
                error=result.error,
            ),
        )
