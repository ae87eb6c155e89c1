"""Partitioned mode against two emulators: streams hashed to N writer threads, each stream's
events batched over the slice, the checkpoint at the low watermark of what is written."""

from __future__ import annotations

import json
import threading
import time
import uuid

import pytest

from core.checkpoint import open_store
from core.engine import Budget, run_slice
from core.engine.plan import SliceIndex
from core.engine.watermark import Watermark, partition_of
from core.engine.writer import StreamWriter, TargetStream, WriteContext
from core.errors import ConflictError
from core.eventstore import EventStore
from core.model import OutEvent
from esdb_emulator.store import ANY, ProposedEvent
from esdb_emulator.workload import Workload, generate
from tests.engine.helpers import (
    differences,
    make_job,
    run_until_caught_up,
    stream_view,
    user_event_count,
)


def partitioned(source, target, tmp_path, partitions: int = 8, **overrides):
    return make_job(
        source, target, tmp_path, mode="partitioned", partitions=partitions, **overrides
    )


def per_stream_ids(store, prefix: str = "") -> dict[str, list[str]]:
    streams: dict[str, list[str]] = {}
    for r in store.iter_all():
        if not r.stream.startswith("$") and not r.type.startswith("$"):
            streams.setdefault(r.stream, []).append(str(r.event_id))
    return streams


def assert_copied_once(source, target, foreign: int = 0) -> None:
    assert differences(source.store, target.store) == []
    assert user_event_count(target.store) == user_event_count(source.store) + foreign
    ids = [
        r.event_id
        for r in target.store.iter_all()
        if not r.stream.startswith("$") and not r.type.startswith("$")
    ]
    assert len(ids) == len(set(ids))  # no duplicates, even of events a $maxCount hides


def test_partition_of_is_stable_and_spreads_streams():
    names = [f"order-{i}" for i in range(2000)]
    first = [partition_of(n, 8) for n in names]
    assert first == [partition_of(n, 8) for n in names]
    counts = [first.count(p) for p in range(8)]
    assert min(counts) > 150  # roughly even: 250 each
    assert partition_of("order-1", 8) == 7  # crc32: the same in every process and run


def test_the_watermark_never_passes_an_op_not_done():
    mark = Watermark(None)
    mark.add([10, 20, 30, 40, 50])
    mark.done([20, 40])  # later ops done first (other partitions ahead)
    assert mark.position is None
    mark.done([10])
    assert mark.position == 20
    mark.add([60])
    mark.done([50, 60])
    assert mark.position == 20  # 30 is still being written
    mark.done([30])
    assert mark.position == 60


def test_full_history_is_copied_exactly(pair, tmp_path):
    source, target = pair
    counts = generate(source.store, Workload(events=3000, streams=150, seed=7))
    assert counts["soft_deleted"] and counts["tombstoned"] and counts["metadata"]
    results = run_until_caught_up(partitioned(source, target, tmp_path))
    assert_copied_once(source, target)
    assert sum(r.events_read for r in results) == len(source.store)
    assert results[-1].caught_up


def test_events_of_a_stream_spread_over_the_slice_go_in_few_appends(pair, tmp_path):
    source, target = pair
    generate(
        source.store,
        Workload(
            events=1200,
            streams=12,
            interleaving="random",
            soft_deleted=0,
            tombstoned=0,
            with_metadata=0,
            links=False,
            seed=9,
        ),
    )
    job = partitioned(source, target, tmp_path, partitions=4, budget={"max_events": 5000})
    appends = []
    store = open_store(job.checkpoint_store)
    with EventStore(source.uri, side="source") as s, EventStore(target.uri, side="target") as t:
        result = run_slice(
            job,
            s,
            t,
            store,
            Budget.from_job(job),
            on_step=lambda step: appends.append(step) if step == "append" else None,
        )
    assert result.caught_up
    assert_copied_once(source, target)
    # Random interleaving of 12 streams: consecutive runs average ~1.1 events, so ordered mode
    # needs ~1000 appends; per-stream batching needs about one per stream and chunk read.
    assert len(appends) < 200, len(appends)


