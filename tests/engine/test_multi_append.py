"""Ordered mode with KurrentDB's multi-stream append: whole batches of several streams in one
atomic call when the target has it, per-stream appends when it has not."""

from __future__ import annotations

import uuid

import pytest

from core import rules
from core.checkpoint import open_store
from core.engine import Budget, run_slice
from core.errors import ConflictError
from core.eventstore import EventStore
from core.model import NO_STREAM
from esdb_emulator import Emulator
from esdb_emulator.store import ANY, ProposedEvent
from esdb_emulator.workload import Workload, generate
from tests.engine.helpers import differences, make_job, user_event_count

RANDOM = {"interleaving": "random", "links": False, "soft_deleted": 0, "tombstoned": 0}


def user_order(store) -> list:
    return [
        r.event_id
        for r in store.iter_all()
        if not r.stream.startswith("$") and not r.type.startswith("$")
    ]


def multi_job(source, target, tmp_path, **overrides):
    return make_job(source, target, tmp_path, multi_append=True, **overrides)


def run(job, source, target, on_step=None):
    store = open_store(job.checkpoint_store)
    with EventStore(source.uri, side="source") as s, EventStore(target.uri, side="target") as t:
        return run_slice(job, s, t, store, Budget.from_job(job), on_step=on_step)


def count_appends(job, source, target) -> int:
    steps: list[str] = []
    result = run(job, source, target, steps.append)
    assert result.status == "ok" and result.caught_up
    return steps.count("append")


@pytest.mark.parametrize("multi_append", [True, False])
def test_multi_append_is_used_exactly_when_the_target_has_it(tmp_path, multi_append):
    with Emulator() as source, Emulator(multi_append=multi_append) as target:
        generate(source.store, Workload(events=600, streams=200, seed=5, **RANDOM))
        # The first AppendSession call fails UNAVAILABLE (and is retried): the emulator counts
        # it only if the engine called the v2 multi-stream append at all.
        target.faults.update(unavailable_next=1, methods={"AppendSession"})
        job = multi_job(source, target, tmp_path, budget={"max_events": 5000})
        appends = count_appends(job, source, target)
        called = target.faults.injected.get("unavailable", 0)
        if multi_append:
            assert called == 1
            # 600 events over 200 streams, batches end where a stream comes back: far fewer
            # calls than one per same-stream run (~600; measured: 49).
            assert appends < 100, appends
        else:
            assert called == 0
            assert appends > 500, appends
        assert differences(source.store, target.store) == []
        assert user_order(target.store) == user_order(source.store)


def test_not_used_when_the_job_turns_it_off(tmp_path):
    with Emulator() as source, Emulator() as target:
        generate(source.store, Workload(events=200, streams=50, seed=5, **RANDOM))
        target.faults.update(unavailable_next=1, methods={"AppendSession"})
        job = make_job(source, target, tmp_path, multi_append=False, budget={"max_events": 5000})
        assert count_appends(job, source, target) > 150
        assert target.faults.injected.get("unavailable", 0) == 0
        # Byte for byte: no `$schema.*` keys in the copied metadata.
        assert not any(b"$schema" in r.metadata for r in target.store.iter_all())
        assert differences(source.store, target.store) == []


def test_metadata_and_deletes_are_barriers_and_the_result_is_exact(tmp_path):
    with Emulator() as source, Emulator() as target:
        counts = generate(source.store, Workload(events=3000, streams=150, seed=7))
        assert counts["soft_deleted"] and counts["tombstoned"] and counts["metadata"]
        job = multi_job(source, target, tmp_path, budget={"max_events": 600})
        for _ in range(20):
            if run(job, source, target).caught_up:
                break
        assert differences(source.store, target.store) == []
        assert user_event_count(target.store) == user_event_count(source.store)
        assert user_order(target.store) == user_order(source.store)


def test_oversize_batches_are_halved(tmp_path):
    with Emulator() as source, Emulator() as target:
        generate(source.store, Workload(events=500, streams=100, seed=3, **RANDOM))
        target.faults.update(max_append_size=3000)  # a few events per call
        job = multi_job(source, target, tmp_path, budget={"max_events": 5000})
        appends = count_appends(job, source, target)
        assert appends > 500 // 5
        assert differences(source.store, target.store) == []
        assert user_order(target.store) == user_order(source.store)


