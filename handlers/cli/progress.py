"""What the CLI shows of a job's progress: the bar of a `run` or `backfill`, their summaries
(the totals of every slice, and the job's), and `status` (core/progress.py's `Progress`)."""

from __future__ import annotations

import collections
import time
from datetime import datetime
from types import TracebackType

from rich.console import Console, Group, RenderableType
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from core.checkpoint import Checkpoint
from core.engine import SliceResult
from core.progress import Progress as JobProgress
from core.relay import Relay, RunOutcome, RunTotals

RATE_WINDOW_SECONDS = 30.0
"""The bar's rate is of the last this many seconds, not an average since the start."""


class RunProgress:
    def __init__(
        self,
        console: Console,
        relay: Relay,
        *,
        enabled: bool = True,
        job_id: str | None = None,
        end: int | None = None,
    ) -> None:
        self.job_id = job_id or relay.job.job_id
        self.end = end
        self.written = 0
        self.recent: collections.deque[tuple[float, int]] = collections.deque()
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[detail]}"),
            TimeRemainingColumn(),
            console=console,
            disable=not enabled,
        )
        self.task = self.progress.add_task(f"copying {self.job_id}", total=None, detail="")

    def __enter__(self) -> RunProgress:
        self.progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.progress.stop()

    def update(self, result: SliceResult) -> None:
        if result.status == "busy":
            self.progress.update(self.task, detail="waiting for the job's lease")
            return
        now = time.monotonic()
        self.written += result.events_written
        self.recent.append((now, result.events_written))
        while self.recent and now - self.recent[0][0] > RATE_WINDOW_SECONDS:
            self.recent.popleft()
        span = (
            max(1.0, now - self.recent[0][0]) if len(self.recent) > 1 else max(result.seconds, 1e-3)
        )
        rate = sum(n for _, n in self.recent) / span
        position = result.position or 0
        total = self.end if self.end is not None else position + (result.lag_bytes or 0)
        state = "caught up, following the tail" if result.caught_up else f"{rate:,.0f}/s"
        self.progress.update(
            self.task,
            description=f"{'following' if result.caught_up else 'copying'} {self.job_id}",
            total=max(total, 1),
            completed=position,
            detail=f"{self.written:,} events written, {state}",
        )


# ------------------------------------------------------------------------ summaries
def totals_line(totals: RunTotals) -> str:
    """read = copied + skipped + filtered + dead-lettered, each named."""
    verb = "would copy" if totals.dry_run else "copied"
    written = "would write" if totals.dry_run else "wrote"
    size = "" if totals.dry_run else f" ({totals.bytes_written:,} bytes)"
    return (
        f"read {totals.read:,} records = {totals.copied:,} {verb} + {totals.skipped:,} "
        f"skipped (already on the target) + {totals.filtered:,} filtered (not copied by the "
        f"job's rules) + {totals.dead_lettered:,} dead-lettered; {written} "
        f"{totals.written:,} events{size} in {totals.slices:,} slice(s), "
        f"{totals.seconds:,.1f}s"
    )


def job_line(checkpoint: Checkpoint | None) -> str:
    if checkpoint is None:
        return "job totals: nothing committed yet"
    where = position_text(checkpoint.position.commit if checkpoint.position else None)
    return (
        f"job totals (checkpoint at {where}): {checkpoint.events_written:,} events written, "
        f"{checkpoint.events_skipped:,} skipped, {checkpoint.events_filtered:,} filtered, "
        f"{checkpoint.events_dead_lettered:,} dead-lettered, of {checkpoint.events_read:,} "
        "records read"
    )


def summary(outcome: RunOutcome, checkpoint: Checkpoint | None) -> list[str]:
    """The end of a `run` or `backfill`: where it stopped, this run's totals, the job's."""
    last, totals = outcome.last, outcome.totals
    if last is None:
        return ["stopped before the first slice", job_line(checkpoint)]
    if totals.dry_run:
        return [
            "dry run (no write to the target, no commit): planned up to "
            f"{position_text(last.position)}"
            + ("" if last.caught_up else " (stopped before the end of the range)"),
            totals_line(totals),
        ]
    if totals.slices == 0:
        return [busy_line(last), job_line(checkpoint)]
    state = "caught up" if last.caught_up else "stopped"
    lines = [f"{state} at position {position_text(last.position)}"]
    if totals.written == 0 and totals.copied == 0 and not totals.dead_lettered:
        lines.append(f"this run copied nothing: {totals_line(totals)}")
    else:
        lines.append(f"this run: {totals_line(totals)}")
    lines.append(job_line(checkpoint))
    return lines


