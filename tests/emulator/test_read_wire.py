"""A read's event responses written as bytes (esdb_emulator.streams.read_wire) parse to exactly
the `ReadResp` the emulator built as protobuf objects (`reads.read_event`): for every kind of
record a store holds, and for any field values (Hypothesis), links resolved or not.

Streams.Read answers ids as strings whatever `uuid_option` the request asks for (the emulator's
behaviour before and after this encoding: both paths build `UUID(string=...)`), so only string
ids are compared here; the client round trip below checks the ids esdbclient sees.
"""

from __future__ import annotations

import uuid

import pytest
from esdbclient import EventStoreDBClient, NewEvent, StreamState
from esdbclient.protos.Grpc import streams_pb2
from hypothesis import example, given, settings
from hypothesis import strategies as st

from esdb_emulator import Emulator
from esdb_emulator.store import (
    ANY,
    DELETED_STREAM,
    JSON,
    OCTET_STREAM,
    ProposedEvent,
    Record,
    Store,
)
from esdb_emulator.streams.read_wire import read_event_bytes, varint
from esdb_emulator.streams.reads import read_event

_U64 = st.integers(min_value=0, max_value=2**64 - 1)


def _event(type_: str = "Happened", data: bytes = b"{}", metadata: bytes = b"") -> ProposedEvent:
    return ProposedEvent(str(uuid.uuid4()), type_, JSON, data, metadata)


def _same(store: Store, record: Record, resolve_links: bool) -> None:
    encoded = read_event_bytes(store, record, resolve_links)
    assert streams_pb2.ReadResp.FromString(encoded) == read_event(store, record, resolve_links)


def _every_kind() -> Store:
    """A store with every kind of record a read can send."""
    store = Store(seed_system_events=False)  # the first record sits at position 0
    store.append("orders-1", ANY, [_event(data=b"", metadata=b"")])  # revision 0, no data
    store.append("orders-1", ANY, [_event(metadata=b'{"$correlationId":"x"}')])
    store.append("ünï.strm-1", ANY, [_event("Bestellung-é", "ß".encode())])
    store.append("ünï.strm-1", ANY, [ProposedEvent(str(uuid.uuid4()), "Bin", OCTET_STREAM, b"\0")])
    store.append("$system-thing", ANY, [_event("$statsCollected")])
    store.set_metadata("orders-1", {"$maxCount": 5, "custom": "ü"})  # a `$$` metadata event
    store.append(
        "links", ANY, [ProposedEvent(str(uuid.uuid4()), "$>", OCTET_STREAM, b"1@orders-1")]
    )
    store.append("links", ANY, [ProposedEvent(str(uuid.uuid4()), "$>", OCTET_STREAM, b"0@gone")])
    store.append("links", ANY, [ProposedEvent(str(uuid.uuid4()), "$>", OCTET_STREAM, b"junk")])
    store.append("to-delete", ANY, [_event()])
    store.delete("to-delete", ANY)  # soft delete: `$tb` metadata
    store.append("to-tombstone", ANY, [_event()])
    store.tombstone("to-tombstone", ANY)  # revision long.MaxValue, `$streamDeleted`
    store.append("empty-append", ANY, [])
    store.append("big", ANY, [_event(data=b"x" * 70_000, metadata=b"m" * 300)])  # long lengths
    store.append("", ANY, [_event()])  # an empty name (refused on the wire, kept by the store)
    return store


@pytest.mark.parametrize("resolve_links", [False, True])
def test_every_kind_of_record_encodes_as_the_message(resolve_links: bool) -> None:
    store = _every_kind()
    records = store.export_records()
    kinds = {r.type for r in records}
    assert {"$>", "$metadata", "$streamDeleted", "$statsCollected"} <= kinds
    assert records[0].position == 0 and records[0].revision == 0
    assert any(r.revision == DELETED_STREAM for r in records)
    for record in records:
        _same(store, record, resolve_links)


@settings(max_examples=300, deadline=None)
@given(
    stream=st.text(max_size=40),
    revision=_U64,
    event_id=st.text(max_size=40),
    type_=st.text(max_size=30),
    content_type=st.sampled_from([JSON, OCTET_STREAM, "", "text/plain; ü"]),
    data=st.binary(max_size=300),
    metadata=st.binary(max_size=200),
    created=st.integers(min_value=-(2**63), max_value=2**63 - 1),
    position=_U64,
    resolve_links=st.booleans(),
)
def test_any_record_encodes_as_the_message(
    stream: str,
    revision: int,
    event_id: str,
    type_: str,
    content_type: str,
    data: bytes,
    metadata: bytes,
    created: int,
    position: int,
    resolve_links: bool,
) -> None:
    record = Record(
        stream, revision, event_id, type_, content_type, data, metadata, created, position
    )
    store = Store(seed_system_events=False)
    _same(store, record, resolve_links)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=20), st.integers(min_value=0, max_value=40), _U64, st.booleans())
def test_a_link_encodes_as_the_message(
    target: str, revision: int, position: int, exists: bool
) -> None:
    store = Store(seed_system_events=False)
    if exists and target:
        store.append(target, ANY, [_event() for _ in range(revision + 1)])
    link = Record(
        "links", 0, str(uuid.uuid4()), "$>", OCTET_STREAM, f"{revision}@{target}".encode(),
        b"", 1, position,
    )  # fmt: skip
    _same(store, link, True)
    _same(store, link, False)


@given(_U64)
@example(0x7F)
@example(0x80)
@example(0x3FFF)
@example(0x4000)
@example(2**63 - 1)
@example(2**64 - 1)
def test_varint_is_protobufs(value: int) -> None:
    message = streams_pb2.ReadResp.ReadEvent(commit_position=value)
    assert message.SerializeToString() == b"\x18" + varint(value)


def test_a_client_reads_the_encoded_responses_as_before() -> None:
    """Through esdbclient: the fields of stream and `$all` reads, a resolved link and the
    record of a missing link target, as the client decodes them."""
    with Emulator() as db:
        client = EventStoreDBClient(db.uri)
        try:
            data = "ü".encode() * 100
            client.append_to_stream(
                "ünï.strm-1",
                current_version=StreamState.NO_STREAM,
                events=[NewEvent(type="Bestellt", data=data, metadata=b'{"k":1}')],
            )
            db.store.append(
                "links",
                ANY,
                [ProposedEvent(str(uuid.uuid4()), "$>", OCTET_STREAM, "0@ünï.strm-1".encode())],
            )
            (event,) = client.get_stream("ünï.strm-1")
            assert (event.type, event.data, event.metadata) == ("Bestellt", data, b'{"k":1}')
            assert event.stream_name == "ünï.strm-1" and event.stream_position == 0
            assert event.commit_position is not None and event.recorded_at is not None
            (link,) = client.get_stream("links", resolve_links=True)
            assert link.stream_name == "ünï.strm-1" and link.link is not None
            assert link.link.stream_name == "links" and link.id == event.id
            every = [
                e for e in client.read_all(filter_exclude=[]) if not e.stream_name.startswith("$")
            ]
            assert [e.stream_name for e in every] == ["ünï.strm-1", "links"]
            assert every[0].commit_position == event.commit_position
        finally:
            client.close()
