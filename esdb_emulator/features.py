"""`event_store.client.server_features.ServerFeatures`: the methods this node serves.

As KurrentDB's ServerFeatures.GetSupportedMethods lists its gRPC endpoints: method and full
service names in lower case, with the same per-method features (reads: position, events;
BatchAppend: deadline_duration; persistent subscriptions: stream, all), for the methods the
emulator serves as the version it behaves as (esdb_emulator.versions): the v2
`kurrentdb.protocol.v2.streams.streamsservice` with `appendsession` from 25.1 and
`appendrecords` from 26.1. A real node also lists services the emulator does not serve
(users, operations, monitoring, redaction; from 25.1 the schema registry, from 26.1 indexes).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import grpc
from esdbclient.protos.Grpc import gossip_pb2, persistent_pb2, projections_pb2, streams_pb2
from google.protobuf import empty_pb2
from google.protobuf.descriptor import ServiceDescriptor

from core.protocol import serverfeatures_pb2, serverfeatures_pb2_grpc
from core.protocol.kurrentdb.protocol.v2.streams import streams_pb2 as v2_streams_pb2
from esdb_emulator.versions import ServerVersion

Guard = Callable[[str, grpc.ServicerContext], None]


def _features(service: str, method: str) -> list[str]:
    if "PersistentSubscriptions" in service:
        return ["stream", "all"]
    if "Streams" in service and "Read" in method:
        return ["position", "events"]
    if "Streams" in service and "BatchAppend" in method:
        return ["deadline_duration"]
    if "Projections" in service and "Create" in method:
        return ["track_emitted_streams"]
    return []


def _methods(
    service: ServiceDescriptor, only: Iterable[str] | None = None
) -> list[serverfeatures_pb2.SupportedMethod]:
    return [
        serverfeatures_pb2.SupportedMethod(
            method_name=m.name.lower(),
            service_name=service.full_name.lower(),
            features=_features(service.full_name, m.name),
        )
        for m in service.methods
        if only is None or m.name in only
    ]


def supported_methods(
    version: ServerVersion, *, projections: bool = False
) -> serverfeatures_pb2.SupportedMethods:
    methods = [
        *_methods(streams_pb2.DESCRIPTOR.services_by_name["Streams"]),
        *_methods(persistent_pb2.DESCRIPTOR.services_by_name["PersistentSubscriptions"]),
        *_methods(gossip_pb2.DESCRIPTOR.services_by_name["Gossip"]),
        *_methods(serverfeatures_pb2.DESCRIPTOR.services_by_name["ServerFeatures"]),
    ]
    if projections:
        methods += _methods(projections_pb2.DESCRIPTOR.services_by_name["Projections"])
    v2 = {"AppendSession"} if version.append_session else set()
    if version.append_records:
        v2.add("AppendRecords")
    if v2:
        service = v2_streams_pb2.DESCRIPTOR.services_by_name["StreamsService"]
        methods += _methods(service, only=v2)
    return serverfeatures_pb2.SupportedMethods(
        methods=methods, event_store_server_version=version.full
    )


class ServerFeaturesService(serverfeatures_pb2_grpc.ServerFeaturesServicer):
    def __init__(self, guard: Guard, version: ServerVersion, *, projections: bool = False) -> None:
        self.guard = guard
        self.reply = supported_methods(version, projections=projections)

    def GetSupportedMethods(
        self, request: empty_pb2.Empty, context: grpc.ServicerContext
    ) -> serverfeatures_pb2.SupportedMethods:
        self.guard("GetSupportedMethods", context)
        return self.reply
