"""Streams.Append and Streams.BatchAppend (Streams.Append.cs, Streams.BatchAppend.cs), with
errors as the server reports them: Append's wrong expected version in the response body, a
deleted stream as FAILED_PRECONDITION, too large as INVALID_ARGUMENT; BatchAppend's every error
as a google.rpc.Status in its response, with packed details."""

from __future__ import annotations

import datetime
import math
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import grpc
from esdbclient.protos.Grpc import shared_pb2, status_pb2, streams_pb2
from google.protobuf import any_pb2, empty_pb2

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

_RFC_CODE = {
    "AlreadyExists": 6,
    "NotFound": 5,
    "InvalidArgument": 3,
    "PermissionDenied": 7,
    "DeadlineExceeded": 4,
}
# ClusterVNodeOptions.Database.WriteTimeoutMs: a BatchAppend write not complete (its final
# request read) this long after its options answers Timeout, whatever deadline it asked for.
WRITE_TIMEOUT_SECONDS = 2.0


def expected_version(options: object, revision_field: str) -> int:
    """Map the request's expected_stream_revision oneof to the server's sentinels."""
    which = options.WhichOneof(  # type: ignore[attr-defined]
        "expected_stream_revision" if revision_field == "revision" else "expected_stream_position"
    )
    if which == revision_field:
        return int(getattr(options, revision_field))
    return {"any": ANY, "no_stream": NO_STREAM, "stream_exists": STREAM_EXISTS}[which]


class Appends:
    """Appends to one store, within the fault injector's maximum append size."""

    def __init__(
        self,
        store: Store,
        faults: object,
        is_anonymous: Callable[[grpc.ServicerContext], bool],
    ) -> None:
        self.store = store
        self.faults = faults
        self.is_anonymous = is_anonymous

    def append(
        self, request_iterator: Iterator[streams_pb2.AppendReq], context: grpc.ServicerContext
    ) -> streams_pb2.AppendResp:
        first = next(request_iterator, None)
        if first is None or first.WhichOneof("content") != "options":
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, "The first AppendReq must carry options"
            )
        options = first.options
        stream = options.stream_identifier.stream_name.decode()
        expected = expected_version(options, "revision")
        events: list[ProposedEvent] = []
        size = 0
        limit = self.faults.max_append_size  # type: ignore[attr-defined]
        for request in request_iterator:
            message = request.proposed_message
            event = _proposed(message, context)
            size += event.size
            if size > limit:
                context.set_trailing_metadata(
                    (
                        ("exception", "maximum-append-size-exceeded"),
                        ("maximum-append-size", str(limit)),
                    )
                )
                context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT, f"Maximum Append Size of {limit} Exceeded."
                )
            events.append(event)
        try:
            result = self.store.append(stream, expected, events)
        except WrongExpectedVersion as e:
            return streams_pb2.AppendResp(wrong_expected_version=_append_wev(e, options))
        except StreamDeleted:
            context.set_trailing_metadata(
                (("exception", "stream-deleted"), ("stream-name", stream))
            )
            context.abort(
                grpc.StatusCode.FAILED_PRECONDITION, f"Event stream '{stream}' is deleted."
            )
        return streams_pb2.AppendResp(success=_append_success(result))

    def batch_append(
        self, request_iterator: Iterator[streams_pb2.BatchAppendReq], context: grpc.ServicerContext
    ) -> Iterator[streams_pb2.BatchAppendResp]:
        anonymous = self.is_anonymous(context)
        pending: dict[str, _PendingWrite] = {}
        limit = self.faults.max_append_size  # type: ignore[attr-defined]
        for request in request_iterator:
            yield from _expired(pending)  # the real server's per-write timers, fired by now
            correlation = request.correlation_id.string
            if request.HasField("options"):
                if anonymous:  # anonymous stream access is off by default (ClusterVNodeOptions)
                    yield _batch_error(
                        request.correlation_id,
                        request.options.stream_identifier,
                        "AccessDenied",
                        "PermissionDenied",
                        shared_pb2.AccessDenied(),
                    )
                    continue
                timeout = min(_requested_timeout(request.options), WRITE_TIMEOUT_SECONDS)
                if timeout <= 0:
                    yield _timeout(request.correlation_id, request.options.stream_identifier)
                    continue
                if correlation not in pending:  # AddOrUpdate keeps a write already pending
                    pending[correlation] = _PendingWrite(
                        request.correlation_id, request.options, time.monotonic() + timeout
                    )
            write = pending.get(correlation)
            if write is None:
                continue
            options = write.options
            stream_id = options.stream_identifier
            too_big = False
            for message in request.proposed_messages:
                event = _proposed(message, context)
                write.size += event.size
                write.events.append(event)
                too_big = too_big or write.size > limit
            if too_big:
                del pending[correlation]
                yield _batch_error(
                    request.correlation_id,
                    stream_id,
                    "MaximumAppendSizeExceeded",
                    "InvalidArgument",
                    shared_pb2.MaximumAppendSizeExceeded(maxAppendSize=limit),
                )
                continue
            if not request.is_final:
                continue
            # The write's timer may have fired while its events were read (20,000 events
            # with a 1 ms deadline do): then the timer answered and nothing is written.
            yield from _expired(pending)
            if pending.pop(correlation, None) is None:
                continue
            events = write.events
            stream = stream_id.stream_name.decode()
            expected = expected_version(options, "stream_position")
            try:
                result = self.store.append(stream, expected, events)
            except WrongExpectedVersion as e:
                yield _batch_error(
                    request.correlation_id,
                    stream_id,
                    "WrongExpectedVersion",
                    "AlreadyExists",
                    _shared_wev(e, options),
                )
                continue
            except StreamDeleted:
                yield _batch_error(
                    request.correlation_id,
                    stream_id,
                    "StreamDeleted",
                    "NotFound",
                    shared_pb2.StreamDeleted(stream_identifier=stream_id),
                )
                continue
            success = streams_pb2.BatchAppendResp.Success(
                position=shared_pb2.AllStreamPosition(
                    commit_position=result.position, prepare_position=result.position
                )
            )
            if result.last_revision >= 0:
                success.current_revision = result.last_revision
            else:
                success.no_stream.CopyFrom(empty_pb2.Empty())
            yield streams_pb2.BatchAppendResp(
                correlation_id=request.correlation_id, stream_identifier=stream_id, success=success
            )


