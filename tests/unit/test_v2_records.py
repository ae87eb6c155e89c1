"""The v2 records written straight to wire bytes (core/eventstore/v2_wire.py) are the same
messages as building each record's properties as a protobuf Struct from the metadata's JSON (as
json_format.ParseDict does), for the metadata shapes users have and for generated ones; and the
AppendRecords request carries each record's stream and a check per stream."""

from __future__ import annotations

import dataclasses
import json
import uuid
from datetime import UTC, datetime

import pytest
from google.protobuf import struct_pb2
from hypothesis import given, settings
from hypothesis import strategies as st

import core.eventstore.v2 as v2
from core import rules
from core.model import Event, OutEvent
from core.protocol.kurrentdb.protocol.v2.streams import shared_pb2, streams_pb2

METADATA = [
    b"",
    b"{}",
    b'{"user":"u1","n":1}',
    b'{ "a" : [1, 2], "nested": {"k": null} }\n',
    b'{"$originalStreamRevision":3,"$originalPosition":1234,"$originalCreated":"2026-01-01"}',
    b'{"a":{"b":[1,2,{"c":null}]},"t":true,"f":1.5,"n":null,"s":"x","i":-3,"e":[]}',
    b'{"$schema.name": "T", "$schema.format": "Json"}',
]


def _reference(event: OutEvent) -> streams_pb2.AppendRecord:
    properties = struct_pb2.Struct()
    properties.update(json.loads(event.metadata) if event.metadata else {})
    is_json = event.content_type == "application/json"
    return streams_pb2.AppendRecord(
        record_id=str(event.event_id),
        properties=properties.fields,
        schema=shared_pb2.SchemaInfo(
            format=shared_pb2.SCHEMA_FORMAT_JSON if is_json else shared_pb2.SCHEMA_FORMAT_BYTES,
            name=event.type,
        ),
        data=event.data,
    )


@pytest.mark.parametrize("metadata", METADATA)
@pytest.mark.parametrize("content_type", ["application/json", "application/octet-stream"])
def test_records_built_in_place_are_the_same_messages(metadata: bytes, content_type: str):
    event = OutEvent(uuid.uuid4(), "T", content_type, b"\x00data", metadata)
    if content_type != "application/json" and b"$schema.format" in metadata:
        with pytest.raises(ValueError, match=r"\$schema"):
            v2.record(event)
        return
    built = v2.record(event).SerializeToString(deterministic=True)
    assert built == _reference(event).SerializeToString(deterministic=True)


def test_records_request_names_each_record_s_stream_and_checks_each_stream():
    a, b = (OutEvent(uuid.uuid4(), "T", "application/json", b"{}", b"") for _ in range(2))
    request = streams_pb2.AppendRecordsRequest.FromString(
        v2.records_request([("s1", a), ("s2", b), ("s1", b)], [("s1", -1), ("s2", 4)])
    )
    assert [r.stream for r in request.records] == ["s1", "s2", "s1"]
    assert [(c.stream_state.stream, c.stream_state.expected_state) for c in request.checks] == [
        ("s1", -1),
        ("s2", 4),
    ]
    with pytest.raises(ValueError, match="not empty or a JSON object"):
        v2.records_request([("s1", OutEvent(uuid.uuid4(), "T", "x", b"", b"[1]"))], [])


ODD_METADATA = [
    *METADATA,
    b"   ",
    b"\x00\xffbinary-metadata",
    b"[1, 2]",
    b'"a string"',
    '{"u": "utf-16"}'.encode("utf-16"),
    b'\xef\xbb\xbf{"bom": 1}',
    b'{"n": NaN}',
    b'{"big": 9007199254740993}',
    b'{"big": -9007199254740993, "ok": 9007199254740992}',
    b'{"inf": Infinity}',
    b'{"nested": {"deep": [1, {"x": 1e400}]}}',
    b'{"$schema.name": "Other"}',
    b'{"": 1}',
    b'{"dup": 1, "dup": "second"}',
    b'{"$originalPosition": 5}',
    '{"ünï": "cödé", "emoji": "\U0001f600"}'.encode(),
    b'{"b": true, "f": false, "z": null, "x": 0.1}',
]


def _source(metadata: bytes, created: datetime | None) -> Event:
    return Event("orders-1", 3, uuid.uuid4(), "T", "application/json", b"{}", metadata, created,
                 9_876, 9_876)  # fmt: skip


