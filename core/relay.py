"""A job's connections and its slice loop, shared by the CLI and the cloud handlers.

with Relay(job) as relay:
    result = relay.run_once(remaining_seconds=context.get_remaining_time_in_millis() / 1000)
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from pydantic import BaseModel

from core import rules
from core.checkpoint import CheckpointStore, SliceRecord, open_store
from core.config import JobConfig
from core.engine import Budget, SliceResult, known_streams, run_slice
from core.errors import RelayError, TransientError
from core.eventstore import EventStore
from core.logs import SliceLog, logger
from core.progress import STALL_AFTER_SLICES, Liveness, Progress, measure
from core.shard_plans import fix_plan
from core.shards import Shard, ShardPlan

SliceCallback = Callable[[SliceResult], None]
__all__ = ["STALL_AFTER_SLICES", "Liveness", "Relay", "RunOutcome", "RunTotals", "busy_message"]


class RunTotals(BaseModel):
    """A whole `run` or `backfill`: every slice's figures summed. Of the records read,
    read = copied + skipped (already on the target) + filtered (not copied by the job's
    rules) + dead-lettered; `written` counts the events appended (`copied` when every
    record is one event)."""

    slices: int = 0
    read: int = 0
    copied: int = 0
    written: int = 0
    skipped: int = 0
    filtered: int = 0
    dead_lettered: int = 0
    bytes_written: int = 0
    seconds: float = 0.0
    dry_run: bool = False

    def add(self, result: SliceResult) -> None:
        if result.status == "busy":
            return
        self.slices += 1
        self.read += result.events_read
        self.copied += result.records_copied
        self.written += result.events_written
        self.skipped += result.events_skipped
        self.filtered += result.events_filtered
        self.dead_lettered += result.events_dead_lettered
        self.bytes_written += result.bytes_written
        self.seconds += result.seconds

    @classmethod
    def of(cls, *results: SliceResult, dry_run: bool = False) -> RunTotals:
        totals = cls(dry_run=dry_run)
        for result in results:
            totals.add(result)
        return totals


@dataclass
class RunOutcome:
    """What `Relay.run` and `Relay.plan` end with: the last slice and the totals of all."""

    last: SliceResult | None
    totals: RunTotals = field(default_factory=RunTotals)


class Relay:
    def __init__(
        self,
        job: JobConfig,
        *,
        store: CheckpointStore | None = None,
        owner: str | None = None,
        timeout: float = 30.0,
        connect_timeout: float = 10.0,
        on_step: Callable[[str], None] | None = None,
    ) -> None:
        self.job = job
        # One owner name per process, so the history shows which invocation did what.
        self.owner = owner or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.on_step = on_step
        self._transform: rules.Transform | None = None
        self._transform_loaded = False
        # Every slice logged; `esdb-relay run` makes it quiet while following the tail.
        self.slice_log = SliceLog(heartbeat_seconds=None)
        self.store = store or open_store(job.checkpoint_store)
        # The process-wide cache of target stream states is per job and target (by digest).
        self._target_key = hashlib.sha256(job.target.get_secret_value().encode()).hexdigest()
        self.source = EventStore(job.source.get_secret_value(), side="source", timeout=timeout)
        try:
            self.target = EventStore(job.target.get_secret_value(), side="target", timeout=timeout)
        except Exception:
            self.source.close()
            raise
        try:
            self.check_connections(connect_timeout)
        except Exception:
            self.close()
            raise

    @property
    def transform(self) -> rules.Transform | None:
        """The job's transform, imported when a slice first needs it: `status` and the other
        read-only uses work when the module cannot be imported here."""
        if not self._transform_loaded:
            self._transform = rules.load_transform(self.job.transform)
            self._transform_loaded = True
        return self._transform

    def check_connections(self, timeout: float) -> None:
        """Fail fast, with the side named, when an endpoint cannot be reached or refuses us."""
        for side in (self.source, self.target):
            side.retry_deadline = time.monotonic() + timeout
            side.head_position()

    def close(self) -> None:
        self.source.close()
        self.target.close()

    def __enter__(self) -> Relay:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -------------------------------------------------------------------- shards
    def shard_plan(self, job: JobConfig | None = None) -> ShardPlan | None:
        """The job's shard plan: None for a job of one chain (`shards = 1`); else the one
        stored in the job's own record, or one made now from a sample of the source and
        stored (core/shard_plans.py). Global order is not kept across shards: each keeps
        the order of its own streams only."""
        job = job or self.job
        if job.shards == 1:
            return None
        return fix_plan(self.store, job.job_id, job.shards, self.source, self.owner)

    # -------------------------------------------------------------------- slices
    def run_once(
        self,
        remaining_seconds: float | None = None,
        *,
        start_after: int | None = None,
        stop_at: int | None = None,
        dry_run: bool = False,
        job: JobConfig | None = None,
        log: bool = True,
        stop: threading.Event | None = None,
        shard: Shard | None = None,
    ) -> SliceResult:
        """One slice (of `shard`'s streams, under its key, for a sharded job: take it from
        `shard_plan()`). `log` False leaves a busy slice unlogged (`run` says it once);
        `stop`, when set, ends it after the append in flight (committed)."""
        job = job or self.job
        key = shard.key if shard is not None else job.job_id
        try:
            result = run_slice(
                job,
                self.source,
                self.target,
                self.store,
                Budget.from_job(job, remaining_seconds, stop),
                owner=self.owner,
                transform=self.transform,
                start_after=start_after,
                stop_at=stop_at,
                dry_run=dry_run,
                on_step=self.on_step,
                known=known_streams.for_job(key, self._target_key, job.budget.max_events),
                shard=shard,
            )
        except RelayError as e:
            # Every failed slice leaves an ERROR line, with how long the job has been failing.
            liveness = self.liveness(key)
            e.details = liveness.model_dump() if liveness else {}
            logger.error(
                "slice failed: %s",
                e,
                extra={"job_id": key, "liveness": liveness and liveness.model_dump()},
            )
            raise
        # A dry run's slices write nothing: `plan` prints what they would write, in its totals.
        if not dry_run and (log or result.status != "busy"):
            self.slice_log.log(result)
        return result

    def liveness(self, job_id: str | None = None) -> Liveness | None:
        """From the store's slice history; None when the store cannot be read."""
        try:
            history = self.store.history(job_id or self.job.job_id, limit=50)
        except RelayError:
            return None
        return Liveness.from_history(history)

    def run(
        self,
        *,
        until_caught_up: bool = True,
        stop: threading.Event | None = None,
        on_slice: SliceCallback | None = None,
        idle_seconds: float = 1.0,
        max_consecutive_failures: int = 5,
        start_after: int | None = None,
        stop_at: int | None = None,
        job: JobConfig | None = None,
        on_failure: Callable[[RelayError], None] | None = None,
        shard: Shard | None = None,
    ) -> RunOutcome:
        """Run slices back to back. Stops when caught up (or follows the tail for ever when
        `until_caught_up` is false) or when `stop` is set. Transient failures are retried
        with backoff (each told to `on_failure` first); after `max_consecutive_failures` in a
        row the last one is raised. While another relay holds the job's lease this one says so
        once (who, until when) and waits quietly. The outcome has the last slice and the totals
        of them all. `shard`: run that shard's chain of a sharded job (`shard_plan()`)."""
        stop = stop or threading.Event()
        outcome = RunOutcome(None)
        try:
            return self._run(
                outcome,
                until_caught_up,
                stop,
                on_slice,
                idle_seconds,
                max_consecutive_failures,
                start_after,
                stop_at,
                job,
                on_failure,
                shard,
            )
        finally:
            if outcome.totals.slices:
                job = job or self.job
                self._record_stop(shard.key if shard else job.job_id, outcome.last)

    def _record_stop(self, key: str, last: SliceResult | None) -> None:
        """Tell `status` this relay stopped (a stop record in the history), so that a job
        (or a shard: `key`) left behind is not shown as copying until its schedule's time
        has passed."""
        now = datetime.now(UTC)
        record = SliceRecord(
            job_id=key,
            started_at=now,
            finished_at=now,
            owner=self.owner,
            caught_up=bool(last and last.caught_up),
            stopped=True,
        )
        with contextlib.suppress(RelayError):
            self.store.record_slice(key, record)

    def _run(
        self,
        outcome: RunOutcome,
        until_caught_up: bool,
        stop: threading.Event,
        on_slice: SliceCallback | None,
        idle_seconds: float,
        max_consecutive_failures: int,
        start_after: int | None,
        stop_at: int | None,
        job: JobConfig | None,
        on_failure: Callable[[RelayError], None] | None,
        shard: Shard | None,
    ) -> RunOutcome:
        failures = 0
        busy = False
        while not stop.is_set():
            try:
                last = self.run_once(
                    start_after=start_after,
                    stop_at=stop_at,
                    job=job,
                    log=False,
                    stop=stop,
                    shard=shard,
                )
            except TransientError as e:
                if on_failure:
                    on_failure(e)
                failures += 1
                if failures >= max_consecutive_failures:
                    raise
                stop.wait(min(30.0, 0.5 * 2**failures))
                continue
            failures = 0
            outcome.last = last
            outcome.totals.add(last)
            if on_slice:
                on_slice(last)
            if last.status == "busy":
                if not busy:
                    logger.info(busy_message(last), extra={"job_id": last.job_id})
                busy = True
                stop.wait(idle_seconds)
                continue
            if busy:
                logger.info("the lease is free again: copying", extra={"job_id": last.job_id})
                busy = False
            if last.caught_up:
                if until_caught_up:
                    return outcome
                stop.wait(idle_seconds)
        return outcome

    def plan(
        self,
        *,
        start_after: int | None = None,
        stop_at: int | None = None,
        job: JobConfig | None = None,
        max_slices: int = 100_000,
    ) -> RunOutcome:
        """A dry run of the whole range: slice after slice, each planned after the last one's
        end, nothing written or committed. The totals say what a real run would write."""
        outcome = RunOutcome(None, RunTotals(dry_run=True))
        after = start_after
        for _ in range(max_slices):
            last = self.run_once(start_after=after, stop_at=stop_at, dry_run=True, job=job)
            outcome.last = last
            outcome.totals.add(last)
            if last.caught_up or last.position is None or last.position == after:
                break
            after = last.position
        return outcome

    def progress(self, job_id: str | None = None, *, now: datetime | None = None) -> Progress:
        """The job's progress now (core/progress.py's `measure`)."""
        job = self.job if job_id is None else self.job.model_copy(update={"job_id": job_id})
        return measure(job, self.source, self.store, now=now)


def busy_message(result: SliceResult) -> str:
    """Who holds the job's lease until when, and what this relay does meanwhile."""
    if result.lease_holder is None or result.lease_expires_at is None:
        return f"job {result.job_id!r} is busy ({result.error}); waiting for its lease"
    left = (result.lease_expires_at - datetime.now(UTC)).total_seconds()
    return (
        f"job {result.job_id!r} is busy: its lease is held by {result.lease_holder!r} until "
        f"{result.lease_expires_at.isoformat(timespec='seconds')} ({max(0.0, left):,.0f}s "
        "from now); waiting quietly until it is released or expires (stop the other relay to "
        "take over at once)"
    )
