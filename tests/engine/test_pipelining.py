"""Ordered mode reads the next chunk of `$all` while it writes the current one."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from core.checkpoint import open_store
from core.config import BatchConfig
from core.engine import Budget, run_slice
from core.engine.plan import EventOp, SliceIndex
from core.engine.reader import READ_AHEAD_CHUNKS, ChunkReader
from core.eventstore import EventStore
from esdb_emulator import Emulator
from esdb_emulator.workload import Workload, generate
from tests.engine.helpers import differences, make_job, run_until_caught_up, user_event_count


def test_the_first_chunk_is_written_before_the_second_is_read(tmp_path):
    """The reader is held after its first chunk until a write has completed: a slice that read
    everything before writing would never get there (the wait would time out)."""
    with Emulator() as source, Emulator(multi_append=False) as target:
        generate(source.store, Workload(events=400, streams=20, seed=2))
        job = make_job(
            source, target, tmp_path, batch={"max_events": 20}, budget={"max_events": 5000}
        )
        first_write = threading.Event()
        steps: list[str] = []
        held = []

        def on_step(step: str) -> None:
            steps.append(step)
            if step == "written":
                first_write.set()
            elif step == "chunk" and not held:
                held.append(first_write.wait(timeout=20))

        store = open_store(job.checkpoint_store)
        with (
            EventStore(source.uri, side="source") as s,
            EventStore(target.uri, side="target") as t,
        ):
            result = run_slice(job, s, t, store, Budget.from_job(job), on_step=on_step)
        assert held == [True], "the first chunk was not written while the reader waited"
        assert result.status == "ok" and result.caught_up
        assert steps.count("chunk") > 10
        assert steps.index("written") < steps.index("chunk", steps.index("chunk") + 1)
        assert differences(source.store, target.store) == []
        assert user_event_count(target.store) == user_event_count(source.store)


def test_pipelined_ordered_mode_keeps_the_global_order(tmp_path):
    with Emulator() as source, Emulator(multi_append=False) as target:
        generate(source.store, Workload(events=300, streams=30, interleaving="random", seed=6))
        target.faults.update(unavailable_rate=0.05, methods={"BatchAppend"}, seed=3)
        job = make_job(source, target, tmp_path, batch={"max_events": 7})
        run_until_caught_up(job, max_slices=500)
        assert target.faults.injected.get("unavailable", 0) > 0
        target.faults.reset()
        assert differences(source.store, target.store) == []

        def order(store) -> list:
            return [
                r.event_id
                for r in store.iter_all()
                if not r.stream.startswith("$") and not r.type.startswith("$")
            ]

        assert order(target.store) == order(source.store)


@contextmanager
def reading_slice() -> Iterator[tuple[ChunkReader, SliceIndex]]:
    """A reader over 600 generated events (plus system records), 10 events a chunk, whose
    chunks nobody takes until the test does."""
    with Emulator() as emulator:
        generate(emulator.store, Workload(events=600, streams=10, seed=7))
        index = SliceIndex()
        budget = Budget(5000, 10**9, time.monotonic() + 60)
        chunk = BatchConfig(max_events=10, max_bytes=10**9)
        with EventStore(emulator.uri, side="source") as source:
            reader = ChunkReader(source, budget, chunk, lambda e: EventOp(e), index)
            try:
                yield reader, index
            finally:
                reader.close()


def test_the_reader_stays_a_few_chunks_ahead_of_a_slow_writer():
    with reading_slice() as (reader, _):
        time.sleep(1.0)  # no chunk taken: the reader fills its window and waits
        # the window, and the chunk in hand that waits for room in it
        assert reader.events_read == (READ_AHEAD_CHUNKS + 1) * 10
        assert len(reader.read_all()) > 600  # taking chunks lets it go on to the end


def test_the_reader_reads_on_while_the_id_search_waits_for_the_whole_slice():
    with reading_slice() as (reader, index):
        waiter = threading.Thread(target=index.wait_complete, daemon=True)
        waiter.start()  # as a writer's id search does, taking no chunk meanwhile
        waiter.join(timeout=20)
        assert not waiter.is_alive(), "the whole read never finished: a deadlock"
        assert reader.events_read > 600
