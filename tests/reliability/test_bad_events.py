"""Odd events, end to end through two emulators: each is copied byte for byte (id, type, content
type, data, metadata) or the slice fails with an error naming the stream and revision.

tests/engine/test_engine_rules.py covers JSON-object, array, empty and non-JSON metadata, the
`$original*` keys, and an oversize event's data; this corpus adds empty and binary data, odd
stream names and event types, JSON scalars and `$`-keyed objects as metadata, and oversize
metadata on an odd stream name.
"""

from __future__ import annotations

import json
import time
import uuid

import pytest

from core.checkpoint import open_store
from core.engine import Budget, run_slice
from core.errors import OversizeEventError
from core.eventstore import EventStore
from esdb_emulator import Emulator
from esdb_emulator.store import NO_STREAM, ProposedEvent
from tests.engine.helpers import make_job, run_until_caught_up

STREAMS = [
    "订单-1",
    "emoji-🚚-stream",
    "with spaces and\ttab",
    "a$b",
    "slash/and\\backslash",
    "quote'\"",
    "x" * 1000,
    "newline\nin-name",
]
TYPES = ["Überweisung", "type with spaces", "a$b", "t" * 500, "🚀"]
METADATA = [
    b'"just a string"',
    b"42",
    b"null",
    b"true",
    b'{"$correlationId": "c-1", "$causationId": "c-0", "$nested": {"$x": {"$y": [1]}}}',
    b'{"a": 1, "a": 2}',
    b"{not json",
    b"{\xff\xfe}",
    b'  {"padded": true}  ',
    b'{"lone": "\\ud800"}',  # a JSON object whose string no v2 append can carry: v1, as is
]
DATA = [b"", b"\x00\x01\xfe\xff" * 64, b"{not json", bytes(range(256))]


def proposed(type_: str, data: bytes, metadata: bytes, content_type: str) -> ProposedEvent:
    return ProposedEvent(str(uuid.uuid4()), type_, content_type, data, metadata)


def corpus() -> dict[str, list[ProposedEvent]]:
    events: dict[str, list[ProposedEvent]] = {}
    for i, stream in enumerate(STREAMS):
        events[stream] = [
            proposed(TYPES[(i + j) % len(TYPES)], data, METADATA[(i + j) % len(METADATA)], ct)
            for j, (data, ct) in enumerate(
                [(d, "application/octet-stream") for d in DATA] + [(b"{}", "application/json")]
            )
        ]
    events["metadata-only"] = [proposed("M", b"{}", m, "application/json") for m in METADATA]
    return events


@pytest.fixture(scope="module")
def copied(tmp_path_factory):
    """The corpus copied twice: with the defaults (`$original*` metadata, multi-stream appends
    where the target has them) and byte for byte (neither; core/multi_append.py)."""
    with Emulator() as source, Emulator() as plain, Emulator() as annotated:
        written = corpus()
        for stream, events in written.items():
            source.store.append(stream, NO_STREAM, events)
        tmp = tmp_path_factory.mktemp("events")
        run_until_caught_up(
            make_job(
                source, plain, tmp, job_id="plain", original_metadata=False, multi_append=False
            )
        )
        run_until_caught_up(make_job(source, annotated, tmp, job_id="annotated"))
        yield written, plain.store, annotated.store


def fields(record) -> tuple:
    return (str(record.event_id), record.type, record.content_type, record.data)


def test_without_original_metadata_every_byte_is_copied(copied):
    written, plain, _ = copied
    for stream, events in written.items():
        got = plain.visible_records(stream)
        assert [fields(r) for r in got] == [
            (e.event_id, e.type, e.content_type, e.data) for e in events
        ], stream
        assert [r.metadata for r in got] == [e.metadata for e in events], stream


def test_with_original_metadata_only_json_objects_gain_keys(copied):
    written, _, annotated = copied
    for stream, events in written.items():
        got = annotated.visible_records(stream)
        assert [fields(r) for r in got] == [
            (e.event_id, e.type, e.content_type, e.data) for e in events
        ], stream
        for revision, (record, event) in enumerate(zip(got, events, strict=True)):
            try:
                original = json.loads(event.metadata)
            except ValueError:
                original = None
            if not isinstance(original, dict):
                assert record.metadata == event.metadata, (stream, revision)
                continue
            copy = json.loads(record.metadata)
            assert {k: copy[k] for k in original} == original  # `$` keys kept as they were
            assert copy["$originalStreamRevision"] == revision


def test_oversize_metadata_on_an_odd_stream_names_it(tmp_path):
    stream = "订单-🚚 big"
    with Emulator() as source, Emulator() as target:
        target.faults.update(max_append_size=4000)
        source.store.append(
            stream,
            NO_STREAM,
            [
                proposed("ok", b"{}", b"", "application/json"),
                proposed("Überweisung", b"{}", b'{"$pad": "' + b"p" * 6000 + b'"}', "x/y"),
            ],
        )
        job = make_job(source, target, tmp_path)
        store = open_store(job.checkpoint_store)
        with (
            EventStore(source.uri, side="source") as s,
            EventStore(target.uri, side="target") as t,
            pytest.raises(OversizeEventError) as raised,
        ):
            run_slice(job, s, t, store, Budget(1000, 10**9, time.monotonic() + 60))
        assert (raised.value.stream, raised.value.revision) == (stream, 1)
        assert stream in str(raised.value) and "4000" in str(raised.value)
        assert store.load(job.job_id) is None, "no checkpoint past a failed event"
        assert len(target.store.visible_records(stream)) == 1
