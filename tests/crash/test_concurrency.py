"""Overlapping invocations: never two writers committing, never a lost or doubled event."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.checkpoint import open_store
from core.engine import Budget, run_slice
from core.errors import LeaseLostError
from core.eventstore import EventStore
from esdb_emulator import Emulator
from esdb_emulator.workload import Workload, generate
from tests.engine.helpers import differences, make_job, user_event_count

CHILD = Path(__file__).with_name("relay_child.py")
ROOT = Path(__file__).parents[2]


def test_two_relay_processes_on_one_job_copy_everything_once(tmp_path):
    with Emulator() as source, Emulator() as target:
        generate(source.store, Workload(events=2000, streams=80, seed=21))
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "ESDB_RELAY_JOB_ID": "overlap",
            "ESDB_RELAY_SOURCE": source.uri,
            "ESDB_RELAY_TARGET": target.uri,
            "ESDB_RELAY_CHECKPOINT_STORE": f"sqlite:///{tmp_path}/cp.db",
            "ESDB_RELAY_BUDGET__MAX_EVENTS": "300",
        }
        children = [
            subprocess.Popen(
                [sys.executable, str(CHILD), "none", "0"],
                env=env,
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
            for _ in range(2)
        ]
        outputs = [c.communicate(timeout=180)[0].decode() for c in children]
        assert [c.returncode for c in children] == [0, 0], outputs
        assert differences(source.store, target.store) == []
        assert user_event_count(target.store) == user_event_count(source.store)
        history = open_store(env["ESDB_RELAY_CHECKPOINT_STORE"]).history("overlap", limit=200)
        assert len({h.owner for h in history}) == 2  # both worked, one slice at a time


def test_an_invocation_fenced_out_mid_slice_cannot_commit(tmp_path):
    with Emulator() as source, Emulator() as target:
        generate(source.store, Workload(events=300, streams=10, seed=4))
        job = make_job(source, target, tmp_path, lease_ttl_seconds=1)
        store = open_store(job.checkpoint_store)

        def paused_past_its_lease(step: str) -> None:
            if step == "commit":
                time.sleep(1.2)  # like a frozen container: the lease expires meanwhile
                store.acquire(job.job_id, "the-next-invocation", 60)

        with (
            EventStore(source.uri, side="source") as s,
            EventStore(target.uri, side="target") as t,
            pytest.raises(LeaseLostError),
        ):
            run_slice(
                job,
                s,
                t,
                store,
                Budget(1000, 10**9, time.monotonic() + 60),
                on_step=paused_past_its_lease,
            )
        assert store.load(job.job_id) is None  # nothing committed by the fenced-out owner
