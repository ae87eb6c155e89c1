"""Replication rules and the errors a user can cause, end to end against two emulators."""

from __future__ import annotations

import json
import time
import uuid

import pytest

from core.checkpoint import open_store
from core.engine import Budget, run_slice
from core.errors import ConflictError, OversizeEventError, TransformError
from core.eventstore import EventStore
from core.rules import load_transform
from esdb_emulator.store import ANY, NO_STREAM, ProposedEvent
from tests.engine.helpers import differences, make_job, run_until_caught_up


def event(type_: str = "Happened", data: bytes = b"{}", metadata: bytes = b"", id_=None):
    return ProposedEvent(str(id_ or uuid.uuid4()), type_, "application/json", data, metadata)


def one_slice(job, source, target, **kwargs):
    store = open_store(job.checkpoint_store)
    with EventStore(source.uri, side="source") as s, EventStore(target.uri, side="target") as t:
        return run_slice(job, s, t, store, Budget(10_000, 10**9, time.monotonic() + 60), **kwargs)


def target_events(target, stream):
    return target.store.visible_records(stream)


def test_metadata_is_kept_byte_for_byte_and_original_keys_never_clobber(pair, tmp_path):
    source, target = pair
    metadata = [
        b'{"a": 1,  "nested": {"$x": [1, 2]}}',
        b"\x00\xff not json",
        b"[1, 2, 3]",
        b"",
        b'{"$originalPosition": "mine"}',
    ]
    source.store.append("s-1", NO_STREAM, [event(metadata=m) for m in metadata])
    run_until_caught_up(make_job(source, target, tmp_path))
    got = [r.metadata for r in target_events(target, "s-1")]
    assert got[0].startswith(b'{"a": 1,  "nested": {"$x": [1, 2]}')
    assert json.loads(got[0])["$originalStreamRevision"] == 0
    assert got[1] == metadata[1] and got[2] == metadata[2]
    assert json.loads(got[3])["$originalStreamRevision"] == 3
    # A user's own `$original*` key: the event's origin is theirs; the relay adds nothing.
    assert got[4] == metadata[4]


def test_original_metadata_off_copies_metadata_unchanged(pair, tmp_path):
    source, target = pair
    source.store.append("s-1", NO_STREAM, [event(metadata=b'{"k":1}'), event(metadata=b"")])
    run_until_caught_up(make_job(source, target, tmp_path, original_metadata=False))
    assert [r.metadata for r in target_events(target, "s-1")] == [b'{"k":1}', b""]


def test_filters_by_stream_prefix_regex_and_event_type(pair, tmp_path):
    source, target = pair
    source.store.append("keep-1", NO_STREAM, [event("A"), event("Noise"), event("B")])
    source.store.append("drop-1", NO_STREAM, [event("A")])
    source.store.append("other-1", NO_STREAM, [event("A")])
    job = make_job(
        source,
        target,
        tmp_path,
        filters={
            "include_stream_prefixes": ["keep-", "other-"],
            "exclude_streams": ["^other-"],
            "exclude_event_types": ["^Noise$"],
        },
    )
    run_until_caught_up(job)
    assert [r.type for r in target_events(target, "keep-1")] == ["A", "B"]
    assert "drop-1" not in target.store.stream_names()
    assert "other-1" not in target.store.stream_names()


def test_tb_is_translated_to_target_revisions(pair, tmp_path):
    source, target = pair
    source.store.append("s-1", NO_STREAM, [event("Noise") for _ in range(3)])
    source.store.append("s-1", 2, [event("Kept") for _ in range(3)])
    source.store.set_metadata("s-1", {"$tb": 4, "owner": "me"})
    run_until_caught_up(
        make_job(source, target, tmp_path, filters={"exclude_event_types": ["^Noise$"]})
    )
    # Source revisions 3,4,5 became target revisions 0,1,2; $tb 4 must become 1.
    assert target.store.stream_metadata("s-1") == {"$tb": 1, "owner": "me"}
    visible = target_events(target, "s-1")
    assert [r.event_id for r in visible] == [
        r.event_id for r in source.store.visible_records("s-1")
    ]


