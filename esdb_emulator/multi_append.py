"""KurrentDB's v2 `StreamsService.AppendSession` (multi-stream append, KurrentDB >= 25.1).

Follows KurrentDB src/KurrentDB.Api.V2/Modules/Streams/StreamsService.cs (AppendSessionCommand)
and StorageWriterService.WriteEvents / VerifyCommitChecks:
- requests are taken in order; a stream named twice (case-insensitively) aborts the session
  (ABORTED, StreamAlreadyInAppendSession); each record is validated and sized (data + properties
  as a protobuf Struct + schema name): over the record limit is INVALID_ARGUMENT
  (AppendRecordSizeExceeded), the running total over the maximum append size is ABORTED
  (AppendTransactionSizeExceeded); no requests at all is FAILED_PRECONDITION;
- every stream is checked first (esdb_emulator.store's CheckCommit rules), then all are written
  under the store's lock: all or nothing. All streams idempotent = success with the original
  revisions; any failure, or a mix of new and idempotent streams, fails the whole session and
  the answer names the first such stream (as the real handler reads ConsistencyCheckFailures[0]):
  FAILED_PRECONDITION StreamTombstoned if any failure is a tombstone (or a soft-deleted stream
  expected to exist), else FAILED_PRECONDITION StreamRevisionConflict with the actual revision;
- errors are google.rpc.Status in `grpc-status-details-bin`: an ErrorInfo (reason, domain
  "streams") then the ...ErrorDetails message, as RpcExceptions.FromError builds them.

Records keep their id, schema name (event type) and data; the properties become the metadata
v1 reads show (EventRecord.SynthesizeMetadataFromProperties: the properties as JSON plus
`$schema.name` and `$schema.format`), and the content type is application/json for the Json
format, application/octet-stream otherwise.
"""

from __future__ import annotations

import functools
import math
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import grpc
from google.protobuf import any_pb2, struct_pb2

from core.multi_append import is_schema_name
from core.protocol.google.rpc import error_details_pb2, status_pb2
from core.protocol.kurrent.rpc import errors_pb2 as server_errors_pb2
from core.protocol.kurrentdb.protocol.v2.streams import (
    errors_pb2,
    shared_pb2,
    streams_pb2,
    streams_pb2_grpc,
)
from esdb_emulator.store import (
    ANY,
    NO_STREAM,
    STREAM_EXISTS,
    ProposedEvent,
    Store,
    StreamDeleted,
    WriteResult,
    WrongExpectedVersion,
)

Guard = Callable[[str, grpc.ServicerContext], None]
METHOD = "AppendSession"
# ClusterVNodeOptions.MaxAppendEventSize default (TFConsts.MaxLogRecordSize).
MAX_RECORD_SIZE = 16 * 1024 * 1024
_JSON = "application/json"
_OCTET_STREAM = "application/octet-stream"
_JSON_FORMAT = struct_pb2.Value(string_value="Json")
_FORMAT_NAMES = {
    shared_pb2.SCHEMA_FORMAT_JSON: "Json",
    shared_pb2.SCHEMA_FORMAT_PROTOBUF: "Protobuf",
    shared_pb2.SCHEMA_FORMAT_AVRO: "Avro",
    shared_pb2.SCHEMA_FORMAT_BYTES: "Bytes",
}


class SessionError(Exception):
    """An error the handler answers with: a gRPC code and a google.rpc.Status."""

    def __init__(
        self,
        code: grpc.StatusCode,
        reason: str,
        message: str,
        *details: object,
        domain: str = "streams",
    ) -> None:
        super().__init__(message)
        self.code = code
        self.status = status_pb2.Status(code=code.value[0], message=message)
        for detail in (error_details_pb2.ErrorInfo(reason=reason, domain=domain), *details):
            self.status.details.append(_pack(detail))

    def abort(self, context: grpc.ServicerContext) -> None:
        context.set_trailing_metadata(
            (("grpc-status-details-bin", self.status.SerializeToString()),)
        )
        context.abort(self.code, self.status.message)


