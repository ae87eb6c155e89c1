"""Stream appends, reads, deletes, tombstones and metadata, driven only through esdbclient.

Reference behaviour: esdbclient's own suite against a real server
(pyeventsourcing/esdbclient tests/test_client.py, cited below by test name) and the server
source (EventStore/EventStore src/EventStore.Core/..., cited by file and method).

esdbclient sends a single `NewEvent` through the Append RPC and a list through BatchAppend; the
two report errors differently (Append: a `wrong_expected_version` body or a gRPC status;
BatchAppend: a google.rpc.Status in the response), so error cases run through both.
"""

from __future__ import annotations

import json
import time
import uuid

import grpc
import pytest
from esdbclient import EventStoreDBClient, NewEvent, StreamState
from esdbclient.exceptions import (
    ExceptionThrownByHandler,
    FailedPrecondition,
    GrpcError,
    NotFound,
    StreamIsDeleted,
    WrongCurrentVersion,
)
from esdbclient.protos.Grpc import shared_pb2, streams_pb2, streams_pb2_grpc

from esdb_emulator import Emulator

MAX_LONG = 9223372036854775807  # EventNumber.DeletedStream / `$tb` of a soft-deleted stream


def ev(type_: str = "OrderCreated", data: bytes = b"{}", metadata: bytes = b"") -> NewEvent:
    return NewEvent(type=type_, data=data, metadata=metadata)


def new_stream() -> str:
    return f"order-{uuid.uuid4()}"


def append(
    client: EventStoreDBClient, stream: str, version: int | StreamState, events: list[NewEvent], rpc
) -> int:
    """Append through the Append RPC (one event at a time is not atomic, so only 1 event)
    or through BatchAppend (a list)."""
    if rpc == "append":
        assert len(events) == 1
        return client.append_to_stream(stream, current_version=version, events=events[0])
    return client.append_to_stream(stream, current_version=version, events=events)


RPCS = pytest.mark.parametrize("rpc", ["append", "batch"])


def ids(events) -> list[uuid.UUID]:
    return [e.id for e in events]


# --------------------------------------------------------------------------- reads


def test_read_missing_stream_raises_not_found(client: EventStoreDBClient) -> None:
    # esdbclient test_stream_read_raises_not_found.
    stream = new_stream()
    with pytest.raises(NotFound):
        list(client.read_stream(stream))
    for kwargs in (
        {},
        {"backwards": True},
        {"stream_position": 1},
        {"stream_position": 1, "backwards": True},
        {"limit": 10},
        {"backwards": True, "limit": 10},
        {"stream_position": 1, "limit": 10},
        {"stream_position": 1, "backwards": True, "limit": 10},
    ):
        with pytest.raises(NotFound):
            client.get_stream(stream, **kwargs)
    assert client.get_current_version(stream) is StreamState.NO_STREAM


def test_recorded_event_attributes(client: EventStoreDBClient) -> None:
    stream = new_stream()
    e = NewEvent(
        type="OrderCreated", data=b'{"a": 1}', metadata=b'{"m": 2}', content_type="application/json"
    )
    binary = NewEvent(type="Blob", data=b"\x00\x01", content_type="application/octet-stream")
    position = client.append_to_stream(stream, current_version=StreamState.NO_STREAM, events=[e])
    client.append_to_stream(stream, current_version=0, events=binary)
    first, second = client.get_stream(stream)
    assert first.id == e.id
    assert first.type == "OrderCreated"
    assert first.data == b'{"a": 1}'
    assert first.metadata == b'{"m": 2}'
    assert first.content_type == "application/json"
    assert first.stream_name == stream
    assert first.stream_position == 0
    assert first.commit_position == position
    assert first.recorded_at is not None
    assert abs(first.recorded_at.timestamp() - time.time()) < 60
    assert second.content_type == "application/octet-stream"
    assert second.data == b"\x00\x01"
    assert second.stream_position == 1


def test_read_stream_forwards_backwards_positions_and_limits(client: EventStoreDBClient) -> None:
    # esdbclient test_stream_append_event_with_current_version (the read part).
    stream = new_stream()
    events = [ev(f"E{i}") for i in range(5)]
    client.append_to_stream(stream, current_version=StreamState.NO_STREAM, events=events)
    assert ids(client.get_stream(stream)) == ids(events)
    assert ids(client.get_stream(stream, backwards=True)) == ids(reversed(events))
    assert ids(client.get_stream(stream, stream_position=3)) == ids(events[3:])
    assert ids(client.get_stream(stream, stream_position=1, backwards=True)) == ids(
        [events[1], events[0]]
    )
    assert ids(client.get_stream(stream, limit=2)) == ids(events[:2])
    assert ids(client.get_stream(stream, backwards=True, limit=2)) == ids([events[4], events[3]])
    assert ids(client.get_stream(stream, stream_position=1, limit=2)) == ids(events[1:3])
    assert ids(client.get_stream(stream, stream_position=3, backwards=True, limit=2)) == ids(
        [events[3], events[2]]
    )
    # Past the end: an empty read, not "stream not found" (IndexReader.
    # ReadStreamEventsForwardInternal: startEventNumber > lastEventNumber -> empty, end of stream).
    assert client.get_stream(stream, stream_position=10) == ()
    # Backwards from beyond the end starts at the last event.
    assert ids(client.get_stream(stream, stream_position=10, backwards=True, limit=1)) == ids(
        [events[4]]
    )
    assert client.get_current_version(stream) == 4


# -------------------------------------------------------------------- expected version


