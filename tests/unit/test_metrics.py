"""core/metrics.py: what a slice, a failure and a measured progress become, and that metrics
never fail a slice. (The emitters on each platform: tests/runtimes/test_*_metrics.py and
tests/cli/test_metrics_port.py.)"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from core.checkpoint import SliceRecord
from core.engine import SliceResult
from core.errors import TransientError
from core.invocation import handle
from core.metrics import (
    BY_KEY,
    METRICS,
    Sample,
    emf,
    emit,
    from_failure,
    from_progress,
    from_slice,
)
from core.progress import Progress

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def record(minutes_ago: float, *, error: str | None = None, stopped: bool = False) -> SliceRecord:
    at = NOW - timedelta(minutes=minutes_ago)
    return SliceRecord(
        job_id="j",
        started_at=at - timedelta(seconds=5),
        finished_at=at,
        owner="relay-1",
        error=error,
        stopped=stopped,
    )


def behind() -> SliceResult:
    return SliceResult(
        job_id="j",
        status="ok",
        events_read=200,
        events_written=190,
        events_dead_lettered=2,
        from_position=10_000,
        position=30_000,
        lag_bytes=100_000,
        seconds=4.0,
    )


def test_a_slice_behind_reports_its_figures() -> None:
    sample = from_slice(
        behind(), history=[record(0)], lag_seconds=42.0, source_write_rate=7.5, now=NOW
    )
    assert sample.values == {
        "lag_bytes": 100_000,
        "lag_events": 1_000,  # 100,000 bytes at the slice's 100 bytes per event
        "lag_seconds": 42.0,
        "copy_rate": 50.0,
        "source_write_rate": 7.5,
        "slice_seconds": 4.0,
        "events_written": 190,
        "dead_lettered": 2,
        "failed_slices": 0,
        "consecutive_failures": 0,
        "last_success_age": 0.0,
    }


def test_a_caught_up_slice_reports_no_lag_and_a_figure_not_measured_is_left_out() -> None:
    result = SliceResult(job_id="j", status="ok", caught_up=True, lag_bytes=0, seconds=0.5)
    sample = from_slice(result, now=NOW)
    assert sample.values["lag_bytes"] == sample.values["lag_events"] == 0
    assert sample.values["lag_seconds"] == 0 and sample.values["copy_rate"] == 0
    assert "source_write_rate" not in sample.values  # not measured: not reported as 0
    assert "last_success_age" not in sample.values  # no history


def test_the_streak_skips_the_records_of_relays_that_stopped() -> None:
    """A stop record (`run` ended) has no error but is no successful slice."""
    history = [record(1, error="x"), record(2, error="y"), record(3, stopped=True), record(10)]
    sample = from_failure("j", history=history, now=NOW)
    assert sample.values == {
        "failed_slices": 1,
        "consecutive_failures": 2,
        "last_success_age": 600.0,
    }


def test_a_failure_before_any_record_counts_itself() -> None:
    assert from_failure("j", now=NOW).values == {"failed_slices": 1, "consecutive_failures": 1}


def test_a_sample_holds_only_metrics_of_the_table() -> None:
    with pytest.raises(ValueError, match="not metrics"):
        Sample(job_id="j", values={"lag": 1.0})


def test_emf_declares_exactly_the_figures_present() -> None:
    document = emf(Sample(job_id="j", at=NOW, values={"lag_bytes": 5.0, "copy_rate": 2.0}))
    (directive,) = document["_aws"]["CloudWatchMetrics"]
    assert directive["Metrics"] == [
        {"Name": "LagBytes", "Unit": "Bytes"},
        {"Name": "CopyRate", "Unit": "Count/Second"},
    ]
    assert document["_aws"]["Timestamp"] == int(NOW.timestamp() * 1000)
    assert (document["LagBytes"], document["CopyRate"], document["JobId"]) == (5.0, 2.0, "j")


def test_from_progress_maps_the_measured_figures() -> None:
    fields: dict[str, Any] = {name: None for name in Progress.model_fields}
    fields |= {
        "job_id": "j",
        "state": "copying",
        "caught_up": False,
        "checked_at": NOW,
        "lag_bytes": 10,
        "lag_events": 2,
        "lag_seconds": 3.0,
        "copy_rate": 4.0,
        "source_write_rate": 5.0,
        "last_slice_seconds": 6.0,
        "consecutive_failures": 0,
        "last_success_age_seconds": 7.0,
    }
    sample = from_progress(Progress.model_construct(**fields))
    assert sample.values == {
        "lag_bytes": 10,
        "lag_events": 2,
        "lag_seconds": 3.0,
        "copy_rate": 4.0,
        "source_write_rate": 5.0,
        "slice_seconds": 6.0,
        "consecutive_failures": 0,
        "last_success_age": 7.0,
    }
    assert set(sample.values) <= set(BY_KEY)


def test_metrics_never_fail_a_slice(caplog) -> None:
    def broken_sink(_sample: Sample) -> None:
        raise OSError("no route to the metrics endpoint")

    def broken_build() -> Sample:
        raise ValueError("bad figure")

    with caplog.at_level(logging.WARNING, logger="esdb_relay"):
        emit(broken_sink, lambda: from_failure("j"))
        emit(lambda _s: None, broken_build)
    messages = [r.getMessage() for r in caplog.records]
    assert "metrics not emitted: no route to the metrics endpoint" in messages
    assert "metrics not emitted: bad figure" in messages


def test_an_invocation_whose_relay_cannot_start_emits_a_failure(monkeypatch) -> None:
    monkeypatch.setenv("ESDB_RELAY_JOB_ID", "j")
    monkeypatch.setenv("ESDB_RELAY_SOURCE", "esdb://127.0.0.1:1?tls=false")
    monkeypatch.setenv("ESDB_RELAY_TARGET", "esdb://127.0.0.1:2?tls=false")
    monkeypatch.setenv("ESDB_RELAY_CHECKPOINT_STORE", "sqlite:///:memory:")
    samples: list[Sample] = []

    def unreachable(_job: Any) -> Any:
        raise TransientError("source: connection refused")

    with pytest.raises(TransientError):
        handle({}, chain=lambda _r: None, relay_factory=unreachable, metrics=samples.append)
    assert [s.values for s in samples] == [{"failed_slices": 1, "consecutive_failures": 1}]
    # a refused payload is no slice: nothing emitted
    samples.clear()
    assert handle({"nope": 1}, chain=lambda _r: None, metrics=samples.append)["status"] == "failed"
    assert samples == []


def test_every_metric_has_a_description_and_distinct_names() -> None:
    for names in ([m.cloudwatch for m in METRICS], [m.prometheus for m in METRICS]):
        assert len(set(names)) == len(METRICS)
    assert all(m.description.endswith(".") for m in METRICS)


def test_a_shards_sample_keeps_the_job_and_names_the_shard_in_its_lines(caplog) -> None:
    """core/metrics.SHARDS: the metrics stay the job's; the shard is a field of the JSON line
    (GCP, Azure) and a property of the EMF line (AWS), not a CloudWatch dimension."""
    import json

    from core.logs import JsonFormatter
    from core.metrics import log_sample

    sample = Sample(job_id="orders", values={"lag_bytes": 5.0}, shard=2)
    document = emf(sample)
    assert (document["JobId"], document["Shard"]) == ("orders", 2)
    assert document["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["JobId"]]
    assert "Shard" not in emf(Sample(job_id="orders", values={"lag_bytes": 5.0}))
    with caplog.at_level(logging.INFO, logger="esdb_relay"):
        log_sample(sample)
    line = json.loads(JsonFormatter().format(caplog.records[-1]))
    assert (line["message"], line["job_id"], line["shard"]) == ("metrics", "orders", 2)
    assert line["metrics"] == {"lag_bytes": 5.0}