def test_soft_delete_recreate_and_tombstone_are_propagated(pair, tmp_path):
    source, target = pair
    source.store.append("soft", NO_STREAM, [event(), event()])
    source.store.delete("soft", 1)
    source.store.append("soft", NO_STREAM, [event()])
    source.store.append("hard", NO_STREAM, [event()])
    source.store.tombstone("hard", ANY)
    source.store.append("gone", NO_STREAM, [event()])
    source.store.delete("gone", 0)
    run_until_caught_up(make_job(source, target, tmp_path))
    assert differences(source.store, target.store) == []
    assert target.store.stream_state("hard")[1] is True


def test_scavenge_filter_drops_what_a_scavenge_would_remove(pair, tmp_path):
    source, target = pair
    source.store.append("capped", NO_STREAM, [event() for _ in range(5)])
    source.store.set_metadata("capped", {"$maxCount": 2})
    source.store.append("deleted", NO_STREAM, [event() for _ in range(3)])
    source.store.tombstone("deleted", ANY)
    source.store.append("truncated", NO_STREAM, [event() for _ in range(4)])
    source.store.set_metadata("truncated", {"$tb": 3})
    results = run_until_caught_up(make_job(source, target, tmp_path, filters={"scavenge": True}))
    written = [r for r in target.store.iter_all() if not r.stream.startswith("$")]
    user = [r for r in written if not r.type.startswith("$")]
    assert sorted(r.stream for r in user) == ["capped", "capped", "truncated"]
    assert target.store.stream_state("deleted")[1] is True  # the tombstone itself is copied
    assert differences(source.store, target.store) == []
    assert sum(r.events_filtered for r in results) > 0  # what a scavenge removes is filtered
    assert sum(r.events_skipped for r in results) == 0  # nothing was on the target already


def test_transform_renames_drops_and_splits(pair, tmp_path):
    source, target = pair
    source.store.append("t-1", NO_STREAM, [event("OldName"), event("Secret"), event("Other")])
    job = make_job(
        source, target, tmp_path, transform="tests.engine.sample_transforms:rename_and_drop"
    )
    store = open_store(job.checkpoint_store)
    with EventStore(source.uri, side="source") as s, EventStore(target.uri, side="target") as t:
        result = run_slice(
            job,
            s,
            t,
            store,
            Budget(1000, 10**9, time.monotonic() + 60),
            transform=load_transform(job.transform),
        )
    assert result.caught_up
    assert [r.type for r in target_events(target, "t-1")] == ["NewName", "Other"]


def test_transform_outputs_get_stable_ids_and_errors_name_the_event(pair, tmp_path):
    source, target = pair
    source.store.append("t-2", NO_STREAM, [event("X")])
    job = make_job(
        source, target, tmp_path, transform="tests.engine.sample_transforms:split_in_two"
    )
    one_slice(job, source, target, transform=load_transform(job.transform))
    first = [r.event_id for r in target_events(target, "t-2")]
    assert [r.type for r in target_events(target, "t-2")] == ["X", "XAudit"]
    assert len(set(first)) == 2
    bad = make_job(
        source, target, tmp_path, job_id="bad", transform="tests.engine.sample_transforms:explode"
    )
    with pytest.raises(TransformError, match=r"event 0 of 't-2'.*ValueError: boom"):
        one_slice(bad, source, target, transform=load_transform(bad.transform))


def test_oversize_event_names_stream_revision_and_size(pair, tmp_path):
    source, target = pair
    target.faults.update(max_append_size=2000)
    source.store.append("big", NO_STREAM, [event(), event(data=b"x" * 5000), event()])
    job = make_job(source, target, tmp_path)
    with pytest.raises(OversizeEventError) as caught:
        one_slice(job, source, target)
    error = caught.value
    assert (error.stream, error.revision, error.limit) == ("big", 1, 2000)
    assert error.size >= 5000
    assert "big" in str(error) and "2000" in str(error)
    # nothing committed: the next run meets the same event again
    assert open_store(job.checkpoint_store).load(job.job_id) is None
    assert len(target_events(target, "big")) == 1  # the event before it, never a partial one


