"""Errors of KurrentDB's v2 API, as its handlers build them.

KurrentDB src/KurrentDB.Api.V2/Infrastructure/Errors/RpcExceptions.FromError: a
google.rpc.Status (in `grpc-status-details-bin`) whose details are an ErrorInfo (reason: the
error code without its enum prefix; domain: the enum's name without "Error", lower case) and
the error's details message; Modules/ApiErrors.cs and Modules/Streams/ApiErrors.cs for the
messages (v25.1.0 and v26.1.0 where they differ).
"""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2

from core.protocol.google.rpc import error_details_pb2, status_pb2
from core.protocol.kurrentdb.protocol.v2.streams import errors_pb2


class V2Error(Exception):
    def abort(self, context: grpc.ServicerContext) -> None:
        raise NotImplementedError


class HandlerException(V2Error):
    """An exception the handler does not catch: Grpc.AspNetCore answers UNKNOWN with no
    details (EnableDetailedErrors is off outside development)."""

    def abort(self, context: grpc.ServicerContext) -> None:
        context.abort(grpc.StatusCode.UNKNOWN, "Exception was thrown by handler.")


class SessionError(V2Error):
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
            self.status.details.append(pack(detail))

    def abort(self, context: grpc.ServicerContext) -> None:
        context.set_trailing_metadata(
            (("grpc-status-details-bin", self.status.SerializeToString()),)
        )
        context.abort(self.code, self.status.message)


def pack(message: object) -> any_pb2.Any:
    # core.protocol compiles google.rpc as esdb_relay.rpc; on the wire it is google.rpc.
    name = message.DESCRIPTOR.full_name.replace("esdb_relay.rpc.", "google.rpc.")  # type: ignore[attr-defined]
    return any_pb2.Any(
        type_url=f"type.googleapis.com/{name}",
        value=message.SerializeToString(),  # type: ignore[attr-defined]
    )


Failures = list[tuple[str, str]]  # FluentValidation failures: (property name, message)


def bad_request(request_type: str, failures: Failures) -> SessionError:
    """ApiErrors.InvalidRequest: INVALID_ARGUMENT, reason BAD_REQUEST in domain "server"."""
    violations = [
        error_details_pb2.BadRequest.FieldViolation(field=field, description=message)
        for field, message in failures
    ]
    message = f"The '{request_type}' is invalid:"
    if len(failures) == 1:
        message += f" {failures[0][1]}"
    else:
        message += "\n" + "".join(f" -- {text}\n" for _, text in failures)
    return SessionError(
        grpc.StatusCode.INVALID_ARGUMENT,
        "BAD_REQUEST",
        message,
        error_details_pb2.BadRequest(field_violations=violations),
        domain="server",
    )


def humanize_bytes(size: int) -> str:
    """Humanizer's ByteSize.Humanize("0.000") (1024-based units), as the messages show sizes."""
    for symbol, unit in (("TB", 1024**4), ("GB", 1024**3), ("MB", 1024**2), ("KB", 1024)):
        if abs(size) >= unit:
            return f"{size / unit:.3f} {symbol}"
    return f"{size:.3f} B"


def stream_tombstoned(stream: str) -> SessionError:
    return SessionError(
        grpc.StatusCode.FAILED_PRECONDITION,
        "STREAM_TOMBSTONED",
        f"Stream '{stream}' has been tombstoned. It has been permanently removed from the "
        "system and cannot be restored.",
        errors_pb2.StreamTombstonedErrorDetails(stream=stream),
    )


def revision_conflict(stream: str, expected: int, actual: int) -> SessionError:
    return SessionError(
        grpc.StatusCode.FAILED_PRECONDITION,
        "STREAM_REVISION_CONFLICT",
        f"Append failed due to a revision conflict on stream '{stream}'. "
        f"Expected revision: {expected}. Actual revision: {actual}.",
        errors_pb2.StreamRevisionConflictErrorDetails(
            stream=stream, expected_revision=expected, actual_revision=actual
        ),
    )


def already_in_session(stream: str, grouped_message: bool) -> SessionError:
    if grouped_message:  # 26.1
        text = (
            f"Stream '{stream}' already has a different group of messages in this session. "
            "Appends for the same stream must currently be grouped together and not "
            "interleaved with appends for other streams."
        )
    else:  # 25.1
        text = (
            f"Stream '{stream}' is already part of this append session. "
            "Appending to the same stream multiple times is currently not supported."
        )
    return SessionError(
        grpc.StatusCode.ABORTED,
        "STREAM_ALREADY_IN_APPEND_SESSION",
        text,
        errors_pb2.StreamAlreadyInAppendSessionErrorDetails(stream=stream),
    )


def record_too_big(stream: str, record_id: str, size: int, max_size: int) -> SessionError:
    return SessionError(
        grpc.StatusCode.INVALID_ARGUMENT,
        "APPEND_RECORD_SIZE_EXCEEDED",
        f"The size of record {record_id} ({humanize_bytes(size)}) exceeds the maximum allowed "
        f"size of {humanize_bytes(max_size)} bytes by {humanize_bytes(size - max_size)}",
        errors_pb2.AppendRecordSizeExceededErrorDetails(
            stream=stream, record_id=record_id, size=size, max_size=max_size
        ),
    )


def transaction_too_big(records: int, size: int, max_size: int) -> SessionError:
    return SessionError(
        grpc.StatusCode.ABORTED,
        "APPEND_TRANSACTION_SIZE_EXCEEDED",
        f"Transaction size ({humanize_bytes(size)}) exceeded the maximum allowed size of "
        f"{humanize_bytes(max_size)} by {humanize_bytes(size - max_size)}, after {records} "
        "record(s).",
        errors_pb2.AppendTransactionSizeExceededErrorDetails(size=size, max_size=max_size),
    )


def no_requests() -> SessionError:
    return SessionError(
        grpc.StatusCode.FAILED_PRECONDITION,
        "APPEND_SESSION_NO_REQUESTS",
        "Append session started, but no append requests were sent before ending the session.",
    )
