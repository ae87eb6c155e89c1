"""Chains of slices under failures and time-outs (core/invocation.py), with the SQLite store and
two emulators: a retried message of a replaced chain is dropped, and a slice's lease ends when
the platform stops the function."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import pytest

from core.checkpoint import Lease
from core.errors import TransientError
from core.invocation import invoke, parse_request
from core.relay import Relay
from esdb_emulator.workload import Workload, generate
from tests.engine.helpers import differences, make_job


def failing_at_append(job: Any) -> Relay:
    """A relay whose slice fails at its first append, as when the target goes away: the engine
    records the failed slice, and the trigger's message is delivered again later."""

    def step(name: str) -> None:
        if name == "append":
            raise TransientError("target: append: ServiceUnavailable")

    return Relay(job, on_step=step)


def test_a_retried_message_of_a_replaced_chain_is_dropped(pair, tmp_path):
    source, target = pair
    generate(source.store, Workload(events=600, streams=20, links=False))
    job = make_job(source, target, tmp_path, budget={"max_events": 100})
    first = invoke(parse_request({}), job, remaining_seconds=60)  # a tick starts chain A
    message_a = first.chain
    assert message_a is not None
    with pytest.raises(TransientError):  # A's next hop fails: its message comes back later
        invoke(parse_request(message_a), job, remaining_seconds=60, relay_factory=failing_at_append)
    tick = invoke(parse_request({}), job, remaining_seconds=60)  # the schedule starts chain B
    assert tick.chain is not None and tick.status == "ok"
    retried = invoke(parse_request(message_a), job, remaining_seconds=60)  # A's message again
    assert retried.chain is None, "a second chain runs beside the first"
    assert "stale chain message" in retried.result["skipped"]
    assert retried.result == {"skipped": retried.result["skipped"]}  # nothing was copied
    response, hops = tick, 0
    while response.chain is not None:  # chain B alone copies the rest
        response = invoke(parse_request(response.chain), job, remaining_seconds=60)
        hops += 1
        assert hops < 20
    assert differences(source.store, target.store) == []


def test_a_message_of_the_current_chain_is_retried(pair, tmp_path):
    """A failed hop's message, delivered again while no other chain started, goes on."""
    source, target = pair
    generate(source.store, Workload(events=300, streams=10, links=False))
    job = make_job(source, target, tmp_path, budget={"max_events": 100})
    message = invoke(parse_request({}), job, remaining_seconds=60).chain
    with pytest.raises(TransientError):
        invoke(parse_request(message), job, remaining_seconds=60, relay_factory=failing_at_append)
    retried = invoke(parse_request(message), job, remaining_seconds=60)
    assert retried.result["events_written"] > 0 and retried.chain == message


class RecordingRelay(Relay):
    """Records every lease the slice holds (acquired or renewed) through the store it uses."""

    leases: ClassVar[list[Lease]] = []

    def run_once(self, *args: Any, **kwargs: Any) -> Any:
        store = self.store
        outer = self

        class Spy:
            def __getattr__(self, name: str) -> Any:
                return getattr(store, name)

            def acquire(self, *a: Any) -> Lease:
                lease = store.acquire(*a)
                outer.leases.append(lease)
                return lease

            def renew(self, *a: Any) -> Lease:
                lease = store.renew(*a)
                outer.leases.append(lease)
                return lease

        self.store = Spy()  # type: ignore[assignment]
        try:
            return super().run_once(*args, **kwargs)
        finally:
            self.store = store


def test_a_slices_lease_ends_when_the_platform_stops_the_function(pair, tmp_path):
    """Killed at its timeout, a slice runs no `finally` and never releases its lease: the
    lease must end by then, or every trigger finds the job busy until it expires."""
    source, target = pair
    generate(source.store, Workload(events=200, streams=10, links=False))
    job = make_job(source, target, tmp_path, budget={"max_events": 100})
    assert job.lease_ttl_seconds == 900  # the default, far beyond the function's 30 s here
    RecordingRelay.leases = []
    started = datetime.now(UTC)
    invoke(parse_request({}), job, remaining_seconds=30, relay_factory=RecordingRelay)
    killed_by = datetime.now(UTC) + timedelta(seconds=30)  # later than the real kill
    assert RecordingRelay.leases, "no lease was taken"
    for lease in RecordingRelay.leases:
        assert started < lease.expires_at <= killed_by
