"""esdbclient's internals the adapter relies on (core/eventstore/internals.py), pinned against a
real connection: an esdbclient upgrade that moves one fails here, naming what would break."""

from __future__ import annotations

import grpc
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
