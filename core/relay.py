"""A job's connections and its slice loop, shared by the CLI and the cloud handlers.

with Relay(job) as relay:
    result = relay.run_once(remaining_seconds=context.get_remaining_time_in_millis() / 1000)
"""

from __future__ import annotations

import hashlib
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

from pydantic import BaseModel

from core import rules
from core.checkpoint import CheckpointStore, SliceRecord, open_store
from core.config import JobConfig
from core.engine import Budget, SliceResult, known_streams, run_slice
from core.errors import RelayError, TransientError
from core.eventstore import EventStore
from core.logs import SliceLog, logger

SliceCallback = Callable[[SliceResult], None]

STALL_AFTER_SLICES = 3
"""Failed slices in a row after which `status` and the handlers' results call the job stalled."""


class Liveness(BaseModel):
    """Whether the job still makes progress, from its slice history (newest first)."""

    stalled: bool
    failing_slices: int  # failed slices in a row, up to the newest
    last_error: str | None  # the newest slice's error when it failed

    @classmethod
    def from_history(cls, history: list[SliceRecord]) -> Liveness:
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


class Status(BaseModel):
    job_id: str
    position: int | None
    head_position: int
    lag_bytes: int
    lag_events_estimate: int | None
    events_written: int
    events_read: int
    relay_rate: float | None  # events/s read by recent slices that had work
    source_write_rate: float | None  # events/s appended to the source recently
    eta_seconds: float | None
    caught_up: bool
    last_slice_at: datetime | None
    last_error: str | None
    consecutive_failures: int
    stalled: bool  # the last STALL_AFTER_SLICES slices or more all failed
    warnings: list[str]


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
        # Every slice logged; `esdb-relay run` makes it quiet while following the tail.
        self.slice_log = SliceLog(heartbeat_seconds=None)
        self.transform = rules.load_transform(job.transform)
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

    # -------------------------------------------------------------------- slices
    def run_once(
        self,
        remaining_seconds: float | None = None,
        *,
        start_after: int | None = None,
        stop_at: int | None = None,
        dry_run: bool = False,
        job: JobConfig | None = None,
        stop: threading.Event | None = None,
    ) -> SliceResult:
        """One slice; `stop`, when set, ends it after the append in flight (committed)."""
        job = job or self.job
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
                known=known_streams.for_job(job.job_id, self._target_key, job.budget.max_events),
            )
        except RelayError as e:
            # Every failed slice leaves an ERROR line, with how long the job has been failing.
            liveness = self.liveness(job.job_id)
            e.details = liveness.model_dump() if liveness else {}
            logger.error(
                "slice failed: %s",
                e,
                extra={"job_id": job.job_id, "liveness": liveness and liveness.model_dump()},
            )
            raise
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
    ) -> SliceResult | None:
        """Run slices back to back. Stops when caught up (or follows the tail for ever when
        `until_caught_up` is false) or when `stop` is set. Transient failures are retried
        with backoff; after `max_consecutive_failures` in a row the last one is raised."""
        stop = stop or threading.Event()
        failures = 0
        last: SliceResult | None = None
        while not stop.is_set():
            try:
                last = self.run_once(start_after=start_after, stop_at=stop_at, job=job, stop=stop)
            except TransientError:
                failures += 1
                if failures >= max_consecutive_failures:
                    raise
                stop.wait(min(30.0, 0.5 * 2**failures))
                continue
            failures = 0
            if on_slice:
                on_slice(last)
            if last.status == "busy":
                stop.wait(idle_seconds)
            elif last.caught_up:
                if until_caught_up:
                    return last
                stop.wait(idle_seconds)
        return last

    # -------------------------------------------------------------------- status
    def status(self, job_id: str | None = None) -> Status:
        job_id = job_id or self.job.job_id
        checkpoint = self.store.load(job_id)
        history = self.store.history(job_id, limit=50)
        head = self.source.head_position()
        position = checkpoint.position.commit if checkpoint and checkpoint.position else None
        lag_bytes = max(0, head - (position or 0))
        busy = [h for h in history if h.events_read and not h.error]
        relay_rate = _rate(
            sum(h.events_read for h in busy),
            sum((h.finished_at - h.started_at).total_seconds() for h in busy),
        )
        spans = [
            (
                h.to_position.commit - (h.from_position.commit if h.from_position else 0),
                h.events_read,
            )
            for h in busy
            if h.to_position
        ]
        bytes_seen = sum(b for b, _ in spans)
        lag_events = (
            round(lag_bytes * sum(n for _, n in spans) / bytes_seen) if bytes_seen else None
        )
        if lag_bytes == 0:
            lag_events = 0
        write_rate = self._source_write_rate()
        liveness = Liveness.from_history(history)
        failures = liveness.failing_slices
        warnings = []
        if lag_bytes and relay_rate and write_rate is not None and write_rate > 0.5 * relay_rate:
            warnings.append(
                f"the source takes {write_rate:,.0f} events/s, not well below the relay's "
                f"{relay_rate:,.0f} events/s: the copy may never catch up. Raise the relay's "
                "rate (partitioned mode, bigger slices) or lower the source's write load"
            )
        if liveness.stalled:
            warnings.append(
                f"stalled: the last {failures} slices failed, the job makes no progress: "
                f"{liveness.last_error}"
            )
        net = (relay_rate or 0) - (write_rate or 0)
        eta = lag_events / net if lag_events is not None and net > 0 else None
        return Status(
            job_id=job_id,
            position=position,
            head_position=head,
            lag_bytes=lag_bytes,
            lag_events_estimate=lag_events,
            events_written=checkpoint.events_written if checkpoint else 0,
            events_read=checkpoint.events_read if checkpoint else 0,
            relay_rate=relay_rate,
            source_write_rate=write_rate,
            eta_seconds=eta,
            caught_up=lag_bytes == 0 or bool(history and history[0].caught_up),
            last_slice_at=history[0].finished_at if history else None,
            last_error=next((h.error for h in history if h.error), None),
            consecutive_failures=failures,
            stalled=liveness.stalled,
            warnings=warnings,
        )

    def _source_write_rate(self, sample: int = 1000, window_seconds: float = 300.0) -> float | None:
        """Events/s appended to the source over the last few minutes (from created times)."""
        try:
            events = self.source.last_events(sample)
        except RelayError:
            return None
        now = datetime.now(UTC)
        times = [e.created for e in events if e.created]
        if not times:
            return 0.0
        recent = [t for t in times if (now - t).total_seconds() <= window_seconds]
        if len(recent) < len(times):
            return len(recent) / window_seconds
        span = (now - min(times)).total_seconds()
        return len(times) / span if span > 0 else None


def _rate(events: int, seconds: float) -> float | None:
    return events / seconds if seconds > 0 and events else None
