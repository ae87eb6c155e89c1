"""Structured logs: one JSON object per line, secrets scrubbed from every message.

`configure("json")` for machines (CloudWatch, Cloud Logging, Application Insights),
`configure("text")` for people. `log_slice(result)` writes the one line per slice.
"""

from __future__ import annotations

import json
import logging
import re
import sys
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


def log_slice(result: object) -> None:
    """The one line per slice, with all its figures."""
    fields = asdict(result)  # type: ignore[call-overload]
    level = logging.ERROR if fields.get("status") == "failed" else logging.INFO
    logger.log(level, "slice %s", fields.get("status"), extra={"slice": fields})