@dataclass(slots=True)
class _PendingWrite:
    """A BatchAppend write whose final request has not come yet (ClientWriteRequest)."""

    correlation_id: shared_pb2.UUID
    options: streams_pb2.BatchAppendReq.Options
    expires: float  # monotonic time at which its timer answers Timeout
    events: list[ProposedEvent] = field(default_factory=list)
    size: int = 0


def _requested_timeout(options: streams_pb2.BatchAppendReq.Options) -> float:
    """Streams.BatchAppend.cs GetRequestedTimeout: the `deadline` duration, else the time left
    until `deadline_21_10_0`, else unbounded."""
    which = options.WhichOneof("deadline_option")
    if which == "deadline":
        return options.deadline.ToTimedelta().total_seconds()
    if which == "deadline_21_10_0":
        return options.deadline_21_10_0.ToDatetime(tzinfo=datetime.UTC).timestamp() - time.time()
    return math.inf


def _timeout(
    correlation_id: shared_pb2.UUID, stream_id: shared_pb2.StreamIdentifier
) -> streams_pb2.BatchAppendResp:
    # Status.Timeout: code DeadlineExceeded, message "Timeout", details a packed Timeout.
    return _batch_error(
        correlation_id, stream_id, "Timeout", "DeadlineExceeded", shared_pb2.Timeout()
    )


def _expired(pending: dict[str, _PendingWrite]) -> Iterator[streams_pb2.BatchAppendResp]:
    now = time.monotonic()
    for correlation, write in list(pending.items()):
        if write.expires <= now:
            del pending[correlation]
            yield _timeout(write.correlation_id, write.options.stream_identifier)


