"""Persistent subscriptions service (being written; every call answers UNIMPLEMENTED for now)."""

from __future__ import annotations

from esdbclient.protos.Grpc import persistent_pb2_grpc

from esdb_emulator.store import Store
from esdb_emulator.streams import Guard


class PersistentSubscriptionsService(persistent_pb2_grpc.PersistentSubscriptionsServicer):
    def __init__(self, store: Store, guard: Guard) -> None:
        self.store = store
        self.guard = guard
