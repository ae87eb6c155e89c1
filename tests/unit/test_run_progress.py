"""The `run` bar (handlers/cli/progress.py): it says when the relay follows the tail, and a
busy slice (another relay holds the lease) is not counted as work."""

from __future__ import annotations

import io

from rich.console import Console

from core.engine import SliceResult
from handlers.cli.progress import RunProgress


def detail(bar: RunProgress) -> tuple[str, str]:
    task = bar.progress.tasks[0]
    return task.description, task.fields["detail"]


def test_the_bar_says_following_once_caught_up_and_waiting_while_busy():
    console = Console(file=io.StringIO())
    bar = RunProgress(console, None, job_id="j", enabled=False)  # type: ignore[arg-type]
    copying = SliceResult("j", "ok", events_written=500, position=1000, lag_bytes=9000, seconds=1)
    bar.update(copying)
    description, text = detail(bar)
    assert description == "copying j" and "500 events written" in text and "/s" in text
    bar.update(SliceResult("j", "busy", lease_holder="other"))
    assert detail(bar)[1] == "waiting for the job's lease"
    bar.update(SliceResult("j", "ok", events_written=10, position=10_000, caught_up=True))
    description, text = detail(bar)
    assert description == "following j" and "510 events written" in text
    assert "following the tail" in text
