"""The JSON log line core/logs.py writes, as the clouds' log services read it."""

from __future__ import annotations

import json
import logging

import pytest

from core.logs import JsonFormatter

# Cloud Logging's LogSeverity names for Python's levels (a JSON payload's `severity` field).
CLOUD_LOGGING = {
    logging.DEBUG: "DEBUG",
    logging.INFO: "INFO",
    logging.WARNING: "WARNING",
    logging.ERROR: "ERROR",
    logging.CRITICAL: "CRITICAL",
}


@pytest.mark.parametrize("level", sorted(CLOUD_LOGGING))
def test_each_line_carries_cloud_loggings_severity_and_the_level(level):
    record = logging.makeLogRecord(
        {
            "name": "esdb_relay",
            "levelno": level,
            "levelname": logging.getLevelName(level),
            "msg": "m",
        }
    )
    line = json.loads(JsonFormatter().format(record))
    assert line["severity"] == CLOUD_LOGGING[level]
    assert line["level"] == logging.getLevelName(level).lower()  # CloudWatch filters read it
