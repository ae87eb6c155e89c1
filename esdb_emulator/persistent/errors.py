"""The errors a call ends with, as the server sends them (Grpc/RpcExceptions.cs).

Each carries the real status code, message and trailing metadata, so esdbclient raises NotFound,
AlreadyExists, MaximumSubscriptionsReached, InternalError...
"""

from __future__ import annotations

from typing import NoReturn

import grpc

HANDLER_EXCEPTION = "Exception was thrown by handler."

Dropped = tuple[grpc.StatusCode, str, tuple[tuple[str, str], ...]]


def abort(
    context: grpc.ServicerContext,
    code: grpc.StatusCode,
    details: str,
    metadata: tuple[tuple[str, str], ...] = (),
) -> NoReturn:
    if metadata:
        # A value Kestrel refuses (a non-ASCII stream name) ends the call as on a real node:
        # esdb_emulator.headers.
        context.set_trailing_metadata(metadata)
    context.abort(code, details)
    raise AssertionError("context.abort returned")  # pragma: no cover


def fail(context: grpc.ServicerContext, stream: str, group: str, reason: str) -> NoReturn:
    # RpcExceptions.PersistentSubscriptionFailed
    abort(
        context,
        grpc.StatusCode.INTERNAL,
        f"Subscription group {group} on stream {stream} failed: '{reason}'",
        (
            ("exception", "persistent-subscription-failed"),
            ("stream-name", stream),
            ("group-name", group),
            ("reason", reason),
        ),
    )


def not_found(context: grpc.ServicerContext, stream: str, group: str) -> NoReturn:
    # RpcExceptions.PersistentSubscriptionDoesNotExist
    abort(
        context,
        grpc.StatusCode.NOT_FOUND,
        f"Subscription group {group} on stream {stream} does not exist.",
        (
            ("exception", "persistent-subscription-does-not-exist"),
            ("stream-name", stream),
            ("group-name", group),
        ),
    )


def exists(context: grpc.ServicerContext, stream: str, group: str) -> NoReturn:
    # RpcExceptions.PersistentSubscriptionExists
    abort(
        context,
        grpc.StatusCode.ALREADY_EXISTS,
        f"Subscription group {group} on stream {stream} exists.",
        (
            ("exception", "persistent-subscription-exists"),
            ("stream-name", stream),
            ("group-name", group),
        ),
    )


def max_subscribers(context: grpc.ServicerContext, stream: str, group: str) -> NoReturn:
    # RpcExceptions.PersistentSubscriptionMaximumSubscribersReached; esdbclient maps
    # FAILED_PRECONDITION "Maximum subscriptions reached..." to MaximumSubscriptionsReached.
    abort(
        context,
        grpc.StatusCode.FAILED_PRECONDITION,
        f"Maximum subscriptions reached for subscription group {group} on stream {stream}.",
        (
            ("exception", "maximum-subscribers-reached"),
            ("stream-name", stream),
            ("group-name", group),
        ),
    )


def dropped(stream: str, group: str) -> Dropped:
    # RpcExceptions.PersistentSubscriptionDropped: a consumer dropped by the server (the group
    # was updated, deleted or restarted, or its source could not be read).
    return (
        grpc.StatusCode.CANCELLED,
        f"Subscription group {group} on stream {stream} was dropped.",
        (
            ("exception", "persistent-subscription-dropped"),
            ("stream-name", stream),
            ("group-name", group),
        ),
    )


def handler_exception(context: grpc.ServicerContext) -> NoReturn:
    # An exception escaping a gRPC handler of the real server (e.g. InvalidOperationException
    # for a missing oneof) reaches the client as UNKNOWN "Exception was thrown by handler.".
    abort(context, grpc.StatusCode.UNKNOWN, HANDLER_EXCEPTION)