@RPCS
def test_append_expecting_no_stream(client: EventStoreDBClient, rpc: str) -> None:
    # esdbclient test_stream_append_event_with_current_version / ..._events_with_current_version.
    stream = new_stream()
    e1, e2 = ev("OrderCreated"), ev("OrderUpdated")
    with pytest.raises(WrongCurrentVersion) as info:
        append(client, stream, 1, [e1], rpc)
    assert info.value.args[0] == f"Stream {stream!r} does not exist"
    with pytest.raises(NotFound):
        client.get_stream(stream)

    append(client, stream, StreamState.NO_STREAM, [e1], rpc)
    assert client.get_current_version(stream) == 0
    with pytest.raises(WrongCurrentVersion) as info:
        append(client, stream, StreamState.NO_STREAM, [e2], rpc)
    assert info.value.args[0] == "Stream position of last event is 0 not StreamState.NO_STREAM"
    assert ids(client.get_stream(stream)) == [e1.id]


@RPCS
def test_append_expecting_exact_revision(client: EventStoreDBClient, rpc: str) -> None:
    stream = new_stream()
    e1, e2, e3 = ev("A"), ev("B"), ev("C")
    append(client, stream, StreamState.NO_STREAM, [e1], rpc)
    append(client, stream, 0, [e2], rpc)
    with pytest.raises(WrongCurrentVersion) as info:
        append(client, stream, 0, [e3], rpc)
    assert info.value.args[0] == "Stream position of last event is 1 not 0"
    with pytest.raises(WrongCurrentVersion) as info:
        append(client, stream, 10, [e3], rpc)
    assert info.value.args[0] == "Stream position of last event is 1 not 10"
    append(client, stream, 1, [e3], rpc)
    assert ids(client.get_stream(stream)) == ids([e1, e2, e3])
    assert client.get_current_version(stream) == 2


@RPCS
def test_append_expecting_any(client: EventStoreDBClient, rpc: str) -> None:
    # esdbclient test_stream_append_event_with_stream_state_any.
    stream = new_stream()
    e1, e2 = ev(), ev()
    p1 = append(client, stream, StreamState.ANY, [e1], rpc)
    p2 = append(client, stream, StreamState.ANY, [e2], rpc)
    assert p2 > p1
    assert ids(client.get_stream(stream)) == ids([e1, e2])


@RPCS
def test_append_expecting_stream_exists(client: EventStoreDBClient, rpc: str) -> None:
    # esdbclient test_stream_append_event_with_stream_state_stream_exists.
    stream = new_stream()
    e1, e2 = ev(), ev()
    with pytest.raises(WrongCurrentVersion) as info:
        append(client, stream, StreamState.EXISTS, [e1], rpc)
    assert info.value.args[0] == f"Stream {stream!r} does not exist"
    append(client, stream, StreamState.NO_STREAM, [e1], rpc)
    append(client, stream, StreamState.EXISTS, [e2], rpc)
    assert ids(client.get_stream(stream)) == ids([e1, e2])


@RPCS
def test_append_expecting_stream_exists_when_only_metadata_exists(
    client: EventStoreDBClient, rpc: str
) -> None:
    # IndexWriter.CheckCommit: with StreamExists and no events, the stream still "exists" when
    # its metastream has an event.
    stream = new_stream()
    client.set_stream_metadata(stream, metadata={"foo": "bar"})
    e1 = ev()
    append(client, stream, StreamState.EXISTS, [e1], rpc)
    assert ids(client.get_stream(stream)) == [e1.id]


def test_append_empty_batch(client: EventStoreDBClient) -> None:
    # An empty append writes nothing; NO_STREAM on a missing stream succeeds, an exact
    # revision does not (CheckCommit: expectedVersion > curVersion).
    stream = new_stream()
    client.append_to_stream(stream, current_version=StreamState.NO_STREAM, events=[])
    with pytest.raises(NotFound):
        client.get_stream(stream)
    with pytest.raises(WrongCurrentVersion):
        client.append_to_stream(stream, current_version=1, events=[])


# ---------------------------------------------------------------------- idempotency


@RPCS
def test_idempotent_append_same_ids_same_expected_version(
    client: EventStoreDBClient, rpc: str
) -> None:
    # esdbclient test_stream_append_event_with_current_version ("Idempotent write of ...");
    # IndexWriter.CheckCommit, branch expectedVersion < curVersion.
    stream = new_stream()
    e1, e2, e3 = ev("A"), ev("B"), ev("C")
    p1 = append(client, stream, StreamState.NO_STREAM, [e1], rpc)
    p2 = append(client, stream, 0, [e2], rpc)
    p3 = append(client, stream, 1, [e3], rpc)
    assert append(client, stream, StreamState.NO_STREAM, [e1], rpc) == p1
    assert append(client, stream, 0, [e2], rpc) == p2
    assert append(client, stream, 1, [e3], rpc) == p3
    assert ids(client.get_stream(stream)) == ids([e1, e2, e3])
    # Idempotent batches report the position of the batch's last event.
    assert (
        client.append_to_stream(stream, current_version=StreamState.NO_STREAM, events=[e1, e2])
        == p2
    )
    assert client.append_to_stream(stream, current_version=0, events=[e2, e3]) == p3
    assert ids(client.get_stream(stream)) == ids([e1, e2, e3])


def test_idempotent_batch_returns_position_of_last_event(client: EventStoreDBClient) -> None:
    stream = new_stream()
    e1, e2, e3 = ev("A"), ev("B"), ev("C")
    client.append_to_stream(stream, current_version=StreamState.NO_STREAM, events=[e1, e2, e3])
    positions = [e.commit_position for e in client.get_stream(stream)]
    again = client.append_to_stream(stream, current_version=StreamState.NO_STREAM, events=[e1, e2])
    assert again == positions[1]
    assert len(client.get_stream(stream)) == 3


