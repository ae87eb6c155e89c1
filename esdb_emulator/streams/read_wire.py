"""A read's event responses written straight to wire bytes.

One `ReadResp` per record is the protocol, and building each as protobuf objects (a
`RecordedEvent` with its id, stream identifier and metadata map, inside a `ReadEvent`, inside a
`ReadResp`) and then serializing it was a large share of the emulator's own CPU per record
served. Here the same message is written directly: the bytes parse to exactly the message
`reads.read_event` builds (tests/emulator/test_read_wire.py proves it for every kind of
record), and the gRPC handler sends them as they are (esdb_emulator.headers passes bytes
through the response serializer).

Field numbers and types: esdbclient's streams.proto / shared.proto (`ReadResp.event` = 1;
`ReadEvent.event` = 1, `.link` = 2, `.commit_position` = 3, a uint64 in the `position` oneof;
`RecordedEvent.id` = 1, `.stream_identifier` = 2, `.stream_revision` = 3, `.prepare_position` =
4, `.commit_position` = 5, `.metadata` = 6 (map<string, string>), `.custom_metadata` = 7,
`.data` = 8; `UUID.string` = 2, in the `value` oneof; `StreamIdentifier.stream_name` = 3).
proto3 leaves out scalar fields at their default (0, empty) unless they are in a oneof.
"""

from __future__ import annotations

from esdb_emulator.store import Record, Store

# Tags: field number << 3 | wire type (0 varint, 2 length-delimited).
_READ_RESP_EVENT = b"\x0a"
_READ_EVENT_EVENT = b"\x0a"
_READ_EVENT_LINK = b"\x12"
_READ_EVENT_COMMIT_POSITION = b"\x18"
_ID = b"\x0a"
_STREAM_IDENTIFIER = b"\x12"
_STREAM_REVISION = b"\x18"
_PREPARE_POSITION = b"\x20"
_COMMIT_POSITION = b"\x28"
_METADATA = b"\x32"
_CUSTOM_METADATA = b"\x3a"
_DATA = b"\x42"
_UUID_STRING = b"\x12"
_STREAM_NAME = b"\x1a"
_MAP_KEY = b"\x0a"
_MAP_VALUE = b"\x12"


_SMALL = [bytes((n,)) for n in range(0x80)]  # varints of one byte
_TWO_BYTES = [bytes(((n & 0x7F) | 0x80, n >> 7)) for n in range(0x80, 0x4000)]


def varint(value: int) -> bytes:
    """An unsigned varint (uint64: 0 <= value < 2**64)."""
    if value < 0x80:
        return _SMALL[value]
    if value < 0x4000:
        return _TWO_BYTES[value - 0x80]
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _length_delimited(tag: bytes, payload: bytes) -> bytes:
    return tag + varint(len(payload)) + payload


def _map_entry(key: bytes, value: str) -> bytes:
    encoded = value.encode()
    entry = key + (_MAP_VALUE + varint(len(encoded)) + encoded if encoded else b"")
    return _METADATA + varint(len(entry)) + entry


_TYPE_KEY = _MAP_KEY + varint(4) + b"type"
_CONTENT_TYPE_KEY = _MAP_KEY + varint(12) + b"content-type"
_CREATED_KEY = _MAP_KEY + varint(7) + b"created"
# The metadata entries of a type or a content type: few distinct values, each encoded once.
_ENTRIES: dict[tuple[bytes, str], bytes] = {}
_ENTRIES_BOUND = 10_000


def _cached_entry(key: bytes, value: str) -> bytes:
    entry = _ENTRIES.get((key, value))
    if entry is None:
        entry = _map_entry(key, value)
        if len(_ENTRIES) < _ENTRIES_BOUND:
            _ENTRIES[(key, value)] = entry
    return entry


def recorded_event_bytes(record: Record) -> bytes:
    """`reads.recorded_event(record)`, serialized."""
    event_id = record.event_id.encode()
    stream = record.stream.encode()
    uuid_value = _UUID_STRING + varint(len(event_id)) + event_id
    identifier = _STREAM_NAME + varint(len(stream)) + stream if stream else b""
    parts = [
        _ID,
        varint(len(uuid_value)),
        uuid_value,
        _STREAM_IDENTIFIER,
        varint(len(identifier)),
        identifier,
    ]
    if record.revision:
        parts += (_STREAM_REVISION, varint(record.revision))
    if record.position:
        position = varint(record.position)
        parts += (_PREPARE_POSITION, position, _COMMIT_POSITION, position)
    created = str(record.created).encode()
    parts += (
        _cached_entry(_TYPE_KEY, record.type),
        _cached_entry(_CONTENT_TYPE_KEY, record.content_type),
        _METADATA,
        varint(len(created) + 11),  # the key (9 bytes), the value's tag and length (2)
        _CREATED_KEY,
        _MAP_VALUE,
        varint(len(created)),
        created,
    )
    if record.metadata:
        parts += (_CUSTOM_METADATA, varint(len(record.metadata)), record.metadata)
    if record.data:
        parts += (_DATA, varint(len(record.data)), record.data)
    return b"".join(parts)


def read_event_bytes(store: Store, record: Record, resolve_links: bool) -> bytes:
    """`reads.read_event(store, record, resolve_links)`, serialized: the record as an event,
    or, for a link resolved, the link and (when it still exists) its target."""
    parts = []
    if resolve_links and record.type == "$>":
        target = store.resolve_link(record.data)
        if target is not None:
            parts.append(_length_delimited(_READ_EVENT_EVENT, recorded_event_bytes(target)))
        parts.append(_length_delimited(_READ_EVENT_LINK, recorded_event_bytes(record)))
    else:
        parts.append(_length_delimited(_READ_EVENT_EVENT, recorded_event_bytes(record)))
    parts.append(_READ_EVENT_COMMIT_POSITION + varint(record.position))
    return _length_delimited(_READ_RESP_EVENT, b"".join(parts))
