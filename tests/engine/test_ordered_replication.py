"""run_slice against two emulators: the target ends equal to the filtered source.

Real components only: two esdb emulators spoken to through esdbclient, a SQLite checkpoint
store. Faults are injected in the target emulator to interrupt slices mid-write.
"""

from __future__ import annotations

import time

from core.checkpoint import open_store
from core.engine import Budget, run_slice
from core.eventstore import EventStore
from esdb_emulator.store import Store
from esdb_emulator.workload import Workload, generate
from tests.engine.helpers import differences, make_job, run_until_caught_up, user_event_count


def test_full_history_is_copied_exactly(pair, tmp_path):
    source, target = pair
    counts = generate(source.store, Workload(events=3000, streams=150, seed=7))
    assert counts["soft_deleted"] and counts["tombstoned"] and counts["metadata"]
    results = run_until_caught_up(make_job(source, target, tmp_path))
    assert differences(source.store, target.store) == []
    assert user_event_count(target.store) == user_event_count(source.store)
    assert sum(r.events_read for r in results) == len(source.store)
    # links and system events are skipped, never written
    assert not any(r.type == "$>" for r in target.store.iter_all())


def test_interrupted_slices_leave_no_duplicates_or_gaps(pair, tmp_path):
    source, target = pair
    generate(source.store, Workload(events=800, streams=40, interleaving="random", seed=3))
    job = make_job(source, target, tmp_path, batch={"max_events": 20})
    # Every few appends fail after some of the slice's batches went through, so the next
    # slice starts from an older checkpoint than what the target already holds.
    target.faults.update(unavailable_rate=0.15, methods={"BatchAppend"}, seed=11)
    run_until_caught_up(job, max_slices=500)
    assert target.faults.injected.get("unavailable", 0) > 0
    target.faults.reset()
    assert differences(source.store, target.store) == []
    assert user_event_count(target.store) == user_event_count(source.store)


def test_replay_from_scratch_writes_nothing_twice(pair, tmp_path):
    source, target = pair
    generate(source.store, Workload(events=1000, streams=30, seed=5))
    run_until_caught_up(make_job(source, target, tmp_path))
    before = len(target.store)
    # A new job id starts again from the beginning of $all into the same target.
    other = make_job(source, target, tmp_path, job_id="replay-job")
    results = run_until_caught_up(other)
    assert sum(r.events_written for r in results) == 0
    assert len(target.store) == before
    assert differences(source.store, target.store) == []


def test_second_invocation_is_busy_while_the_first_holds_the_lease(pair, tmp_path):
    source, target = pair
    job = make_job(source, target, tmp_path)
    store = open_store(job.checkpoint_store)
    store.acquire(job.job_id, "someone-else", 60)
    with (
        EventStore(source.uri, side="source") as s,
        EventStore(target.uri, side="target") as t,
    ):
        result = run_slice(job, s, t, store, Budget(10, 10**6, time.monotonic() + 30))
    assert result.status == "busy"
    assert len(target.store) == len(Store())  # only the seeded system events