@RPCS
def test_idempotent_append_with_any(client: EventStoreDBClient, rpc: str) -> None:
    # IndexWriter.CheckCommit, branch ExpectedVersion.Any / StreamExists: every event id
    # already committed to this stream -> Idempotent, the original position is returned.
    stream = new_stream()
    e1, e2 = ev("A"), ev("B")
    p1 = append(client, stream, StreamState.ANY, [e1], rpc)
    p2 = append(client, stream, StreamState.ANY, [e2], rpc)
    assert append(client, stream, StreamState.ANY, [e1], rpc) == p1
    assert append(client, stream, StreamState.ANY, [e2], rpc) == p2
    assert append(client, stream, StreamState.EXISTS, [e2], rpc) == p2
    assert ids(client.get_stream(stream)) == ids([e1, e2])


def test_idempotent_batch_with_any(client: EventStoreDBClient) -> None:
    stream = new_stream()
    e1, e2 = ev("A"), ev("B")
    p = client.append_to_stream(stream, current_version=StreamState.ANY, events=[e1, e2])
    assert client.append_to_stream(stream, current_version=StreamState.ANY, events=[e1, e2]) == p
    assert ids(client.get_stream(stream)) == ids([e1, e2])


def test_partial_overlap_with_exact_version_is_wrong_current_version(
    client: EventStoreDBClient,
) -> None:
    # esdbclient test_stream_append_event_with_current_version ("Mixture of 'idempotent'
    # write ... with new event4"); CheckCommit -> CorruptedIdempotency, which
    # StorageWriterService.ActOnCommitCheckFailure reports as WrongExpectedVersion.
    stream = new_stream()
    e1, e2, e3, e4 = ev("A"), ev("B"), ev("C"), ev("D")
    client.append_to_stream(stream, current_version=StreamState.NO_STREAM, events=[e1, e2, e3])
    with pytest.raises(WrongCurrentVersion):
        client.append_to_stream(stream, current_version=0, events=[e2, e3, e4])
    assert ids(client.get_stream(stream)) == ids([e1, e2, e3])


def test_partial_overlap_with_any_is_wrong_current_version(client: EventStoreDBClient) -> None:
    # CheckCommit (Any): first id committed, a later one not -> CorruptedIdempotency -> WEV.
    stream = new_stream()
    e1, e2, e3 = ev("A"), ev("B"), ev("C")
    client.append_to_stream(stream, current_version=StreamState.ANY, events=[e1, e2])
    with pytest.raises(WrongCurrentVersion):
        client.append_to_stream(stream, current_version=StreamState.ANY, events=[e2, e3])
    assert ids(client.get_stream(stream)) == ids([e1, e2])


def test_any_only_checks_the_first_event_id(client: EventStoreDBClient) -> None:
    # CheckCommit (Any): when the *first* id is unknown the commit is Ok, so a batch that
    # starts with a new event is written whole, even if a later id was already written.
    stream = new_stream()
    e1, e2 = ev("A"), ev("B")
    client.append_to_stream(stream, current_version=StreamState.ANY, events=e1)
    client.append_to_stream(stream, current_version=StreamState.ANY, events=[e2, e1])
    assert ids(client.get_stream(stream)) == ids([e1, e2, e1])


def test_same_event_id_in_another_stream_is_not_idempotent(client: EventStoreDBClient) -> None:
    # CheckCommit compares the committed event's stream with the target stream.
    s1, s2 = new_stream(), new_stream()
    e1 = ev()
    p1 = client.append_to_stream(s1, current_version=StreamState.ANY, events=e1)
    p2 = client.append_to_stream(s2, current_version=StreamState.ANY, events=e1)
    assert p2 > p1
    assert ids(client.get_stream(s1)) == ids(client.get_stream(s2)) == [e1.id]


# ----------------------------------------------------------------- commit positions


def test_commit_positions_strictly_increase(client: EventStoreDBClient) -> None:
    # esdbclient test_stream_append_to_stream / test_stream_append_events_with_current_version.
    start = client.get_commit_position()
    s1, s2 = new_stream(), new_stream()
    p1 = client.append_to_stream(s1, current_version=StreamState.NO_STREAM, events=ev())
    batch = [ev("A"), ev("B"), ev("C")]
    p2 = client.append_to_stream(s2, current_version=StreamState.NO_STREAM, events=batch)
    p3 = client.append_to_stream(s1, current_version=0, events=[ev("D"), ev("E")])
    assert start < p1 < p2 < p3
    recorded = client.get_stream(s2)
    positions = [e.commit_position for e in recorded]
    assert positions == sorted(set(positions))
    assert positions[0] > p1
    assert positions[-1] == p2  # append returns the commit position of the last event
    assert client.get_commit_position() == p3
    all_positions = [e.commit_position for e in client.read_all(filter_exclude=[])]
    assert all_positions == sorted(set(all_positions))
    assert all(e.prepare_position == e.commit_position for e in recorded)


def test_get_commit_position_with_filter(client: EventStoreDBClient) -> None:
    # esdbclient test_get_commit_position.
    p = client.append_to_stream(new_stream(), current_version=StreamState.NO_STREAM, events=ev())
    assert client.get_commit_position() == p
    assert client.get_commit_position(filter_exclude=[".*"]) == 0


# ---------------------------------------------------------------------- soft delete


