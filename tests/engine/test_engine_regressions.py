"""Deterministic reproductions of engine bugs the property tests (test_properties.py) found.

Each failed before its fix in core/engine/slice.py:
1. A `$tb` hiding every target event made the engine read the stream as "no stream"; it now
   asks the target for the stream's revision (`EventStore.current_revision`).
2. `$tb` was copied untranslated when target events carry no `$originalStreamRevision`; it is
   now translated by matching ids, or by counting the stream's records in the source's `$all`.
3. `$tb` was translated from the target's visible tail, cut short by `$maxCount`.
4. A second soft delete undeleted the target stream (appending `$tb` = long.MaxValue to the
   metastream of a soft-deleted stream undeletes it); the repeat delete is now not written.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from core.checkpoint import open_store
from core.config import JobConfig
from core.engine import Budget, run_slice
from core.errors import RelayError
from core.eventstore import EventStore
from esdb_emulator import Emulator
from esdb_emulator.store import ANY, ProposedEvent, Store, StreamNotFound


@pytest.fixture
def pair():
    with Emulator() as source, Emulator() as target:
        yield source, target


def event() -> ProposedEvent:
    return ProposedEvent(str(uuid.uuid4()), "Created", "application/json", b'{"x":1}')


def replicate(
    source: Emulator, target: Emulator, tmp_path: Path, max_events: int, **job: object
) -> None:
    """One slice per `max_events` source records, until caught up (or 20 failed slices)."""
    job = JobConfig.load(
        payload={
            "job_id": "regression",
            "source": source.uri,
            "target": target.uri,
            "checkpoint_store": f"sqlite:///{tmp_path}/checkpoints.db",
            "budget": {"max_events": max_events},
            **job,
        }
    )
    store = open_store(job.checkpoint_store)
    errors = []
    with EventStore(source.uri, side="source") as s, EventStore(target.uri, side="target") as t:
        for _ in range(20):
            try:
                result = run_slice(
                    job, s, t, store, Budget(max_events, 10**9, time.monotonic() + 30)
                )
            except RelayError as e:
                errors.append(str(e))
                continue
            if result.caught_up:
                return
    raise AssertionError(f"did not catch up; last error: {errors[-1] if errors else None}")


def visible_ids(store: Store, stream: str) -> list[str]:
    try:
        return [r.event_id for r in store.visible_records(stream)]
    except StreamNotFound:
        return []


def test_append_after_tb_hid_every_event(pair, tmp_path):
    # Source: e0 (rev 0), $tb=1 (hides e0), e1 (rev 1). With one record per slice the engine
    # syncs the target stream after $tb=1 was written there: the tail read is empty, so it
    # appends e1 expecting NO_STREAM, meets revision 0, and stops with a ConflictError on every
    # later slice: the job can never get past e1.
    source, target = pair
    source.store.append("s", ANY, [event()])
    source.store.set_metadata("s", {"$tb": 1})
    source.store.append("s", ANY, [event()])
    replicate(source, target, tmp_path, max_events=1)
    assert visible_ids(target.store, "s") == visible_ids(source.store, "s")


def test_metadata_rewrite_keeps_a_tb_that_hides_every_event(pair, tmp_path):
    # Source: e0, $tb=1, then the same stream metadata written again (or any metadata change
    # keeping $tb, e.g. adding a custom key). The second $tb is translated against an empty
    # tail as revision 0, so the target un-truncates the stream: e0 is visible there and not
    # in the source.
    source, target = pair
    source.store.append("s", ANY, [event()])
    source.store.set_metadata("s", {"$tb": 1})
    source.store.set_metadata("s", {"$tb": 1, "owner": "x"})
    replicate(source, target, tmp_path, max_events=1)
    assert target.store.stream_metadata("s").get("owner") == "x"
    assert visible_ids(target.store, "s") == visible_ids(source.store, "s") == []


def test_tb_with_original_metadata_off_and_a_link_in_the_stream(pair, tmp_path):
    # Source: e0 (rev 0), a `$>` link (rev 1, skipped), e2 (rev 2), $tb=2. Target: e0 (rev 0),
    # e2 (rev 1). Without $originalStreamRevision the engine copies $tb=2 untranslated (with a
    # warning), which hides e2 on the target; the source shows e2.
    source, target = pair
    source.store.append("s", ANY, [event()])
    link = ProposedEvent(str(uuid.uuid4()), "$>", "application/octet-stream", b"0@s")
    source.store.append("s", ANY, [link])
    source.store.append("s", ANY, [event()])
    source.store.set_metadata("s", {"$tb": 2})
    replicate(source, target, tmp_path, max_events=1, original_metadata=False)
    assert visible_ids(target.store, "s") == visible_ids(source.store, "s")


def test_tb_below_the_window_of_the_current_max_count(pair, tmp_path):
    # Source: $maxCount=1, e0, e1, e2, then metadata {"$tb": 1} (no $maxCount): e1 and e2 are
    # visible. The engine translates $tb from a tail read cut to 1 event by the target's
    # $maxCount, finds only e2 and writes $tb=2: the target hides e1.
    source, target = pair
    source.store.set_metadata("s", {"$maxCount": 1})
    source.store.append("s", ANY, [event(), event(), event()])
    source.store.set_metadata("s", {"$tb": 1})
    replicate(source, target, tmp_path, max_events=1)
    assert visible_ids(target.store, "s") == visible_ids(source.store, "s")


def test_second_soft_delete_keeps_the_stream_deleted(pair, tmp_path):
    # Source: e0, soft delete, soft delete again: the stream is not found. The engine copies
    # the second delete as a plain $metadata append, which the target server treats as a
    # metadata write to a soft-deleted stream and undeletes it ($tb=1): the target answers
    # an empty stream instead of "not found".
    source, target = pair
    source.store.append("s", ANY, [event()])
    source.store.delete("s", ANY)
    source.store.delete("s", ANY)
    replicate(source, target, tmp_path, max_events=1)

    def state(store: Store) -> object:
        try:
            return [r.event_id for r in store.visible_records("s")]
        except StreamNotFound:
            return "not found"

    assert state(source.store) == "not found"
    assert state(target.store) == "not found"