def test_oversize_event_goes_to_dead_letters_when_configured(pair, tmp_path):
    source, target = pair
    target.faults.update(max_append_size=2000)
    source.store.append("big", NO_STREAM, [event(), event(data=b"x" * 5000), event()])
    results = run_until_caught_up(make_job(source, target, tmp_path, dead_letter=True))
    assert len(target_events(target, "big")) == 2
    letters = target_events(target, "$esdb-relay-dead-letters-test-job")
    record = json.loads(letters[0].data)
    assert (record["stream"], record["revision"]) == ("big", 1)
    assert sum(r.events_dead_lettered for r in results) == 1


def test_a_batch_too_big_for_the_target_is_split(pair, tmp_path):
    source, target = pair
    target.faults.update(max_append_size=3000)
    source.store.append("many", NO_STREAM, [event(data=b"y" * 900) for _ in range(10)])
    run_until_caught_up(make_job(source, target, tmp_path))
    assert differences(source.store, target.store) == []


def test_target_stream_with_foreign_events_stops_with_a_conflict(pair, tmp_path):
    source, target = pair
    target.store.append("order-1", NO_STREAM, [event("WrittenByHand", metadata=b'{"x":1}')])
    source.store.append("order-1", NO_STREAM, [event("Created")])
    source.store.append("order-2", NO_STREAM, [event("Created")])
    job = make_job(source, target, tmp_path)
    with pytest.raises(ConflictError, match=r"order-1.*did not write") as caught:
        one_slice(job, source, target)
    assert "esdb-relay verify" in str(caught.value)
    assert [r.type for r in target_events(target, "order-1")] == ["WrittenByHand"]
    assert open_store(job.checkpoint_store).load(job.job_id) is None


def test_dry_run_writes_and_commits_nothing(pair, tmp_path):
    source, target = pair
    source.store.append("d-1", NO_STREAM, [event(), event()])
    before = len(target.store)
    job = make_job(source, target, tmp_path)
    result = one_slice(job, source, target, dry_run=True)
    assert result.events_written == 2
    assert len(target.store) == before
    assert open_store(job.checkpoint_store).load(job.job_id) is None


def test_backfill_range_copies_only_that_range(pair, tmp_path):
    source, target = pair
    source.store.append("r-1", NO_STREAM, [event() for _ in range(6)])
    positions = [r.position for r in source.store.visible_records("r-1")]
    job = make_job(source, target, tmp_path)
    store = open_store(job.checkpoint_store)
    with EventStore(source.uri, side="source") as s, EventStore(target.uri, side="target") as t:
        budget = Budget(1000, 10**9, time.monotonic() + 60)
        # the first two events first, then the rest; target ends complete and in order
        run_slice(job, s, t, store, budget, stop_at=positions[1])
        assert len(target_events(target, "r-1")) == 2
        other = job.model_copy(update={"job_id": "range"})
        run_slice(other, s, t, store, budget, start_after=positions[1] - 1, stop_at=positions[3])
        assert len(target_events(target, "r-1")) == 4
    run_until_caught_up(job)
    assert differences(source.store, target.store) == []


def test_permanent_errors_name_the_source_position(pair, tmp_path):
    source, target = pair
    target.store.append("order-9", NO_STREAM, [event("Manual", metadata=b"{}")])
    source.store.append("order-9", NO_STREAM, [event("Created")])
    position = source.store.visible_records("order-9")[0].position
    with pytest.raises(ConflictError, match=f"at source position {position}, event 0 of 'order-9'"):
        one_slice(make_job(source, target, tmp_path), source, target)