def _pack(message: object) -> any_pb2.Any:
    # core.protocol compiles google.rpc as esdb_relay.rpc; on the wire it is google.rpc.
    name = message.DESCRIPTOR.full_name.replace("esdb_relay.rpc.", "google.rpc.")  # type: ignore[attr-defined]
    return any_pb2.Any(
        type_url=f"type.googleapis.com/{name}",
        value=message.SerializeToString(),  # type: ignore[attr-defined]
    )


@dataclass(slots=True)
class _StreamWrite:
    stream: str
    expected: int
    events: list[ProposedEvent]


def _invalid(message: str, field: str) -> SessionError:
    violation = error_details_pb2.BadRequest.FieldViolation(field=field, description=message)
    return SessionError(
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_REQUEST",
        message,
        error_details_pb2.BadRequest(field_violations=[violation]),
    )


class Session:
    """AppendSessionCommand: the requests of one session, validated and sized as they come."""

    def __init__(self, max_append_size: int) -> None:
        self.max_append_size = max_append_size
        self.writes: list[_StreamWrite] = []
        self._names: set[str] = set()
        self._total = 0

    def add(self, request: streams_pb2.AppendRequest) -> None:
        stream = request.stream
        if stream.casefold() in self._names:
            raise SessionError(
                grpc.StatusCode.ABORTED,
                "STREAM_ALREADY_IN_APPEND_SESSION",
                f"Stream '{stream}' already has a different group of messages in this session. "
                "Appends for the same stream must currently be grouped together and not "
                "interleaved with appends for other streams.",
                errors_pb2.StreamAlreadyInAppendSessionErrorDetails(stream=stream),
            )
        if not stream or stream == "$$":
            raise _invalid("Stream must not be empty or '$$'.", "Stream")
        expected = request.expected_revision if request.HasField("expected_revision") else ANY
        if expected < 0 and expected not in (ANY, NO_STREAM, STREAM_EXISTS):
            raise _invalid(
                "Expected revision must be positive or one of the allowed constants: "
                "NoStream (-1), Any (-2) or Exists (-4).",
                "ExpectedRevision",
            )
        if not request.records:
            raise _invalid("Stream append request must contain at least one record", "Records")
        self._names.add(stream.casefold())
        write = _StreamWrite(stream, expected, [])
        self.writes.append(write)
        for record in request.records:
            event, size = _event(record)
            if size > MAX_RECORD_SIZE:
                raise SessionError(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    "APPEND_RECORD_SIZE_EXCEEDED",
                    f"The size of record {event.event_id} ({size} bytes) exceeds the maximum "
                    f"allowed size of {MAX_RECORD_SIZE} bytes by {size - MAX_RECORD_SIZE} bytes",
                    errors_pb2.AppendRecordSizeExceededErrorDetails(
                        stream=stream, record_id=event.event_id, size=size, max_size=MAX_RECORD_SIZE
                    ),
                )
            self._total += size
            if self._total > self.max_append_size:
                count = sum(len(w.events) for w in self.writes) + 1
                raise SessionError(
                    grpc.StatusCode.ABORTED,
                    "APPEND_TRANSACTION_SIZE_EXCEEDED",
                    f"Transaction size ({self._total} bytes) exceeded the maximum allowed size "
                    f"of {self.max_append_size} bytes by {self._total - self.max_append_size} "
                    f"bytes, after {count} record(s).",
                    errors_pb2.AppendTransactionSizeExceededErrorDetails(
                        size=self._total, max_size=self.max_append_size
                    ),
                )
            write.events.append(event)


