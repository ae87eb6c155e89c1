"""The one exception hierarchy of esdb-relay.

Every error a user can cause carries a ``hint`` saying how to fix it; ``str(error)`` shows both.
Messages must never contain secrets: callers pass redacted connection strings only.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any


def _rebuild(cls: type[RelayError], state: dict[str, Any]) -> RelayError:
    error = cls.__new__(cls)
    Exception.__init__(error, state.get("message", ""))
    error.__dict__.update(state)
    return error


class RelayError(Exception):
    """Base of every error raised by esdb-relay."""

    default_hint: str = ""
    # What the relay knew when a slice failed (the job's liveness: stalled, failing_slices,
    # last_error), for the handlers' failure answers; set once the failure was logged.
    details: dict[str, Any] | None = None

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = self.default_hint if hint is None else hint

    def __str__(self) -> str:
        if not self.hint:
            return self.message
        if "\n" in self.message:
            return f"{self.message}\nhint: {self.hint}"
        return f"{self.message} — {self.hint}"

    # Keyword-only constructors do not survive the default Exception pickling, and errors cross
    # process boundaries (multiprocessing, partition writers), so pickle the attributes instead.
    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), dict(self.__dict__)))


class ConfigError(RelayError):
    """The user's configuration is invalid; ``field`` names it when there is one."""

    default_hint = "fix the job configuration (env ESDB_RELAY_*, config file or payload)"

    def __init__(
        self,
        message: str,
        *,
        hint: str | None = None,
        field: str | None = None,
        problems: list[str] | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.field = field
        self.problems = list(problems or [])


class TransientError(RelayError):
    """Retryable: server unavailable, deadline exceeded, not leader, store briefly unavailable."""

    default_hint = (
        "this is usually temporary and is retried with backoff; if it persists, check that the "
        "server is up and its host and port are reachable from here (network path, peering, "
        "firewall or security group)"
    )


class PermanentError(RelayError):
    """Not retryable: retrying the same input fails the same way."""


class ConflictError(PermanentError):
    """The target stream diverges from the source: it holds events the source does not."""

    def __init__(
        self,
        stream: str,
        expected: int | None,
        actual: int | None,
        *,
        message: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.stream = stream
        self.expected = expected
        self.actual = actual
        super().__init__(
            message
            or (
                f"target stream {stream!r} diverges from the source: expected revision "
                f"{_rev(expected)}, found {_rev(actual)}"
            ),
            hint=hint
            or (
                "the target was written by something other than this job; compare it with "
                "`esdb-relay verify`, then delete the target stream or exclude it with a filter"
            ),
        )


class OversizeEventError(PermanentError):
    """One event is larger than the target's maximum append size."""

    def __init__(
        self,
        stream: str,
        revision: int,
        size: int,
        limit: int,
        *,
        position: int | None = None,
        hint: str | None = None,
    ) -> None:
        self.stream = stream
        self.revision = revision
        self.size = size
        self.limit = limit
        self.position = position
        where = "" if position is None else f" (at source position {position})"
        super().__init__(
            f"event {revision} of stream {stream!r}{where} is {size} bytes, over the target's "
            f"maximum append size of {limit} bytes",
            hint=hint
            or (
                "raise the target's MaxAppendSize, shrink the event with a transform, or set "
                "dead_letter = true to record it and carry on"
            ),
        )


class TransformError(PermanentError):
    """The user's transform hook failed or returned something that is not events."""

    default_hint = "fix the transform function (see `transform` in the job configuration)"


class LeaseLostError(RelayError):
    """Fenced out: another owner holds the job's lease, or the lease/version moved under us."""

    default_hint = (
        "another invocation owns this job; this one stops without writing — nothing to fix "
        "unless it persists after the other invocation's lease expires"
    )

    def __init__(
        self,
        job_id: str,
        reason: str,
        *,
        holder: str | None = None,
        expires_at: datetime | None = None,
        hint: str | None = None,
    ) -> None:
        self.job_id = job_id
        self.reason = reason
        self.holder = holder
        self.expires_at = expires_at
        super().__init__(f"lease for job {job_id!r} lost: {reason}", hint=hint)


class StoreUnavailableError(TransientError):
    """The checkpoint store cannot be reached, written or locked in time."""

    default_hint = "check that the checkpoint store is reachable and writable, then retry"


class CorruptCheckpointError(PermanentError):
    """A checkpoint record exists but cannot be read, or belongs to something else."""

    def __init__(
        self,
        job_id: str,
        table: str,
        detail: str,
        *,
        hint: str | None = None,
    ) -> None:
        self.job_id = job_id
        self.table = table
        self.detail = detail
        super().__init__(
            f"checkpoint record of job {job_id!r} in {table!r} is unreadable: {detail}",
            hint=hint
            or (
                "the record was damaged or written by another program; inspect and repair it, or "
                "delete it and run the job again into an empty target"
            ),
        )


def _rev(revision: int | None) -> str:
    return "no stream" if revision is None else str(revision)


# --- the databases ---------------------------------------------------------------------------


class WrongExpectedRevision(RelayError):
    """The stream is not at the revision we expected; `actual` is where it is (-1 = none)."""

    def __init__(self, message: str, actual: int | None = None) -> None:
        super().__init__(message)
        self.actual = actual


class StreamTombstoned(RelayError):
    """The stream was hard-deleted (`stream`, when the server names it)."""

    def __init__(self, message: str, *, stream: str | None = None) -> None:
        super().__init__(message)
        self.stream = stream


class AccessDenied(PermanentError):
    """The server refused the call: `code` is UNAUTHENTICATED (wrong user or password) or
    PERMISSION_DENIED (no credentials sent, or the user lacks the ACL)."""

    def __init__(self, message: str, code: str, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.code = code


class AppendTooLarge(PermanentError):
    """The append is over the server's maximum append size (`limit`, when it says)."""

    def __init__(self, message: str, limit: int | None = None) -> None:
        super().__init__(message)
        self.limit = limit


class MultiAppendConflict(PermanentError):
    """A multi-stream append found a stream away from its expected revision; nothing was
    written. `streams` maps stream -> actual revision (None = no stream). KurrentDB's
    AppendSession reports the first failing stream only, so this holds one entry; that stream
    may also be one whose events are all already there (the server calls a mix of written and
    not-yet-written streams a conflict, not an idempotent replay)."""

    def __init__(self, message: str, streams: dict[str, int | None]) -> None:
        super().__init__(message)
        self.streams = streams


class MultiAppendUnsupported(PermanentError):
    """This batch cannot go as one multi-stream append (the server lacks it, or an event or
    stream name is outside what the v2 API takes); append per stream instead."""


class NotReplicatedError(PermanentError):
    """The position lies beyond what the relay has copied so far."""


class TranslateError(PermanentError):
    """The position cannot be translated (not in the source, or not found in the target)."""


__all__ = [
    "AccessDenied",
    "AppendTooLarge",
    "ConfigError",
    "ConflictError",
    "CorruptCheckpointError",
    "LeaseLostError",
    "MultiAppendConflict",
    "MultiAppendUnsupported",
    "NotReplicatedError",
    "OversizeEventError",
    "PermanentError",
    "RelayError",
    "StoreUnavailableError",
    "StreamTombstoned",
    "TransformError",
    "TransientError",
    "TranslateError",
    "WrongExpectedRevision",
]
