"""The `Streams` gRPC servicer: every call passes the guard (credentials, faults), then goes to
the reads, the appends, or Delete/Tombstone here."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import grpc
from esdbclient.protos.Grpc import streams_pb2, streams_pb2_grpc

from esdb_emulator.store import Store, StreamDeleted, WrongExpectedVersion
from esdb_emulator.streams.appends import Appends, expected_version
from esdb_emulator.streams.reads import Reads

Guard = Callable[[str, grpc.ServicerContext], None]


class StreamsService(streams_pb2_grpc.StreamsServicer):
    def __init__(
        self,
        store: Store,
        guard: Guard,
        faults: object,
        is_anonymous: Callable[[grpc.ServicerContext], bool] = lambda context: False,
    ) -> None:
        self.store = store
        self.guard = guard
        self.faults = faults
        self._reads = Reads(store)
        self._appends = Appends(store, faults, is_anonymous)

    # ------------------------------------------------------------------ Read
    def Read(
        self, request: streams_pb2.ReadReq, context: grpc.ServicerContext
    ) -> Iterator[streams_pb2.ReadResp | bytes]:
        self.guard("Read", context)
        reset_after = self.faults.read_reset_point("Read")  # type: ignore[attr-defined]
        responses = self._reads.read(request.options, context)
        if reset_after is None:
            yield from responses
            return
        sent = 0
        for response in responses:
            # An event is sent as its encoded ReadResp (reads.py).
            if isinstance(response, bytes) or response.WhichOneof("content") == "event":
                if sent >= reset_after:
                    self.faults.count("reset")  # type: ignore[attr-defined]
                    context.abort(grpc.StatusCode.UNAVAILABLE, "Connection reset by peer")
                sent += 1
            yield response

    # ----------------------------------------------------------------- Append
    def Append(
        self, request_iterator: Iterator[streams_pb2.AppendReq], context: grpc.ServicerContext
    ) -> streams_pb2.AppendResp:
        self.guard("Append", context)
        return self._appends.append(request_iterator, context)

    def BatchAppend(
        self, request_iterator: Iterator[streams_pb2.BatchAppendReq], context: grpc.ServicerContext
    ) -> Iterator[streams_pb2.BatchAppendResp]:
        self.guard("BatchAppend", context)
        yield from self._appends.batch_append(request_iterator, context)

    # ----------------------------------------------------------------- Delete
    def Delete(
        self, request: streams_pb2.DeleteReq, context: grpc.ServicerContext
    ) -> streams_pb2.DeleteResp:
        self.guard("Delete", context)
        position = self._delete(request.options, context, "Delete", self.store.delete)
        return streams_pb2.DeleteResp(
            position=streams_pb2.DeleteResp.Position(
                commit_position=position, prepare_position=position
            )
        )

    def Tombstone(
        self, request: streams_pb2.TombstoneReq, context: grpc.ServicerContext
    ) -> streams_pb2.TombstoneResp:
        self.guard("Tombstone", context)
        position = self._delete(request.options, context, "Tombstone", self.store.tombstone)
        return streams_pb2.TombstoneResp(
            position=streams_pb2.TombstoneResp.Position(
                commit_position=position, prepare_position=position
            )
        )

    def _delete(
        self,
        options: object,
        context: grpc.ServicerContext,
        operation: str,
        action: Callable[[str, int], int],
    ) -> int:
        stream = options.stream_identifier.stream_name.decode()  # type: ignore[attr-defined]
        expected = expected_version(options, "revision")
        try:
            return action(stream, expected)
        except WrongExpectedVersion as e:
            context.set_trailing_metadata(
                (
                    ("exception", "wrong-expected-version"),
                    ("stream-name", stream),
                    ("expected-version", str(e.expected)),
                    ("actual-version", str(e.actual)),
                )
            )
            context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"{operation} failed due to WrongExpectedVersion. Stream: {stream}, "
                f"Expected version: {e.expected}, Actual version: {e.actual}",
            )
        except StreamDeleted:
            context.set_trailing_metadata(
                (("exception", "stream-deleted"), ("stream-name", stream))
            )
            context.abort(
                grpc.StatusCode.FAILED_PRECONDITION, f"Event stream '{stream}' is deleted."
            )
        raise AssertionError("unreachable")
