"""A stream first met at its source revision 0 is written without reading it on the target
(StreamWriter.assumed): the NO_STREAM expectation is the server's to check. A backfill from the
start reads no target stream; a replay over events already there writes nothing twice, counts
nothing as written, and falls back to reading streams."""

from __future__ import annotations

import pytest

from core.engine.known_streams import KnownStreams
from core.engine.plan import EventOp, SliceIndex
from core.engine.writer import StreamWriter, WriteContext
from core.eventstore import EventStore
from core.model import NO_STREAM
from esdb_emulator import Emulator
from esdb_emulator.store import ProposedEvent
from esdb_emulator.workload import Workload, generate
from tests.engine.helpers import differences, make_job, run_until_caught_up, user_event_count
from tests.engine.test_known_streams import slice_with

RANDOM = {
    "interleaving": "random",
    "links": False,
    "soft_deleted": 0,
    "tombstoned": 0,
    "with_metadata": 0,
}
MODES = [
    pytest.param({"mode": "ordered", "multi_append": False}, id="ordered"),
    pytest.param({"mode": "ordered", "multi_append": True}, id="ordered-multi-append"),
    pytest.param({"mode": "partitioned", "partitions": 4}, id="partitioned"),
]


def metastream_records(store) -> int:
    return sum(1 for r in store.iter_all() if r.stream.startswith("$$"))


@pytest.mark.parametrize("settings", MODES)
def test_a_backfill_from_the_start_reads_no_target_stream(tmp_path, settings):
    with Emulator() as source, Emulator() as target:
        generate(source.store, Workload(events=1500, streams=120, seed=21, **RANDOM))
        job = make_job(source, target, tmp_path, budget={"max_events": 400}, **settings)
        results = run_until_caught_up(job)
        assert differences(source.store, target.store) == []
        assert user_event_count(target.store) == user_event_count(source.store)
        assert sum(r.events_written for r in results) == user_event_count(source.store)
        # One read per slice: the target's head, before its first assumed append. Without
        # the assumption each of the 120 streams would be read (tail and metadata) first.
        assert target.faults.calls.get("Read", 0) <= len(results)


@pytest.mark.parametrize("settings", MODES)
def test_a_replay_over_copied_events_writes_and_counts_nothing_twice(tmp_path, settings):
    workload = Workload(events=1200, streams=60, seed=22)  # metadata, deletes, links too
    with Emulator() as source, Emulator() as clean:
        generate(source.store, workload)
        job = make_job(source, clean, tmp_path / "clean", budget={"max_events": 500}, **settings)
        total = sum(r.events_written for r in run_until_caught_up(job))
    with Emulator() as source, Emulator() as target:
        generate(source.store, workload)
        first = make_job(source, target, tmp_path, budget={"max_events": 500}, **settings)
        head = slice_with(first, source, target, None)
        assert head.status == "ok" and head.events_written > 0
        # A second job (a lost checkpoint) copies everything from the start again: the
        # first slice's records are on the target already.
        again = make_job(
            source, target, tmp_path, job_id="replay", budget={"max_events": 500}, **settings
        )
        results = run_until_caught_up(again)
        assert differences(source.store, target.store) == []
        assert user_event_count(target.store) == user_event_count(source.store)
        # A metadata record written twice would show here (differences() skips `$$`).
        assert metastream_records(target.store) == metastream_records(source.store)
        assert head.events_written + sum(r.events_written for r in results) == total


@pytest.mark.parametrize("settings", MODES)
def test_a_foreign_stream_on_the_target_is_still_refused(tmp_path, settings):
    with Emulator() as source, Emulator() as target:
        generate(source.store, Workload(events=300, streams=10, seed=23, **RANDOM))
        name = next(n for n in source.store.stream_names() if not n.startswith("$"))
        target.store.append(
            name, -1, [ProposedEvent("7c1d0d52-8a55-4a57-9a55-5f8f6e0e0c11", "Other", "", b"{}")]
        )
        job = make_job(source, target, tmp_path, **settings)
        with pytest.raises(AssertionError, match="did not catch up"):
            run_until_caught_up(job, max_slices=3)
        assert [r.type for r in target.store.visible_records(name)] == ["Other"]


def test_an_assumption_no_append_confirmed_is_not_cached(tmp_path):
    with Emulator() as source, Emulator() as target:
        generate(source.store, Workload(events=20, streams=2, seed=24, **RANDOM))
        job = make_job(source, target, tmp_path)
        with (
            EventStore(source.uri, side="source") as s,
            EventStore(target.uri, side="target") as t,
        ):
            ctx = WriteContext(job, s, t, SliceIndex(), lambda _: None, KnownStreams())
            writer = StreamWriter(ctx)
            first = next(e for e in s.read_all_after(None, 100) if not e.stream.startswith("$"))
            state = writer.state(first.stream, EventOp(first))
            assert state.revision == NO_STREAM and not state.meta_synced
            assert target.faults.calls.get("Read", 0) == 1  # the head, not the stream
            assert writer.learned() == ({}, set())
