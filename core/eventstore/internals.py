"""The few esdbclient 1.1.7 (and grpcio 1.71) internals the adapter relies on, each in one
place with why.

esdbclient has no public way to: reach its gRPC channel and call credentials (KurrentDB's v2
append, the projections list and the relay's `$all` read go over them: core/eventstore/v2.py,
admin.py, reads.py), or tell a read it cut short itself when it reconnected from one the
server finished (client.py). grpcio offers its single-threaded streaming call only as an
option of a new channel, and esdbclient makes the channel (`unary_stream_on_calling_thread`),
and no stream-unary call that sends on the calling thread (`stream_unary_on_calling_thread`).
tests/unit/test_esdbclient_internals.py pins each against a real connection, so an esdbclient
upgrade that moves one fails there, naming what breaks, rather than in a migration.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import Any

import grpc
from grpc import _channel as grpc_channel
from grpc import _common as grpc_common
from grpc._cython import cygrpc


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


def unary_stream_on_calling_thread(
    channel: grpc.Channel,
    method: str,
    request: bytes,
    *,
    timeout: float,
    metadata: tuple[tuple[str, str], ...],
    credentials: grpc.CallCredentials | None,
) -> Messages:
    """A unary-stream call with the serialized `request`, its messages received on the calling
    thread and yielded serialized (iterate the `Messages`); raises the `grpc.RpcError` (a
    `grpc.Call`: code, details, trailing metadata) grpcio's call raises when it ends with a
    status other than OK. The same operations as grpcio's single-threaded unary-stream call
    (its `SingleThreadedUnaryStream` channel option, which esdbclient's channel lacks),
    without its per-message bookkeeping (a condition, a set of due operations, callbacks);
    the saving measured within noise (docs/benchmarks.md, "Issue 18, evening"), and the
    shard scan uses it too.
    The call starts here; the caller iterates the messages (closing them early cancels the
    call; so does closing the channel, or `Messages.cancel()` from another thread: CANCELLED)."""
    flags = grpc_channel._EMPTY_FLAGS
    initial = grpc_channel._InitialMetadataFlags().with_wait_for_ready(None)
    call = channel._channel.segregated_call(  # type: ignore[attr-defined]
        cygrpc.PropagationConstants.GRPC_PROPAGATE_DEFAULTS,
        method.encode(),
        None,
        grpc_channel._determine_deadline(time.time() + timeout),
        metadata,
        None if credentials is None else credentials._credentials,  # type: ignore[attr-defined]
        (
            (
                (
                    cygrpc.SendInitialMetadataOperation(metadata, initial),
                    cygrpc.SendMessageOperation(request, flags),
                    cygrpc.SendCloseFromClientOperation(flags),
                ),
                None,
            ),
            ((cygrpc.ReceiveStatusOnClientOperation(flags),), None),
            ((cygrpc.ReceiveInitialMetadataOperation(flags),), None),
        ),
        cygrpc.build_census_context(),
        None,
    )
    return Messages(call)


class Messages:
    """A call's serialized messages, iterated once on one thread (`close()` there ends the
    call early). `cancel()`, from any thread, ends the call at once: a receive blocked on the
    iterating thread returns and the iteration raises CANCELLED (gRPC core's cancel is
    thread-safe; cygrpc's does nothing once the call is over). Iterating yields from the
    generator itself: nothing is added per message."""

    __slots__ = ("_call", "_messages")

    def __init__(self, call: Any) -> None:
        self._call = call
        self._messages = _messages(call)

    def __iter__(self) -> Iterator[bytes]:
        return self._messages

    def __next__(self) -> bytes:
        return next(self._messages)

    def close(self) -> None:
        self._messages.close()

    def cancel(self) -> None:
        self._call.cancel(cygrpc.StatusCode.cancelled, "cancelled by the client")


# A long read whose receive had to wait for the server lets the server's next messages gather
# in the channel for a moment before it receives again: they are then taken without a wait,
# and a wake-up of the thread, each. With the server slower than the reader (busy, or serving
# many readers), the reader otherwise wakes for every message or two, and each wake-up costs
# CPU (docs/benchmarks.md, "Issue 18, December 8": 4 shards at once went from 1.25x to 1.13x
# K = 1's CPU per event in an A/B). What the server sends meanwhile waits in the HTTP/2 window
# (64 KiB at first, grown by gRPC's bandwidth probe); a read that never waits never gathers.
BULK_MESSAGES = 64  # reads shorter than this never gather: a tool's few records come at once
WAITED_SECONDS = 50e-6  # a receive longer than this waited (one whose message was there: ~10 us)
GATHER_SECONDS = 0.004


def _messages(call: Any) -> Iterator[bytes]:
    state = grpc_channel._RPCState((), None, None, None, None)
    due = 3  # batches started and not completed
    flags = grpc_channel._EMPTY_FLAGS
    clock = time.perf_counter
    received = 0
    try:
        while state.code is None and call.operate(
            (cygrpc.ReceiveMessageOperation(flags),), _MESSAGE
        ):
            due += 1
            message = None
            asked = clock()
            while True:  # until this message's batch completes
                event = call.next_event()
                due -= 1
                if event.tag == _MESSAGE:
                    message = event.batch_operations[0].message()
                    break
                _take_status(event, state)
            if message is None:
                break  # the server's last message came before
            received += 1
            gather = received > BULK_MESSAGES and clock() - asked > WAITED_SECONDS
            yield message
            if gather:
                time.sleep(GATHER_SECONDS)
        while due:  # the status, and whatever else is still due
            _take_status(call.next_event(), state)
            due -= 1
    finally:
        if due:  # stopped early: the server is told the call is over
            call.cancel(cygrpc.StatusCode.cancelled, "cancelled by the client")
    if state.code != grpc.StatusCode.OK:
        raise grpc_channel._InactiveRpcError(state)


_MESSAGE = "message"  # the tag of a receive-message batch


def _take_status(event: Any, state: Any) -> None:
    """Keep the call's status from a completed batch that holds it."""
    for operation in event.batch_operations:
        if operation.type() == cygrpc.OperationType.receive_status_on_client:
            state.trailing_metadata = operation.trailing_metadata()
            state.code = grpc_common.CYGRPC_STATUS_CODE_TO_STATUS_CODE.get(
                operation.code(), grpc.StatusCode.UNKNOWN
            )
            state.details = operation.details()
            state.debug_error_string = operation.error_string()


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


def stream_unary_on_calling_thread(
    channel: grpc.Channel,
    method: str,
    requests: Sequence[bytes],
    *,
    timeout: float,
    metadata: tuple[tuple[str, str], ...],
    credentials: grpc.CallCredentials | None,
) -> bytes:
    """A stream-unary call with serialized `requests`, sent and answered on the calling thread;
    its serialized response, or the `grpc.RpcError` (a `grpc.Call`: code, details, trailing
    metadata) grpcio's blocking call raises. grpcio's stream-unary call starts a thread per
    call to consume the request iterator and hands every message's completion over from the
    channel's spin thread (two thread switches a message): ~70 µs of CPU per AppendSession
    message here, ~15 this way, ~9 with the messages buffered until the last (docs/benchmarks.md).
    Core takes one message at a time: each is sent when the last one's send completes; a
    failed send (the server answered early) ends the sending, and the answer is the call's
    status."""
    flags = grpc_channel._EMPTY_FLAGS
    initial = grpc_channel._InitialMetadataFlags().with_wait_for_ready(None)
    batches: list[tuple[tuple[Any, ...], str]] = [
        (
            (
                cygrpc.SendInitialMetadataOperation(metadata, initial),
                *(
                    (cygrpc.SendMessageOperation(requests[0], _write_flags(0, requests)),)
                    if requests
                    else (cygrpc.SendCloseFromClientOperation(flags),)
                ),
            ),
            "send",
        ),
        (
            (
                cygrpc.ReceiveInitialMetadataOperation(flags),
                cygrpc.ReceiveMessageOperation(flags),
                cygrpc.ReceiveStatusOnClientOperation(flags),
            ),
            "answer",
        ),
    ]
    call = channel._channel.segregated_call(  # type: ignore[attr-defined]
        cygrpc.PropagationConstants.GRPC_PROPAGATE_DEFAULTS,
        method.encode(),
        None,
        grpc_channel._determine_deadline(time.time() + timeout),
        metadata,
        None if credentials is None else credentials._credentials,  # type: ignore[attr-defined]
        tuple(batches),
        cygrpc.build_census_context(),
        None,
    )
    state = grpc_channel._RPCState((), None, None, None, None)
    try:
        response = _exchange(call, requests, state)
    except BaseException:  # (an interrupt while waiting): the server is told the call is over
        call.cancel(cygrpc.StatusCode.cancelled, "cancelled by the client")
        raise
    if state.code != grpc.StatusCode.OK or response is None:
        if state.code == grpc.StatusCode.OK:
            state.code, state.details = grpc.StatusCode.INTERNAL, "the server sent no answer"
        raise grpc_channel._InactiveRpcError(state)
    return response


def _write_flags(index: int, requests: Sequence[bytes]) -> int:
    """Every message but the last may wait in gRPC's buffer (the last one flushes them): one
    write to the connection for the session, not one per message (~7 µs of CPU each here)."""
    return cygrpc.WriteFlag.buffer_hint if index < len(requests) - 1 else grpc_channel._EMPTY_FLAGS


def _exchange(call: Any, requests: Sequence[bytes], state: Any) -> bytes | None:
    """Send the rest of the messages, one as the last one's send completes, then the close
    (the first message, or the close, went with the call); gather the answer into `state`."""
    flags = grpc_channel._EMPTY_FLAGS
    sent = 1  # messages (and the close: the last) started
    due = 2  # batches started and not completed
    response: bytes | None = None
    while due:
        event = call.next_event()
        due -= 1
        if event.tag == "send":
            if not event.success or state.code is not None:
                sent = len(requests) + 1  # the call is over: its status says why
            elif sent < len(requests):
                message = cygrpc.SendMessageOperation(requests[sent], _write_flags(sent, requests))
                call.operate((message,), "send")
                sent += 1
                due += 1
            elif sent == len(requests):
                call.operate((cygrpc.SendCloseFromClientOperation(flags),), "send")
                sent += 1
                due += 1
            continue
        for operation in event.batch_operations:
            kind = operation.type()
            if kind == cygrpc.OperationType.receive_initial_metadata:
                state.initial_metadata = operation.initial_metadata()
            elif kind == cygrpc.OperationType.receive_message:
                response = operation.message()
        _take_status(event, state)
    return response