def busy_line(last: SliceResult) -> str:
    holder = last.lease_holder or "another relay"
    until = f" until {last.lease_expires_at:%Y-%m-%d %H:%M:%S %Z}" if last.lease_expires_at else ""
    return f"copied nothing: the job's lease is held by {holder!r}{until}"


# ------------------------------------------------------------------------ status
STATE_STYLE = {
    "not-started": "dim",
    "copying": "cyan",
    "following": "green",
    "idle": "yellow",
    "stalled": "red",
    "behind-and-not-running": "red",
}


def status_view(p: JobProgress) -> RenderableType:
    """`status` as a table, then its warnings."""
    table = Table(title=f"job {p.job_id}", show_header=False)
    state = Text(p.state, style=STATE_STYLE[p.state])
    state.append(" (caught up)" if p.caught_up else " (not caught up)", style="default")
    table.add_row("state", state)
    table.add_row("position", position_text(p.position))
    table.add_row("source head", position_text(p.head_position))
    table.add_row("lag", _lag(p))
    table.add_row("copy rate", _rate(p.copy_rate))
    table.add_row("source write rate", _rate(p.source_write_rate))
    table.add_row("ETA", _eta(p))
    table.add_row("relay", _relay(p))
    table.add_row("last success", _when(p.last_success_at, p.last_success_age_seconds))
    table.add_row(
        "events written", f"{p.events_written:,} (of {p.events_read:,} read), by committed slices"
    )
    table.add_row(
        "already on the target",
        f"{p.events_skipped:,}, not written again: there before the job, or written by a slice "
        "stopped before its commit and found by the next",
    )
    table.add_row("filtered", f"{p.events_filtered:,}, not copied by the job's rules")
    table.add_row("dead-lettered", f"{p.dead_lettered:,}")
    if p.last_error:
        table.add_row("last error", Text(p.last_error))
    warnings = [Text.assemble(("warning: ", "yellow"), w) for w in p.warnings]
    return Group(table, *warnings)


def position_text(value: int | None) -> str:
    return "start of $all" if value is None else f"{value:,}"


def _lag(p: JobProgress) -> str:
    if p.lag_events is None:
        events = "unknown events"
    else:
        events = f"{p.lag_events:,} events" if p.lag_events_exact else f"~{p.lag_events:,} events"
    age = "" if not p.lag_seconds else f", oldest waiting {_duration(p.lag_seconds)}"
    return f"{events} ({p.lag_bytes or 0:,} bytes of $all){age}"


def _rate(value: float | None) -> str:
    return "unknown" if value is None else f"{value:,.0f} events/s"


def _eta(p: JobProgress) -> str:
    if p.caught_up:
        return "caught up"
    if p.eta_seconds is not None:
        return _duration(p.eta_seconds)
    if not p.relay_running:
        return "none: no relay is running"
    return "unknown: the relay is not gaining on the source"


def _relay(p: JobProgress) -> str:
    if p.lease is not None:
        return (
            f"running: lease held by {p.lease.owner!r} until "
            f"{p.lease.expires_at:%Y-%m-%d %H:%M:%S %Z}"
        )
    if p.relay_running:
        return "running (between slices)"
    if p.last_slice_at is None:
        return "not running, never ran"
    if p.relay_stopped_at is not None:
        stopped = (p.checked_at - p.relay_stopped_at).total_seconds()
        return f"not running: it stopped {_duration(stopped)} ago (its `run` ended)"
    age = (p.checked_at - p.last_slice_at).total_seconds()
    return (
        f"not running: last slice {_duration(age)} ago (a live relay pauses at most "
        f"{_duration(p.allowed_gap_seconds)})"
    )


def _when(at: datetime | None, age: float | None) -> str:
    if at is None or age is None:
        return "never"
    return f"{at:%Y-%m-%d %H:%M:%S %Z} ({_duration(age)} ago)"


def _duration(seconds: float) -> str:
    """42s, 5m 00s, 2h 05m, 3d 04h."""
    whole = max(0, round(seconds))
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m {whole % 60:02d}s"
    if whole < 86400:
        return f"{whole // 3600}h {whole % 3600 // 60:02d}m"
    return f"{whole // 86400}d {whole % 86400 // 3600:02d}h"