@pytest.mark.parametrize("created", [None, datetime(2026, 12, 7, 10, 0, 0, 123456, tzinfo=UTC)])
@pytest.mark.parametrize("metadata", ODD_METADATA)
def test_the_planners_parsed_metadata_builds_the_same_record(metadata: bytes, created):
    """What the planner parsed (OutEvent.parsed) is the object the metadata holds, and the v2
    builder makes the same decision and the same record from it as from the bytes."""
    planned = rules.out_event(_source(metadata, created), with_original=True)
    if planned.parsed is not None:
        assert json.dumps(planned.parsed) == json.dumps(json.loads(planned.metadata))
    unparsed = dataclasses.replace(planned, parsed=None)
    assert planned == unparsed
    assert v2.event_problem(planned) == v2.event_problem(unparsed)
    if v2.event_problem(planned) is None:
        assert v2.record(planned) == v2.record(unparsed)
    else:
        with pytest.raises(ValueError):
            v2.record(planned)


def test_a_copied_events_metadata_is_parsed_once_on_its_way_out(monkeypatch):
    """The planner parses the metadata (to insert the `$original*` keys); the batching's v2
    check and the record builder use what it found instead of parsing it twice again."""
    planned = rules.out_event(_source(b'{"correlationId": "c-1"}', None), with_original=True)
    parses: list[bytes] = []
    loads = json.loads

    def counting(text, *args, **kwargs):
        parses.append(text)
        return loads(text, *args, **kwargs)

    monkeypatch.setattr(v2.json, "loads", counting)
    assert v2.event_problem(planned) is None
    record = v2.record(planned, "orders-1")
    assert parses == []
    assert record.properties["correlationId"].string_value == "c-1"
    assert record.properties[rules.ORIGINAL_POSITION].number_value == 9_876


_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53), max_value=2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)
_OBJECT = st.dictionaries(st.text(min_size=1), _JSON, max_size=6)
_TEXT = st.text(min_size=1, max_size=40)
_REVISION = st.integers(min_value=-4, max_value=2**63 - 1)


@settings(max_examples=300, deadline=None)
@given(
    value=_OBJECT,
    data=st.binary(max_size=300),
    event_type=st.sampled_from(["T", "order-placed", "Ünïcode.v2", "$x:y_z"]),
    content_type=st.sampled_from(["application/json", "application/octet-stream"]),
    stream=_TEXT,
    expected=_REVISION,
)
def test_wire_bytes_are_the_messages_the_protobuf_runtime_builds(
    value, data, event_type, content_type, stream, expected
):
    """Records, AppendSession messages and AppendRecords requests written as bytes parse back
    into the messages built field by field through the protobuf runtime."""
    value = {k: v for k, v in value.items() if not k.startswith("$schema.")}
    metadata = json.dumps(value).encode() if value else b""
    event = OutEvent(uuid.uuid4(), event_type, content_type, data, metadata)
    built = _reference(event)
    assert v2.record(event) == built
    with_stream = streams_pb2.AppendRecord()
    with_stream.CopyFrom(built)
    with_stream.stream = stream
    assert streams_pb2.AppendRecord.FromString(v2.record_bytes(event, stream)) == with_stream

    [session] = v2.requests([(stream, expected, [event, event])])
    assert streams_pb2.AppendRequest.FromString(session) == streams_pb2.AppendRequest(
        stream=stream, expected_revision=expected, records=[built, built]
    )
    request = streams_pb2.AppendRecordsRequest.FromString(
        v2.records_request([(stream, event)], [(stream, expected), ("other", -1)])
    )
    assert list(request.records) == [with_stream]
    assert [(c.stream_state.stream, c.stream_state.expected_state) for c in request.checks] == [
        (stream, expected),
        ("other", -1),
    ]


def test_a_lone_surrogate_in_metadata_is_a_reason_not_a_crash():
    """JSON may escape half a surrogate pair; no UTF-8 string holds it. The builder says why
    (the engine then writes the event by the v1 append, byte for byte:
    tests/reliability/test_bad_events.py)."""
    event = OutEvent(uuid.uuid4(), "T", "application/json", b"{}", b'{"lone": "\\ud800"}')
    with pytest.raises(ValueError, match="lone surrogate"):
        v2.records_request([("s", event)], [("s", -1)])
    with pytest.raises(ValueError, match="lone surrogate"):
        v2.requests([("s", -1, [event])])