def test_target_faults_do_not_duplicate_or_lose_events(pair, tmp_path):
    source, target = pair
    generate(source.store, Workload(events=1500, streams=60, interleaving="random", seed=3))
    job = partitioned(
        source, target, tmp_path, partitions=6, batch={"max_events": 20, "max_bytes": 3000}
    )
    # Appends fail now and then (some slices stop mid-write after other partitions went ahead),
    # every call is slow, and the server refuses appends over 2 KiB (batches are halved).
    target.faults.update(
        unavailable_rate=0.1, latency_ms=2, max_append_size=2048, methods={"BatchAppend"}, seed=5
    )
    run_until_caught_up(job, max_slices=500)
    assert target.faults.injected.get("unavailable", 0) > 0
    target.faults.reset()
    assert_copied_once(source, target)


def test_filters_apply_in_partitioned_mode(pair, tmp_path):
    source, target = pair
    generate(source.store, Workload(events=1000, streams=40, seed=12))
    job = partitioned(
        source,
        target,
        tmp_path,
        filters={"exclude_streams": ["^order-"], "exclude_event_types": ["^Payment"]},
    )
    run_until_caught_up(job)
    copied = {r.stream for r in target.store.iter_all() if not r.stream.startswith("$")}
    assert copied and not any(s.startswith("order-") for s in copied)
    assert not any(r.type.startswith("Payment") for r in target.store.iter_all())
    for name in source.store.stream_names():
        if name.startswith(("$", "order-")):
            continue
        want = stream_view(source.store, name)
        if isinstance(want, list):
            want = [e for e in want if not e[1].startswith("Payment")]
        got = stream_view(target.store, name)
        assert got == want or (want == [] and got == "not found"), name


def _event(n: int, stream: str) -> ProposedEvent:
    return ProposedEvent(str(uuid.uuid4()), "Happened", "application/json", b'{"n":%d}' % n)


def test_checkpoint_stays_below_a_stream_that_cannot_be_written(pair, tmp_path):
    """One stream's writes fail (its target stream holds someone else's event): the other
    streams are written, even past it, but the committed checkpoint stays just below that
    stream's first pending event; once the target is fixed, a resumed run completes."""
    source, target = pair
    names = [f"acct-{i}" for i in range(6)]
    blocked = names[3]
    for n in range(240):
        # acct-3 starts at the 100th event; every stream goes on after it.
        stream = names[n % 6] if n >= 100 or n % 6 != 3 else names[(n + 1) % 6]
        source.store.append(stream, ANY, [_event(n, stream)])
    foreign = ProposedEvent(str(uuid.uuid4()), "NotOurs", "application/json", b"{}")
    target.store.append(blocked, ANY, [foreign])
    first_blocked = next(r.position for r in source.store.iter_all() if r.stream == blocked)
    before_blocked = max(r.position for r in source.store.iter_all() if r.position < first_blocked)

    # One writer: it writes its streams in the order they first appear, so every stream that
    # starts before acct-3 is written completely, past acct-3's first event, before it fails.
    job = partitioned(source, target, tmp_path, partitions=1, budget={"max_events": 5000})
    store = open_store(job.checkpoint_store)
    with EventStore(source.uri, side="source") as s, EventStore(target.uri, side="target") as t:
        with pytest.raises(ConflictError, match="acct-3"):
            run_slice(job, s, t, store, Budget.from_job(job))
        checkpoint = store.load(job.job_id)
        assert checkpoint is not None and checkpoint.position is not None
        assert checkpoint.position.commit == before_blocked
        written_past = [
            json.loads(r.metadata)["$originalPosition"]
            for r in target.store.iter_all()
            if r.stream in names and r.stream != blocked
        ]
        assert max(written_past) > first_blocked  # writes ran ahead; the checkpoint did not

        # The operator follows the error's hint: delete the target stream, run again.
        target.store.delete(blocked, ANY)
        result = run_slice(job, s, t, store, Budget.from_job(job))
    assert result.caught_up
    assert_copied_once(source, target, foreign=1)  # hidden by the delete, still in the log