def test_soft_delete_with_exact_version(client: EventStoreDBClient) -> None:
    # esdbclient test_stream_delete_with_current_version.
    stream = new_stream()
    e1, e2, e3, e4 = ev("A"), ev("B"), ev("C"), ev("D")
    client.append_to_stream(stream, current_version=StreamState.NO_STREAM, events=[e1])
    client.append_to_stream(stream, current_version=0, events=[e2])
    with pytest.raises(WrongCurrentVersion):
        client.delete_stream(stream, current_version=0)
    client.delete_stream(stream, current_version=1)
    with pytest.raises(WrongCurrentVersion):
        client.delete_stream(stream, current_version=0)
    client.delete_stream(stream, current_version=1)  # repeated delete
    with pytest.raises(NotFound):
        client.get_stream(stream)
    assert client.get_current_version(stream) is StreamState.NO_STREAM

    # Appending again continues the revisions (NO_STREAM is accepted on a soft-deleted stream:
    # CheckCommit returns Ok + IsSoftDeleted for ExpectedVersion.NoStream).
    client.append_to_stream(stream, current_version=StreamState.NO_STREAM, events=[e3])
    assert client.get_current_version(stream) == 2
    client.append_to_stream(stream, current_version=2, events=[e4])
    recorded = client.get_stream(stream)
    assert ids(recorded) == ids([e3, e4])
    assert [e.stream_position for e in recorded] == [2, 3]

    with pytest.raises(WrongCurrentVersion):
        client.delete_stream(stream, current_version=0)
    client.delete_stream(stream, current_version=3)
    with pytest.raises(NotFound):
        client.get_stream(stream)
    with pytest.raises(WrongCurrentVersion):
        client.delete_stream(stream, current_version=2)
    client.delete_stream(stream, current_version=3)


def test_soft_delete_with_any(client: EventStoreDBClient) -> None:
    # esdbclient test_stream_delete_with_any_current_version.
    stream = new_stream()
    with pytest.raises(NotFound):
        client.delete_stream(stream, current_version=StreamState.ANY)
    e1, e2, e3 = ev("A"), ev("B"), ev("C")
    client.append_to_stream(stream, current_version=StreamState.NO_STREAM, events=[e1])
    client.append_to_stream(stream, current_version=0, events=[e2])
    client.delete_stream(stream, current_version=StreamState.ANY)
    client.delete_stream(stream, current_version=StreamState.ANY)
    with pytest.raises(NotFound):
        client.get_stream(stream)
    with pytest.raises(WrongCurrentVersion):
        client.append_to_stream(stream, current_version=0, events=[e3])
    client.append_to_stream(stream, current_version=1, events=[e3])
    assert ids(client.get_stream(stream)) == [e3.id]
    client.delete_stream(stream, current_version=StreamState.ANY)
    with pytest.raises(NotFound):
        client.get_stream(stream)
    client.delete_stream(stream, current_version=StreamState.ANY)


def test_soft_delete_expecting_stream_exists(client: EventStoreDBClient) -> None:
    # esdbclient test_stream_delete_expecting_stream_exists.
    stream = new_stream()
    with pytest.raises(NotFound):
        client.delete_stream(stream, current_version=StreamState.NO_STREAM)
    with pytest.raises(NotFound):
        client.delete_stream(stream, current_version=StreamState.EXISTS)
    e1, e2, e3 = ev("A"), ev("B"), ev("C")
    client.append_to_stream(stream, current_version=StreamState.NO_STREAM, events=[e1])
    client.append_to_stream(stream, current_version=0, events=[e2])
    client.delete_stream(stream, current_version=StreamState.ANY)
    # CheckCommit: StreamExists on a soft-deleted stream -> CommitDecision.Deleted.
    with pytest.raises(StreamIsDeleted):
        client.delete_stream(stream, current_version=StreamState.EXISTS)
    with pytest.raises(StreamIsDeleted):
        client.append_to_stream(stream, current_version=StreamState.EXISTS, events=[e3])
    # Through the Append RPC the server raises RpcExceptions.StreamDeleted (FAILED_PRECONDITION
    # "... is deleted."), which esdbclient's handle_rpc_error turns into FailedPrecondition.
    with pytest.raises(FailedPrecondition, match="is deleted"):
        client.append_to_stream(stream, current_version=StreamState.EXISTS, events=e3)
    with pytest.raises(WrongCurrentVersion):
        client.append_to_stream(stream, current_version=0, events=[e3])
    client.append_to_stream(stream, current_version=StreamState.NO_STREAM, events=[e3])
    assert ids(client.get_stream(stream)) == [e3.id]
    client.delete_stream(stream, current_version=StreamState.EXISTS)
    with pytest.raises(NotFound):
        client.get_stream(stream)
    with pytest.raises(StreamIsDeleted):
        client.delete_stream(stream, current_version=StreamState.EXISTS)


@pytest.mark.parametrize(
    "version", [StreamState.ANY, StreamState.NO_STREAM, StreamState.EXISTS, 0, 5]
)
def test_delete_never_existing_stream_is_not_found(
    client: EventStoreDBClient, version: int | StreamState
) -> None:
    # StorageWriterService WriteDelete (soft): no events and no metadata -> WrongExpectedVersion
    # with current version -1, which esdbclient maps to NotFound ("Actual version: -1").
    with pytest.raises(NotFound):
        client.delete_stream(new_stream(), current_version=version)


def test_delete_stream_with_only_metadata(client: EventStoreDBClient) -> None:
    # WriteDelete only refuses when neither the stream nor its metastream has events.
    stream = new_stream()
    client.set_stream_metadata(stream, metadata={"foo": "bar"})
    client.delete_stream(stream, current_version=StreamState.ANY)
    assert client.get_stream_metadata(stream)[0] == {"$tb": MAX_LONG}


