"""Checkpoint stores (moto DynamoDB, Azurite Table, Firestore emulator) stopped mid-slice and
restarted with their data: while the store is down every slice fails with an error and
commits nothing; after the restart the relay resumes from the last committed checkpoint and
finishes with target == filtered source, 0 differences, 0 duplicates, 0 gaps.
"""

from __future__ import annotations

import time

import pytest

from core.checkpoint import Checkpoint, CheckpointStore
from core.errors import RelayError, StoreUnavailableError
from core.relay import Relay
from esdb_emulator import Emulator
from esdb_emulator.workload import Workload, generate
from tests.engine.helpers import make_job
from tests.reliability.helpers import check_replica
from tests.reliability.services import SERVICES


def load_when_back(store: CheckpointStore, job_id: str, seconds: float = 90.0) -> Checkpoint | None:
    """The checkpoint once the store answers again: a gRPC client (Firestore) waits out its
    reconnect backoff after an outage, so the first calls may still fail."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return store.load(job_id)
        except StoreUnavailableError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


# Firestore: two JVM emulator starts and the gRPC client's reconnect backoff, ~30-45 s:
# run by `make soak` (pytest -m soak), not by default.
KINDS = [
    pytest.param(kind, marks=pytest.mark.soak) if kind == "firestore" else kind
    for kind in sorted(SERVICES)
]


@pytest.mark.parametrize("kind", KINDS)
def test_relay_resumes_after_its_checkpoint_store_restarts(tmp_path, kind):
    service = SERVICES[kind](tmp_path)
    service.start()
    try:
        with Emulator() as source, Emulator() as target:
            generate(source.store, Workload(events=900, streams=40, seed=len(kind)))
            job = make_job(
                source,
                target,
                tmp_path,
                job_id=f"restart-{kind}",
                budget={"max_events": 200},
                batch={"max_events": 25},
                filters={"exclude_streams": ["^cart-"]},
            )
            store = service.store()
            seen = {"read": 0, "written": 0}  # slices started; writes in the current one

            def stop_store_mid_slice(step: str) -> None:
                if step == "read":
                    seen["read"] += 1
                    seen["written"] = 0
                elif step == "written":
                    seen["written"] += 1
                    if seen == {"read": 2, "written": 3}:  # the 2nd slice, mid-way
                        service.stop()

            with Relay(job, store=store, on_step=stop_store_mid_slice) as relay:
                relay.run_once()
                before = store.load(job.job_id)
                assert before is not None and before.position is not None
                with pytest.raises(RelayError):
                    relay.run_once()  # the store went away before its commit
                with pytest.raises(RelayError):
                    relay.run_once()  # still down: an error, not a silent idle slice
                service.start()
                after_restart = load_when_back(store, job.job_id)
                assert after_restart == before  # nothing committed while down, nothing lost
                for _ in range(30):
                    if relay.run_once().caught_up:
                        break
            check = check_replica(source.store, target.store, job.filters)
            assert check.events_checked > 400
            assert check.clean, check
            history = store.history(job.job_id, limit=50)
            assert history[0].caught_up
            store.close()
    finally:
        service.stop()
