"""KurrentDB's v2 `StreamsService`: AppendSession (>= 25.1) and AppendRecords (26.1).

Follows KurrentDB src/KurrentDB.Api.V2/Modules/Streams/StreamsService.cs (v25.1.0, v26.1.0):
- AppendSession (AppendSessionCommand): requests are taken in order, each validated
  (AppendRequestValidator), a stream named twice (case-insensitively) aborts the session
  (ABORTED, StreamAlreadyInAppendSession); each record is validated and sized (data +
  properties as a protobuf Struct + schema name): over the record limit is INVALID_ARGUMENT
  (AppendRecordSizeExceeded), the running total over the maximum append size is ABORTED
  (AppendTransactionSizeExceeded); no requests at all is FAILED_PRECONDITION. The write is
  esdb_emulator.transaction's (StorageWriterService): all or nothing; an idempotent replay
  answers the original revisions; a failure names the first failing stream
  (ConsistencyCheckFailures[0]): StreamTombstoned when the request manager reports
  StreamDeleted, else StreamRevisionConflict;
- AppendRecords: esdb_emulator.append_records;
- errors are google.rpc.Status in `grpc-status-details-bin` (esdb_emulator.v2_errors);
- a request message over 1.5 x the maximum append size is refused before the handler runs
  (ApiV2Plugin: MaxReceiveMessageSize), RESOURCE_EXHAUSTED.
A method the emulated version does not have answers UNIMPLEMENTED "Method is unimplemented."
(Grpc.AspNetCore's ServerCallHandlerFactory), as on that version's node.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import grpc

from core.protocol.kurrent.rpc import errors_pb2 as server_errors_pb2
from core.protocol.kurrentdb.protocol.v2.streams import streams_pb2, streams_pb2_grpc
from esdb_emulator.append_records import AppendRecordsCommand
from esdb_emulator.store import ANY, NO_STREAM, STREAM_EXISTS, ProposedEvent, Store
from esdb_emulator.transaction import ChecksFailed, write_or_replay
from esdb_emulator.v2_errors import (
    SessionError,
    V2Error,
    already_in_session,
    bad_request,
    no_requests,
    record_too_big,
    revision_conflict,
    stream_tombstoned,
    transaction_too_big,
)
from esdb_emulator.v2_records import (  # _format_fields: tests/unit imports it from here
    MAX_RECORD_SIZE,
    Rules,
    _format_fields,  # noqa: F401
    prepare,
    record_failures,
    stream_name_failures,
)
from esdb_emulator.versions import ServerVersion

Guard = Callable[[str, grpc.ServicerContext], None]
METHOD = "AppendSession"
UNIMPLEMENTED_METHOD = "Method is unimplemented."
MESSAGE_TOO_LARGE = "Received message exceeds the maximum configured message size."


def rules_of(version: ServerVersion) -> Rules:
    return Rules(
        unicode_schema_names=version.unicode_schema_names, record_stream=version.append_records
    )


def check_message_size(
    message: object, max_append_size: int, context: grpc.ServicerContext
) -> None:
    """ApiV2Plugin: StreamsService's MaxReceiveMessageSize is 1.5 x MaxAppendSize."""
    if message.ByteSize() > int(max_append_size * 1.5):  # type: ignore[attr-defined]
        context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, MESSAGE_TOO_LARGE)


def request_failures(request: streams_pb2.AppendRequest) -> list[tuple[str, str]]:
    """AppendRequestValidator."""
    failures = stream_name_failures(request.stream)
    expected = request.expected_revision
    if expected < 0 and expected not in (ANY, NO_STREAM, STREAM_EXISTS):
        failures.append(
            (
                "ExpectedRevision",
                "Expected revision must be positive or one of the allowed constants: "
                "NoStream (-1), Any (-2) or Exists (-4).",
            )
        )
    if not request.records:
        failures.append(("Records", "Stream append request must contain at least one record"))
    return failures