def test_soft_delete_metadata_and_undelete(client: EventStoreDBClient) -> None:
    # StorageWriterService: a soft delete writes StreamMetadata(truncateBefore: DeletedStream)
    # as the whole new metadata (other keys are dropped); the next append to the stream writes
    # a further `$metadata` event after the new events, copying the metadata with `$tb` set to
    # the first new revision (SoftUndeleteStream / SoftUndeleteRawMeta).
    stream = new_stream()
    client.append_to_stream(stream, current_version=StreamState.NO_STREAM, events=[ev(), ev()])
    client.set_stream_metadata(stream, metadata={"foo": "bar", "$maxCount": 10})
    metadata, version = client.get_stream_metadata(stream)
    assert metadata == {"foo": "bar", "$maxCount": 10}
    assert version == 0

    start = client.get_commit_position(filter_exclude=[])
    client.delete_stream(stream, current_version=1)
    metadata, version = client.get_stream_metadata(stream)
    assert metadata == {"$tb": MAX_LONG}
    assert version == 1

    e3 = ev("C")
    position = client.append_to_stream(stream, current_version=StreamState.ANY, events=[e3])
    metadata, version = client.get_stream_metadata(stream)
    assert metadata == {"$tb": 2}
    assert version == 2
    recorded = client.get_stream(stream)
    assert [(e.id, e.stream_position) for e in recorded] == [(e3.id, 2)]

    # In `$all`: the delete's `$metadata`, the new event, then the undelete `$metadata`.
    tail = [
        (e.stream_name, e.type, e.stream_position)
        for e in client.read_all(commit_position=start + 1, filter_exclude=[])
    ]
    assert tail == [
        (f"$${stream}", "$metadata", 1),
        (stream, "C", 2),
        (f"$${stream}", "$metadata", 2),
    ]
    assert recorded[0].commit_position == position


def test_set_metadata_on_soft_deleted_stream_undeletes_it(client: EventStoreDBClient) -> None:
    # esdbclient test_stream_metadata_get_and_set: after a delete, setting metadata leaves
    # `$tb` at the next revision (StorageWriterService.SoftUndeleteMetastream).
    stream = new_stream()
    client.append_to_stream(stream, current_version=StreamState.NO_STREAM, events=[ev(), ev()])
    assert client.get_stream_metadata(stream) == ({}, StreamState.NO_STREAM)
    client.delete_stream(stream, current_version=StreamState.EXISTS)
    metadata, version = client.get_stream_metadata(stream)
    assert metadata == {"$tb": MAX_LONG}
    metadata["foo"] = "bar"
    client.set_stream_metadata(stream, metadata=metadata, current_version=version)
    # Version 2: the metadata just set (1), then the undelete's copy with `$tb` = 2 (2).
    metadata, version = client.get_stream_metadata(stream)
    assert metadata == {"foo": "bar", "$tb": 2}
    assert version == 2
    assert client.get_stream(stream) == ()
    e3 = ev()
    client.append_to_stream(stream, current_version=1, events=[e3])
    assert ids(client.get_stream(stream)) == [e3.id]


# ------------------------------------------------------------------------ tombstone


def test_tombstone_with_exact_version(client: EventStoreDBClient) -> None:
    # esdbclient test_tombstone_stream_with_current_version.
    stream = new_stream()
    client.append_to_stream(stream, current_version=StreamState.NO_STREAM, events=[ev()])
    client.append_to_stream(stream, current_version=0, events=[ev()])
    with pytest.raises(WrongCurrentVersion):
        client.tombstone_stream(stream, current_version=0)
    client.tombstone_stream(stream, current_version=1)
    with pytest.raises(StreamIsDeleted):
        client.tombstone_stream(stream, current_version=1)
    with pytest.raises(StreamIsDeleted):
        client.tombstone_stream(stream, current_version=2)
    with pytest.raises(StreamIsDeleted):
        client.get_stream(stream)
    with pytest.raises(StreamIsDeleted):
        client.get_stream(stream, backwards=True)
    with pytest.raises(StreamIsDeleted):
        client.get_current_version(stream)
    for version in (1, StreamState.ANY, StreamState.NO_STREAM, StreamState.EXISTS):
        # BatchAppend: a StreamDeleted status detail -> StreamIsDeleted.
        with pytest.raises(StreamIsDeleted):
            client.append_to_stream(stream, current_version=version, events=[ev()])
        # Append: RpcExceptions.StreamDeleted (FAILED_PRECONDITION "Event stream 'x' is
        # deleted."); esdbclient 1.1.7's StreamsService.append passes it to handle_rpc_error,
        # which raises FailedPrecondition for FAILED_PRECONDITION.
        with pytest.raises(FailedPrecondition, match=f"Event stream '{stream}' is deleted."):
            client.append_to_stream(stream, current_version=version, events=ev())
    with pytest.raises(StreamIsDeleted):
        client.delete_stream(stream, current_version=StreamState.ANY)


def test_tombstone_never_existing_stream_with_any(client: EventStoreDBClient) -> None:
    # esdbclient test_tombstone_stream_with_any_current_version.
    stream = new_stream()
    client.tombstone_stream(stream, current_version=StreamState.ANY)
    with pytest.raises(StreamIsDeleted):
        client.append_to_stream(stream, current_version=StreamState.NO_STREAM, events=[ev()])
    with pytest.raises(StreamIsDeleted):
        client.tombstone_stream(stream, current_version=StreamState.ANY)
    with pytest.raises(StreamIsDeleted):
        client.get_stream(stream)


def test_tombstone_expecting_stream_exists(client: EventStoreDBClient) -> None:
    # esdbclient test_tombstone_stream_expecting_stream_exists.
    stream = new_stream()
    with pytest.raises(NotFound):
        client.tombstone_stream(stream, current_version=StreamState.EXISTS)
    client.append_to_stream(stream, current_version=StreamState.NO_STREAM, events=[ev()])
    client.tombstone_stream(stream, current_version=StreamState.EXISTS)
    with pytest.raises(StreamIsDeleted):
        client.tombstone_stream(stream, current_version=StreamState.NO_STREAM)
    with pytest.raises(StreamIsDeleted):
        client.get_stream(stream)


