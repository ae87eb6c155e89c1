"""The only package that imports the database client (esdbclient).

- client.py: `EventStore`, the data plane the engine and the tools use (reads, appends,
  deletes, metadata, server features), with esdbclient's errors translated into core.errors;
- admin.py: persistent subscriptions, projections and gossip as typed models;
- v2.py: KurrentDB's v2 streams API (multi-stream append) over esdbclient's channel;
- connection.py: connection strings as the client reads them.

Moving to kurrentdbclient (needed once grpcio must pass 1.71) changes this package only.
"""

from core.eventstore.client import EventStore
from core.eventstore.scans import Scanned

__all__ = ["EventStore", "Scanned"]
