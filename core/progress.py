"""One truth for a job's progress, computed from live facts when asked.

`status`, the handlers' status action, `cutover`, the metrics and the dashboard all read a
`Progress`; none of them derives its own. Every figure states what is true now, or is None
when the tool cannot know it (a source that cannot be read, a store without history).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel

State = Literal[
    "not-started",  # the job never committed and no relay holds its lease
    "copying",  # events are left to copy and a relay is running (lease held, recent slices)
    "following",  # nothing is left to copy now and a relay is alive
    "idle",  # nothing is left to copy now, but no relay has run for longer than the schedule allows
    "stalled",  # the newest slices failed in a row: the job makes no progress
    "behind-and-not-running",  # events are left to copy and no relay is running
]


class LeaseInfo(BaseModel):
    owner: str
    expires_at: datetime


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
    lag_seconds: float | None  # age of the oldest event not yet copied
    # rates, events/s
    copy_rate: float | None  # over recent slices that had work
    source_write_rate: float | None
    eta_seconds: float | None  # only while a relay runs and gains on the source
    # the relay
    relay_running: bool
    lease: LeaseInfo | None
    last_success_at: datetime | None
    last_success_age_seconds: float | None
    last_slice_seconds: float | None  # duration of the newest slice
    consecutive_failures: int
    last_error: str | None
    # totals since the job started (from the checkpoint)
    events_read: int
    events_written: int
    events_skipped: int
    dead_lettered: int
    warnings: list[str]
