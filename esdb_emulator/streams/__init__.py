"""The `event_store.client.streams.Streams` gRPC service: read, subscribe, append, delete.

Error reporting follows the real server (src/EventStore.Core/Services/Transport/Grpc/
RpcExceptions.cs, Status.cs, Streams.*.cs) so esdbclient raises the same exceptions:
- Append: wrong expected version in the response body (`wrong_expected_version`); a deleted
  stream as FAILED_PRECONDITION "Event stream 'x' is deleted."; too large as INVALID_ARGUMENT.
- BatchAppend: every error as a google.rpc.Status in the response, with packed details.
- Delete/Tombstone: FAILED_PRECONDITION "... WrongExpectedVersion ... Actual version: N".
- Read of a missing stream: a `stream_not_found` message; of a tombstoned one: FAILED_PRECONDITION.

The rooms: service.py (the servicer, Delete and Tombstone), reads.py (reads and catch-up
subscriptions), appends.py (Append and BatchAppend).
"""

from esdb_emulator.streams.service import Guard, StreamsService

__all__ = ["Guard", "StreamsService"]