class Session:
    """AppendSessionCommand: the requests of one session, validated and sized as they come."""

    def __init__(self, max_append_size: int, version: ServerVersion) -> None:
        self.max_append_size = max_append_size
        self.version = version
        self.rules = rules_of(version)
        self.streams: list[str] = []
        self.expected: list[int] = []
        self.events: list[ProposedEvent] = []
        self.indexes: list[int] = []
        self._names: set[str] = set()
        self._total = 0

    def add(self, request: streams_pb2.AppendRequest) -> None:
        failures = request_failures(request)
        if failures:  # the validation interceptor, before the handler sees the request
            raise bad_request("AppendRequest", failures)
        stream = request.stream
        if stream.casefold() in self._names:  # IndexedSet with OrdinalIgnoreCase
            raise already_in_session(stream, grouped_message=self.version.append_records)
        self._names.add(stream.casefold())
        self.streams.append(stream)
        self.expected.append(
            request.expected_revision if request.HasField("expected_revision") else ANY
        )
        index = len(self.streams) - 1
        for record in request.records:
            record_errors = record_failures(record, self.rules)
            if record_errors:
                raise bad_request("AppendRequest", record_errors)
            prepared = prepare(record)
            if prepared.size > MAX_RECORD_SIZE:
                raise record_too_big(
                    stream, prepared.event.event_id, prepared.size, MAX_RECORD_SIZE
                )
            self._total += prepared.size
            if self._total > self.max_append_size:
                raise transaction_too_big(len(self.events) + 1, self._total, self.max_append_size)
            self.events.append(prepared.event)
            self.indexes.append(index)

    def commit(self, store: Store) -> streams_pb2.AppendSessionResponse:
        if not self.streams:
            raise no_requests()
        try:
            written = write_or_replay(store, self.streams, self.expected, self.events, self.indexes)
        except ChecksFailed as failed:
            first = failed.failures[0]
            stream = self.streams[first.stream_index]
            if failed.stream_deleted:
                raise stream_tombstoned(stream) from None
            raise revision_conflict(
                stream, self.expected[first.stream_index], first.actual
            ) from None
        return streams_pb2.AppendSessionResponse(
            output=[
                streams_pb2.AppendResponse(stream=stream, stream_revision=revision)
                for stream, revision in zip(self.streams, written.last_event_numbers, strict=True)
            ],
            position=written.position,
        )


class _V2Context:
    """The call's context, except that the v1-style not-leader answer the fault injector gives
    every method (NOT_FOUND with leader trailers) becomes the v2 API's: FAILED_PRECONDITION with
    NotLeaderNodeErrorDetails (ApiErrors.NotLeaderNode)."""

    def __init__(self, context: grpc.ServicerContext) -> None:
        self._context = context
        self._trailers: dict[str, str] = {}

    def set_trailing_metadata(self, metadata: tuple[tuple[str, str], ...]) -> None:
        self._trailers = dict(metadata)
        self._context.set_trailing_metadata(metadata)

    def abort(self, code: grpc.StatusCode, details: str) -> None:
        if self._trailers.get("exception") == "not-leader":
            host = self._trailers.get("leader-endpoint-host", "")
            port = int(self._trailers.get("leader-endpoint-port", "0"))
            leader = server_errors_pb2.NotLeaderNodeErrorDetails.NodeInfo(
                host=host, port=port, node_id=str(uuid.UUID(int=1))
            )
            SessionError(
                grpc.StatusCode.FAILED_PRECONDITION,
                "NOT_LEADER_NODE",
                "The server is not the leader node and cannot handle the request. Please retry "
                f"your request against the leader node directly at {host}:{port}",
                server_errors_pb2.NotLeaderNodeErrorDetails(current_leader=leader),
                domain="server",
            ).abort(self._context)
        self._context.abort(code, details)

    def __getattr__(self, name: str) -> object:
        return getattr(self._context, name)


class MultiStreamAppendService(streams_pb2_grpc.StreamsServiceServicer):
    def __init__(self, store: Store, guard: Guard, faults: object, version: ServerVersion) -> None:
        self.store = store
        self.guard = guard
        self.faults = faults
        self.version = version

    def AppendSession(
        self, request_iterator: Iterator[streams_pb2.AppendRequest], context: grpc.ServicerContext
    ) -> streams_pb2.AppendSessionResponse:
        self.guard(METHOD, _V2Context(context))  # type: ignore[arg-type]
        limit = self.faults.max_append_size  # type: ignore[attr-defined]
        session = Session(limit, self.version)
        try:
            for request in request_iterator:
                check_message_size(request, limit, context)
                session.add(request)
            return session.commit(self.store)
        except V2Error as e:
            e.abort(context)
            raise AssertionError("unreachable") from e

    def AppendRecords(
        self, request: streams_pb2.AppendRecordsRequest, context: grpc.ServicerContext
    ) -> streams_pb2.AppendRecordsResponse:
        if not self.version.append_records:  # a 25.1 node's service has no such method
            context.abort(grpc.StatusCode.UNIMPLEMENTED, UNIMPLEMENTED_METHOD)
        self.guard("AppendRecords", _V2Context(context))  # type: ignore[arg-type]
        limit = self.faults.max_append_size  # type: ignore[attr-defined]
        check_message_size(request, limit, context)
        try:
            command = AppendRecordsCommand(request, limit, rules_of(self.version))
            return command.execute(self.store)
        except V2Error as e:
            e.abort(context)
            raise AssertionError("unreachable") from e
