"""An EventStoreDB-compatible gRPC server for tests, demos and benchmarks."""

from esdb_emulator.faults import FaultConfig, FaultInjector
from esdb_emulator.server import Emulator
from esdb_emulator.store import Store

__all__ = ["Emulator", "FaultConfig", "FaultInjector", "Store"]