def test_a_deadline_stop_commits_only_the_watermark(pair, tmp_path):
    source, target = pair
    generate(source.store, Workload(events=1200, streams=50, interleaving="random", seed=4))
    job = partitioned(source, target, tmp_path, partitions=4, batch={"max_events": 10})
    target.faults.update(latency_ms=50, methods={"BatchAppend"})
    store = open_store(job.checkpoint_store)
    with EventStore(source.uri, side="source") as s, EventStore(target.uri, side="target") as t:
        # The deadline passes while the writers are busy: each stops before its next append.
        result = run_slice(job, s, t, store, Budget(5000, 10**9, time.monotonic() + 0.8))
        assert result.status == "ok" and not result.caught_up
        checkpoint = store.load(job.job_id)
        committed = checkpoint.position.commit if checkpoint and checkpoint.position else -1
        assert committed == (result.position if result.position is not None else -1)
        # Everything at or below the committed position is on the target.
        written = {r.event_id for r in target.store.iter_all()}
        for r in source.store.iter_all():
            if r.position <= committed and not r.stream.startswith("$") and r.type[0] != "$":
                assert r.event_id in written, r
        target.faults.reset()
    run_until_caught_up(job)
    assert_copied_once(source, target)


def test_a_sync_cut_by_another_writers_reconnect_reads_the_stream_again(pair, tmp_path):
    """The partitioned soak's ConflictError ("expected revision -1" on a stream the target
    holds). The writers share one target connection: one writer's UNAVAILABLE makes esdbclient
    reconnect, which cancels every read in flight on the old channel, and esdbclient ends a
    cancelled read as if the server had sent its last record. Another writer's sync then read
    an existing stream as absent (revision -1, marker -1): its append at "no stream" was
    refused, and when the resync was cut the same way the job stopped. A cut read must be
    read again."""
    source, target = pair
    generate(source.store, Workload(events=300, streams=10, seed=5))
    job = partitioned(source, target, tmp_path)
    run_until_caught_up(job)
    stream = max(per_stream_ids(target.store).items(), key=lambda item: len(item[1]))[0]
    with (
        EventStore(source.uri, side="source") as s,
        EventStore(target.uri, side="target") as t,
    ):
        ctx = WriteContext(job, s, t, SliceIndex(), lambda _: None)
        known = StreamWriter(ctx).sync(stream)
        assert known.revision >= 0 and known.marker > 0
        reads = target.faults.calls.get("Read", 0)
        target.faults.update(latency_ms=2000, methods={"Read"})  # holds the sync's tail read
        found: list[TargetStream] = []
        syncing = threading.Thread(target=lambda: found.append(StreamWriter(ctx).sync(stream)))
        syncing.start()
        while target.faults.calls.get("Read", 0) == reads:
            time.sleep(0.01)
        # Another writer's append meets UNAVAILABLE: esdbclient reconnects and retries it.
        target.faults.update(latency_ms=0, unavailable_next=1, methods={"Append", "BatchAppend"})
        event = OutEvent(uuid.uuid4(), "Other", "application/json", b"{}", b"")
        t.append("other-writer-stream", -1, [event])
        syncing.join()
        assert (found[0].revision, found[0].marker) == (known.revision, known.marker)
        assert target.faults.injected.get("unavailable") == 1
        assert t.retries >= 1  # the reconnect did cut the read, and it was read again


@pytest.mark.parametrize("multi_append", [True, False])
def test_writers_pack_their_streams_into_multi_stream_appends(pair, tmp_path, multi_append):
    """With the target's multi-stream append a writer sends several of its streams in one
    call: 120 streams over 2 writers take a handful of calls instead of one per stream."""
    source, target = pair
    generate(
        source.store,
        Workload(
            events=1200,
            streams=120,
            seed=31,
            interleaving="random",
            links=False,
            soft_deleted=0,
            tombstoned=0,
            with_metadata=0,
            non_json_metadata=0,  # such events go by the v1 append, alone
        ),
    )
    job = partitioned(
        source,
        target,
        tmp_path,
        partitions=2,
        multi_append=multi_append,
        budget={"max_events": 600},
    )
    results = run_until_caught_up(job)
    assert_copied_once(source, target)
    calls = target.faults.calls
    appends = calls.get("AppendSession", 0) + calls.get("BatchAppend", 0) + calls.get("Append", 0)
    if multi_append:
        # 1,200 events of 0.5-4 KiB in appends of at most 500 events / 1 MB, per writer.
        assert calls.get("AppendSession", 0) >= 2 and appends <= 20, calls
    else:
        assert calls.get("AppendSession", 0) == 0 and appends >= 120 * len(results) // 2, calls
