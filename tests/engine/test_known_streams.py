"""What slices of one process learn about target streams (core/engine/known_streams.py): later
slices write without reading those streams again, and a state gone stale (another process
wrote the stream meanwhile) costs one refused append, never a duplicate or a gap."""

from __future__ import annotations

import pytest

from core.checkpoint import open_store
from core.engine import Budget, run_slice
from core.engine.known_streams import KnownState, KnownStreams, for_job
from core.eventstore import EventStore
from esdb_emulator import Emulator
from esdb_emulator.workload import Workload, generate
from tests.engine.helpers import differences, make_job, run_until_caught_up, user_event_count

RANDOM = {"interleaving": "random", "links": False, "soft_deleted": 0, "tombstoned": 0}


def test_the_cache_is_bounded_and_forgets_on_request():
    known = KnownStreams(capacity=3)
    known.learn({f"s{i}": KnownState(i, i * 10, False) for i in range(5)}, set())
    assert len(known) == 3
    assert known.get("s0") is None and known.get("s4") == KnownState(4, 40, False)
    known.get("s2")  # recently used: outlives s3 when s5 and s6 come
    known.learn({"s5": KnownState(0, 50, False), "s6": KnownState(0, 60, False)}, {"s4"})
    assert known.get("s4") is None and known.get("s3") is None
    assert known.get("s2") is not None and known.get("s5") is not None
    known.clear()
    assert len(known) == 0


@pytest.mark.parametrize("mode", ["ordered", "partitioned"])
def test_later_slices_read_far_fewer_target_streams(tmp_path, mode):
    reads = {}
    for cached in (True, False):
        with Emulator() as source, Emulator() as target:
            generate(source.store, Workload(events=2000, streams=80, seed=11, **RANDOM))
            job = make_job(
                source,
                target,
                tmp_path / str(cached),
                mode=mode,
                partitions=4 if mode == "partitioned" else 1,
                budget={"max_events": 250},
            )
            known = KnownStreams(capacity=100 if cached else 0)
            results = run_until_caught_up(job, known=known)
            assert len(results) >= 8
            reads[cached] = target.faults.calls.get("Read", 0)
            assert differences(source.store, target.store) == []
            assert user_event_count(target.store) == user_event_count(source.store)
    # Without the cache every slice reads (the tail and the metadata of) each stream it
    # touches again, ~2 x 80 x 8; with it only a stream's first touch reads.
    assert reads[True] * 5 < reads[False], reads


def slice_with(job, source, target, known):
    store = open_store(job.checkpoint_store)
    with (
        EventStore(source.uri, side="source") as s,
        EventStore(target.uri, side="target") as t,
    ):
        return run_slice(job, s, t, store, Budget.from_job(job), known=known)


@pytest.mark.parametrize("mode", ["ordered", "partitioned"])
def test_a_stale_state_costs_a_refused_append_not_a_duplicate(tmp_path, mode):
    with Emulator() as source, Emulator() as target:
        generate(source.store, Workload(events=1500, streams=40, seed=12, **RANDOM))
        job = make_job(
            source,
            target,
            tmp_path,
            mode=mode,
            partitions=4 if mode == "partitioned" else 1,
            budget={"max_events": 200},
        )
        this_process, other_process = KnownStreams(), KnownStreams()
        # Two processes take turns (as when one's lease expired and the other took over):
        # each one's cache misses what the other wrote since its last slice.
        for turn in range(6):
            known = this_process if turn % 2 == 0 else other_process
            assert slice_with(job, source, target, known).status == "ok"
        run_until_caught_up(job, known=this_process)
        assert differences(source.store, target.store) == []
        assert user_event_count(target.store) == user_event_count(source.store)


@pytest.mark.parametrize(
    "state",
    [
        KnownState(-1, -1, False, False),
        KnownState(0, 0, False, True),
        KnownState(7, 123_456, True, True),
        KnownState(2**63 - 1, 2**64 - 1, True, False),
        KnownState(-1, 2**63 - 1, False, True),  # a tombstoned stream's marker
        KnownState(-9, -20, True, True),  # past the packing: kept as it is
    ],
)
def test_a_state_comes_back_as_it_was_learned(state):
    known = KnownStreams(capacity=2)
    known.learn({"s": state}, set())
    assert known.get("s") == state


def test_the_process_cache_outlives_the_slice_budget(tmp_path):
    """A stream that comes back after more streams than a slice's budget went by is still
    known: the process's cache is not bounded by the slice budget (with 100,000 streams, a
    20,000-stream cache had a fifth of a realistic history's bursts read their streams again:
    docs/benchmarks.md). Every stream here starts at revision 0 (assumed, not read), so the
    target's streams are read only when the cache let one go."""
    reads = {}
    for capacity in ("budget", "process"):
        with Emulator() as source, Emulator() as target:
            generate(source.store, Workload(events=3000, streams=600, seed=13, **RANDOM))
            job = make_job(source, target, tmp_path / capacity, budget={"max_events": 250})
            if capacity == "budget":
                known = KnownStreams(capacity=job.budget.max_events)
            else:  # as core/relay.py asks for it
                known = for_job(f"outlives-{tmp_path}", target.uri, job.budget.max_events)
            run_until_caught_up(job, known=known)
            reads[capacity] = target.faults.calls.get("Read", 0)
            assert differences(source.store, target.store) == []
            assert user_event_count(target.store) == user_event_count(source.store)
    assert reads["process"] * 5 < reads["budget"], reads
