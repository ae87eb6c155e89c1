"""KurrentDB's v2 append messages (AppendRecord, AppendRequest, AppendRecordsRequest) written
straight to their protobuf wire bytes: what building the messages field by field through the
protobuf runtime and serializing them gives (tests/unit/test_v2_records.py parses them back and
compares), at a fraction of the CPU per record: each record's bytes are joined once, the
payload copied once, and gRPC sends the bytes as they are (core/eventstore/v2.py's Client).

The fields (core/protocol/protos/kurrentdb/protocol/v2/streams/streams.proto, shared.proto;
google/protobuf/struct.proto): AppendRecord {1 record_id, 2 properties (map<string, Value>),
3 schema (SchemaInfo {1 format, 2 name}), 4 data, 5 stream}; AppendRequest {1 stream, 2 records,
3 expected_revision (sint64)}; AppendRecordsRequest {1 records, 2 checks (ConsistencyCheck {1
stream_state {1 stream, 2 expected_state (sint64)}})}; Value {1 null_value, 2 number_value
(double), 3 string_value, 4 bool_value, 5 struct_value, 6 list_value}.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

from google.protobuf import struct_pb2

_SMALL = [bytes((n,)) for n in range(128)]
_DOUBLE = struct.Struct("<d").pack
# Values whose bytes never change: null, true, false.
_NULL, _TRUE, _FALSE = b"\x08\x00", b"\x20\x01", b"\x20\x00"


def varint(n: int) -> bytes:
    """A non-negative integer as a protobuf varint."""
    if n < 128:
        return _SMALL[n]
    out = bytearray()
    while n >= 128:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _zigzag(n: int) -> bytes:
    """A sint64 (zigzag, then varint)."""
    return varint((n << 1) ^ (n >> 63))


def _value(item: object) -> bytes:
    """A JSON value as a google.protobuf.Value, as Struct.update / ParseDict make it."""
    if isinstance(item, str):
        text = item.encode()
        return b"\x1a" + varint(len(text)) + text
    if item is True:
        return _TRUE
    if item is False:
        return _FALSE
    if isinstance(item, int | float):
        return b"\x11" + _DOUBLE(float(item))
    if item is None:
        return _NULL
    # An object or an array: rare in metadata; the protobuf runtime writes it.
    holder = struct_pb2.Struct()
    holder.update({"": item})
    return holder.fields[""].SerializeToString()


_KEYS: dict[str, bytes] = {}  # a map entry's key field, by key: metadata keys repeat


def properties(value: dict[str, object]) -> bytes:
    """The AppendRecord's properties map (field 2), one entry per key, in the object's order."""
    parts = []
    for key, item in value.items():
        head = _KEYS.get(key)
        if head is None:
            name = key.encode()
            head = b"\x0a" + varint(len(name)) + name + b"\x12"
            if len(_KEYS) < 4096:
                _KEYS[key] = head
        encoded = _value(item)
        entry = head + varint(len(encoded)) + encoded
        parts.append(b"\x12" + varint(len(entry)) + entry)
    return b"".join(parts)


def schema(format_number: int, name: str) -> bytes:
    """The AppendRecord's schema (field 3): SchemaInfo {format, name}."""
    text = name.encode()
    info = b"\x08" + varint(format_number) + b"\x12" + varint(len(text)) + text
    return b"\x1a" + varint(len(info)) + info


Record = tuple[bytes, bytes, bytes]  # an AppendRecord's bytes before, of and after its data


def record(
    record_id: str, props: bytes, schema_field: bytes, data: bytes, stream: str | None
) -> Record:
    """One AppendRecord: its id, its properties and schema fields (as `properties` and
    `schema` give them), its data and, for AppendRecords, its stream; in three parts, so the
    data (most of the bytes) is copied once, into the request. The fields have presence (the
    server can tell an empty value from none): each is written, empty or not, as the messages
    built field by field had them."""
    rid = record_id.encode()
    head = b"\x0a" + varint(len(rid)) + rid + props + schema_field + b"\x22" + varint(len(data))
    if stream is None:
        return head, data, b""
    name = stream.encode()
    return head, data, b"\x2a" + varint(len(name)) + name


def _add(parts: list[bytes], tag: bytes, message: Record) -> None:
    head, data, tail = message
    parts += (tag, varint(len(head) + len(data) + len(tail)), head, data, tail)


def append_request(stream: str, expected_revision: int, records: Iterable[Record]) -> bytes:
    """One AppendSession message: a stream, its records, its expected revision."""
    name = stream.encode()
    parts = [b"\x0a", varint(len(name)), name]
    for message in records:
        _add(parts, b"\x12", message)
    parts += (b"\x18", _zigzag(expected_revision))
    return b"".join(parts)


def records_request(records: Iterable[Record], checks: Iterable[tuple[str, int]]) -> bytes:
    """One AppendRecords request: its records in order, then a stream state check per
    (stream, expected state)."""
    parts: list[bytes] = []
    for message in records:
        _add(parts, b"\x0a", message)
    for stream, expected in checks:
        name = stream.encode()
        state = b"\x0a" + varint(len(name)) + name + b"\x10" + _zigzag(expected)
        check = b"\x0a" + varint(len(state)) + state
        parts += (b"\x12", varint(len(check)), check)
    return b"".join(parts)
