"""The one module that talks to EventStoreDB (through esdbclient).

Everything else in esdb-relay uses this small adapter, so moving to kurrentdbclient (needed
once grpcio must pass 1.71) changes this file only. esdbclient's exceptions are translated
into core.errors here; connection strings never appear in a message.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import grpc
from esdbclient import EventStoreDBClient, NewEvent, StreamState
from esdbclient import exceptions as esdb

from core.errors import PermanentError, RelayError, TransientError

NO_STREAM = -1
DELETED_STREAM = 2**63 - 1  # the revision of a tombstone record


@dataclass(frozen=True, slots=True)
class Event:
    """One record read from `$all` or a stream."""

    stream: str
    revision: int
    event_id: UUID
    type: str
    content_type: str
    data: bytes
    metadata: bytes
    created: datetime | None
    commit_position: int
    prepare_position: int

    @property
    def size(self) -> int:
        # As the server counts it for the maximum append size (Event.SizeOnDisk).
        return len(self.data) + len(self.metadata) + 2 * len(self.type)


@dataclass(frozen=True, slots=True)
class OutEvent:
    """An event to append: ids, types, payloads and content types kept byte for byte."""

    event_id: UUID
    type: str
    content_type: str
    data: bytes
    metadata: bytes

    @property
    def size(self) -> int:
        return len(self.data) + len(self.metadata) + 2 * len(self.type)


@dataclass(frozen=True, slots=True)
class StreamTail:
    """The end of a stream: its last events (oldest first) and its current revision."""

    events: tuple[Event, ...]
    last_revision: int  # NO_STREAM when the stream has no visible events
    tombstoned: bool = False


class WrongExpectedRevision(RelayError):
    """The target stream is not at the revision we expected (resynchronise, then retry)."""


class StreamTombstoned(RelayError):
    """The stream was hard-deleted."""


class AppendTooLarge(PermanentError):
    """The append is over the server's maximum append size."""


def _translate(error: Exception, side: str, action: str) -> Exception:
    if isinstance(error, esdb.WrongCurrentVersion):
        return WrongExpectedRevision(f"{side}: {action}: {error}")
    if isinstance(error, esdb.StreamIsDeleted):
        return StreamTombstoned(f"{side}: {action}: stream is deleted")
    if isinstance(error, esdb.MaximumAppendSizeExceededError):
        return AppendTooLarge(f"{side}: {action}: {error}")
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
    code = _grpc_code(error)
    if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
        return PermanentError(
            f"{side}: {action}: access denied ({code.name})",
            hint="check the username and password in the connection string and the user's ACLs",
        )
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        return TransientError(f"{side}: {action}: {code.name}")
    return PermanentError(f"{side}: {action} failed: {type(error).__name__}: {error}")


def _grpc_code(error: Exception) -> grpc.StatusCode | None:
    for arg in getattr(error, "args", ()):
        if isinstance(arg, grpc.Call):
            return arg.code()
    if isinstance(error, grpc.Call):
        return error.code()
    return None


def _event(recorded: object) -> Event:
    r = recorded
    return Event(
        stream=r.stream_name,  # type: ignore[attr-defined]
        revision=r.stream_position,  # type: ignore[attr-defined]
        event_id=r.id,  # type: ignore[attr-defined]
        type=r.type,  # type: ignore[attr-defined]
        content_type=r.content_type,  # type: ignore[attr-defined]
        data=r.data,  # type: ignore[attr-defined]
        metadata=r.metadata,  # type: ignore[attr-defined]
        created=r.recorded_at,  # type: ignore[attr-defined]
        commit_position=r.commit_position or 0,  # type: ignore[attr-defined]
        prepare_position=r.prepare_position or 0,  # type: ignore[attr-defined]
    )


