"""The v2 multi-append's pure parts: which events it can carry, the records it builds, the
metadata the emulator shows for them, and the conflict error crossing processes."""

from __future__ import annotations

import json
import pickle
import uuid

from google.protobuf import struct_pb2

from core.errors import MultiAppendConflict
from core.eventstore import v2
from core.eventstore.multi import multi_append_problem
from core.model import NO_STREAM, OutEvent, StreamAppend
from core.protocol.kurrentdb.protocol.v2.streams import shared_pb2
from esdb_emulator.multi_append import _format_fields


def _event(type_: str = "Placed", metadata: bytes = b"", content_type: str = "application/json"):
    return OutEvent(uuid.uuid4(), type_, content_type, b'{"n": 1}', metadata)


def test_events_the_v2_api_can_carry() -> None:
    assert v2.event_problem(_event()) is None
    assert v2.event_problem(_event("Orders.Placed:v1-$x_y", b'{"a": {"b": [1, null]}}')) is None
    assert v2.event_problem(_event("Ünïcode")) is None


def test_events_it_cannot() -> None:
    assert "event type" in (v2.event_problem(_event("has space")) or "")
    assert "event type" in (v2.event_problem(_event("slash/type")) or "")
    assert "event type" in (v2.event_problem(_event("e\u0301")) or "")  # not NFC
    assert "event type" in (v2.event_problem(_event("")) or "")
    for metadata in (b"[1, 2]", b"not json", b"\xff\xfe", b'"text"', b'{"": 1}'):
        assert "metadata" in (v2.event_problem(_event(metadata=metadata)) or ""), metadata


def test_integers_a_double_would_round_go_alone() -> None:
    assert v2.event_problem(_event(metadata=b'{"n": 9007199254740992, "f": 0.1}')) is None
    for metadata in (b'{"n": 9007199254740993}', b'{"a": [{"b": -18446744073709551615}]}'):
        assert "2^53" in (v2.event_problem(_event(metadata=metadata)) or ""), metadata


def test_batch_problems() -> None:
    ok = [StreamAppend("a", NO_STREAM, [_event()]), StreamAppend("b", 3, [_event()])]
    assert multi_append_problem(ok) is None
    twice = [StreamAppend("Orders", NO_STREAM, [_event()]), StreamAppend("orders", 0, [_event()])]
    assert "twice" in (multi_append_problem(twice) or "")
    empty_twice = [StreamAppend("a", 0, [_event()]), StreamAppend("A", 0, [])]
    assert multi_append_problem(empty_twice) is None  # an empty part is not sent
    assert "expected revision" in (multi_append_problem([StreamAppend("a", -2, [_event()])]) or "")


def test_records_carry_the_event() -> None:
    event = _event(metadata=b'{"tenant": "acme", "n": 2, "nested": {"ok": true}}')
    record = v2.record(event)
    assert record.record_id == str(event.event_id)
    assert record.schema.name == "Placed" and record.data == event.data
    assert record.schema.format == shared_pb2.SCHEMA_FORMAT_JSON
    assert record.properties["tenant"].string_value == "acme"
    assert record.properties["n"].number_value == 2
    assert record.properties["nested"].struct_value.fields["ok"].bool_value is True
    raw = v2.record(_event(content_type="application/octet-stream"))
    assert raw.schema.format == shared_pb2.SCHEMA_FORMAT_BYTES and not raw.properties


def test_record_size_is_the_servers() -> None:
    # AppendRecordExtensions.CalculateSizeOnDisk: data + properties as a Struct + schema name.
    record = v2.record(_event("Päid", b'{"k": "v"}'))
    struct = struct_pb2.Struct()
    struct.fields["k"].string_value = "v"
    assert v2.record_size(record) == len(b'{"n": 1}') + struct.ByteSize() + len("Päid".encode())


def test_metadata_rendered_like_the_servers_json_formatter() -> None:
    def value(**kw: object) -> struct_pb2.Value:
        return struct_pb2.Value(**kw)  # type: ignore[arg-type]

    assert _format_fields({}) == "{ }"
    fields = {
        "s": value(string_value='a<b>&"c"'),
        "i": value(number_value=3),
        "f": value(number_value=1.5),
        "b": value(bool_value=False),
        "l": value(list_value=struct_pb2.ListValue(values=[value(number_value=1)])),
        "e": value(list_value=struct_pb2.ListValue()),
    }
    text = _format_fields(fields)
    assert text == (
        '{ "s": "a\\u003cb\\u003e\\u0026\\"c\\"", "i": 3, "f": 1.5, "b": false, "l": [ 1 ], '
        '"e": [ ] }'
    )
    assert json.loads(text)["s"] == 'a<b>&"c"'


def test_a_conflict_keeps_its_streams_across_processes() -> None:
    error = MultiAppendConflict("target: conflict", {"a": 3, "b": None})
    copy = pickle.loads(pickle.dumps(error))
    assert isinstance(copy, MultiAppendConflict) and copy.streams == {"a": 3, "b": None}


def test_stored_metadata_compares_without_the_servers_keys() -> None:
    sent = b'{"tenant": "acme", "n": 2, "list": [1, "a"]}'
    stored = (
        b'{ "n": 2.0, "tenant": "acme", "list": [ 1, "a" ], '
        b'"$schema.name": "T", "$schema.format": "Json" }'
    )
    assert v2.stored_metadata_matches(sent, stored)
    assert v2.stored_metadata_matches(b"", b'{ "$schema.name": "T", "$schema.format": "Json" }')
    assert not v2.stored_metadata_matches(sent, b'{ "tenant": "other", "$schema.name": "T" }')
    assert not v2.stored_metadata_matches(b"not json", b'{ "$schema.name": "T" }')
