"""esdbclient's internals the adapter relies on (core/eventstore/internals.py), pinned against a
real connection: an esdbclient upgrade that moves one fails here, naming what would break."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator

import grpc
import pytest
from esdbclient import EventStoreDBClient, NewEvent, StreamState

from core.eventstore import internals
from esdb_emulator import Emulator


def test_the_channel_credentials_and_metadata_are_where_the_adapter_looks():
    with Emulator(tls=True) as db:
        client = EventStoreDBClient(db.uri)
        try:
            client.get_commit_position()
            assert isinstance(internals.channel(client), grpc.Channel), (
                "KurrentDB's v2 append and the projections list go over esdbclient's channel"
            )
            assert isinstance(internals.call_credentials(client), grpc.CallCredentials), (
                "v2 appends and the projections list would be sent without the user's password"
            )
            metadata = internals.call_metadata(client)
            assert all(isinstance(k, str) and isinstance(v, str) for k, v in metadata)
            first = internals.connection(client)
            client.reconnect()
            assert internals.connection(client) is not first, (
                "the v2 client would stay on a closed channel after a reconnect"
            )
        finally:
            client.close()


def test_a_finished_read_tells_whether_esdbclient_cancelled_it():
    with Emulator() as db:
        client = EventStoreDBClient(db.uri)
        try:
            response = client.read_all(limit=5)
            with response:
                list(response)
            assert hasattr(response, "_read_resps"), (
                "a read cut short by a reconnect would look complete (a stream read as absent)"
            )
            assert internals.read_cancelled(response) is False
        finally:
            client.close()


def test_a_unary_stream_call_on_the_calling_thread_reads_every_message_and_ends_when_cut():
    from esdbclient.protos.Grpc import streams_pb2

    from core.eventstore.reads import READ_METHOD, read_request

    with Emulator() as db:
        client = EventStoreDBClient(db.uri)
        try:
            names = [f"unary-stream-{uuid.uuid4().hex}" for _ in range(3)]
            for name in names:
                client.append_to_stream(
                    name, current_version=StreamState.NO_STREAM, events=[NewEvent("T", b"{}")]
                )

            def read(limit: int, timeout: float = 10) -> Iterator[bytes]:
                return internals.unary_stream_on_calling_thread(
                    internals.channel(client),
                    READ_METHOD,
                    read_request(None, limit).SerializeToString(),
                    timeout=timeout,
                    metadata=internals.call_metadata(client),
                    credentials=internals.call_credentials(client),
                )

            responses = [streams_pb2.ReadResp.FromString(m) for m in read(10_000)]
            read_names = [
                r.event.event.stream_identifier.stream_name.decode()
                for r in responses
                if r.HasField("event")
            ]
            assert [n for n in read_names if n in names] == names, "every record, in order"
            assert read_names == [
                e.stream_name for e in client.read_all(filter_exclude=[]) if e.id
            ], "the same records as esdbclient's read"

            early = read(10_000)
            next(early)
            early.close()  # the call is cancelled: the next one on the channel works
            assert len(list(read(2))) >= 2

            db.faults.update(latency_ms=1000, methods={"Read"})  # the call waits in the server
            with pytest.raises(grpc.RpcError) as late:
                list(read(10, timeout=0.2))
            assert late.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            cut = read(10)
            client.reconnect()
            with pytest.raises(grpc.RpcError) as raised:
                list(cut)
            assert isinstance(raised.value, grpc.Call)
            assert raised.value.code() == grpc.StatusCode.CANCELLED, (
                "a read cut by a reconnect would not be told from a finished one"
            )
            db.faults.update(latency_ms=2000, methods={"Read"})
            waiting = read(10)  # the server says nothing for 2 s
            threading.Timer(0.1, waiting.cancel).start()  # from another thread
            with pytest.raises(grpc.RpcError) as cancelled:
                list(waiting)
            assert cancelled.value.code() == grpc.StatusCode.CANCELLED, (
                "a stopped shard would wait for its scan's next message (up to its deadline)"
            )
            waiting.cancel()  # the call is over: nothing to cancel, no error
        finally:
            client.close()


def test_a_stream_unary_call_on_the_calling_thread_sends_every_message_and_raises_grpcs_error():
    from core.eventstore import v2
    from core.model import NO_STREAM, OutEvent
    from core.protocol.kurrentdb.protocol.v2.streams import streams_pb2

    def message(stream: str, expected: int) -> bytes:
        request = streams_pb2.AppendRequest(stream=stream, expected_revision=expected)
        request.records.append(
            v2.record(OutEvent(uuid.uuid4(), "T", "application/json", b"{}", b""))
        )
        return request.SerializeToString()

    with Emulator() as db:
        client = EventStoreDBClient(db.uri)
        try:

            def call(requests: list[bytes]) -> bytes:
                return internals.stream_unary_on_calling_thread(
                    internals.channel(client),
                    v2.APPEND_SESSION_METHOD,
                    requests,
                    timeout=10,
                    metadata=internals.call_metadata(client),
                    credentials=internals.call_credentials(client),
                )

            names = [f"calling-thread-{uuid.uuid4().hex}" for _ in range(5)]
            answer = streams_pb2.AppendSessionResponse.FromString(
                call([message(name, NO_STREAM) for name in names])
            )
            assert [o.stream for o in answer.output] == names, "every message was sent, in order"
            assert all(len(client.get_stream(name)) == 1 for name in names)

            with pytest.raises(grpc.RpcError) as raised:
                call([message(names[0], NO_STREAM), message(names[1], 0)])
            error = raised.value
            assert isinstance(error, grpc.Call), "v2.parse_error reads the error as a grpc.Call"
            assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
            trailers = dict(error.trailing_metadata() or ())
            assert isinstance(trailers.get("grpc-status-details-bin"), bytes), (
                "the rich status (which stream, which revision) would be lost"
            )
            assert v2.parse_error(error).kind == "revision_conflict"

            with pytest.raises(grpc.RpcError) as raised:
                call([])  # a session without messages: the server's answer, not a hang
            assert "no append requests" in (raised.value.details() or "")
        finally:
            client.close()