class EventStore:
    """A connection to one EventStoreDB (the source or the target of a job)."""

    def __init__(self, connection_string: str, *, side: str, timeout: float = 30.0) -> None:
        self.side = side
        self.timeout = timeout
        try:
            self._client = EventStoreDBClient(connection_string)
        except ValueError as e:
            raise PermanentError(
                f"{side}: invalid connection string: {_first_line(e)}",
                hint="use esdb://user:password@host:2113 or esdb+discover://... (see the docs)",
            ) from None
        except esdb.EventStoreDBClientException as e:
            raise _translate(e, side, "connect") from None

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> EventStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ reads
    def read_all_after(self, position: int | None, limit: int) -> Iterator[Event]:
        """Up to `limit` records of `$all` strictly after `position` (None = from the start).

        Nothing is filtered server-side: system records ($metadata, tombstones) are needed.
        """
        try:
            if position is None:
                reader = self._client.read_all(filter_exclude=[], limit=limit, timeout=self.timeout)
                for recorded in reader:
                    yield _event(recorded)
                return
            # read_all is inclusive of the given position; ask for one more and drop it.
            reader = self._client.read_all(
                commit_position=position, filter_exclude=[], limit=limit + 1, timeout=self.timeout
            )
            sent = 0
            for recorded in reader:
                if recorded.commit_position == position:
                    continue
                if sent == limit:
                    break
                sent += 1
                yield _event(recorded)
        except esdb.EventStoreDBClientException as e:
            raise _translate(e, self.side, "read $all") from None

    def head_position(self) -> int:
        """Commit position of the last record in `$all` (0 for an empty database)."""
        try:
            return self._client.get_commit_position(filter_exclude=[], timeout=self.timeout)
        except esdb.EventStoreDBClientException as e:
            raise _translate(e, self.side, "read the head of $all") from None

    def stream_tail(self, stream: str, limit: int) -> StreamTail:
        try:
            recorded = self._client.get_stream(
                stream, backwards=True, limit=max(1, limit), timeout=self.timeout
            )
        except esdb.NotFound:
            return StreamTail((), NO_STREAM)
        except esdb.StreamIsDeleted:
            return StreamTail((), DELETED_STREAM, tombstoned=True)
        except esdb.EventStoreDBClientException as e:
            raise _translate(e, self.side, f"read the tail of {stream!r}") from None
        events = tuple(_event(r) for r in reversed(recorded))
        return StreamTail(events, events[-1].revision if events else NO_STREAM)

    def read_stream(
        self, stream: str, *, from_revision: int = 0, limit: int = sys.maxsize
    ) -> list[Event]:
        try:
            recorded = self._client.get_stream(
                stream, stream_position=from_revision, limit=limit, timeout=self.timeout
            )
        except esdb.NotFound:
            return []
        except esdb.EventStoreDBClientException as e:
            raise _translate(e, self.side, f"read {stream!r}") from None
        return [_event(r) for r in recorded]

    def stream_metadata(self, stream: str) -> dict:
        try:
            metadata, _ = self._client.get_stream_metadata(stream, timeout=self.timeout)
        except json.JSONDecodeError:
            return {}
        except esdb.EventStoreDBClientException as e:
            raise _translate(e, self.side, f"read the metadata of {stream!r}") from None
        return metadata

    # ----------------------------------------------------------------- writes
    def append(self, stream: str, expected: int, events: Sequence[OutEvent]) -> int:
        """Append with an exact expected revision (NO_STREAM for a new stream).

        Returns the commit position of the last event. An append that repeats events already
        at exactly these revisions succeeds without writing them again (the server's
        idempotence by event id), which makes replays after a crash harmless.
        """
        current: int | StreamState = StreamState.NO_STREAM if expected == NO_STREAM else expected
        new_events = [
            NewEvent(
                id=e.event_id,
                type=e.type,
                data=e.data,
                metadata=e.metadata,
                content_type=e.content_type,
            )
            for e in events
        ]
        try:
            return self._client.append_to_stream(
                stream, current_version=current, events=new_events, timeout=self.timeout
            )
        except esdb.EventStoreDBClientException as e:
            raise _translate(e, self.side, f"append to {stream!r}") from None

    def append_any(self, stream: str, events: Sequence[OutEvent]) -> int:
        new_events = [
            NewEvent(
                id=e.event_id,
                type=e.type,
                data=e.data,
                metadata=e.metadata,
                content_type=e.content_type,
            )
            for e in events
        ]
        try:
            return self._client.append_to_stream(
                stream, current_version=StreamState.ANY, events=new_events, timeout=self.timeout
            )
        except esdb.EventStoreDBClientException as e:
            raise _translate(e, self.side, f"append to {stream!r}") from None

    def tombstone(self, stream: str) -> None:
        """Hard-delete a stream; a stream already tombstoned counts as done."""
        try:
            self._client.tombstone_stream(
                stream, current_version=StreamState.ANY, timeout=self.timeout
            )
        except esdb.StreamIsDeleted:
            return
        except esdb.EventStoreDBClientException as e:
            raise _translate(e, self.side, f"tombstone {stream!r}") from None


def _first_line(error: Exception) -> str:
    """esdbclient's message without the connection string it appends (it holds the password)."""
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    if "://" in text:
        text = text[: text.rfind(": ")] if ": " in text else "malformed connection string"
    return text