def test_tombstone_record_in_all(client: EventStoreDBClient) -> None:
    # StorageWriterService WriteDelete (hard): a `$streamDeleted` record whose event number is
    # EventNumber.DeletedStream (long.MaxValue), visible in `$all`.
    stream = new_stream()
    p = client.append_to_stream(stream, current_version=StreamState.NO_STREAM, events=[ev()])
    client.tombstone_stream(stream, current_version=0)
    tail = list(client.read_all(commit_position=p + 1, filter_exclude=[]))
    assert [(e.stream_name, e.type, e.stream_position) for e in tail] == [
        (stream, "$streamDeleted", MAX_LONG)
    ]
    assert tail[0].commit_position > p
    assert client.get_commit_position(filter_exclude=[]) == tail[0].commit_position
    # The default filter (event types `$.+`) hides it.
    assert list(client.read_all(commit_position=p + 1)) == []


def test_tombstone_soft_deleted_stream(client: EventStoreDBClient) -> None:
    stream = new_stream()
    client.append_to_stream(stream, current_version=StreamState.NO_STREAM, events=[ev()])
    client.delete_stream(stream, current_version=0)
    client.tombstone_stream(stream, current_version=StreamState.ANY)
    with pytest.raises(StreamIsDeleted):
        client.get_stream(stream)


def test_metadata_of_tombstoned_stream(client: EventStoreDBClient) -> None:
    # esdbclient test_stream_metadata_get_and_set (end): the metastream of a tombstoned stream
    # reads as deleted (IndexReader.GetStreamLastEventNumberCached: "if this is metastream --
    # check if original stream was deleted, if yes -- metastream is deleted as well"), yet
    # metadata can still be written with the metastream's version.
    stream = new_stream()
    client.set_stream_metadata(stream, metadata={"foo": "baz"})
    client.set_stream_metadata(stream, metadata={"foo": "baz", "$acl": {"$r": "$all"}})
    client.tombstone_stream(stream, current_version=StreamState.ANY)
    with pytest.raises(StreamIsDeleted):
        client.get_stream_metadata(stream)
    with pytest.raises(StreamIsDeleted):
        client.get_stream(f"$${stream}")
    client.set_stream_metadata(stream, metadata={"foo": 1}, current_version=1)
    client.set_stream_metadata(stream, metadata={"foo": 2}, current_version=StreamState.ANY)
    with pytest.raises(StreamIsDeleted):
        client.get_stream_metadata(stream)


def test_metadata_of_a_stream_tombstoned_before_any_cannot_be_written(
    client: EventStoreDBClient,
) -> None:
    """`$$X` after `X` was tombstoned, `$$X` never written: a real node refuses the write.

    KurrentDB src/KurrentDB.Core/Services/Storage/StorageWriterService.cs (WritePrepares) runs
    IndexWriter.CheckCommit (src/KurrentDB.Core/Services/Storage/ReaderIndex/IndexWriter.cs),
    whose GetStreamLastEventNumber looks in its cache of versions (`_streamVersions`, filled by
    the writes it made) and else asks the IndexReader
    (src/KurrentDB.Core/Services/Storage/ReaderIndex/IndexReader.cs,
    GetStreamLastEventNumberCached): "if this is metastream -- check if original stream was
    deleted, if yes -- metastream is deleted as well" — EventNumber.DeletedStream, so the
    append is refused as to a tombstoned stream (StreamDeleted). Reads of `$$X` answer
    StreamDeleted by the same rule (ReadStreamEventsForward/Backward). A `$$X` the writer
    wrote before the tombstone is found in its cache and is still written
    (test_metadata_of_tombstoned_stream, from esdbclient's own test against a real node)."""
    stream = new_stream()
    client.append_to_stream(stream, current_version=StreamState.NO_STREAM, events=[ev()])
    client.tombstone_stream(stream, current_version=StreamState.ANY)
    head = client.get_commit_position(filter_exclude=[])
    # esdbclient's set_stream_metadata: the Append RPC, RpcExceptions.StreamDeleted.
    with pytest.raises(FailedPrecondition, match=f"Event stream '\\$\\${stream}' is deleted."):
        client.set_stream_metadata(stream, metadata={"foo": 1})
    with pytest.raises(FailedPrecondition, match="is deleted"):
        client.set_stream_metadata(
            stream, metadata={"foo": 1}, current_version=StreamState.NO_STREAM
        )
    # BatchAppend: a StreamDeleted status detail.
    for version in (StreamState.ANY, StreamState.NO_STREAM, 0):
        with pytest.raises(StreamIsDeleted):
            client.append_to_stream(
                f"$${stream}", current_version=version, events=[ev("$metadata")]
            )
    with pytest.raises(StreamIsDeleted):
        client.get_stream_metadata(stream)
    with pytest.raises(StreamIsDeleted):
        client.get_stream(f"$${stream}")
    with pytest.raises(StreamIsDeleted):
        client.get_stream(f"$${stream}", backwards=True)
    after = list(client.read_all(commit_position=head + 1, filter_exclude=[]))
    assert [e.stream_name for e in after if e.stream_name == f"$${stream}"] == []


# ----------------------------------------------------------------------- metadata


def test_stream_metadata_get_and_set(client: EventStoreDBClient) -> None:
    # esdbclient test_stream_metadata_get_and_set (middle part).
    stream = new_stream()
    metadata, version = client.get_stream_metadata(stream)
    assert (metadata, version) == ({}, StreamState.NO_STREAM)
    metadata["foo"] = "baz"
    client.set_stream_metadata(stream, metadata=metadata, current_version=version)
    metadata, version = client.get_stream_metadata(stream)
    assert metadata == {"foo": "baz"}
    assert version == 0
    acl = {"$w": "$admins", "$r": "$all", "$d": "$admins", "$mw": "$admins", "$mr": "$admins"}
    metadata["$acl"] = acl
    client.set_stream_metadata(stream, metadata=metadata, current_version=version)
    metadata, version = client.get_stream_metadata(stream)
    assert metadata["$acl"] == acl
    assert version == 1
    with pytest.raises(WrongCurrentVersion):
        client.set_stream_metadata(stream, metadata=metadata, current_version=10)
    with pytest.raises(WrongCurrentVersion):
        client.set_stream_metadata(stream, metadata=metadata, current_version=StreamState.NO_STREAM)
    # Setting metadata does not create the stream itself.
    with pytest.raises(NotFound):
        client.get_stream(stream)


