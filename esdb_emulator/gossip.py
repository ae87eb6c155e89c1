"""`event_store.client.gossip.Gossip`: a one-node cluster whose leader is this emulator.

esdbclient reads gossip for `esdb+discover://` connection strings and for multi-target
`esdb://` strings, then connects to the member whose state matches its node preference.
"""

from __future__ import annotations

import time
import uuid

import grpc
from esdbclient.protos.Grpc import gossip_pb2, gossip_pb2_grpc, shared_pb2

from esdb_emulator.streams import Guard


class GossipService(gossip_pb2_grpc.GossipServicer):
    def __init__(self, host: str, port: int, guard: Guard) -> None:
        self.host = host
        self.port = port
        self.guard = guard
        self.instance_id = str(uuid.uuid4())

    def Read(
        self, request: shared_pb2.Empty, context: grpc.ServicerContext
    ) -> gossip_pb2.ClusterInfo:
        self.guard("Gossip.Read", context)
        member = gossip_pb2.MemberInfo(
            instance_id=shared_pb2.UUID(string=self.instance_id),
            time_stamp=time.time_ns() // 100,
            state=gossip_pb2.MemberInfo.VNodeState.Leader,
            is_alive=True,
            http_end_point=gossip_pb2.EndPoint(address=self.host, port=self.port),
        )
        return gossip_pb2.ClusterInfo(members=[member])
