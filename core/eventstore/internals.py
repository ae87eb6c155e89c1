"""The few esdbclient 1.1.7 (and grpcio 1.71) internals the adapter relies on, each in one
place with why.

esdbclient has no public way to: reach its gRPC channel and call credentials (KurrentDB's v2
append, the projections list and the relay's `$all` read go over them: core/eventstore/v2.py,
admin.py, reads.py), or tell a read it cut short itself when it reconnected from one the
server finished (client.py). grpcio offers its single-threaded streaming call only as an
option of a new channel, and esdbclient makes the channel (`single_threaded_stream`).
tests/unit/test_esdbclient_internals.py pins each against a real connection, so an esdbclient
upgrade that moves one fails there, naming what breaks, rather than in a migration.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
from grpc import _channel as grpc_channel


def connection(client: Any) -> object:
    """The client's current connection: a new object after each reconnect."""
    return client._connection


def channel(client: Any) -> grpc.Channel:
    """The current connection's gRPC channel (TLS and the node esdbclient chose)."""
    return client._connection._grpc_channel


def call_credentials(client: Any) -> grpc.CallCredentials | None:
    """The basic-auth call credentials esdbclient sends with every call."""
    return client._call_credentials


def call_metadata(client: Any) -> tuple[tuple[str, str], ...]:
    """The metadata esdbclient sends with every call (its user agent)."""
    return tuple(client._call_metadata)


def single_threaded_stream(
    channel: grpc.Channel,
    method: str,
    serializer: Callable[[Any], bytes],
    deserializer: Callable[[bytes], Any],
) -> grpc.UnaryStreamMultiCallable:
    """A unary-stream call on `channel` whose messages are received on the calling thread:
    what grpcio's `SingleThreadedUnaryStream` channel option gives every such call of a
    channel built with it. The default call receives each message on the channel's spin
    thread and hands it over, ~20 µs of CPU per `$all` record here (core/eventstore/reads.py).
    The call is cancelled, and its iterator raises CANCELLED, when the channel is closed."""
    return grpc_channel._SingleThreadedUnaryStreamMultiCallable(
        channel._channel,  # type: ignore[attr-defined]
        method.encode(),
        channel._target.encode(),  # type: ignore[attr-defined]
        serializer,
        deserializer,
        None,
    )


def read_cancelled(response: Any) -> bool:
    """Did this finished read end because esdbclient cancelled it (a reconnect), not because
    the server sent its last record? esdbclient ends both the same way."""
    code = getattr(getattr(response, "_read_resps", None), "code", None)
    return code is not None and code() == grpc.StatusCode.CANCELLED


def grpc_code(error: Exception) -> grpc.StatusCode | None:
    """The gRPC status an esdbclient exception wraps, if any (public: its args)."""
    for arg in getattr(error, "args", ()):
        if isinstance(arg, grpc.Call):
            return arg.code()
    if isinstance(error, grpc.Call):
        return error.code()
    return None
