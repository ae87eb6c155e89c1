"""Fault matrix: each fault the emulator can inject, on the source and on the target, armed at
seeded random step boundaries of a running relay; plus the target restarted from its snapshot
mid-run. Every case ends with target == filtered source: 0 differences, 0 duplicates, 0 gaps.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from esdb_emulator import Emulator
from esdb_emulator.workload import Workload, generate
from tests.engine.helpers import make_job
from tests.reliability.helpers import check_replica, drive

Arm = Callable[[random.Random], dict[str, Any]]

# Each fault: the settings that arm it once (a burst), drawn from the case's seeded RNG.
FAULTS: dict[str, Arm] = {
    "unavailable-burst": lambda r: {"unavailable_next": r.randint(1, 4)},
    "latency-spike": lambda r: {"latency_ms": r.uniform(40, 120), "jitter_ms": 40.0},
    "deadline-exceeded": lambda r: {"deadline_next": r.randint(1, 3)},
    "not-leader": lambda r: {"not_leader_next": r.randint(1, 3)},
    # The target's reads are short stream-tail reads: a reset point of 0 or 1 reaches them.
    "reset-mid-read": lambda r: {
        "reset_read_after": r.choice([0, 1, r.randint(2, 60)]),
        "reset_reads_next": r.randint(2, 8),
    },
}
# Disarming what does not wear off by itself (latency stays until cleared).
CLEAR = {"latency_ms": 0.0, "jitter_ms": 0.0}

CASES = [(side, fault) for fault in FAULTS for side in ("source", "target")]
# Event-type filters combined with `$maxCount` are covered by tests/engine/test_properties.py;
# here a stream filter keeps the oracle simple.
FILTERS = {"exclude_streams": ["^cart-"]}


# Bursts armed per case: each costs the relay its retry backoff, and the target sees many
# more calls than the source; a bound keeps every case short.
MAX_ARMS = 10


def job_for(source: Emulator, target: Emulator, tmp_path, **overrides: Any):
    settings: dict[str, Any] = {
        "budget": {"max_events": 250},
        "batch": {"max_events": 30},
        "filters": FILTERS,
        "lease_ttl_seconds": 30,
        **overrides,
    }
    return make_job(source, target, tmp_path, **settings)


@pytest.mark.parametrize(("side", "fault"), CASES, ids=[f"{s}-{f}" for s, f in CASES])
def test_relay_survives_fault(tmp_path, side, fault):
    rng = random.Random(f"{side}-{fault}")
    with Emulator() as source, Emulator() as target:
        generate(source.store, Workload(events=900, streams=40, seed=rng.randint(0, 999)))
        faulty = source if side == "source" else target
        faulty.faults.update(**FAULTS[fault](rng))  # armed from the first call on, and again:
        armed = 1

        def on_step(step: str) -> None:
            nonlocal armed
            if armed < MAX_ARMS and rng.random() < 0.2:
                faulty.faults.update(**FAULTS[fault](rng))
                armed += 1
            elif rng.random() < 0.3:
                faulty.faults.update(**CLEAR)

        job = job_for(source, target, tmp_path)
        outcome = drive(job, on_step=on_step)
        injected = sum(faulty.faults.injected.values())
        check = check_replica(source.store, target.store, job.filters)
        assert armed > 0
        if fault != "latency-spike":  # latency is not an error: nothing is counted for it
            assert injected > 0, faulty.faults.injected
        assert check.events_checked > 400
        assert check.clean, check
        assert outcome.permanent_errors == []  # transient faults never stop a job for good


def test_target_max_append_size_rejections(tmp_path):
    """A target whose maximum append size is far below the batch size: every batch is refused
    at first and split until it fits."""
    with Emulator() as source, Emulator() as target:
        generate(source.store, Workload(events=800, streams=20, burst=30, seed=5))
        target.faults.update(max_append_size=4_000)
        job = job_for(source, target, tmp_path, batch={"max_events": 200})
        drive(job)
        check = check_replica(source.store, target.store, job.filters)
        assert check.events_checked > 300
        assert check.clean, check


@pytest.mark.parametrize("mode", ["ordered", "partitioned"])
def test_both_sides_random_faults(tmp_path, mode):
    """Every fault on both sides at once, seeded; partitioned mode runs 8 writers that share
    the target connection."""
    rng = random.Random(77)
    with Emulator() as source, Emulator() as target:
        generate(source.store, Workload(events=1200, streams=50, seed=77))
        target.faults.update(max_append_size=20_000)
        armed = 0

        def on_step(step: str) -> None:
            nonlocal armed
            for emulator in (source, target):
                if armed < 2 * MAX_ARMS and rng.random() < 0.15:
                    emulator.faults.update(**rng.choice(list(FAULTS.values()))(rng))
                    armed += 1
                elif rng.random() < 0.1:
                    emulator.faults.update(**CLEAR)

        partitions = 8 if mode == "partitioned" else 1
        job = job_for(source, target, tmp_path, mode=mode, partitions=partitions)
        outcome = drive(job, on_step=on_step)
        assert sum(source.faults.injected.values()) + sum(target.faults.injected.values()) > 0
        check = check_replica(source.store, target.store, job.filters, ordered=partitions == 1)
        assert check.clean, check
        assert outcome.permanent_errors == []


def test_partitioned_writers_survive_target_unavailable(tmp_path):
    """8 writers share one target connection: one writer's UNAVAILABLE makes esdbclient close
    the channel and reconnect, which cancels the other writers' in-flight appends (CANCELLED,
    "Channel closed!"). Those appends never completed: they must be retried, not stop the job
    with a permanent error."""
    permanent: list[str] = []
    for seed in (1, 2):
        with Emulator() as source, Emulator() as target:
            generate(source.store, Workload(events=1200, streams=50, seed=seed))
            target.faults.update(
                unavailable_rate=0.1, latency_ms=20, seed=seed, methods={"Append", "BatchAppend"}
            )
            job = job_for(source, target, tmp_path / str(seed), mode="partitioned", partitions=8)
            outcome = drive(job)
            assert target.faults.injected.get("unavailable", 0) > 0
            check = check_replica(source.store, target.store, job.filters, ordered=False)
            assert check.clean, check
            permanent += outcome.permanent_errors
    assert permanent == []


def test_target_restarted_from_its_snapshot_mid_run(tmp_path):
    """The target stops mid-slice (saving its snapshot) and a new emulator starts from that
    snapshot on the same port a second later; the relay's retries carry it over the gap."""
    snapshot = tmp_path / "target.gz"
    with Emulator() as source:
        generate(source.store, Workload(events=1200, streams=50, seed=9))
        target = Emulator(snapshot_path=snapshot).start()
        current = {"target": target}
        restarts: list[threading.Thread] = []

        def restart() -> None:
            time.sleep(1.0)
            current["target"] = Emulator(port=target.port, snapshot_path=snapshot).start()

        written = 0

        def on_step(step: str) -> None:
            nonlocal written
            if step == "written":
                written += 1
                if written == 12:
                    current["target"].stop()
                    thread = threading.Thread(target=restart)
                    thread.start()
                    restarts.append(thread)

        try:
            job = job_for(source, target, tmp_path)
            outcome = drive(job, on_step=on_step)
            for thread in restarts:
                thread.join()
            assert restarts, "the target was never restarted"
            assert current["target"] is not target
            check = check_replica(source.store, current["target"].store, job.filters)
            assert check.events_checked > 400
            assert check.clean, (check, outcome.errors)
        finally:
            for thread in restarts:
                thread.join()
            current["target"].stop()
