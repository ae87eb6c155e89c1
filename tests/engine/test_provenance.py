"""Exactly once that no event can steer, and metadata exactly as written (issue 13).

Each test reproduces a finding against two emulators; each failed on 5d99370:
1. a source whose events already carry `$originalPosition` / `$originalStreamRevision` (data
   migrated before, by esdb-relay or another tool) steered the resume marker: a larger value
   lost a later event with no crash; a smaller one duplicated an event after a crash;
2. JSON-object metadata with whitespace around its closing brace lost that whitespace;
3. a user's own `$schema.*` metadata keys were overwritten by a multi-stream append, and verify
   reported a false difference for such metadata;
4. `$tb` was translated counting source events the job did not copy (scavenge, a transform that
   drops): target readers saw fewer events than source readers;
5. an event that fits the target was refused for the `$original*` keys the relay adds.
"""

from __future__ import annotations

import json
import time
import uuid

import pytest

from core.checkpoint import open_store
from core.engine import Budget, run_slice
from core.engine.known_streams import KnownStreams
from core.errors import RelayError
from core.eventstore import EventStore
from core.tools.verify import verify
from esdb_emulator.store import ANY, NO_STREAM, ProposedEvent
from tests.engine.helpers import make_job, run_until_caught_up


def event(type_: str = "Happened", data: bytes = b"{}", metadata: bytes = b"") -> ProposedEvent:
    return ProposedEvent(str(uuid.uuid4()), type_, "application/json", data, metadata)


def ids(store, stream: str) -> list[str]:
    return [r.event_id for r in store.visible_records(stream)]


def cold(job, max_slices: int = 100) -> None:
    """Slices until caught up, each as a new process would run it: nothing learned of the
    target's streams is kept from one slice to the next."""
    run_until_caught_up(job, max_slices, known=KnownStreams(capacity=0))


# ----------------------------------------------------------------------- 1. steering markers
def test_a_larger_original_position_in_user_metadata_loses_no_event(pair, tmp_path):
    source, target = pair
    forged = json.dumps({"$originalPosition": 10**15, "$originalStreamRevision": 10**6})
    source.store.append("migrated-1", NO_STREAM, [event(metadata=forged.encode())])
    source.store.append("other", NO_STREAM, [event()])
    source.store.append("migrated-1", ANY, [event(metadata=forged.encode())])
    job = make_job(source, target, tmp_path, budget={"max_events": 1})
    cold(job)
    assert ids(target.store, "migrated-1") == ids(source.store, "migrated-1")


@pytest.mark.parametrize("multi_append", [False, True])
def test_a_smaller_original_position_in_user_metadata_duplicates_nothing_after_a_crash(
    pair, tmp_path, multi_append
):
    source, target = pair
    forged = json.dumps({"$originalPosition": 1, "$originalStreamRevision": 0}).encode()
    source.store.append("migrated-2", NO_STREAM, [event(metadata=forged)])
    job = make_job(source, target, tmp_path, multi_append=multi_append)
    run_until_caught_up(job)  # the stream's first event copied and committed
    source.store.append("migrated-2", ANY, [event(metadata=forged), event(metadata=forged)])
    store = open_store(job.checkpoint_store)

    def crash(step: str) -> None:
        if step == "commit":
            raise RuntimeError("killed between the append and the commit")

    with (
        EventStore(source.uri, side="source") as s,
        EventStore(target.uri, side="target") as t,
    ):
        budget = Budget(10_000, 10**9, time.monotonic() + 60)
        with pytest.raises(RuntimeError):
            run_slice(job, s, t, store, budget, on_step=crash)
        assert ids(target.store, "migrated-2") == ids(source.store, "migrated-2")
        run_slice(job, s, t, store, budget, known=KnownStreams(capacity=0))
    assert ids(target.store, "migrated-2") == ids(source.store, "migrated-2")


def test_a_chain_migration_a_to_b_to_c_with_crashes_keeps_every_event_once(tmp_path):
    from esdb_emulator import Emulator

    with Emulator() as a, Emulator() as b, Emulator() as c:
        for i in range(6):
            a.store.append(f"order-{i % 3}", ANY, [event(metadata=b'{"n": %d}' % i)])
        run_until_caught_up(make_job(a, b, tmp_path, job_id="a-to-b"))
        b.store.append("order-0", ANY, [event(metadata=b'{"live": 1}')])  # written on B
        job = make_job(b, c, tmp_path, job_id="b-to-c", budget={"max_events": 2})
        store = open_store(job.checkpoint_store)
        kills = 0
        attempt = 0

        def crash(step: str) -> None:
            nonlocal kills
            if step == "commit" and attempt in (1, 3, 5):  # 0: only system records
                kills += 1
                raise RuntimeError("killed between the append and the commit")

        with EventStore(b.uri, side="source") as s, EventStore(c.uri, side="target") as t:
            for attempt in range(40):  # noqa: B007 (read by crash)
                budget = Budget(2, 10**9, time.monotonic() + 60)
                try:
                    result = run_slice(
                        job, s, t, store, budget, on_step=crash, known=KnownStreams(capacity=0)
                    )
                except (RuntimeError, RelayError):
                    continue
                if result.caught_up:
                    break
        assert kills == 3
        for name in ("order-0", "order-1", "order-2"):
            assert ids(c.store, name) == ids(b.store, name), name


