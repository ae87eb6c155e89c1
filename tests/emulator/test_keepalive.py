"""Client keepalive pings keep idle connections and subscriptions open (issue 17, finding 1).

EventStoreDB/KurrentDB clients ping every 10 s (KeepAliveInterval, "gRPC heartbeats" in the
server docs) and the node answers every ping (Kestrel: no ping-strike policy). With gRPC's
default server policy the emulator closed such a connection after the third ping (GOAWAY
"too_many_pings": every open call failed with RESOURCE_EXHAUSTED/UNAVAILABLE).

The client here pings like the Node client (grpc-js): every interval, with or without calls,
without the C-core client's own limit of two pings without data. The fast test pings every
second for 35 s, 10 times as often as a real client and more pings than 5 minutes of 10-second
pings; the server's policy only counts how close pings come and how many there are, so it
proves 10-second pings are accepted. The slow test is the issue's scenario itself.
"""

from __future__ import annotations

import threading
import time
import uuid

import grpc
import pytest
from esdbclient.protos.Grpc import shared_pb2, streams_pb2, streams_pb2_grpc

from esdb_emulator import Emulator
from esdb_emulator.store import ANY, JSON, ProposedEvent


class Watched:
    """A channel pinging like grpc-js, with its connectivity states and an idle subscription
    to `$all` (from its end) read in a thread."""

    def __init__(self, emulator: Emulator, ping_ms: int) -> None:
        self.channel = grpc.insecure_channel(
            emulator.target,
            options=[
                ("grpc.keepalive_time_ms", ping_ms),
                ("grpc.keepalive_timeout_ms", 10_000),
                ("grpc.keepalive_permit_without_calls", 1),
                ("grpc.http2.max_pings_without_data", 0),
                ("grpc.http2.min_ping_interval_without_data_ms", ping_ms),
                ("grpc.http2.min_time_between_pings_ms", ping_ms),
            ],
        )
        self.states: list[grpc.ChannelConnectivity] = []
        self.channel.subscribe(self.states.append, try_to_connect=True)
        grpc.channel_ready_future(self.channel).result(timeout=10)
        self.received: list[str] = []
        self.error: grpc.RpcError | None = None
        self._call: grpc.Future | None = None
        self._reader: threading.Thread | None = None

    def subscribe(self) -> None:
        options = streams_pb2.ReadReq.Options(
            all=streams_pb2.ReadReq.Options.AllOptions(end=shared_pb2.Empty()),
            read_direction=streams_pb2.ReadReq.Options.Forwards,
            subscription=streams_pb2.ReadReq.Options.SubscriptionOptions(),
            no_filter=shared_pb2.Empty(),
            uuid_option=streams_pb2.ReadReq.Options.UUIDOption(string=shared_pb2.Empty()),
        )
        stub = streams_pb2_grpc.StreamsStub(self.channel)
        self._call = stub.Read(streams_pb2.ReadReq(options=options))
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self._call is not None
        try:
            for response in self._call:
                if response.WhichOneof("content") == "event":
                    self.received.append(response.event.event.id.string)
        except grpc.RpcError as e:
            self.error = e

    def connection_dropped(self) -> bool:
        # A GOAWAY takes a READY channel back to IDLE (or TRANSIENT_FAILURE).
        ready = self.states.index(grpc.ChannelConnectivity.READY)
        return any(s != grpc.ChannelConnectivity.READY for s in self.states[ready + 1 :])

    def close(self) -> None:
        if self._call is not None:
            self._call.cancel()
        self.channel.close()


def idle_for(emulator: Emulator, seconds: float, ping_ms: int) -> None:
    idle_connection = Watched(emulator, ping_ms)  # no call at all
    subscribed = Watched(emulator, ping_ms)
    subscribed.subscribe()
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            assert subscribed.error is None, subscribed.error
            assert not idle_connection.connection_dropped(), idle_connection.states
            time.sleep(0.5)
        event_id = str(uuid.uuid4())
        emulator.store.append("after-idle", ANY, [ProposedEvent(event_id, "Woke", JSON, b"{}")])
        for _ in range(100):
            if subscribed.received:
                break
            time.sleep(0.05)
        assert subscribed.error is None, subscribed.error
        assert subscribed.received == [event_id]
        assert not subscribed.connection_dropped(), subscribed.states
        assert not idle_connection.connection_dropped(), idle_connection.states
    finally:
        idle_connection.close()
        subscribed.close()


def test_pings_every_second_for_35_seconds_are_accepted(emulator: Emulator) -> None:
    idle_for(emulator, 35, ping_ms=1_000)


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_ten_second_pings_for_five_minutes_are_accepted(emulator: Emulator) -> None:
    idle_for(emulator, 310, ping_ms=10_000)