def _proposed(message: object, context: grpc.ServicerContext) -> ProposedEvent:
    metadata = message.metadata  # type: ignore[attr-defined]
    for key in ("type", "content-type"):
        if key not in metadata:
            context.set_trailing_metadata((("exception", "missing-required-metadata-property"),))
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, f"Required Metadata Property '{key}' is missing"
            )
    event_id = message.id.string  # type: ignore[attr-defined]
    try:
        event_id = str(uuid.UUID(event_id))
    except ValueError:
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"'{event_id}' is not a valid Uuid")
    if not metadata["type"]:
        # The real server's `new Event(...)` throws ArgumentException("Empty eventType
        # provided.") (src/EventStore.Core/Data/Event.cs), an unhandled exception that
        # ASP.NET Core gRPC reports as UNKNOWN "Exception was thrown by handler.".
        context.abort(grpc.StatusCode.UNKNOWN, "Exception was thrown by handler.")
    return ProposedEvent(
        event_id=event_id,
        type=metadata["type"],
        content_type=metadata["content-type"],
        data=message.data,  # type: ignore[attr-defined]
        metadata=message.custom_metadata,  # type: ignore[attr-defined]
    )


def _append_success(result: WriteResult) -> streams_pb2.AppendResp.Success:
    success = streams_pb2.AppendResp.Success(
        position=streams_pb2.AppendResp.Position(
            commit_position=result.position, prepare_position=result.position
        )
    )
    if result.last_revision >= 0:
        success.current_revision = result.last_revision
    else:
        success.no_stream.CopyFrom(shared_pb2.Empty())
    return success


def _append_wev(
    e: WrongExpectedVersion, options: streams_pb2.AppendReq.Options
) -> streams_pb2.AppendResp.WrongExpectedVersion:
    wev = streams_pb2.AppendResp.WrongExpectedVersion()
    which = options.WhichOneof("expected_stream_revision")
    if which == "revision":
        wev.expected_revision = options.revision
        wev.expected_revision_20_6_0 = options.revision
    elif which == "any":
        wev.expected_any.CopyFrom(shared_pb2.Empty())
        wev.any_20_6_0.CopyFrom(shared_pb2.Empty())
    elif which == "stream_exists":
        wev.expected_stream_exists.CopyFrom(shared_pb2.Empty())
        wev.stream_exists_20_6_0.CopyFrom(shared_pb2.Empty())
    else:
        wev.expected_no_stream.CopyFrom(shared_pb2.Empty())
        wev.expected_revision_20_6_0 = 2**64 - 1
    if e.actual < 0:
        wev.current_no_stream.CopyFrom(shared_pb2.Empty())
        wev.no_stream_20_6_0.CopyFrom(shared_pb2.Empty())
    else:
        wev.current_revision = e.actual
        wev.current_revision_20_6_0 = e.actual
    return wev


def _shared_wev(
    e: WrongExpectedVersion, options: streams_pb2.BatchAppendReq.Options
) -> shared_pb2.WrongExpectedVersion:
    wev = shared_pb2.WrongExpectedVersion()
    if e.actual < 0:
        wev.current_no_stream.CopyFrom(empty_pb2.Empty())
    else:
        wev.current_stream_revision = e.actual
    which = options.WhichOneof("expected_stream_position")
    if which == "stream_position":
        wev.expected_stream_position = options.stream_position
    elif which == "any":
        wev.expected_any.CopyFrom(empty_pb2.Empty())
    elif which == "stream_exists":
        wev.expected_stream_exists.CopyFrom(empty_pb2.Empty())
    else:
        wev.expected_no_stream.CopyFrom(empty_pb2.Empty())
    return wev


def _batch_error(
    correlation_id: shared_pb2.UUID,
    stream_id: shared_pb2.StreamIdentifier,
    message: str,
    code: str,
    details: object,
) -> streams_pb2.BatchAppendResp:
    packed = any_pb2.Any()
    packed.Pack(details)  # type: ignore[arg-type]
    return streams_pb2.BatchAppendResp(
        correlation_id=correlation_id,
        stream_identifier=stream_id,
        error=status_pb2.Status(code=_RFC_CODE[code], message=message, details=packed),
    )