# ------------------------------------------------------------------ 2. whitespace and bytes
def test_whitespace_around_the_closing_brace_arrives(pair, tmp_path):
    source, target = pair
    written = [b'  {"padded": true}  \n', b'{"a": 1 }', b"{ }", b"\t{}\n"]
    source.store.append("ws", NO_STREAM, [event(metadata=m) for m in written])
    run_until_caught_up(make_job(source, target, tmp_path, multi_append=False))
    got_all = [r.metadata for r in target.store.visible_records("ws")]
    for sent, got in zip(written, got_all, strict=True):
        end = sent.rindex(b"}")
        assert got.startswith(sent[:end]) and got.endswith(sent[end:]), (sent, got)
        assert json.loads(got)["$originalStreamRevision"] >= 0


# ------------------------------------------------------------------- 3. `$schema.*` user keys
def test_user_schema_keys_arrive_untouched_through_multi_append(pair, tmp_path):
    source, target = pair
    mine = b'{"$schema.name": "user-set", "x": 1}'
    ordered = b'{"$schema.format":"Json","$schema.name":"Created","x":1}'
    source.store.append("s-a", NO_STREAM, [event("Created", metadata=mine)])
    source.store.append("s-b", NO_STREAM, [event("Created", metadata=ordered)])
    source.store.append("s-a", ANY, [event("Created", metadata=b'{"y": 2}')])
    job = make_job(source, target, tmp_path, multi_append=True)
    run_until_caught_up(job)
    got = target.store.visible_records("s-a")[0].metadata
    assert got.startswith(mine[:-1]) and json.loads(got)["$schema.name"] == "user-set"
    # Keys the server sets to the same values: the v2 append keeps them, by value.
    copied = json.loads(target.store.visible_records("s-b")[0].metadata)
    assert {k: copied[k] for k in json.loads(ordered)} == json.loads(ordered)
    with (
        EventStore(source.uri, side="source") as s,
        EventStore(target.uri, side="target") as t,
    ):
        report = verify(job, s, t)
    assert report.differences_total == 0, report.differences


# ------------------------------------------------------------------ 4. what readers see: $tb
def test_tb_counts_only_the_events_the_job_copied_with_scavenge(pair, tmp_path):
    source, target = pair
    source.store.append("tb", NO_STREAM, [event() for _ in range(3)])
    source.store.set_metadata("tb", {"$tb": 5})
    source.store.append("tb", ANY, [event() for _ in range(7)])  # revisions 3..9
    run_until_caught_up(make_job(source, target, tmp_path, filters={"scavenge": True}))
    assert ids(target.store, "tb") == ids(source.store, "tb")  # source revisions 5..9


def test_tb_counts_only_the_events_the_job_copied_with_a_dropping_transform(pair, tmp_path):
    source, target = pair
    source.store.append("tb2", NO_STREAM, [event("Keep"), event("Drop"), event("Keep")])
    source.store.set_metadata("tb2", {"$tb": 5})  # past the stream's end
    kinds = ["Drop", "Drop", "Keep", "Drop", "Keep", "Keep"]  # revisions 3..8
    source.store.append("tb2", ANY, [event(kind) for kind in kinds])
    job = make_job(
        source, target, tmp_path, transform="tests.engine.sample_transforms:drop_dropped"
    )
    run_until_caught_up(job)
    wanted = [r.event_id for r in source.store.visible_records("tb2") if r.type == "Keep"]
    assert ids(target.store, "tb2") == wanted


# ----------------------------------------------------------- 5. an event that fits arrives
def test_an_event_that_fits_is_never_refused_for_the_keys_the_relay_adds(pair, tmp_path):
    source, target = pair
    target.faults.update(max_append_size=10_000)
    data = b'{"pad": "' + b"x" * 9_900 + b'"}'
    fits = event("Big", data=data)
    assert len(fits.data) + len(fits.metadata) + 2 * len(fits.type) < 10_000
    source.store.append("big", NO_STREAM, [event(), fits, event()])
    results = run_until_caught_up(make_job(source, target, tmp_path, multi_append=False))
    assert ids(target.store, "big") == ids(source.store, "big")
    assert target.store.visible_records("big")[1].metadata == b""
    assert sum(r.provenance_dropped for r in results) == 1
    assert sum(r.events_dead_lettered for r in results) == 0


def test_a_backfill_over_copied_events_the_source_hides_duplicates_nothing(pair, tmp_path):
    """The target's last event of a stream is hidden in the source (a `$maxCount` window
    over skipped event types) and carries no provenance of the relay (the user's own
    `$original*` keys): a backfill of an earlier range must still find its events there."""
    source, target = pair
    claim = b'{"$originalPosition": 5, "$originalStreamRevision": 9}'
    kept = [event("Keep", metadata=claim) for _ in range(4)]
    source.store.set_metadata("win", {"$maxCount": 2})  # before the events: no later marker
    source.store.append("win", NO_STREAM, kept)
    source.store.append("win", ANY, [event("Noise"), event("Noise")])  # the window's 2 records
    filters = {"exclude_event_types": ["^Noise$"]}
    run_until_caught_up(make_job(source, target, tmp_path, filters=filters))
    copied = [r.event_id for r in target.store.iter_all() if r.stream == "win"]
    assert copied == [e.event_id for e in kept]

    start = next(r.position for r in source.store.iter_all() if r.event_id == kept[1].event_id)
    backfill = make_job(source, target, tmp_path, job_id="test-job.backfill", filters=filters)
    store = open_store(backfill.checkpoint_store)
    with EventStore(source.uri, side="source") as s, EventStore(target.uri, side="target") as t:
        budget = Budget(10_000, 10**9, time.monotonic() + 60)
        run_slice(backfill, s, t, store, budget, start_after=start - 1, stop_at=start)
    assert [r.event_id for r in target.store.iter_all() if r.stream == "win"] == copied
