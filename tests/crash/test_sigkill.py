"""SIGKILL the relay process at every step boundary; the resumed run leaves the target equal
to the filtered source: no duplicates, no gaps.

The relay is a real subprocess (tests/crash/relay_child.py) talking to two emulators over
gRPC and to a SQLite checkpoint file; it kills itself with SIGKILL at an exact step.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from esdb_emulator import Emulator
from esdb_emulator.workload import Workload, generate
from tests.engine.helpers import differences, user_event_count

CHILD = Path(__file__).with_name("relay_child.py")
ROOT = Path(__file__).parents[2]


def run_child(env: dict[str, str], step: str, occurrence: int, delay: float = 0.0) -> int:
    proc = subprocess.run(
        [sys.executable, str(CHILD), step, str(occurrence), str(delay)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        timeout=180,
    )
    if proc.returncode not in (0, -signal.SIGKILL):
        raise AssertionError(
            f"relay child failed ({proc.returncode}):\n{proc.stderr.decode()[-3000:]}"
        )
    return proc.returncode


@pytest.mark.parametrize(
    ("step", "occurrence", "delay"),
    [
        ("read", 2, 0.0),  # after a slice's read, before any write
        ("written", 7, 0.0),  # mid-slice: some appends of the slice done, others not
        ("append", 9, 0.05),  # an append in flight (the server applies it, the client is gone)
        ("commit", 2, 0.0),  # every write of the slice done, checkpoint not committed
        ("committed", 2, 0.0),  # checkpoint committed, lease not released
    ],
)
def test_resume_after_sigkill(tmp_path, step, occurrence, delay):
    with Emulator() as source, Emulator() as target:
        generate(source.store, Workload(events=1500, streams=60, seed=occurrence))
        # The in-flight case needs the append to still be on the wire when the kill lands.
        if step == "append":
            target.faults.update(latency_ms=300, methods={"BatchAppend"})
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "ESDB_RELAY_JOB_ID": "crash-job",
            "ESDB_RELAY_SOURCE": source.uri,
            "ESDB_RELAY_TARGET": target.uri,
            "ESDB_RELAY_CHECKPOINT_STORE": f"sqlite:///{tmp_path}/cp.db",
            "ESDB_RELAY_BUDGET__MAX_EVENTS": "400",
            "ESDB_RELAY_BATCH__MAX_EVENTS": "25",
            # A killed process holds the lease until it expires; keep that short.
            "ESDB_RELAY_LEASE_TTL_SECONDS": "2",
        }
        assert run_child(env, step, occurrence, delay) == -signal.SIGKILL
        written_before_resume = len(target.store)
        target.faults.reset()
        assert run_child(env, "none", 0) == 0
        assert len(target.store) > written_before_resume or step == "committed"
        assert differences(source.store, target.store) == []
        assert user_event_count(target.store) == user_event_count(source.store)


@pytest.mark.parametrize(
    ("step", "occurrence", "delay"),
    [
        ("chunk", 3, 0.0),  # the reader thread mid-read, writers maybe mid-append
        ("written", 9, 0.0),  # some partitions ahead of others: the watermark lags behind
        ("append", 12, 0.05),  # appends in flight on several writer threads at once
        ("commit", 2, 0.0),  # every partition done, the watermark not committed
    ],
)
def test_resume_after_sigkill_in_partitioned_mode(tmp_path, step, occurrence, delay):
    with Emulator() as source, Emulator() as target:
        generate(
            source.store,
            Workload(events=1500, streams=60, interleaving="random", seed=occurrence),
        )
        if step == "append":
            target.faults.update(latency_ms=300, methods={"BatchAppend"})
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "ESDB_RELAY_JOB_ID": "crash-partitioned",
            "ESDB_RELAY_SOURCE": source.uri,
            "ESDB_RELAY_TARGET": target.uri,
            "ESDB_RELAY_CHECKPOINT_STORE": f"sqlite:///{tmp_path}/cp.db",
            "ESDB_RELAY_MODE": "partitioned",
            "ESDB_RELAY_PARTITIONS": "8",
            "ESDB_RELAY_BUDGET__MAX_EVENTS": "400",
            "ESDB_RELAY_BATCH__MAX_EVENTS": "10",
            "ESDB_RELAY_LEASE_TTL_SECONDS": "2",
        }
        assert run_child(env, step, occurrence, delay) == -signal.SIGKILL
        target.faults.reset()
        assert run_child(env, "none", 0) == 0
        assert differences(source.store, target.store) == []
        assert user_event_count(target.store) == user_event_count(source.store)
        ids = [
            r.event_id
            for r in target.store.iter_all()
            if not r.stream.startswith("$") and not r.type.startswith("$")
        ]
        assert len(ids) == len(set(ids))  # no duplicates, even hidden by $maxCount


def test_resume_after_sigkill_with_a_multi_stream_append_in_flight(tmp_path):
    with Emulator() as source, Emulator() as target:
        generate(source.store, Workload(events=1500, streams=60, interleaving="random", seed=8))
        # The kill lands while the server holds the multi-stream append (it then applies it).
        target.faults.update(latency_ms=300, methods={"AppendSession"})
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "ESDB_RELAY_JOB_ID": "crash-multi",
            "ESDB_RELAY_SOURCE": source.uri,
            "ESDB_RELAY_TARGET": target.uri,
            "ESDB_RELAY_CHECKPOINT_STORE": f"sqlite:///{tmp_path}/cp.db",
            "ESDB_RELAY_BUDGET__MAX_EVENTS": "400",
            "ESDB_RELAY_BATCH__MAX_EVENTS": "25",
            "ESDB_RELAY_LEASE_TTL_SECONDS": "2",
        }
        assert run_child(env, "append", 6, 0.05) == -signal.SIGKILL
        target.faults.reset()
        assert run_child(env, "none", 0) == 0
        assert differences(source.store, target.store) == []
        assert user_event_count(target.store) == user_event_count(source.store)
        ids = [
            r.event_id
            for r in target.store.iter_all()
            if not r.stream.startswith("$") and not r.type.startswith("$")
        ]
        assert len(ids) == len(set(ids))
