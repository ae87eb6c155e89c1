"""`Relay.status`: position, lag, rates, ETA, and the warnings a migration needs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from core.checkpoint import Position, SliceRecord, open_store
from core.relay import Relay
from esdb_emulator.workload import Workload, generate
from tests.engine.helpers import make_job, run_until_caught_up


def test_status_after_catching_up(pair, tmp_path):
    source, target = pair
    generate(source.store, Workload(events=300, streams=20, links=False))
    job = make_job(source, target, tmp_path)
    run_until_caught_up(job)
    with Relay(job) as relay:
        status = relay.status()
    assert status.position == source.store.last_position
    assert status.lag_bytes == 0 and status.lag_events_estimate == 0
    assert status.caught_up and status.eta_seconds == 0
    assert status.warnings == []  # the seeding burst is no warning once caught up
    copied = [
        r
        for r in source.store.iter_all()
        if not r.stream.startswith("$") or (r.type == "$metadata" and r.stream.startswith("$$"))
    ]
    assert status.events_written == len([r for r in copied if r.type != "$streamDeleted"])
    assert status.relay_rate and status.relay_rate > 0
    assert status.consecutive_failures == 0


def test_status_warns_when_the_source_writes_as_fast_as_the_relay_copies(pair, tmp_path):
    source, target = pair
    generate(source.store, Workload(events=2000, streams=20, links=False))  # written just now
    job = make_job(source, target, tmp_path)
    store = open_store(job.checkpoint_store)
    start = datetime.now(UTC) - timedelta(minutes=5)
    # A relay that copied 100 events in 100 s: 1 event/s, far below the source's write rate.
    store.record_slice(
        job.job_id,
        SliceRecord(
            job_id=job.job_id,
            started_at=start,
            finished_at=start + timedelta(seconds=100),
            owner="slow",
            events_read=100,
            from_position=Position(commit=0, prepare=0),
            to_position=Position(commit=50_000, prepare=50_000),
        ),
    )
    with Relay(job, store=store) as relay:
        status = relay.status()
    assert status.source_write_rate and status.source_write_rate > 10
    assert status.relay_rate == 1.0
    assert any("may never catch up" in w for w in status.warnings)
    assert status.lag_bytes > 0 and status.lag_events_estimate
    assert status.eta_seconds is None  # the relay is slower than the source: no ETA


def test_repeated_failures_are_reported(pair, tmp_path):
    source, target = pair
    job = make_job(source, target, tmp_path)
    store = open_store(job.checkpoint_store)
    now = datetime.now(UTC)
    for i in range(3):
        store.record_slice(
            job.job_id,
            SliceRecord(
                job_id=job.job_id,
                started_at=now,
                finished_at=now,
                owner="x",
                error=f"target: append to 'a' failed #{i}",
            ),
        )
    with Relay(job, store=store) as relay:
        status = relay.status()
    assert status.consecutive_failures == 3
    assert any("last 3 slices failed" in w for w in status.warnings)
