"""Protobuf in and out: the requests' oneofs read as the server's Grpc/PersistentSubscriptions.*.cs
reads them, and the events a consumer is sent."""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from typing import Any

import grpc
from esdbclient.protos.Grpc import persistent_pb2, shared_pb2

from esdb_emulator.persistent.client import Message
from esdb_emulator.persistent.errors import abort, handler_exception
from esdb_emulator.persistent.settings import ALL, EventFilter, Pos, Source
from esdb_emulator.store import JSON, OCTET_STREAM, Record

_U64_MAX = 2**64 - 1
_I64_MAX = 2**63 - 1
# UpdateReq only carries the deprecated enum; the server uses its name (Grpc/...Update.cs).
_NAMED_STRATEGIES = {0: "DispatchToSingle", 1: "RoundRobin", 2: "Pinned"}


# ------------------------------------------------------------------------------ requests
def int64(value: int) -> int:
    """A uint64 from the wire as the server's long (StreamRevision/Position.ToInt64)."""
    return value - 2**64 if value > _I64_MAX else value


def stream_name(identifier: shared_pb2.StreamIdentifier) -> str:
    return identifier.stream_name.decode("utf-8", "replace")


def named_strategy(value: int) -> str:
    """The name of the deprecated `named_consumer_strategy` enum's value."""
    return _NAMED_STRATEGIES.get(value, str(value))


def uuid_text(value: shared_pb2.UUID) -> str:
    if value.WhichOneof("value") == "structured":
        s = value.structured
        number = ((s.most_significant_bits & _U64_MAX) << 64) | (
            s.least_significant_bits & _U64_MAX
        )
        return str(uuid.UUID(int=number))
    return str(uuid.UUID(value.string))


def metadata(context: grpc.ServicerContext) -> dict[str, str]:
    result: dict[str, str] = {}
    for key, value in context.invocation_metadata() or ():
        result[key] = value.decode("latin-1") if isinstance(value, bytes) else value
    return result


def username(metadata: dict[str, str]) -> str | None:
    header = metadata.get("authorization", "")
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        return base64.b64decode(encoded).decode().partition(":")[0] or None
    except (binascii.Error, UnicodeDecodeError):
        return None


def subscription_stream(options: Any, context: grpc.ServicerContext) -> tuple[str, str]:
    """(which oneof, stream name) of a request's `stream_option`: `$all` or one stream."""
    which = options.WhichOneof("stream_option")
    if which == "all":
        return which, ALL
    if which == "stream_identifier":
        return which, stream_name(options.stream_identifier)
    handler_exception(context)
    raise AssertionError("unreachable")


def stream_and_start(options: object, context: grpc.ServicerContext) -> tuple[str, int]:
    """Create/Update to a stream: the stream and the start revision (-1 = end)."""
    if options.WhichOneof("stream_option") == "stream":  # type: ignore[attr-defined]
        stream_options = options.stream  # type: ignore[attr-defined]
        stream = stream_name(stream_options.stream_identifier)
        which = stream_options.WhichOneof("revision_option")
        if which == "revision":
            return stream, int64(stream_options.revision)
        if which == "start":
            return stream, 0
        if which == "end":
            return stream, -1
        abort(
            context,
            grpc.StatusCode.INVALID_ARGUMENT,
            f"'None' is not a valid {type(stream_options).__name__}+RevisionOptionOneofCase",
        )
    # The deprecated form: stream_identifier and settings.revision.
    stream = stream_name(options.stream_identifier)  # type: ignore[attr-defined]
    return stream, int64(options.settings.revision)  # type: ignore[attr-defined]


def all_start(all_options: object, context: grpc.ServicerContext, create: bool) -> tuple[int, int]:
    which = all_options.WhichOneof("all_option")  # type: ignore[attr-defined]
    if which == "start":
        return (0, 0)
    if which == "end":
        return (-1, -1)
    if which == "position":
        p = all_options.position  # type: ignore[attr-defined]
        commit, prepare = p.commit_position, p.prepare_position
        # Transport.Common.Position's constructor throws for these (an unhandled exception).
        if commit < prepare or any(v > _I64_MAX and v != _U64_MAX for v in (commit, prepare)):
            handler_exception(context)
        if commit == prepare == _U64_MAX:
            return (-1, -1)
        return (int64(commit), int64(prepare))
    if create:
        abort(
            context,
            grpc.StatusCode.INVALID_ARGUMENT,
            "'None' is not a valid AllOptions+AllOptionOneofCase",
        )
    handler_exception(context)


def created_source(
    options: persistent_pb2.CreateReq.Options, context: grpc.ServicerContext
) -> tuple[Source, Pos]:
    """What a CreateReq subscribes to (a stream, or `$all` with its filter) and from where."""
    if options.WhichOneof("stream_option") == "all":
        start: Pos = all_start(options.all, context, create=True)
        event_filter = None
        if options.all.WhichOneof("filter_option") == "filter":
            try:
                event_filter = EventFilter.from_proto(options.all.filter)
            except ValueError:
                abort(
                    context,
                    grpc.StatusCode.INVALID_ARGUMENT,
                    "'None' is not a valid FilterOptions+FilterOneofCase",
                )
            except re.error:
                handler_exception(context)
        return Source(ALL, event_filter), start
    stream, start = stream_and_start(options, context)
    return Source(stream), start


# ----------------------------------------------------------------------------- responses
def read_resp(message: Message, retry_count: int, structured: bool) -> persistent_pb2.ReadResp:
    read_event = persistent_pb2.ReadResp.ReadEvent(retry_count=retry_count)
    if message.event is not None:
        read_event.event.CopyFrom(_recorded(message.event, message.wire_position, structured))
    if message.link is not None:
        read_event.link.CopyFrom(_recorded(message.link, message.wire_position, structured))
    if message.wire_position is None:
        read_event.no_position.CopyFrom(shared_pb2.Empty())
    else:
        read_event.commit_position = message.wire_position
    return persistent_pb2.ReadResp(event=read_event)


def _recorded(
    record: Record, position: int | None, structured: bool
) -> persistent_pb2.ReadResp.ReadEvent.RecordedEvent:
    # Both the event and its link carry the original (link) position; without one, the
    # server sends Position.FromInt64(-1, -1) = ulong.MaxValue (Grpc/...Read.cs).
    wire = _U64_MAX if position is None else position
    return persistent_pb2.ReadResp.ReadEvent.RecordedEvent(
        id=_uuid_message(record.event_id, structured),
        stream_identifier=shared_pb2.StreamIdentifier(stream_name=record.stream.encode()),
        stream_revision=record.revision,
        prepare_position=wire,
        commit_position=wire,
        metadata={
            "type": record.type,
            "created": str(record.created),
            # The server only keeps an isJson flag.
            "content-type": JSON if record.content_type == JSON else OCTET_STREAM,
        },
        custom_metadata=record.metadata,
        data=record.data,
    )


def _uuid_message(text: str, structured: bool) -> shared_pb2.UUID:
    if not structured:
        return shared_pb2.UUID(string=text)
    number = uuid.UUID(text).int
    msb, lsb = number >> 64, number & _U64_MAX
    return shared_pb2.UUID(
        structured=shared_pb2.UUID.Structured(
            most_significant_bits=int64(msb), least_significant_bits=int64(lsb)
        )
    )
