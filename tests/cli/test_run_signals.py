"""`esdb-relay run` stopped by a signal, in a subprocess (real signals, real exit codes):
SIGTERM in the middle of a long copy stops it after the append in flight (not at the end of
its slice), commits what is written, releases the lease and exits 143 with the resume
command; a second run starts at once (no lease to wait for) and finishes the copy with no
event lost or duplicated (tests/oracle.py). Ctrl-C (SIGINT) exits 130 the same way."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from core.checkpoint import open_store
from esdb_emulator import Emulator
from esdb_emulator.store import NO_STREAM, ProposedEvent
from tests import oracle

ROOT = Path(__file__).resolve().parents[2]
EVENTS = 6_000
STREAMS = 60


@pytest.fixture
def slow_pair():
    """A source with a long history; a target whose appends take 20 ms each, so that the
    copy (batches of 20 events) lasts far longer than it takes to stop."""
    with Emulator() as source, Emulator() as target:
        per = EVENTS // STREAMS
        for s in range(STREAMS):
            source.store.append(
                f"order-{s}",
                NO_STREAM,
                [
                    ProposedEvent(str(uuid.uuid4()), "Placed", "application/json", b'{"n":1}')
                    for _ in range(per)
                ],
            )
        target.faults.update(
            latency_ms=20, methods={"Append", "BatchAppend", "AppendSession", "AppendRecords"}
        )
        yield source, target


def start(source: Emulator, target: Emulator, tmp_path: Path, **extra: str) -> subprocess.Popen:
    env = {
        **os.environ,
        "ESDB_RELAY_JOB_ID": "signals",
        "ESDB_RELAY_SOURCE": source.uri,
        "ESDB_RELAY_TARGET": target.uri,
        "ESDB_RELAY_CHECKPOINT_STORE": f"sqlite:///{tmp_path}/cp.db",
        "ESDB_RELAY_BATCH__MAX_EVENTS": "20",
        "ESDB_RELAY_LEASE_TTL_SECONDS": "600",  # a lease left behind would block the re-run
        "COLUMNS": "300",
        **extra,
    }
    return subprocess.Popen(
        [sys.executable, "-m", "handlers.cli.main", "run", "--until-caught-up",
         "--no-progress", "--log-format", "json"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def user_events(db: Emulator) -> int:
    return sum(1 for r in db.store.iter_all() if r.stream.startswith("order-"))


def wait_for_copying(target: Emulator, proc: subprocess.Popen) -> None:
    for _ in range(600):  # bounded: up to 60 s for the first events to arrive
        if user_events(target) >= 100 or proc.poll() is not None:
            return
        time.sleep(0.1)


MODES = {
    "ordered": {},
    "partitioned": {"ESDB_RELAY_MODE": "partitioned", "ESDB_RELAY_PARTITIONS": "4"},
}


@pytest.mark.parametrize(
    ("signum", "code", "mode"),
    [
        (signal.SIGTERM, 143, "ordered"),
        (signal.SIGINT, 130, "ordered"),
        (signal.SIGTERM, 143, "partitioned"),
    ],
)
def test_a_signal_stops_the_copy_after_the_append_in_flight(
    slow_pair, tmp_path, signum, code, mode
):
    source, target = slow_pair
    proc = start(source, target, tmp_path, **MODES[mode])
    try:
        wait_for_copying(target, proc)
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(signum)
        out, errs = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == code, out + errs
    copied = user_events(target)
    assert 0 < copied < EVENTS, "it stopped mid-copy, not at the end of its slice"
    assert "resume with: esdb-relay run --until-caught-up --no-progress" in out
    assert "Traceback" not in errs

    store = open_store(f"sqlite:///{tmp_path}/cp.db")
    try:
        checkpoint = store.load("signals")
        assert checkpoint is not None and checkpoint.events_written == copied  # committed
        lease = store.acquire("signals", "the-next-run", 60)  # released: free at once
        store.release(lease)
    finally:
        store.close()

    target.faults.update(latency_ms=0)
    second = start(source, target, tmp_path, **MODES[mode])
    out, errs = second.communicate(timeout=120)
    assert second.returncode == 0, out + errs
    assert "caught up" in out and "busy" not in errs
    report = oracle.compare(
        source.store, target.store, oracle.Job(multi_append=True, ordered=mode == "ordered")
    )
    assert report.clean, report
    assert user_events(target) == EVENTS


def test_sigterm_while_the_target_is_down_stops_the_retries(slow_pair, tmp_path):
    """The append in flight cannot finish (the target answers UNAVAILABLE): SIGTERM ends its
    retries instead of waiting out the slice's deadline (10 minutes by default), releases the
    lease, and the next run copies everything once the target is back."""
    source, target = slow_pair
    proc = start(source, target, tmp_path)
    try:
        wait_for_copying(target, proc)
        assert proc.poll() is None, proc.communicate()
        target.faults.update(
            latency_ms=0,
            unavailable_rate=1.0,
            methods={"Append", "BatchAppend", "AppendSession", "AppendRecords"},
        )
        for _ in range(300):  # bounded: up to 30 s for a retried append
            if target.faults.injected.get("unavailable", 0) >= 2:
                break
            time.sleep(0.1)
        assert target.faults.injected.get("unavailable", 0) >= 2
        proc.send_signal(signal.SIGTERM)
        out, errs = proc.communicate(timeout=60)  # not the slice's 600 s deadline
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 143, out + errs
    assert "resume with: esdb-relay run" in out and "Traceback" not in errs

    store = open_store(f"sqlite:///{tmp_path}/cp.db")
    try:
        store.release(store.acquire("signals", "the-next-run", 60))  # the lease is free
    finally:
        store.close()
    target.faults.reset()
    second = start(source, target, tmp_path)
    out, errs = second.communicate(timeout=120)
    assert second.returncode == 0, out + errs
    report = oracle.compare(source.store, target.store, oracle.Job(multi_append=True))
    assert report.clean, report
    assert user_events(target) == EVENTS