def test_metastream_returns_only_its_last_event(client: EventStoreDBClient) -> None:
    # ReadIndex: metastreams are read with StreamMetadata(maxCount: metastreamMaxCount = 1).
    stream = new_stream()
    for i in range(3):
        client.set_stream_metadata(stream, metadata={"i": i})
    events = client.get_stream(f"$${stream}")
    assert len(events) == 1
    assert events[0].stream_position == 2
    assert events[0].type == "$metadata"
    assert json.loads(events[0].data) == {"i": 2}
    assert len(client.get_stream(f"$${stream}", backwards=True)) == 1
    assert client.get_stream(f"$${stream}", stream_position=0, limit=1)[0].stream_position == 2
    # ... but `$all` holds all three.
    metas = [e for e in client.read_all(filter_exclude=[]) if e.stream_name == f"$${stream}"]
    assert [e.stream_position for e in metas] == [0, 1, 2]


def test_max_count_hides_events_in_stream_reads_but_not_in_all(
    client: EventStoreDBClient,
) -> None:
    # IndexReader.ReadStreamEventsForwardInternal/BackwardInternal: minEventNumber =
    # lastEventNumber - MaxCount + 1. `$all` reads the log and is not truncated (until scavenge).
    stream = new_stream()
    events = [ev(f"E{i}") for i in range(5)]
    client.append_to_stream(stream, current_version=StreamState.NO_STREAM, events=events)
    client.set_stream_metadata(stream, metadata={"$maxCount": 2})
    assert ids(client.get_stream(stream)) == ids(events[3:])
    assert ids(client.get_stream(stream, backwards=True)) == ids([events[4], events[3]])
    assert ids(client.get_stream(stream, stream_position=0, limit=1)) == [events[3].id]
    assert client.get_stream(stream, stream_position=2, backwards=True) == ()
    assert client.get_current_version(stream) == 4
    in_all = [e.id for e in client.read_all() if e.stream_name == stream]
    assert in_all == ids(events)


def test_truncate_before_hides_events(client: EventStoreDBClient) -> None:
    stream = new_stream()
    events = [ev(f"E{i}") for i in range(5)]
    client.append_to_stream(stream, current_version=StreamState.NO_STREAM, events=events)
    client.set_stream_metadata(stream, metadata={"$tb": 3})
    assert ids(client.get_stream(stream)) == ids(events[3:])
    assert ids(client.get_stream(stream, stream_position=1)) == ids(events[3:])
    assert ids(client.get_stream(stream, backwards=True)) == ids([events[4], events[3]])
    assert client.get_current_version(stream) == 4
    assert [e.id for e in client.read_all() if e.stream_name == stream] == ids(events)
    # Everything truncated: an empty read, not NotFound (only `$tb` = long.MaxValue is a delete).
    client.set_stream_metadata(stream, metadata={"$tb": 5})
    assert client.get_stream(stream) == ()


def test_max_age_hides_old_events(client: EventStoreDBClient) -> None:
    # IndexReader: events with TimeStamp < UtcNow - MaxAge are skipped; `$maxAge` is seconds.
    stream = new_stream()
    old = ev("Old")
    client.append_to_stream(stream, current_version=StreamState.NO_STREAM, events=[old])
    client.set_stream_metadata(stream, metadata={"$maxAge": 1})
    assert ids(client.get_stream(stream)) == [old.id]
    time.sleep(1.1)
    new = ev("New")
    client.append_to_stream(stream, current_version=0, events=[new])
    assert ids(client.get_stream(stream)) == [new.id]
    assert ids(client.get_stream(stream, backwards=True)) == [new.id]
    assert [e.id for e in client.read_all() if e.stream_name == stream] == [old.id, new.id]


def test_invalid_metadata_is_ignored(client: EventStoreDBClient) -> None:
    # IndexReader.GetStreamMetadataUncached: StreamMetadata.TryFromJsonBytes -> empty on error.
    stream = new_stream()
    client.append_to_stream(stream, current_version=StreamState.NO_STREAM, events=[ev(), ev()])
    client.append_to_stream(
        f"$${stream}",
        current_version=StreamState.ANY,
        events=NewEvent(type="$metadata", data=b"not json"),
    )
    assert len(client.get_stream(stream)) == 2


# ------------------------------------------------------------------ system streams


def test_system_streams_seeded_at_start(client: EventStoreDBClient) -> None:
    # A fresh EventStoreDB already holds the default admin user and the scavenges stream.
    users = client.get_stream("$users")
    assert users and users[0].type == "$User"
    admin = client.get_stream("$user-admin")
    assert json.loads(admin[0].data)["loginName"] == "admin"
    assert client.get_stream("$scavenges")
    everything = list(client.read_all(filter_exclude=[]))
    assert {"$users", "$user-admin", "$scavenges"} <= {e.stream_name for e in everything}
    # esdbclient's default filter excludes system event types (`$.+`).
    assert list(client.read_all()) == []
    assert client.get_commit_position() == 0
    assert client.get_commit_position(filter_exclude=[]) == everything[-1].commit_position


def test_emulator_without_seeded_system_events() -> None:
    with Emulator(seed_system_events=False) as db:
        c = EventStoreDBClient(db.uri)
        try:
            assert list(c.read_all(filter_exclude=[])) == []
            with pytest.raises(NotFound):
                c.get_stream("$users")
        finally:
            c.close()


