"""Concurrency faults beyond tests/crash/test_concurrency.py (two overlapping processes, a
fenced-out commit) and the handlers' sequential duplicate deliveries:

- a relay process frozen (SIGSTOP) mid-slice past its lease, another process takes the job over
  and finishes, then the frozen one is thawed (SIGCONT) and carries on with its stale lease;
- the same chained invocation delivered to several concurrent invocations at once, next to
  overlapping scheduled ticks, all through core.invocation.handle in threads.

Each ends with target == filtered source (0 differences, duplicates, gaps) and a checkpoint
that only ever moved forward.
"""

from __future__ import annotations

import os
import queue
import random
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from core.checkpoint import open_store
from core.errors import RelayError
from core.invocation import handle
from esdb_emulator import Emulator
from esdb_emulator.workload import Workload, generate
from tests.reliability.helpers import ROOT, check_replica, child_env
from tests.reliability.soak import write_more

PAUSING_CHILD = Path(__file__).with_name("pausing_child.py")
CHILD = ROOT / "tests" / "crash" / "relay_child.py"


def position(store, job_id: str) -> int:
    checkpoint = store.load(job_id)
    return checkpoint.position.commit if checkpoint and checkpoint.position else -1


def test_a_frozen_relay_thawed_after_a_takeover_writes_no_duplicate(tmp_path):
    with Emulator() as source, Emulator() as target:
        generate(source.store, Workload(events=900, streams=40, seed=31))
        # Slow appends, so the frozen process is caught in the middle of its work.
        target.faults.update(latency_ms=40, methods={"Append", "BatchAppend"})
        store_url = f"sqlite:///{tmp_path}/cp.db"
        env = child_env(
            "frozen",
            source,
            target,
            store_url,
            ESDB_RELAY_BUDGET__MAX_EVENTS="200",
            ESDB_RELAY_BATCH__MAX_EVENTS="20",
            ESDB_RELAY_LEASE_TTL_SECONDS="2",
        )
        store = open_store(store_url)
        # Frozen between two writes of a slice (a freeze inside an SQLite transaction would
        # hold the file's lock: see docs/reliability.md).
        frozen = subprocess.Popen(
            [sys.executable, str(PAUSING_CHILD), "3"],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            _, status = os.waitpid(frozen.pid, os.WUNTRACED)
            assert os.WIFSTOPPED(status), f"the relay exited instead ({status})"
            before = position(store, "frozen")
            assert before >= 0  # it committed a slice before freezing in the next one
            write_more(source.store, random.Random("frozen: more writes"), 40)
            target.faults.reset()
            # The next invocation: waits out the frozen one's lease, takes over, finishes.
            successor = subprocess.run(
                [sys.executable, str(CHILD), "none", "0"],
                env=env,
                cwd=ROOT,
                capture_output=True,
                timeout=120,
            )
            assert successor.returncode == 0, successor.stderr.decode()[-2000:]
            taken_over = position(store, "frozen")
            assert taken_over > before
            owners = {h.owner for h in store.history("frozen", limit=200)}
            assert len(owners) == 2
        finally:
            frozen.send_signal(signal.SIGCONT)
        _, stderr = frozen.communicate(timeout=120)
        # Thawed with a lease that is no longer its own: it stops at its next lease check
        # (LeaseLostError), or, reaching the lease check after the successor released the job,
        # takes a fresh lease and finds nothing left to copy.
        assert frozen.returncode == 0 or b"LeaseLostError" in stderr, stderr.decode()[-2000:]
        assert position(store, "frozen") >= taken_over  # never regressed
        check = check_replica(source.store, target.store)
        assert check.events_checked > 600
        assert check.clean, check
        store.close()


MAX_DELIVERIES = 150


@pytest.fixture
def job_env(monkeypatch, tmp_path):
    def configure(source: Emulator, target: Emulator) -> str:
        url = f"sqlite:///{tmp_path}/cp.db"
        env = child_env(
            "dup",
            source,
            target,
            url,
            ESDB_RELAY_BUDGET__MAX_EVENTS="150",
            ESDB_RELAY_LEASE_TTL_SECONDS="5",
        )
        for key, value in env.items():
            if key.startswith("ESDB_RELAY_"):
                monkeypatch.setenv(key, value)
        return url

    return configure


def test_duplicated_deliveries_and_overlapping_ticks_run_concurrently(job_env):
    with Emulator() as source, Emulator() as target:
        generate(source.store, Workload(events=900, streams=40, seed=32))
        url = job_env(source, target)
        deliveries: queue.Queue[dict] = queue.Queue()
        for payload in ({}, {}, {}, {"chained": True}):  # overlapping ticks and a chain hop
            deliveries.put(payload)
        errors: list[BaseException] = []
        statuses: list[str] = []
        delivered = 0
        lock = threading.Lock()

        def deliver_twice(request: dict) -> None:  # at-least-once: every chain hop, twice
            nonlocal delivered
            with lock:
                delivered += 2
                if delivered > MAX_DELIVERIES:
                    return
            deliveries.put(request)
            deliveries.put(dict(request))

        def function_instance() -> None:
            while True:
                try:
                    request = deliveries.get(timeout=3)
                except queue.Empty:
                    return
                try:
                    response = handle(request, remaining_seconds=60, chain=deliver_twice)
                    with lock:
                        statuses.append(response["status"])
                except RelayError as e:  # the platform would retry it; noted
                    with lock:
                        errors.append(e)

        instances = [threading.Thread(target=function_instance) for _ in range(4)]
        for t in instances:
            t.start()
        for t in instances:
            t.join(timeout=240)
        assert not any(t.is_alive() for t in instances)
        assert delivered > 4 and statuses
        # Whatever the interleaving, finishing the chain leaves an exact copy.
        response = handle({"chained": True}, remaining_seconds=60, chain=lambda _: None)
        while response["next_action"] == "continue":
            response = handle({"chained": True}, remaining_seconds=60, chain=lambda _: None)
        check = check_replica(source.store, target.store)
        assert check.clean, (check, errors[:3])
        store = open_store(url)
        history = store.history("dup", limit=200)
        assert len({h.owner for h in history}) > 1  # several instances really did slices
        positions = [
            h.to_position.commit for h in reversed(history) if h.to_position and not h.error
        ]
        assert positions == sorted(positions)  # each committed slice moved forward
        store.close()
