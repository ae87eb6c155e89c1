"""The v2 records built in place (core.eventstore.v2.add_record) are the same messages as
building each record's properties as a protobuf Struct from the metadata's JSON (as
json_format.ParseDict does), for the metadata shapes users have; and the AppendRecords request
carries each record's stream and a check per stream."""

from __future__ import annotations

import json
import uuid

import pytest
from google.protobuf import struct_pb2

import core.eventstore.v2 as v2
from core.model import OutEvent
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
    request = v2.records_request([("s1", a), ("s2", b), ("s1", b)], [("s1", -1), ("s2", 4)])
    assert [r.stream for r in request.records] == ["s1", "s2", "s1"]
    assert [(c.stream_state.stream, c.stream_state.expected_state) for c in request.checks] == [
        ("s1", -1),
        ("s2", 4),
    ]
    with pytest.raises(ValueError, match="not empty or a JSON object"):
        v2.records_request([("s1", OutEvent(uuid.uuid4(), "T", "x", b"", b"[1]"))], [])
