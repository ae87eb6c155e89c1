"""esdbclient's internals the adapter relies on (core/eventstore/internals.py), pinned against a
real connection: an esdbclient upgrade that moves one fails here, naming what would break."""

from __future__ import annotations

import grpc
import pytest
from esdbclient import EventStoreDBClient

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


def test_a_single_threaded_stream_call_runs_on_esdbclients_channel_and_ends_when_it_closes():
    from esdbclient.protos.Grpc import streams_pb2

    from core.eventstore.reads import READ_METHOD, read_request

    with Emulator() as db:
        client = EventStoreDBClient(db.uri)
        try:
            read = internals.single_threaded_stream(
                internals.channel(client),
                READ_METHOD,
                streams_pb2.ReadReq.SerializeToString,
                streams_pb2.ReadResp.FromString,
            )
            assert isinstance(read, grpc.UnaryStreamMultiCallable), (
                "the relay's `$all` read would fall back to nothing: grpcio moved its "
                "single-threaded unary-stream call (core/eventstore/internals.py)"
            )
            call = read(
                read_request(None, 10), timeout=10, metadata=internals.call_metadata(client)
            )
            assert all(isinstance(r, streams_pb2.ReadResp) for r in call)
            db.faults.update(latency_ms=1000, methods={"Read"})  # the call waits in the server
            cut = read(read_request(None, 10), timeout=10, metadata=internals.call_metadata(client))
            client.reconnect()
            with pytest.raises(grpc.RpcError) as raised:
                list(cut)
            assert raised.value.code() == grpc.StatusCode.CANCELLED, (
                "a read cut by a reconnect would not be told from a finished one"
            )
        finally:
            client.close()
