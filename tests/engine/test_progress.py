"""`measure()`: one truth for a job's progress, each rule against real emulators and a real
SQLite store whose clock the test moves (tests/contract's FakeClock).

The slices themselves run on the wall clock (their history records real times); `measure` is
asked at a chosen `now`, the store's clock, to say what it says after that much quiet.
"""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from core.checkpoint import Position, SliceRecord
from core.config import JobConfig
from core.eventstore import EventStore
from core.progress import MIN_GAP_SECONDS, measure, pending_after
from core.relay import Relay
from core.stores.sqlite import SqliteCheckpointStore
from esdb_emulator import Emulator
from esdb_emulator.store import ANY, NO_STREAM, ProposedEvent
from esdb_emulator.workload import Workload, generate
from tests.contract.checkpoint_contract import FakeClock
from tests.engine.helpers import make_job, run_until_caught_up


def add_events(db: Emulator, n: int, stream: str = "late") -> None:
    db.store.append(
        stream,
        ANY,
        [ProposedEvent(str(uuid.uuid4()), "Added", "application/json", b"{}") for _ in range(n)],
    )


def seeded_store(job: JobConfig, clock: FakeClock) -> SqliteCheckpointStore:
    return SqliteCheckpointStore(Path(job.checkpoint_store.removeprefix("sqlite:///")), now=clock)


def progress(job: JobConfig, source: Emulator, clock: FakeClock, **options: object):
    with (
        EventStore(source.uri, side="source") as s,
        seeded_store(job, clock) as store,
    ):
        return measure(job, s, store, now=clock(), **options)  # type: ignore[arg-type]


def follow(job: JobConfig, slices: int) -> None:
    """A relay following the tail (`esdb-relay run` without --until-caught-up) for a few
    caught-up slices, then stopped as by Ctrl-C."""
    seen: list[int] = []
    with Relay(job) as relay:
        stop = threading.Event()

        def on_slice(result: object) -> None:
            seen.append(1)
            if len(seen) >= slices:
                stop.set()

        relay.run(until_caught_up=False, stop=stop, on_slice=on_slice, idle_seconds=0.05)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime.now(UTC))


def test_not_started(pair, tmp_path, clock):
    source, target = pair
    add_events(source, 5)
    p = progress(make_job(source, target, tmp_path), source, clock)
    assert p.state == "not-started" and not p.caught_up and not p.relay_running
    assert (p.lag_events, p.lag_events_exact, p.eta_seconds) == (5, True, None)


def test_caught_up_and_following_then_idle_past_the_schedule(pair, tmp_path, clock):
    source, target = pair
    generate(source.store, Workload(events=300, streams=20, links=False))
    job = make_job(source, target, tmp_path, schedule_seconds=120)
    run_until_caught_up(job)  # one process's slices, the last one caught up
    p = progress(job, source, clock)
    assert p.caught_up and p.lag_events == 0 and p.lag_events_exact and p.lag_seconds == 0
    assert p.state == "following" and p.relay_running and p.eta_seconds is None
    assert p.position == source.store.last_position
    assert p.events_read == p.events_written + p.events_skipped + p.events_filtered
    assert p.copy_rate and p.copy_rate > 0 and p.last_success_at is not None
    assert p.warnings == []
    clock.advance(121)  # no slice for longer than the schedule allows
    p = progress(job, source, clock)
    assert p.caught_up and p.state == "idle" and not p.relay_running
    assert any("schedule" in w for w in p.warnings)


def test_events_added_after_a_following_relay_stopped_are_not_caught_up(pair, tmp_path, clock):
    """Finding 1: 2,000 events added, no relay running: `caught_up` was true (the last
    slice's flag), and an ETA was shown."""
    source, target = pair
    generate(source.store, Workload(events=300, streams=20, links=False))
    job = make_job(source, target, tmp_path)
    follow(job, slices=6)  # caught up, following, then stopped
    add_events(source, 2000)
    p = progress(job, source, clock)
    assert not p.caught_up
    assert (p.lag_events, p.lag_events_exact) == (2000, True)
    assert p.state == "behind-and-not-running" and not p.relay_running
    assert p.eta_seconds is None
    assert any("no relay is running" in w for w in p.warnings)


def test_a_relay_stopped_mid_copy_shows_no_eta(pair, tmp_path, clock):
    """Finding 1: after Ctrl-C mid-copy, `status` showed `ETA 00:00:05` with nothing running."""
    source, target = pair
    add_events(source, 1000)
    job = make_job(source, target, tmp_path, budget={"max_events": 200})
    follow(job, slices=2)  # stopped (as by Ctrl-C) while behind
    p = progress(job, source, clock)
    assert not p.caught_up and p.lag_events and p.lag_events > 0
    assert p.state == "behind-and-not-running" and p.eta_seconds is None
    assert p.relay_stopped_at is not None


def test_a_killed_relay_is_not_running_once_it_missed_its_own_pace(pair, tmp_path, clock):
    """No stop record (SIGKILL): a relay that sliced every moment is dead after
    MIN_GAP_SECONDS of silence, not after the whole schedule."""
    source, target = pair
    add_events(source, 50, "a")
    job = make_job(source, target, tmp_path)
    for _ in range(5):  # slices back to back, as a following relay runs them
        run_until_caught_up(job)
    add_events(source, 10)
    assert progress(job, source, clock).state == "copying"  # it may still pick them up
    clock.advance(MIN_GAP_SECONDS + 1)
    p = progress(job, source, clock)
    assert p.state == "behind-and-not-running" and p.eta_seconds is None
    assert p.allowed_gap_seconds == MIN_GAP_SECONDS


