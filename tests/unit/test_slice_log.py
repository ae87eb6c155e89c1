"""The text log of a relay that runs slices back to back (core/logs.py SliceLog): figures in
each line, one line when it catches up ("following the tail"), then a heartbeat every few
minutes while nothing arrives, not a line per idle slice; the rate is the recent one.

A fake clock (a number the test moves) stands for time: no test here waits or asserts on the
wall clock."""

from __future__ import annotations

import io
import logging

from core.engine import SliceResult
from core.logs import RecentRate, SliceLog, configure


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def text_log() -> io.StringIO:
    configure("text")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logging.getLogger("esdb_relay").handlers[:] = [handler]
    return stream


def copied(position: int, n: int, *, caught_up: bool = False, lag: int = 0) -> SliceResult:
    return SliceResult(
        "job", "ok", events_read=n + 1, events_written=n, events_skipped=1,
        position=position, caught_up=caught_up, lag_bytes=lag, seconds=0.5,
    )  # fmt: skip


def idle(position: int) -> SliceResult:
    return SliceResult("job", "ok", position=position, caught_up=True, lag_bytes=0)


def test_figures_then_one_following_line_then_a_heartbeat():
    stream, clock = text_log(), Clock()
    log = SliceLog(heartbeat_seconds=300, clock=clock)
    log.log(copied(5_000, 1_000, lag=90_000))
    clock.now += 1
    log.log(copied(9_000, 800, caught_up=True))
    for _ in range(299):  # a quiet source: a slice a second finds nothing new
        clock.now += 1
        log.log(idle(9_000))
    lines = stream.getvalue().splitlines()
    assert lines[0] == (
        "INFO slice ok read=1,001 written=1,000 skipped=1 position=5,000 lag=90,000 bytes "
        "rate=2,000 events/s in 0.50s"
    )
    assert lines[1].startswith("INFO slice ok read=801 written=800 skipped=1 position=9,000")
    assert "rate=1,200 events/s" in lines[1]  # 1,800 events since 0.5 s before the first line
    assert lines[2].startswith("INFO caught up at position 9,000: following the tail")
    assert len(lines) == 3, "idle slices are not logged one by one"
    clock.now += 1
    log.log(idle(9_000))  # 300 s after the last line: the heartbeat
    heartbeat = stream.getvalue().splitlines()[3:]
    assert heartbeat == [
        "INFO following the tail: position 9,000, lag 0 bytes, 300 slice(s) found nothing new "
        "in the last 300s"
    ]
    clock.now += 1
    log.log(copied(9_100, 3, caught_up=True))  # new events: logged at once, still following
    last = stream.getvalue().splitlines()[4:]
    assert len(last) == 1 and last[0].startswith("INFO slice ok read=4 written=3")


def test_every_slice_is_logged_without_a_heartbeat():
    """The cloud handlers' alarms count the slice lines: one per invocation, idle or not."""
    stream, clock = text_log(), Clock()
    log = SliceLog(heartbeat_seconds=None, clock=clock)
    for _ in range(3):
        clock.now += 60
        log.log(idle(9_000))
    assert stream.getvalue().count("slice ok read=0 written=0") == 3
    assert "following" not in stream.getvalue()


def test_the_rate_is_recent_not_an_average_since_the_start():
    clock = Clock()
    rate = RecentRate(window=60, clock=clock)
    rate.add(0)
    for _ in range(600):  # ten minutes at 1,000 events/s
        clock.now += 1
        rate.add(1_000)
    for _ in range(120):  # then two minutes at 10 events/s: the tail's rate
        clock.now += 1
        last = rate.add(10)
    assert last is not None and 9 <= last <= 11  # the average since the start would be ~835