def test_user_can_write_system_stream(client: EventStoreDBClient) -> None:
    client.append_to_stream("$custom", current_version=StreamState.NO_STREAM, events=ev("$Sys"))
    assert client.get_stream("$custom")[0].type == "$Sys"


# ---------------------------------------------------------------------------- links


def test_link_events_resolve(client: EventStoreDBClient) -> None:
    # `$>` events carry "revision@stream"; with resolve_links the target comes back as the
    # event and the link as `.link` (Streams.Read ConvertToReadEvent: Event + Link).
    target_stream, links = new_stream(), f"links-{uuid.uuid4()}"
    targets = [ev("A"), ev("B")]
    client.append_to_stream(target_stream, current_version=StreamState.NO_STREAM, events=targets)
    client.append_to_stream(
        links,
        current_version=StreamState.NO_STREAM,
        events=[
            NewEvent(type="$>", data=f"1@{target_stream}".encode(), content_type="text/plain"),
            NewEvent(type="$>", data=f"0@{target_stream}".encode(), content_type="text/plain"),
        ],
    )
    raw = client.get_stream(links)
    assert [e.type for e in raw] == ["$>", "$>"]
    resolved = client.get_stream(links, resolve_links=True)
    assert ids(resolved) == [targets[1].id, targets[0].id]
    assert [e.stream_name for e in resolved] == [target_stream, target_stream]
    assert [e.stream_position for e in resolved] == [1, 0]
    assert resolved[0].link is not None
    assert resolved[0].link.stream_name == links
    assert resolved[0].link.stream_position == 0
    assert raw[0].link is None

    resolved_all = [
        e for e in client.read_all(resolve_links=True, filter_exclude=[]) if e.link is not None
    ]
    assert ids(resolved_all) == [targets[1].id, targets[0].id]


def test_link_to_deleted_event_is_skipped_when_resolving(client: EventStoreDBClient) -> None:
    # A link whose target is gone resolves to no event; esdbclient skips such responses
    # (construct_recorded_event returns None when the event id is empty).
    target_stream, links = new_stream(), f"links-{uuid.uuid4()}"
    client.append_to_stream(target_stream, current_version=StreamState.NO_STREAM, events=[ev()])
    client.append_to_stream(
        links, current_version=StreamState.NO_STREAM, events=ev("$>", f"0@{target_stream}".encode())
    )
    client.delete_stream(target_stream, current_version=0)
    assert client.get_stream(links, resolve_links=True) == ()
    assert len(client.get_stream(links)) == 1


def _raw_read(emulator: Emulator, options: streams_pb2.ReadReq.Options) -> list:
    with grpc.insecure_channel(emulator.target) as channel:
        stub = streams_pb2_grpc.StreamsStub(channel)
        return [r.event for r in stub.Read(streams_pb2.ReadReq(options=options), timeout=5)]


def test_link_to_a_deleted_event_is_sent_without_an_event(
    emulator: Emulator, client: EventStoreDBClient
) -> None:
    # Streams.Read.cs ConvertToReadEvent: Event = ConvertToRecordedEvent(e.Event) is null for a
    # link whose target is gone, so the ReadEvent has the link and no `event` at all (an
    # empty RecordedEvent made one client panic and another throw). Checked on the wire with
    # esdbclient's protos: esdbclient itself skips both shapes.
    target_stream, links = new_stream(), f"links-{uuid.uuid4()}"
    client.append_to_stream(target_stream, current_version=StreamState.NO_STREAM, events=[ev()])
    link = ev("$>", f"0@{target_stream}".encode())
    client.append_to_stream(links, current_version=StreamState.NO_STREAM, events=link)
    client.delete_stream(target_stream, current_version=0)
    uuid_option = streams_pb2.ReadReq.Options.UUIDOption(string=shared_pb2.Empty())
    by_stream = streams_pb2.ReadReq.Options(
        stream=streams_pb2.ReadReq.Options.StreamOptions(
            stream_identifier=shared_pb2.StreamIdentifier(stream_name=links.encode()),
            start=shared_pb2.Empty(),
        ),
        read_direction=streams_pb2.ReadReq.Options.Forwards,
        resolve_links=True,
        count=10,
        no_filter=shared_pb2.Empty(),
        uuid_option=uuid_option,
    )
    in_all = streams_pb2.ReadReq.Options(
        all=streams_pb2.ReadReq.Options.AllOptions(start=shared_pb2.Empty()),
        read_direction=streams_pb2.ReadReq.Options.Forwards,
        resolve_links=True,
        count=1000,
        no_filter=shared_pb2.Empty(),
        uuid_option=uuid_option,
    )
    for options in (by_stream, in_all):
        (read,) = [e for e in _raw_read(emulator, options) if e.link.id.string == str(link.id)]
        assert not read.HasField("event")
        assert read.link.stream_identifier.stream_name == links.encode()
        assert read.commit_position == read.link.commit_position


# --------------------------------------------------------------------- bad requests


def test_empty_event_type_is_rejected(client: EventStoreDBClient) -> None:
    # src/EventStore.Core/Data/Event.cs throws ArgumentException("Empty eventType provided.");
    # unhandled in the gRPC handler it reaches the client as UNKNOWN "Exception was thrown by
    # handler.", which esdbclient raises as ExceptionThrownByHandler (a GrpcError).
    stream = new_stream()
    with pytest.raises(ExceptionThrownByHandler):
        client.append_to_stream(stream, current_version=StreamState.ANY, events=ev(""))
    with pytest.raises(GrpcError):
        client.append_to_stream(stream, current_version=StreamState.ANY, events=[ev("")])
    with pytest.raises(NotFound):
        client.get_stream(stream)
