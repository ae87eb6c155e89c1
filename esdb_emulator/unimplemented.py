"""Calls to methods the node does not serve, answered as Grpc.AspNetCore answers them.

Grpc.AspNetCore's ServerCallHandlerFactory maps catch-all routes: an unknown method of a
service the node serves is UNIMPLEMENTED "Method is unimplemented.", an unknown service
UNIMPLEMENTED "Service is unimplemented." (grpc-python would say "Method not found!"). So a
client probing a 24.10 node for the v2 StreamsService gets what the real node sends.
"""

from __future__ import annotations

from collections.abc import Iterable

import grpc

METHOD = "Method is unimplemented."
SERVICE = "Service is unimplemented."


class Unimplemented(grpc.GenericRpcHandler):
    """Registered last: answers every method no other handler serves."""

    def __init__(self, served_services: Iterable[str]) -> None:
        self.served = frozenset(served_services)

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        service = handler_call_details.method.lstrip("/").rpartition("/")[0]
        details = METHOD if service in self.served else SERVICE

        def refuse(request: object, context: grpc.ServicerContext) -> None:
            context.abort(grpc.StatusCode.UNIMPLEMENTED, details)

        # Any shape of call: the request is never read, raw bytes are enough.
        return grpc.stream_stream_rpc_method_handler(refuse)
