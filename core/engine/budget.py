"""What one slice is asked to do: its budget, the part of `$all` it covers, and the step
boundaries it reports (tests kill the process at them)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from enum import StrEnum

from core.config import JobConfig


@dataclass(frozen=True)
class Budget:
    """How much one slice may read: events, bytes, and until when (a `time.monotonic()`
    value after which no new batch starts). From the job's BudgetConfig and the time the
    platform leaves the invocation. `stop`, when set (SIGTERM, Ctrl-C), ends the slice as
    the deadline does: after the append in flight, with what is written committed."""

    max_events: int
    max_bytes: int
    deadline: float
    stop: threading.Event | None = None

    @classmethod
    def from_job(
        cls,
        job: JobConfig,
        remaining_seconds: float | None = None,
        stop: threading.Event | None = None,
    ) -> Budget:
        seconds = job.budget.effective_deadline(remaining_seconds)
        return cls(job.budget.max_events, job.budget.max_bytes, time.monotonic() + seconds, stop)

    def expired(self) -> bool:
        """No new batch may start: the deadline has passed or the process is asked to stop."""
        return time.monotonic() > self.deadline or (self.stop is not None and self.stop.is_set())


@dataclass(frozen=True)
class Request:
    """Where a job with no checkpoint yet begins (`start_after`, exclusive; None = the start
    of `$all`), the last position a backfill copies (`stop_at`, inclusive), and whether the
    slice only plans (`dry_run`: it neither writes nor commits)."""

    start_after: int | None = None
    stop_at: int | None = None
    dry_run: bool = False

    @property
    def is_range(self) -> bool:
        """A backfill of a range: the main job may have copied past it."""
        return self.start_after is not None or self.stop_at is not None


class Step(StrEnum):
    """The step boundaries `run_slice` reports to its `on_step` hook."""

    CHUNK = "chunk"  # on the reader thread: a chunk of `$all` was read and planned
    READ = "read"  # the first chunk reached the writers
    APPEND = "append"  # an append is about to be sent
    WRITTEN = "written"  # a group of ops is written
    COMMIT = "commit"  # the checkpoint is about to be committed
    COMMITTED = "committed"
