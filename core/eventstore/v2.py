"""KurrentDB's v2 multi-stream appends: `StreamsService.AppendSession` (KurrentDB >= 25.1) and
`AppendRecords` (26.1: records of several streams interleaved in any order in one atomic write,
kept in that order in `$all`, with a consistency check per stream).

The wire side only: building the requests, asking the server's features, and reading the
rich error status the v2 handler answers with (google.rpc.Status in `grpc-status-details-bin`,
an ErrorInfo then one `...ErrorDetails` message; KurrentDB src/KurrentDB.Api.V2/Modules/Streams).
core.eventstore turns the results into its own exceptions.

How the server stores what this call writes (Mapping.MapToEvent, EventRecord): the properties
map becomes the record's metadata as a protobuf Struct, and v1 reads synthesize it back as JSON
with `$schema.name` and `$schema.format` added. So only events whose metadata is empty or a
JSON object can go this way, and the target's metadata bytes are re-rendered, not copied.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

import grpc
from google.protobuf import empty_pb2, struct_pb2

import core.eventstore.internals as internals
import core.eventstore.v2_wire as wire
from core.model import is_schema_name
from core.protocol import serverfeatures_pb2_grpc
from core.protocol.google.rpc import status_pb2
from core.protocol.kurrent.rpc import errors_pb2 as rpc_errors_pb2
from core.protocol.kurrentdb.protocol.v2.streams import (
    errors_pb2,
    shared_pb2,
    streams_pb2,
)

SERVICE_NAME = "kurrentdb.protocol.v2.streams.streamsservice"  # as GetSupportedMethods lists it
METHOD_NAME = "appendsession"
RECORDS_METHOD_NAME = "appendrecords"  # 26.1
APPEND_SESSION_METHOD = "/kurrentdb.protocol.v2.streams.StreamsService/AppendSession"
APPEND_RECORDS_METHOD = "/kurrentdb.protocol.v2.streams.StreamsService/AppendRecords"
# ConsistencyViolation.StreamStateViolation.actual_state sentinels (errors.proto).
STATE_NO_STREAM, STATE_DELETED, STATE_TOMBSTONED = -1, -5, -6
JSON_CONTENT_TYPE = "application/json"
# KurrentDB's MaxAppendEventSize default (TFConsts.MaxLogRecordSize): one record's limit.
MAX_RECORD_SIZE = 16 * 1024 * 1024
_STATUS_DETAILS_KEY = "grpc-status-details-bin"


class EventLike(Protocol):
    @property
    def event_id(self) -> object: ...
    @property
    def type(self) -> str: ...
    @property
    def content_type(self) -> str: ...
    @property
    def data(self) -> bytes: ...
    @property
    def metadata(self) -> bytes: ...


@dataclass(frozen=True, slots=True)
class Violation:
    """One failed consistency check of an AppendRecords call."""

    stream: str
    expected: int
    actual: int  # a revision, or STATE_NO_STREAM / STATE_DELETED / STATE_TOMBSTONED


@dataclass(frozen=True, slots=True)
class V2Error:
    """What a failed AppendSession or AppendRecords said, from its rich status."""

    kind: str  # revision_conflict, consistency_violation, tombstoned, record_too_large,
    #            transaction_too_large, message_too_large, duplicate_stream, not_leader,
    #            invalid, unimplemented, other
    message: str
    stream: str | None = None
    expected: int | None = None
    actual: int | None = None
    limit: int | None = None
    leader: tuple[str, int] | None = None
    violations: tuple[Violation, ...] = ()


def event_problem(event: EventLike) -> str | None:
    """Why this event cannot be written by a v2 append (None if it can): the server would
    refuse it, or store its metadata other than as the same JSON value (docs/multi-append.md)."""
    if not _is_schema_name(event.type):
        return (
            f"event type {event.type!r} is not a valid v2 schema name (letters, digits, "
            "'_', '.', '$', ':' and '-' only, Unicode NFC)"
        )
    if not event.metadata:
        return None
    value = _event_object(event)
    if value is None:
        # Parsed again only here, on the rare refusal, to say why.
        if _holds_inexact_number(event.metadata):
            return (
                "event metadata holds an integer beyond 2^53 or a non-finite number, which a "
                "v2 append would change"
            )
        return "event metadata is not empty or a JSON object"
    if _schema_keys_changed(value, event):
        return "event metadata holds $schema.* keys, which a v2 append would overwrite"
    return None


def _schema_keys_changed(value: dict[str, object], event: EventLike) -> bool:
    """Would the server's own `$schema.name` / `$schema.format` replace a user's key? Keys it
    would set to the same value are no change (metadata a v2 append wrote, copied again)."""
    for key, kept in value.items():
        if not key.startswith("$schema."):
            continue
        if key == "$schema.name" and kept == event.type:
            continue
        if key == "$schema.format" and kept == _format_name(event):
            continue
        return True
    return False


def _format_name(event: EventLike) -> str:
    return "Json" if event.content_type == JSON_CONTENT_TYPE else "Bytes"


def _holds_inexact_number(metadata: bytes) -> bool:
    try:
        return _has_inexact_number(json.loads(metadata))
    except (ValueError, UnicodeDecodeError):
        return False


def _has_inexact_number(value: object) -> bool:
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return False
    if kind is int:
        return abs(value) > 2**53  # type: ignore[arg-type]
    if kind is float:
        return not math.isfinite(value)  # type: ignore[arg-type]  # (NaN, Infinity: not JSON)
    if kind is dict:
        return _any_inexact(value.values())  # type: ignore[attr-defined]
    if kind is list:
        return _any_inexact(value)  # type: ignore[arg-type]
    if isinstance(value, int):  # subclasses, as before (json.loads makes none)
        return not isinstance(value, bool) and abs(value) > 2**53
    if isinstance(value, float):
        return not math.isfinite(value)
    return False


def _any_inexact(values: Iterable[object]) -> bool:
    for item in values:  # noqa: SIM110 (a loop: no generator per call, this runs per event)
        if type(item) is not str and _has_inexact_number(item):  # strings: the common case
            return True
    return False


def _metadata_object(metadata: bytes) -> dict[str, object] | None:
    """The metadata as the JSON object a v2 append carries as properties; None if it is not
    one (or holds a number the server, keeping properties as doubles, would round)."""
    if not metadata:
        return {}
    try:
        value = json.loads(metadata.decode("utf-8"))  # (json.loads would take UTF-16 too)
    except (ValueError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) and _carried(value) else None


def _carried(value: dict[str, object]) -> bool:
    """Can properties carry this JSON object as it is? No empty key (the server refuses one),
    no number a double would change."""
    return "" not in value and not _any_inexact(value.values())


def _event_object(event: EventLike) -> dict[str, object] | None:
    """`_metadata_object` of the event's metadata, from the object the planner parsed it into
    when it did (core/rules.py: `OutEvent.parsed`), else parsed here."""
    parsed = getattr(event, "parsed", None)
    if parsed is None or not event.metadata:
        return _metadata_object(event.metadata)
    return parsed if _carried(parsed) else None


def _properties(metadata: bytes) -> struct_pb2.Struct | None:
    value = _metadata_object(metadata)
    if value is None:
        return None
    struct = struct_pb2.Struct()
    struct.update(value)  # JSON values map onto Struct values one to one (as ParseDict)
    return struct


def record(event: EventLike, stream: str | None = None) -> streams_pb2.AppendRecord:
    """The v2 record of an event (ValueError, saying why, if the v2 API cannot carry it);
    `stream` names its stream (AppendRecords; AppendSession names it in the request)."""
    return streams_pb2.AppendRecord.FromString(record_bytes(event, stream))


def record_bytes(event: EventLike, stream: str | None = None) -> bytes:
    """The v2 record of an event as its wire bytes (core/eventstore/v2_wire.py); ValueError,
    saying why, if the v2 API cannot carry the event."""
    return b"".join(_record(event, stream))


def _record(event: EventLike, stream: str | None = None) -> wire.Record:
    value = _event_object(event) if _is_schema_name(event.type) else None
    if value is None or _schema_keys_changed(value, event):
        raise ValueError(event_problem(event))
    try:
        props = wire.properties(value) if value else b""
    except UnicodeEncodeError:  # (a ValueError too, but `event_problem` would not say why)
        raise ValueError(
            "event metadata holds a string with a lone surrogate (a JSON \\ud800-style escape), "
            "which a v2 append cannot carry"
        ) from None
    return wire.record(
        str(event.event_id),
        props,
        _schema(event.content_type == JSON_CONTENT_TYPE, event.type),
        event.data,
        stream,
    )


@functools.lru_cache(maxsize=4096)  # (format, type) pairs repeat
def _schema(is_json: bool, name: str) -> bytes:
    number = shared_pb2.SCHEMA_FORMAT_JSON if is_json else shared_pb2.SCHEMA_FORMAT_BYTES
    return wire.schema(number, name)


# Event types repeat: each is checked once.
_is_schema_name = functools.lru_cache(maxsize=4096)(is_schema_name)


def record_size(message: streams_pb2.AppendRecord) -> int:
    """AppendRecordExtensions.CalculateSizeOnDisk: data + properties as a Struct + name."""
    if not message.properties:
        return len(message.data) + len(message.schema.name.encode())
    properties = struct_pb2.Struct()
    for key, value in message.properties.items():
        properties.fields[key].CopyFrom(value)
    return len(message.data) + properties.ByteSize() + len(message.schema.name.encode())


def requests(appends: Iterable[tuple[str, int, Sequence[EventLike]]]) -> list[bytes]:
    """The AppendSession messages, serialized: one per (stream, expected revision, events)."""
    return [
        wire.append_request(stream, expected, [_record(event) for event in events])
        for stream, expected, events in appends
    ]


def records_request(
    records: Iterable[tuple[str, EventLike]], checks: Iterable[tuple[str, int]]
) -> bytes:
    """One AppendRecords request, serialized: the records in the order given (the order they
    take in `$all`), and a stream state check per (stream, expected revision or NO_STREAM)."""
    return wire.records_request([_record(event, stream) for stream, event in records], checks)


class Client:
    """Stubs on one gRPC channel (esdbclient's), with its call credentials and metadata."""

    def __init__(
        self,
        channel: grpc.Channel,
        credentials: grpc.CallCredentials | None,
        metadata: tuple[tuple[str, str], ...],
    ) -> None:
        self._channel = channel
        # AppendRecords with its request serialized already (v2_wire): sent as it is.
        self._append_records = channel.unary_unary(
            APPEND_RECORDS_METHOD,
            request_serializer=None,
            response_deserializer=streams_pb2.AppendRecordsResponse.FromString,
        )
        self._features = serverfeatures_pb2_grpc.ServerFeaturesStub(channel)
        self._credentials = credentials
        self._metadata = metadata

    def supported_methods(self, timeout: float) -> set[tuple[str, str]]:
        """(service, method) pairs the server lists, lower case; empty if it has no
        ServerFeatures service (servers before 21.10)."""
        try:
            reply = self._features.GetSupportedMethods(
                empty_pb2.Empty(),
                timeout=timeout,
                metadata=self._metadata,
                credentials=self._credentials,
            )
        except grpc.RpcError as e:
            if isinstance(e, grpc.Call) and e.code() == grpc.StatusCode.UNIMPLEMENTED:
                return set()
            raise
        return {(m.service_name, m.method_name) for m in reply.methods}

    def append_session(
        self, messages: list[bytes], timeout: float
    ) -> streams_pb2.AppendSessionResponse:
        """One AppendSession call, its messages sent on this thread (grpcio's own call starts
        a thread per call and switches threads twice a message: internals)."""
        answer = internals.stream_unary_on_calling_thread(
            self._channel,
            APPEND_SESSION_METHOD,
            messages,
            timeout=timeout,
            metadata=(*self._metadata, ("requires-leader", "true")),
            credentials=self._credentials,
        )
        return streams_pb2.AppendSessionResponse.FromString(answer)

    def append_records(self, request: bytes, timeout: float) -> streams_pb2.AppendRecordsResponse:
        return self._append_records(  # type: ignore[no-any-return]
            request,
            timeout=timeout,
            metadata=(*self._metadata, ("requires-leader", "true")),
            credentials=self._credentials,
        )

    def append_records_future(self, request: bytes, timeout: float) -> grpc.Future:
        """The same call, started: its `result()` is the response or raises its RpcError."""
        return self._append_records.future(
            request,
            timeout=timeout,
            metadata=(*self._metadata, ("requires-leader", "true")),
            credentials=self._credentials,
        )


def parse_error(error: grpc.RpcError) -> V2Error:
    """The v2 handler's rich status, or the plain status code when there is none."""
    if not isinstance(error, grpc.Call):
        return V2Error("other", str(error))
    code = error.code()
    message = error.details() or code.name
    if code == grpc.StatusCode.UNIMPLEMENTED:
        return V2Error("unimplemented", message)
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        # The request message is over the server's receive limit (KurrentDB ApiV2Plugin:
        # 1.5 x MaxAppendSize), refused before the handler: no rich status.
        return V2Error("message_too_large", message)
    trailers = dict(error.trailing_metadata() or ())
    if trailers.get("exception") == "not-leader":  # the v1 style NotLeader (RpcExceptions)
        host = trailers.get("leader-endpoint-host")
        port = trailers.get("leader-endpoint-port")
        leader = (str(host), int(str(port))) if host and port else None
        return V2Error("not_leader", message, leader=leader)
    raw = trailers.get(_STATUS_DETAILS_KEY)
    if not isinstance(raw, bytes):
        return V2Error("other", message)
    status = status_pb2.Status.FromString(raw)
    for detail in status.details:
        found = _detail(detail, status.message)
        if found is not None:
            return found
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return V2Error("invalid", status.message)
    return V2Error("other", status.message)


# By the name after the last '.': core.protocol compiles google.rpc under its own package.
_DETAILS: dict[str, type] = {
    m.DESCRIPTOR.name: m
    for m in (
        errors_pb2.StreamRevisionConflictErrorDetails,
        errors_pb2.StreamTombstonedErrorDetails,
        errors_pb2.AppendRecordSizeExceededErrorDetails,
        errors_pb2.AppendTransactionSizeExceededErrorDetails,
        errors_pb2.StreamAlreadyInAppendSessionErrorDetails,
        errors_pb2.AppendConsistencyViolationErrorDetails,
        rpc_errors_pb2.NotLeaderNodeErrorDetails,
    )
}


def _detail(detail: object, message: str) -> V2Error | None:
    name = detail.type_url.rsplit(".", 1)[-1]  # type: ignore[attr-defined]
    cls = _DETAILS.get(name)
    if cls is None:
        return None
    d = cls()
    detail.Unpack(d)  # type: ignore[attr-defined]
    if isinstance(d, errors_pb2.StreamRevisionConflictErrorDetails):
        return V2Error(
            "revision_conflict", message, d.stream, d.expected_revision, d.actual_revision
        )
    if isinstance(d, errors_pb2.StreamTombstonedErrorDetails):
        return V2Error("tombstoned", message, d.stream)
    if isinstance(d, errors_pb2.AppendRecordSizeExceededErrorDetails):
        return V2Error("record_too_large", message, d.stream, limit=d.max_size)
    if isinstance(d, errors_pb2.AppendTransactionSizeExceededErrorDetails):
        return V2Error("transaction_too_large", message, limit=d.max_size)
    if isinstance(d, errors_pb2.StreamAlreadyInAppendSessionErrorDetails):
        return V2Error("duplicate_stream", message, d.stream)
    if isinstance(d, errors_pb2.AppendConsistencyViolationErrorDetails):
        states = [v.stream_state for v in d.violations if v.WhichOneof("type") == "stream_state"]
        found = tuple(Violation(v.stream, v.expected_state, v.actual_state) for v in states)
        return V2Error("consistency_violation", message, violations=found)
    if isinstance(d, rpc_errors_pb2.NotLeaderNodeErrorDetails):
        leader = d.current_leader
        return V2Error("not_leader", message, leader=(leader.host, leader.port))
    return None


def stored_metadata_matches(sent: bytes, stored: bytes) -> bool:
    """Whether metadata read back (v1) from an event written by a multi-append is what was
    sent: the same JSON object once the server's `$schema.name`/`$schema.format` (and
    `$schema.id`) keys are dropped, numbers compared as the doubles the server keeps."""
    expected = _properties(sent)
    found = _properties(stored)
    if expected is None or found is None:
        return False
    for key in ("$schema.name", "$schema.format", "$schema.id"):
        if key not in expected.fields and key in found.fields:
            del found.fields[key]
    return expected == found
