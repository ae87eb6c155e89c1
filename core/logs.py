"""Structured logs: one JSON object per line, secrets scrubbed from every message.

`configure("json")` for machines (CloudWatch, Cloud Logging, Application Insights),
`configure("text")` for people. `log_slice(result)` writes the one line per slice, its
figures in the message too (`slice ok read=… written=… position=… lag=…`); `SliceLog` does the
same for a process that runs slices back to back, quietly once it follows the tail: one line
when it catches up ("following the tail"), then only a heartbeat every few minutes while the
slices find nothing new. `RecentRate` is a copy rate over the last minute, not since the start.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any, Literal

# user:password@ in any URL-like text; passwords never reach a log line. The password runs to
# the last '@' before a space or quote: a raw '@' or '/' in it must not leave a tail visible.
_CREDENTIALS = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:/@\s]+):[^\s\"'<>]*@", re.I)
_STANDARD = set(vars(logging.makeLogRecord({})))

logger = logging.getLogger("esdb_relay")


def scrub(text: str) -> str:
    return _CREDENTIALS.sub(r"\g<scheme>\g<user>:***@", text)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            # Cloud Logging reads a JSON line's severity from `severity` (DEBUG ... CRITICAL);
            # `level` stays for CloudWatch metric filters and log queries that use it.
            "severity": record.levelname,
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        # Scrub the whole line: extras may be nested (a slice's figures, a chained payload).
        return scrub(json.dumps(entry, default=str))


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return scrub(super().format(record))


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever sys.stderr is when a line is logged: a CLI runner or test harness that
    swaps it must not leave the logger writing to a closed stream."""

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def configure(fmt: Literal["json", "text"] = "text", level: int = logging.INFO) -> None:
    handler = _StderrHandler()
    handler.setFormatter(
        JsonFormatter() if fmt == "json" else TextFormatter("%(asctime)s %(levelname)s %(message)s")
    )
    logger.handlers[:] = [handler]
    logger.setLevel(level)
    logger.propagate = False


def _position(value: object) -> str:
    return "start" if value is None else f"{value:,}"


def slice_message(fields: dict[str, Any], rate: float | None = None) -> str:
    """`slice ok read=… written=… skipped=… position=… lag=… bytes in 0.42s`: the figures a
    person reading text logs needs, in the message itself (JSON lines carry them all too)."""
    parts = [
        f"slice {fields.get('status')}",
        f"read={fields.get('events_read', 0):,}",
        f"written={fields.get('events_written', 0):,}",
        f"skipped={fields.get('events_skipped', 0):,}",
    ]
    if fields.get("events_filtered"):  # not copied by the job's rules
        parts.append(f"filtered={fields['events_filtered']:,}")
    dead = fields.get("events_dead_lettered", fields.get("dead_letters"))
    if dead:
        parts.append(f"dead_lettered={dead:,}")
    parts.append(f"position={_position(fields.get('position'))}")
    lag = fields.get("lag_bytes")
    parts.append(f"lag={'?' if lag is None else format(lag, ',')} bytes")
    if rate is not None:
        parts.append(f"rate={rate:,.0f} events/s")
    parts.append(f"in {fields.get('seconds', 0.0):.2f}s")
    if fields.get("error"):
        parts.append(f"error: {fields['error']}")
    return " ".join(parts)


def log_slice(result: object, rate: float | None = None) -> None:
    """The one line per slice, with all its figures."""
    fields = asdict(result)  # type: ignore[call-overload]
    level = logging.ERROR if fields.get("status") == "failed" else logging.INFO
    logger.log(level, "%s", slice_message(fields, rate), extra={"slice": fields})


class RecentRate:
    """Events per second over the last `window` seconds: after the copy catches up it falls
    to the source's write rate, not slowly towards it as an average since the start would."""

    def __init__(self, window: float = 60.0, clock: Callable[[], float] = time.monotonic):
        self.window = window
        self.clock = clock
        self.samples: deque[tuple[float, int]] = deque()
        self.total = 0

    def add(self, events: int, seconds: float = 0.0) -> float | None:
        """Count `events` just done (in `seconds`, for the first ones: when the count began);
        the rate now (None until the samples span some time)."""
        now = self.clock()
        if not self.samples:
            self.samples.append((now - seconds, 0))
        self.total += events
        self.samples.append((now, self.total))
        while len(self.samples) > 2 and now - self.samples[1][0] >= self.window:
            self.samples.popleft()
        return self.rate()

    def rate(self) -> float | None:
        if len(self.samples) < 2:
            return None
        (t0, n0), (t1, n1) = self.samples[0], self.samples[-1]
        return None if t1 <= t0 else (n1 - n0) / (t1 - t0)


HEARTBEAT_SECONDS = 300.0


class SliceLog:
    """The slice lines of a process that runs slices back to back (`esdb-relay run`): every
    slice that copies or fails is logged with its figures; once caught up, one line says the
    relay follows the tail, then idle slices (nothing read) are logged only as a heartbeat
    every `heartbeat_seconds`, so a relay following a quiet source does not log once a second
    for ever."""

    def __init__(
        self,
        heartbeat_seconds: float | None = HEARTBEAT_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`heartbeat_seconds` None: every slice is logged (one slice per invocation, the
        cloud handlers: their alarms count the slice lines)."""
        self.heartbeat_seconds = heartbeat_seconds
        self.clock = clock
        self.rate = RecentRate(clock=clock)
        self.following = False
        self.last_line = clock()
        self.idle = 0

    def log(self, result: object) -> None:
        fields = asdict(result)  # type: ignore[call-overload]
        rate = self.rate.add(int(fields.get("events_written") or 0), fields.get("seconds") or 0.0)
        if self.heartbeat_seconds is None:
            log_slice(result, rate)
            return
        now = self.clock()
        status = fields.get("status")
        quiet = status == "ok" and fields.get("caught_up") and not fields.get("events_read")
        if self.following and quiet:
            self.idle += 1
            if now - self.last_line >= self.heartbeat_seconds:
                logger.info(
                    "following the tail: position %s, lag %s bytes, %d slice(s) found nothing "
                    "new in the last %.0fs",
                    _position(fields.get("position")),
                    format(fields.get("lag_bytes") or 0, ","),
                    self.idle,
                    now - self.last_line,
                    extra={"job_id": fields.get("job_id")},
                )
                self.last_line, self.idle = now, 0
            return
        if not quiet or not self.following:
            log_slice(result, rate)
        self.last_line, self.idle = now, 0
        caught_up = status == "ok" and bool(fields.get("caught_up"))
        if caught_up and not self.following:
            logger.info(
                "caught up at position %s: following the tail (a line every %.0fs while "
                "nothing new arrives)",
                _position(fields.get("position")),
                self.heartbeat_seconds,
                extra={"job_id": fields.get("job_id")},
            )
        if status == "ok":
            self.following = caught_up