def _event(record: streams_pb2.AppendRecord) -> tuple[ProposedEvent, int]:
    """PreProcessRecord + MapToEvent + the metadata a v1 read synthesizes; and the size."""
    record_id = record.record_id if record.HasField("record_id") else str(uuid.uuid4())
    try:
        parsed = uuid.UUID(record_id)
    except ValueError:
        parsed = None
    if parsed is None or parsed.int == 0:
        raise _invalid("Record ID must be a valid and non-empty UUID.", "RecordId")
    schema = record.schema
    if schema.format not in _FORMAT_NAMES:
        raise _invalid("Schema format must be one of Json, Protobuf or Bytes.", "Schema.Format")
    if not is_schema_name(schema.name):
        raise _invalid(
            "Schema name can only contain unicode letters, digits, underscores, dashes, "
            f"periods, colons, and dollar signs. Attempted Value: {schema.name}",
            "Schema.Name",
        )
    properties: dict[str, struct_pb2.Value] = {}  # insertion-ordered, like .NET's MapField
    for key, value in record.properties.items():
        if not key:
            raise _invalid("Property keys must not be empty.", "Properties")
        if not _has_kind(value):
            raise _invalid("Property values must have a type set.", "Properties")
        properties[key] = value
    is_json = schema.format == shared_pb2.SCHEMA_FORMAT_JSON
    if not is_json:
        properties["$schema.format"] = struct_pb2.Value(string_value=_FORMAT_NAMES[schema.format])
    if schema.HasField("id"):
        properties["$schema.id"] = struct_pb2.Value(string_value=schema.id)
    size = len(record.data) + _struct_size(properties) + len(schema.name.encode())
    if properties:
        shown = dict(properties)
        shown["$schema.name"] = struct_pb2.Value(string_value=schema.name)
        if is_json:
            shown["$schema.format"] = struct_pb2.Value(string_value="Json")
        metadata = _format_fields(shown)
    else:
        metadata = _bare_metadata(schema.name)
    event = ProposedEvent(
        event_id=str(parsed),
        type=schema.name,
        content_type=_JSON if is_json else _OCTET_STREAM,
        data=record.data,
        metadata=metadata.encode(),
    )
    return event, size


def _struct_size(fields: dict[str, struct_pb2.Value]) -> int:
    if not fields:
        return 0
    struct = struct_pb2.Struct()
    for key, value in fields.items():
        struct.fields[key].CopyFrom(value)
    return struct.ByteSize()


@functools.lru_cache(maxsize=4096)
def _bare_metadata(schema_name: str) -> str:
    """What a JSON record without properties shows as metadata."""
    name = struct_pb2.Value(string_value=schema_name)
    return _format_fields({"$schema.name": name, "$schema.format": _JSON_FORMAT})


def _has_kind(value: struct_pb2.Value) -> bool:
    kind = value.WhichOneof("kind")
    if kind == "struct_value":
        return all(_has_kind(v) for v in value.struct_value.fields.values())
    if kind == "list_value":
        return all(_has_kind(v) for v in value.list_value.values)
    return kind is not None


def _format_fields(fields: dict[str, struct_pb2.Value]) -> str:
    """Google.Protobuf's JsonFormatter.Default rendering of a Struct: `{ "k": v, ... }`."""
    if not fields:
        return "{ }"
    items = ", ".join(f"{_json_string(k)}: {_format_value(v)}" for k, v in fields.items())
    return "{ " + items + " }"


def _format_value(value: struct_pb2.Value) -> str:
    kind = value.WhichOneof("kind")
    if kind == "string_value":
        return _json_string(value.string_value)
    if kind == "number_value":
        return _format_double(value.number_value)
    if kind == "bool_value":
        return "true" if value.bool_value else "false"
    if kind == "struct_value":
        return _format_fields(dict(value.struct_value.fields.items()))
    if kind == "list_value":
        if not value.list_value.values:
            return "[ ]"
        return "[ " + ", ".join(_format_value(v) for v in value.list_value.values) + " ]"
    return "null"


def _format_double(number: float) -> str:
    # double.ToString("r"): integers without a fraction, exponents as E+XX.
    if math.isfinite(number) and number.is_integer() and abs(number) < 1e15:
        return str(int(number))
    return repr(number).replace("e", "E")


_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r"}
_ESCAPES["\t"] = "\\t"
# JsonFormatter escapes control characters and the HTML-sensitive <>&=' as \uXXXX.
_NEEDS_ESCAPE = re.compile("[\"\\\\\x00-\x1f\x7f-\x9f<>&='\u2028\u2029]")


