"""A progress bar over `$all` positions: how much of the source log the job has copied."""

from __future__ import annotations

import time
from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

from core.engine import SliceResult
from core.relay import Relay


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
        self.started = time.monotonic()
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
        self.written += result.events_written
        position = result.position or 0
        total = self.end if self.end is not None else position + (result.lag_bytes or 0)
        rate = self.written / max(1e-9, time.monotonic() - self.started)
        self.progress.update(
            self.task,
            total=max(total, 1),
            completed=position,
            detail=f"{self.written:,} events written, {rate:,.0f}/s",
        )