def test_copying_under_a_live_lease_has_an_eta_and_none_without(pair, tmp_path, clock):
    source, target = pair
    add_events(source, 1000, "big")
    job = make_job(source, target, tmp_path, budget={"max_events": 300})
    with Relay(job) as relay:
        first = relay.run_once()
    assert not first.caught_up
    clock.advance(400)  # the source's writes are now older than the write-rate window
    p = progress(job, source, clock)
    assert p.state == "behind-and-not-running" and p.eta_seconds is None  # nothing runs
    with seeded_store(job, clock) as store:
        lease = store.acquire(job.job_id, "relay-on-host-b", 60)
    p = progress(job, source, clock)
    assert p.state == "copying" and p.relay_running
    assert p.lease is not None and p.lease.owner == "relay-on-host-b"
    assert p.lease.expires_at == lease.expires_at
    assert p.lag_events == 1000 - first.events_written and p.source_write_rate == 0
    assert p.eta_seconds is not None and p.copy_rate
    assert p.eta_seconds == pytest.approx(p.lag_events / p.copy_rate)
    clock.advance(61)  # the lease expired: nobody holds it
    p = progress(job, source, clock)
    assert p.lease is None and p.state == "behind-and-not-running" and p.eta_seconds is None


def test_lag_is_estimated_past_the_count_limit_and_aged_from_the_oldest_event(
    pair, tmp_path, clock
):
    source, target = pair
    add_events(source, 600, "one")
    job = make_job(source, target, tmp_path)
    p = progress(job, source, clock, count_limit=200)
    first_200 = list(source.store.iter_all())[:200]
    copied = sum(1 for r in first_200 if not r.stream.startswith("$"))  # not the system ones
    assert not p.lag_events_exact and p.lag_events_counted == copied
    assert p.lag_events is not None and 400 <= p.lag_events <= 800
    assert any("more than 200 records" in w and "estimated" in w for w in p.warnings)
    with EventStore(source.uri, side="source") as s:
        first = next(e for e in s.read_all_after(None, 10) if e.stream == "one")
    assert first.created is not None
    clock.advance(42)
    p = progress(job, source, clock, count_limit=200)
    assert p.lag_seconds == (clock() - first.created).total_seconds()


def test_the_count_stops_at_its_byte_budget_for_big_events(pair, tmp_path):
    source, target = pair
    source.store.append(
        "blobs",
        NO_STREAM,
        [
            ProposedEvent(str(uuid.uuid4()), "Blob", "application/octet-stream", b"x" * 10_000)
            for _ in range(50)
        ],
    )
    job = make_job(source, target, tmp_path)
    with EventStore(source.uri, side="source") as s:
        pending = pending_after(job, s, None, max_bytes=100_000)
        assert not pending.exact and 5 <= pending.counted <= 11  # ~10 blobs of 10 kB read
        assert pending_after(job, s, None).counted == 50  # within the default budget: exact


def test_lag_counts_only_what_the_job_copies(pair, tmp_path, clock):
    source, target = pair
    add_events(source, 30, "kept")
    add_events(source, 70, "other")
    job = make_job(source, target, tmp_path, filters={"include_streams": ["^kept$"]})
    p = progress(job, source, clock)
    assert (p.lag_events, p.lag_events_exact) == (30, True)


def test_stalled_after_failed_slices(pair, tmp_path, clock):
    source, target = pair
    add_events(source, 5)
    job = make_job(source, target, tmp_path)
    with seeded_store(job, clock) as store:
        for i in range(3):
            store.record_slice(
                job.job_id,
                SliceRecord(
                    job_id=job.job_id,
                    started_at=clock(),
                    finished_at=clock(),
                    owner="x",
                    error=f"target: append to 'a' failed #{i}",
                ),
            )
    p = progress(job, source, clock)
    assert p.state == "stalled" and p.stalled and p.consecutive_failures == 3
    assert p.last_error == "target: append to 'a' failed #2"
    assert any("last 3 slices failed" in w for w in p.warnings)


def test_warns_when_the_source_writes_as_fast_as_the_relay_copies(pair, tmp_path, clock):
    source, target = pair
    generate(source.store, Workload(events=2000, streams=20, links=False))  # written just now
    job = make_job(source, target, tmp_path)
    clock.advance(5)  # the source's 2,000 events were written in the last 5 s
    start = clock() - timedelta(minutes=5)
    with seeded_store(job, clock) as store:
        # A relay that copied 100 events in 100 s: 1 event/s, far below the source's rate.
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
    p = progress(job, source, clock)
    assert p.source_write_rate and p.source_write_rate > 10
    assert p.copy_rate == 1.0
    assert any("may never catch up" in w for w in p.warnings)
    assert p.eta_seconds is None  # slower than the source, and not running: no ETA


def test_dead_letters_are_counted_in_the_checkpoint_and_shown(pair, tmp_path, clock):
    source, target = pair
    target.faults.update(max_append_size=2000)
    source.store.append(
        "big",
        NO_STREAM,
        [
            ProposedEvent(str(uuid.uuid4()), "E", "application/json", data)
            for data in (b"{}", b"x" * 5000, b"{}", b"y" * 6000)
        ],
    )
    job = make_job(source, target, tmp_path, dead_letter=True)
    results = run_until_caught_up(job)
    assert sum(r.events_dead_lettered for r in results) == 2
    for r in results:  # every record read is accounted for, each kind named
        assert r.events_read == (
            r.records_copied + r.events_skipped + r.events_filtered + r.events_dead_lettered
        )
    p = progress(job, source, clock)
    assert p.dead_lettered == 2 and p.caught_up
    with seeded_store(job, clock) as store:
        assert store.history(job.job_id)[0].events_dead_lettered == 2
