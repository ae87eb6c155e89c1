"""The relay's hot read: `$all` forwards, through the generated stub on esdbclient's channel.

esdbclient turns each `ReadResp` into a `RecordedEvent` (asserts, a link, retry counts,
position checks) that `EventStore` then copies into an `Event`; and gRPC's default streaming
call hands every message from the channel's spin thread to the reading thread. Here the call
runs on the reading thread (internals.unary_stream_on_calling_thread) and each
record is decoded once, straight into an `Event`, with only the fields the relay uses: ~40%
less CPU per record than esdbclient's read (docs/benchmarks.md, "A leaner process").

What stays as esdbclient has it: the request (the same `ReadReq`, `$all` from a position,
no filter, ids as strings), the call metadata and credentials, the node preference's
`requires-leader`, and the errors (esdbclient's own translation of the gRPC status, so
core/eventstore/failures.py sees the same exceptions).
What differs: a read cut by a reconnect (esdbclient closing the channel under it) raises
instead of ending as if the server had sent its last record, and a read begun on a closed
channel raises ValueError (EventStore.read_all_after retries both).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import grpc
from esdbclient.common import handle_rpc_error
from esdbclient.protos.Grpc import shared_pb2, streams_pb2

import core.eventstore.internals as internals
from core.model import Event

READ_METHOD = "/event_store.client.streams.Streams/Read"
_Options = streams_pb2.ReadReq.Options
_TICKS_PER_SECOND = 10_000_000.0  # the server's `created`: .NET ticks since the Unix epoch
_encode_request = streams_pb2.ReadReq.SerializeToString
decode_response = streams_pb2.ReadResp.FromString


def read_request(position: int | None, limit: int) -> streams_pb2.ReadReq:
    """`$all` forwards from `position` (inclusive; None = its start), up to `limit` records,
    every one of them (esdbclient's `_construct_read_request` with `filter_exclude=[]`). A
    shard reads only its streams through a filtered subscription instead (scans.py)."""
    options = _Options(
        read_direction=_Options.Forwards,
        resolve_links=False,
        count=limit,
        uuid_option=_Options.UUIDOption(string=shared_pb2.Empty()),
        no_filter=shared_pb2.Empty(),
    )
    return from_position(options, position)


def from_position(
    options: streams_pb2.ReadReq.Options, position: int | None
) -> streams_pb2.ReadReq:
    """The request reading `$all` with these options from `position` (None = its start)."""
    if position is None:
        options.all.start.CopyFrom(shared_pb2.Empty())
    else:
        options.all.position.commit_position = position
        options.all.position.prepare_position = position
    return streams_pb2.ReadReq(options=options)


def event_of(read_event: Any) -> Event | None:
    """A `ReadResp.ReadEvent` as an `Event` (None for a record without an id, which
    esdbclient skips too). `created` is computed as esdbclient does, to the same datetime."""
    recorded = read_event.event
    event_id = recorded.id.string
    if not event_id:
        return None
    metadata = recorded.metadata
    created = metadata.get("created")
    try:
        when = datetime.fromtimestamp(int(created) / _TICKS_PER_SECOND, tz=UTC) if created else None
    except (TypeError, ValueError, OverflowError, OSError):
        when = None
    return Event(
        recorded.stream_identifier.stream_name.decode("utf8"),
        recorded.stream_revision,
        UUID(event_id),
        metadata.get("type", ""),
        metadata.get("content-type", ""),
        recorded.data,
        recorded.custom_metadata,
        when,
        recorded.commit_position,
        recorded.prepare_position,
    )


def read_all_forwards(
    client: Any, position: int | None, limit: int, timeout: float
) -> Iterator[Event]:
    """The records of `$all` from `position` (inclusive), up to `limit`, over the client's
    current channel. Raises esdbclient's exception for a failed call (a cut one included)."""
    spec = client.connection_spec
    requires_leader = "true" if spec.options.NodePreference == "leader" else "false"
    messages = internals.unary_stream_on_calling_thread(
        internals.channel(client),
        READ_METHOD,
        _encode_request(read_request(position, limit)),
        timeout=timeout,
        metadata=(*internals.call_metadata(client), ("requires-leader", requires_leader)),
        credentials=internals.call_credentials(client),
    )
    try:
        for message in messages:
            response = decode_response(message)
            if response.HasField("event"):
                event = event_of(response.event)
                if event is not None:
                    yield event
    except grpc.RpcError as e:
        raise handle_rpc_error(e) from None
    finally:
        messages.close()  # a consumer that stops early ends the call (no-op once finished)
