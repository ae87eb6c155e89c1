"""Gossip cannot point the relay at a host outside the deployment's trust: with
`esdb+discover://` the client connects to the leader that the seed's gossip names. Over TLS,
that node must present a certificate signed by the CA the connection string trusts, so no
separate host allowlist is needed (docs/reliability.md, "Endpoints come from the deployment
only"). The seed's gossip is made to name another node, as a hijacked seed would."""

from __future__ import annotations

import time

import grpc
import pytest
from esdbclient.protos.Grpc import gossip_pb2, shared_pb2

from core.errors import PermanentError
from core.eventstore import EventStore
from esdb_emulator import Emulator
from esdb_emulator.gossip import GossipService
from esdb_emulator.workload import Workload, generate


def member(db: Emulator, state: int) -> gossip_pb2.MemberInfo:
    return gossip_pb2.MemberInfo(
        instance_id=shared_pb2.UUID(string=f"00000000-0000-0000-0000-{db.port:012d}"),
        time_stamp=time.time_ns() // 100,
        state=state,
        is_alive=True,
        http_end_point=gossip_pb2.EndPoint(address=db.host, port=db.port),
    )


@pytest.fixture
def redirects(monkeypatch):
    """seed port -> the node its gossip names as leader (the seed then reports as follower).
    Patched on the class: the server binds the servicer's methods when it starts."""
    table: dict[int, Emulator] = {}
    original = GossipService.Read
    states = gossip_pb2.MemberInfo.VNodeState

    def read(self, request: shared_pb2.Empty, context: grpc.ServicerContext):
        leader = table.get(self.port)
        if leader is None:
            return original(self, request, context)
        seed = gossip_pb2.MemberInfo(
            instance_id=shared_pb2.UUID(string=self.instance_id),
            time_stamp=time.time_ns() // 100,
            state=states.Follower,
            is_alive=True,
            http_end_point=gossip_pb2.EndPoint(address=self.host, port=self.port),
        )
        return gossip_pb2.ClusterInfo(members=[member(leader, states.Leader), seed])

    monkeypatch.setattr(GossipService, "Read", read)
    return table


def test_a_node_signed_by_another_ca_is_refused(redirects):
    with Emulator(tls=True) as seed, Emulator(tls=True) as elsewhere:
        generate(elsewhere.store, Workload(events=30, streams=2, links=False))
        redirects[seed.port] = elsewhere
        with (
            pytest.raises(PermanentError) as raised,
            EventStore(seed.connection_string(discover=True), side="source", timeout=3) as source,
        ):
            source.head_position()
        assert "source: TLS handshake failed" in str(raised.value)
        assert elsewhere.store.last_position > seed.store.last_position  # it was not read


def test_a_node_signed_by_the_trusted_ca_is_followed(redirects):
    # The contrast that makes the test above mean something: the redirect itself works.
    with Emulator(tls=True) as seed, Emulator(tls=True, certificate=seed.certificate) as node:
        generate(node.store, Workload(events=30, streams=2, links=False))
        redirects[seed.port] = node
        uri = seed.connection_string(discover=True)
        with EventStore(uri, side="source", timeout=3) as source:
            assert source.head_position() == node.store.last_position
