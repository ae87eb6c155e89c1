"""A sharded job's plan (core/shard_plans.py): stored once and the same for every shard, under
a short planning lease renewed while the sample is read, so a planner that dies mid-sample
holds the other shards up one short lease only, and a live planner slower than its lease is
not taken over. Real processes, a real SQLite store and the emulator's gRPC; no time is
asserted: the waits are bounded by `wait_seconds`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from core.checkpoint import open_store
from core.errors import LeaseLostError
from core.eventstore import EventStore
from core.model import Event
from core.shard_plans import fix_plan
from esdb_emulator import Emulator
from esdb_emulator.store import ANY, JSON, ProposedEvent, Store

ROOT = Path(__file__).parents[2]
CHILD = ROOT / "tests" / "crash" / "planner_child.py"


def history(store: Store, events: int = 300, streams: int = 30) -> None:
    for i in range(events):
        store.append(
            f"s-{i % streams}", ANY, [ProposedEvent(str(uuid.uuid4()), "E", JSON, b"{}", b"{}")]
        )


def test_a_planner_killed_mid_sample_holds_the_others_up_one_short_lease(tmp_path):
    """The first shard's process is SIGKILLed while it reads the sample, the job's planning
    lease held; another shard, waiting at most 60 s (half the 120 s lease the planner held
    before), takes the lease over once it lapses and stores the plan."""
    with Emulator() as source, Emulator() as target:
        history(source.store)
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "ESDB_RELAY_JOB_ID": "planned",
            "ESDB_RELAY_SOURCE": source.uri,
            "ESDB_RELAY_TARGET": target.uri,
            "ESDB_RELAY_CHECKPOINT_STORE": f"sqlite:///{tmp_path}/cp.db",
            "ESDB_RELAY_SHARDS": "3",
        }
        proc = subprocess.run(
            [sys.executable, str(CHILD), "20"], env=env, cwd=ROOT, capture_output=True, timeout=120
        )
        assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-3000:]
        assert proc.stdout == b"sampling\n"
        store = open_store(f"sqlite:///{tmp_path}/cp.db")
        held = store.lease_info("planned")
        assert held is not None and held.owner == "dead-planner"  # died holding it
        assert store.load("planned") is None  # and stored nothing
        with EventStore(source.uri, side="source") as s:
            plan = fix_plan(store, "planned", 3, s, "survivor", sample_records=100, wait_seconds=60)
        stored = store.load("planned")
        assert stored is not None and stored.shards == plan and plan.count == 3
        assert store.lease_info("planned") is None  # released once stored


def test_a_live_planner_slower_than_its_lease_keeps_it_and_stores_the_one_plan(tmp_path):
    """The sample read pauses for longer than two planning leases; the lease is renewed, so
    the shard waiting meanwhile never takes it over (the sample is read once) and returns
    the plan the planner stored."""
    store = open_store(f"sqlite:///{tmp_path}/cp.db")
    with Emulator() as source, EventStore(source.uri, side="source") as slow:
        history(source.store)
        reads: list[int | None] = []
        read = slow.read_all_after

        def slow_read(position: int | None, limit: int) -> Iterator[Event]:
            reads.append(position)
            for seen, event in enumerate(read(position, limit)):
                if seen == 5:
                    time.sleep(5.0)  # a slow source: longer than two 2-second leases
                yield event

        slow.read_all_after = slow_read  # type: ignore[method-assign]
        kwargs = {"sample_records": 100, "lease_seconds": 2.0, "wait_seconds": 60.0}
        with ThreadPoolExecutor(1) as pool:
            first = pool.submit(fix_plan, store, "job", 3, slow, "planner", **kwargs)
            for _ in range(600):  # until the planner holds the lease and reads
                if reads or first.done():
                    break
                time.sleep(0.05)
            second = fix_plan(store, "job", 3, slow, "waiting", **kwargs)
            planned = first.result(timeout=120)
    assert reads == [None]  # one sample: the waiting shard did not plan again
    assert planned == second
    stored = store.load("job")
    assert stored is not None and stored.shards == planned


def test_a_shard_that_waits_too_long_is_told_who_plans_and_what_to_do(tmp_path):
    store = open_store(f"sqlite:///{tmp_path}/cp.db")
    store.acquire("job", "stuck-planner", 300.0)  # a planner that never stores a plan
    with (
        Emulator() as source,
        EventStore(source.uri, side="source") as s,
        pytest.raises(LeaseLostError) as caught,
    ):
        fix_plan(store, "job", 2, s, "waiting", wait_seconds=1.0)
    message = str(caught.value)
    assert "no shard plan was stored within 1 s: 'stuck-planner' is planning" in message
    assert "run this shard again" in caught.value.hint
    assert store.load("job") is None
