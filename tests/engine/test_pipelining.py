"""Ordered mode reads the next chunk of `$all` while it writes the current one."""

from __future__ import annotations

import threading

from core.checkpoint import open_store
from core.engine import Budget, run_slice
from core.eventstore import EventStore
from esdb_emulator import Emulator
from esdb_emulator.workload import Workload, generate
from tests.engine.helpers import differences, make_job, run_until_caught_up, user_event_count


def test_the_reader_goes_on_while_the_first_append_is_held(tmp_path):
    """The first append waits until the reader has handed over three more chunks: a slice
    that read and wrote in turn would never get there (the wait would time out)."""
    with Emulator() as source, Emulator(multi_append=False) as target:
        generate(source.store, Workload(events=400, streams=20, seed=2))
        job = make_job(
            source, target, tmp_path, batch={"max_events": 20}, budget={"max_events": 5000}
        )
        chunks = 0
        three_more = threading.Event()
        steps: list[str] = []
        first_append = True

        def on_step(step: str) -> None:
            nonlocal chunks, first_append
            steps.append(step)
            if step == "chunk":
                chunks += 1
                if chunks >= 4:
                    three_more.set()
            elif step == "append" and first_append:
                first_append = False
                assert three_more.wait(timeout=20), "no chunk was read during the append"

        store = open_store(job.checkpoint_store)
        with (
            EventStore(source.uri, side="source") as s,
            EventStore(target.uri, side="target") as t,
        ):
            result = run_slice(job, s, t, store, Budget.from_job(job), on_step=on_step)
        assert result.status == "ok" and result.caught_up
        first = steps.index("append")
        done = steps.index("written", first)
        assert steps[first:done].count("chunk") >= 3  # read while the first append was held
        assert differences(source.store, target.store) == []
        assert user_event_count(target.store) == user_event_count(source.store)


def test_chunks_keep_arriving_between_appends_to_a_slow_target(tmp_path):
    with Emulator() as source, Emulator(multi_append=False) as target:
        generate(source.store, Workload(events=400, streams=40, interleaving="random", seed=8))
        target.faults.update(latency_ms=2, methods={"BatchAppend"})
        job = make_job(source, target, tmp_path, batch={"max_events": 25})
        steps: list[str] = []
        store = open_store(job.checkpoint_store)
        with (
            EventStore(source.uri, side="source") as s,
            EventStore(target.uri, side="target") as t,
        ):
            result = run_slice(job, s, t, store, Budget(10**5, 10**9, 10**12), on_step=steps.append)
        assert result.caught_up
        # Chunks handed over after the first append started: the read overlapped the writes.
        first = steps.index("append")
        assert steps[first:].count("chunk") > 0
        assert differences(source.store, target.store) == []
        assert user_event_count(target.store) == user_event_count(source.store)


def test_pipelined_ordered_mode_keeps_the_global_order(tmp_path):
    with Emulator() as source, Emulator(multi_append=False) as target:
        generate(source.store, Workload(events=500, streams=30, interleaving="random", seed=6))
        target.faults.update(unavailable_rate=0.1, methods={"BatchAppend"}, seed=3)
        job = make_job(source, target, tmp_path, batch={"max_events": 7})
        run_until_caught_up(job, max_slices=500)
        target.faults.reset()
        assert differences(source.store, target.store) == []

        def order(store) -> list:
            return [
                r.event_id
                for r in store.iter_all()
                if not r.stream.startswith("$") and not r.type.startswith("$")
            ]

        assert order(target.store) == order(source.store)