def _first_event_of(source: Emulator, stream: str):
    with EventStore(source.uri, side="source") as s:
        return s.read_stream(stream, from_revision=0, limit=1)[0]


def test_a_batch_partly_written_by_someone_else_is_resynced_once(tmp_path):
    """A fenced-out invocation wrote one stream's first event just before our multi-append:
    the call conflicts, writes nothing, the stream is learned again and the batch retried
    without it."""
    with Emulator() as source, Emulator() as target:
        generate(source.store, Workload(events=300, streams=60, seed=4, **RANDOM))
        first = next(r for r in source.store.iter_all() if not r.stream.startswith("$"))
        job = multi_job(source, target, tmp_path, budget={"max_events": 5000})
        steps: list[str] = []

        def on_step(step: str) -> None:
            steps.append(step)
            if step == "append" and steps.count("append") == 1:
                event = _first_event_of(source, first.stream)
                with EventStore(target.uri, side="target") as t:
                    t.append(first.stream, NO_STREAM, [rules.out_event(event, with_original=True)])

        result = run(job, source, target, on_step)
        assert result.caught_up
        assert differences(source.store, target.store) == []
        assert user_event_count(target.store) == user_event_count(source.store)
        assert user_order(target.store)[0] == first.event_id
        assert steps.count("append") >= 2


def test_a_foreign_write_mid_slice_stops_with_a_conflict_and_writes_nothing(tmp_path):
    with Emulator() as source, Emulator() as target:
        generate(source.store, Workload(events=300, streams=60, seed=4, **RANDOM))
        first = next(r for r in source.store.iter_all() if not r.stream.startswith("$"))
        job = multi_job(source, target, tmp_path, budget={"max_events": 5000})

        def on_step(step: str) -> None:
            if step == "append" and not target.store.stream_names().count(first.stream):
                foreign = ProposedEvent(str(uuid.uuid4()), "NotOurs", "application/json", b"{}")
                target.store.append(first.stream, ANY, [foreign])

        with pytest.raises(ConflictError, match=first.stream):
            run(job, source, target, on_step)
        # The failed multi-append was atomic: none of the batch's other streams was written.
        assert user_event_count(target.store) == 1
        assert open_store(job.checkpoint_store).load(job.job_id) is None


def test_metadata_a_double_would_round_is_copied_byte_for_byte(tmp_path):
    big = b'{"ledger": 9007199254740993}'
    with Emulator() as source, Emulator() as target:
        for n in range(3):
            source.store.append(
                f"acct-{n}",
                ANY,
                [ProposedEvent(str(uuid.uuid4()), "Posted", "application/json", b"{}", big)],
            )
        job = multi_job(source, target, tmp_path, original_metadata=False)
        assert run(job, source, target).caught_up
        copied = [r.metadata for r in target.store.iter_all() if r.stream.startswith("acct-")]
        assert copied == [big] * 3


def test_events_the_v2_api_cannot_carry_go_alone_byte_for_byte(tmp_path):
    """The batch's request cannot be built (nothing is sent): the streams before the odd one
    by one multi-stream append, the odd one alone by the v1 append, the rest by another."""
    odd = b"[1, 2]"
    with Emulator() as source, Emulator() as target:
        for n in range(5):
            metadata = odd if n == 2 else b""
            event = ProposedEvent(str(uuid.uuid4()), "Posted", "application/json", b"{}", metadata)
            source.store.append(f"acct-{n}", ANY, [event])
        job = multi_job(source, target, tmp_path, original_metadata=False)
        steps: list[str] = []
        result = run(job, source, target, steps.append)
        assert result.caught_up
        # The whole batch, refused as its request is built (nothing sent) | [acct-0, acct-1]
        # by AppendSession | acct-2 by the v1 append | [acct-3, acct-4] by AppendSession.
        assert steps.count("append") == 4
        copied = [r.metadata for r in target.store.iter_all() if r.stream.startswith("acct-")]
        assert copied[2] == odd  # byte for byte, by the v1 append
        assert all(b"$schema.name" in m for i, m in enumerate(copied) if i != 2)
        assert user_order(target.store) == user_order(source.store)
        assert differences(source.store, target.store) == []
