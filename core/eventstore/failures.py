"""esdbclient's exceptions as core.errors: what the user can act on, never a connection string."""

from __future__ import annotations

import re

import grpc
from esdbclient import exceptions as esdb

import core.eventstore.internals as internals
from core.errors import (
    AccessDenied,
    AppendTooLarge,
    PermanentError,
    StreamTombstoned,
    TransientError,
    WrongExpectedRevision,
)
from core.model import NO_STREAM


def translate(error: Exception, side: str, action: str) -> Exception:
    if isinstance(error, esdb.WrongCurrentVersion):
        return WrongExpectedRevision(f"{side}: {action}: {error}", actual_revision(str(error)))
    if isinstance(error, esdb.StreamIsDeleted):
        return StreamTombstoned(f"{side}: {action}: stream is deleted")
    if isinstance(error, esdb.MaximumAppendSizeExceededError):
        limit = re.search(r"(\d+)", str(error))
        return AppendTooLarge(f"{side}: {action}: {error}", int(limit.group(1)) if limit else None)
    if isinstance(error, esdb.SSLError):
        return PermanentError(
            f"{side}: TLS handshake failed",
            hint="check the server certificate, or pass the CA with tlsCaFile=... in the "
            "connection string",
        )
    if isinstance(error, esdb.DiscoveryFailed):
        return TransientError(
            f"{side}: cannot reach the cluster ({type(error).__name__})",
            hint="check the host, port and network path (peering, security groups), and that "
            "the scheme (esdb:// or esdb+discover://) matches the server",
        )
    if isinstance(error, esdb.NodeIsNotLeader | esdb.ServiceUnavailable | esdb.DeadlineExceeded):
        return TransientError(f"{side}: {action}: {type(error).__name__}")
    code = internals.grpc_code(error)
    if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
        return AccessDenied(
            f"{side}: {action}: access denied ({code.name})",
            code.name,
            hint="check the username and password in the connection string and the user's ACLs",
        )
    # CANCELLED: esdbclient closed the channel under this call to reconnect (another thread's
    # UNAVAILABLE or not-leader); the call never finished, and retrying an append is harmless.
    if code in (
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.CANCELLED,
    ):
        return TransientError(f"{side}: {action}: {code.name}")
    return PermanentError(f"{side}: {action} failed: {described(error)}")


def described(error: Exception) -> str:
    """The gRPC status an esdbclient exception wraps, as code and details (its repr would
    dump the call object and the transport's debug string), else its type and message."""
    for arg in getattr(error, "args", ()):
        if isinstance(arg, grpc.Call):
            return f"{arg.code().name}: {arg.details()}"
    return f"{type(error).__name__}: {error}"


def trailer_refused(error: Exception, stream: str) -> bool:
    """Whether a call's `error` on `stream` is how a real node ends a call whose `stream-name`
    trailer it cannot send: Kestrel refuses a header value with a character other than a tab
    or printable ASCII (a name like `ünï.strm-1`) and answers HTTP 500 (UNKNOWN "Received
    http2 header with status: 500") or, messages already sent, resets the stream (INTERNAL).
    The server sends that trailer with StreamDeleted: such a call may be on a tombstoned
    stream (esdb_emulator/headers.py), which only `$all` can tell (EventStore._refused)."""
    if all(c == "\t" or " " <= c <= "~" for c in stream):
        return False  # the trailer can be sent: the error is what it says
    if isinstance(error, esdb.InternalError):
        return True  # esdbclient keeps only the details of INTERNAL
    return (
        isinstance(error, esdb.UnknownError)
        and internals.grpc_code(error) == grpc.StatusCode.UNKNOWN
    )


def actual_revision(message: str) -> int | None:
    # esdbclient words the server's WrongExpectedVersion.current_revision into its message:
    # "Stream position of last event is N not X" or "Stream 'x' does not exist".
    if "does not exist" in message:
        return NO_STREAM
    found = re.search(r"last event is (\d+)", message)
    return int(found.group(1)) if found else None


def revision_text(revision: int | None) -> str:
    return "no stream" if revision is None or revision < 0 else f"revision {revision}"
