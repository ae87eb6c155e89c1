"""Trailing metadata a real node cannot send, answered the way a real node answers it.

gRPC metadata values (other than `-bin` keys) must be printable ASCII. The real server puts
stream names into trailers (RpcExceptions.StreamDeleted, WrongExpectedVersion, the persistent
subscription errors: `stream-name`), and for a name like `ünï.strm-1` Kestrel refuses the
trailer: Grpc.AspNetCore's HttpResponseExtensions.ConsolidateTrailers throws
InvalidOperationException("Error adding response trailer 'stream-name'."), the exception leaves
the gRPC pipeline, and Kestrel answers HTTP 500 (nothing sent yet: the client reports UNKNOWN
"Received http2 header with status: 500") or resets the stream (messages already sent:
INTERNAL "Received RST_STREAM with error code 2").

grpc-python, given such a trailer, fails to send the status at all (C-core "validate_metadata:
Illegal header value"): the call never ends and the client waits for its deadline, forever
without one. That was the wedged `ünï.strm-…` stream of issue 17 (a tombstoned stream with a
non-ASCII name: every read of it, and of its metastream, ends with a `stream-name` trailer).
`HeaderGuard` wraps every handler's context so such a call ends as it does on a real node.
It also lets a handler send a response it encoded itself (bytes) through any method's
serializer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import grpc

HTTP_500 = "Received http2 header with status: 500"
RST_STREAM = "Received RST_STREAM with error code 2"


def kestrel_accepts(value: str) -> bool:
    """HttpHeaders.ValidateHeaderValueCharacters without an encoding selector (KurrentDB sets
    none): a tab or 0x20-0x7E."""
    return all(c == "\t" or " " <= c <= "~" for c in value)


class GuardedContext:
    """A ServicerContext whose trailing metadata is checked as Kestrel checks it."""

    def __init__(self, context: grpc.ServicerContext) -> None:
        self._context = context
        self.rejected: str | None = None  # the key of a trailer Kestrel would refuse
        self.started = False  # a response message was sent (streaming responses)

    def set_trailing_metadata(self, metadata: tuple[tuple[str, Any], ...]) -> None:
        sendable = []
        self.rejected = None
        for key, value in metadata:
            if key.endswith("-bin") or not isinstance(value, str):
                sendable.append((key, value))
            elif not kestrel_accepts(value):
                self.rejected = key
            else:
                # C-core refuses a tab that Kestrel sends; a space reads the same.
                sendable.append((key, value.replace("\t", " ")))
        self._context.set_trailing_metadata(tuple(sendable))

    def abort(self, code: grpc.StatusCode, details: str) -> None:
        if self.rejected is not None:
            self.fail()
        self._context.abort(code, details)

    def fail(self) -> None:
        """End the call as Kestrel does after the refused trailer."""
        self._context.set_trailing_metadata(())
        if self.started:
            self._context.abort(grpc.StatusCode.INTERNAL, RST_STREAM)
        self._context.abort(grpc.StatusCode.UNKNOWN, HTTP_500)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)


def _unary(behaviour: Callable[..., Any]) -> Callable[..., Any]:
    def handle(request: Any, context: grpc.ServicerContext) -> Any:
        guarded = GuardedContext(context)
        response = behaviour(request, guarded)
        if guarded.rejected is not None:
            guarded.fail()
        return response

    return handle


def _streaming(behaviour: Callable[..., Iterator[Any]]) -> Callable[..., Iterator[Any]]:
    def handle(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        guarded = GuardedContext(context)
        for response in behaviour(request, guarded):
            guarded.started = True
            yield response
        if guarded.rejected is not None:
            guarded.fail()

    return handle


def _bytes_or(serializer: Callable[[Any], bytes] | None) -> Callable[[Any], bytes] | None:
    """The handler's serializer, except that a response already encoded (bytes: a read's
    events, esdb_emulator.streams.read_wire) is sent as it is."""
    if serializer is None:
        return None

    def serialize(message: Any) -> bytes:
        return message if type(message) is bytes else serializer(message)

    return serialize


class HeaderGuard(grpc.ServerInterceptor):
    """Applies GuardedContext to every method of every service."""

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        codecs = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": _bytes_or(handler.response_serializer),
        }
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(_unary(handler.unary_unary), **codecs)
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(_unary(handler.stream_unary), **codecs)
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(_streaming(handler.unary_stream), **codecs)
        return grpc.stream_stream_rpc_method_handler(_streaming(handler.stream_stream), **codecs)