def _escape(match: re.Match[str]) -> str:
    c = match.group()
    return _ESCAPES.get(c) or f"\\u{ord(c):04x}"


def _json_string(text: str) -> str:
    return '"' + _NEEDS_ESCAPE.sub(_escape, text) + '"'


def commit(store: Store, writes: list[_StreamWrite]) -> tuple[list[int], int]:
    """Check every stream, then write them all (or none): (last revisions, position)."""
    with store._lock:  # the store's own re-entrant lock: nothing else writes in between
        outcomes: list[WriteResult | tuple[str, int] | None] = []
        for w in writes:
            existing = store._streams.get(w.stream)
            try:
                current, _ = store._check_commit(w.stream, existing, w.expected, w.events)
            except WrongExpectedVersion as e:
                outcomes.append(("conflict", e.actual))
                continue
            except StreamDeleted:
                outcomes.append(("deleted", store.stream_state(w.stream)[0]))
                continue
            outcomes.append(current if isinstance(current, WriteResult) else None)
        idempotent = [o for o in outcomes if isinstance(o, WriteResult)]
        if len(idempotent) == len(writes):
            return [o.last_revision for o in idempotent], max(o.position for o in idempotent)
        failures = [
            (i, o if isinstance(o, tuple) else ("idempotent", _current(store, writes[i].stream)))
            for i, o in enumerate(outcomes)
            if o is not None
        ]
        if failures:
            raise _failure(writes, failures)
        results = [store.append(w.stream, w.expected, w.events) for w in writes]
        return [r.last_revision for r in results], results[-1].position


def _current(store: Store, stream: str) -> int:
    return store.stream_state(stream)[0]


def _failure(writes: list[_StreamWrite], failures: list[tuple[int, tuple[str, int]]]) -> Exception:
    # RequestManagerBase: StreamDeleted if any failure is a tombstone (or a soft-deleted stream
    # expected to exist), else WrongExpectedVersion; the v2 handler names failures[0]'s stream.
    first = writes[failures[0][0]]
    if any(kind == "deleted" for _, (kind, _actual) in failures):
        return SessionError(
            grpc.StatusCode.FAILED_PRECONDITION,
            "STREAM_TOMBSTONED",
            f"Stream '{first.stream}' has been tombstoned. It has been permanently removed "
            "from the system and cannot be restored.",
            errors_pb2.StreamTombstonedErrorDetails(stream=first.stream),
        )
    actual = failures[0][1][1]
    return SessionError(
        grpc.StatusCode.FAILED_PRECONDITION,
        "STREAM_REVISION_CONFLICT",
        f"Append failed due to a revision conflict on stream '{first.stream}'. "
        f"Expected revision: {first.expected}. Actual revision: {actual}.",
        errors_pb2.StreamRevisionConflictErrorDetails(
            stream=first.stream, expected_revision=first.expected, actual_revision=actual
        ),
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
    def __init__(self, store: Store, guard: Guard, faults: object) -> None:
        self.store = store
        self.guard = guard
        self.faults = faults

    def AppendSession(
        self, request_iterator: Iterator[streams_pb2.AppendRequest], context: grpc.ServicerContext
    ) -> streams_pb2.AppendSessionResponse:
        self.guard(METHOD, _V2Context(context))  # type: ignore[arg-type]
        session = Session(self.faults.max_append_size)  # type: ignore[attr-defined]
        try:
            for request in request_iterator:
                session.add(request)
            if not session.writes:
                raise SessionError(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    "APPEND_SESSION_NO_REQUESTS",
                    "Append session started, but no append requests were sent before ending "
                    "the session.",
                )
            revisions, position = commit(self.store, session.writes)
        except SessionError as e:
            e.abort(context)
            raise AssertionError("unreachable") from e
        return streams_pb2.AppendSessionResponse(
            output=[
                streams_pb2.AppendResponse(stream=w.stream, stream_revision=revision)
                for w, revision in zip(session.writes, revisions, strict=True)
            ],
            position=position,
        )
