"""`EventStore`: one server (the source or the target of a job) through esdbclient.

esdbclient's exceptions are translated into core.errors here; connection strings never
appear in a message.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

import grpc
from esdbclient import EventStoreDBClient, NewEvent, StreamState
from esdbclient import exceptions as esdb
from tenacity import RetryCallState, Retrying, retry_if_exception_type, wait_exponential

from core.errors import (
    AccessDenied,
    AppendTooLarge,
    MultiAppendConflict,
    MultiAppendUnsupported,
    PermanentError,
    StreamTombstoned,
    TransientError,
    WrongExpectedRevision,
)
from core.eventstore import internals, v2
from core.eventstore.admin import Admin
from core.eventstore.connection import esdbclient_uri, first_line
from core.model import DELETED_STREAM, NO_STREAM, Event, OutEvent, StreamAppend, StreamTail

T = TypeVar("T")
_PROBE_REVISION = 2**62  # a revision no stream reaches: appends expecting it always fail
_DEFAULT_ATTEMPTS = 4


def multi_append_problem(appends: Sequence[StreamAppend]) -> str | None:
    """Why these appends cannot be one multi-stream append (None if they can): a stream named
    twice (case-insensitively, as the server compares), or an event the v2 API cannot carry
    (metadata that is not a JSON object, an event type outside the schema-name characters)."""
    return _streams_problem(appends) or next(
        (
            f"{append.stream!r} event {event.event_id}: {problem}"
            for append in appends
            for event in append.events
            if (problem := v2.event_problem(event))
        ),
        None,
    )


def _streams_problem(appends: Sequence[StreamAppend]) -> str | None:
    seen: set[str] = set()
    for append in appends:
        if not append.events:
            continue
        key = append.stream.casefold()
        if key in seen:
            return f"stream {append.stream!r} appears twice (names compare case-insensitively)"
        seen.add(key)
        if append.expected_revision < NO_STREAM:
            return f"expected revision {append.expected_revision} of {append.stream!r}"
    return None


def _translate(error: Exception, side: str, action: str) -> Exception:
    if isinstance(error, esdb.WrongCurrentVersion):
        return WrongExpectedRevision(f"{side}: {action}: {error}", _actual_revision(str(error)))
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
    return PermanentError(f"{side}: {action} failed: {type(error).__name__}: {error}")


def _actual_revision(message: str) -> int | None:
    # esdbclient words the server's WrongExpectedVersion.current_revision into its message:
    # "Stream position of last event is N not X" or "Stream 'x' does not exist".
    if "does not exist" in message:
        return NO_STREAM
    found = re.search(r"last event is (\d+)", message)
    return int(found.group(1)) if found else None


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


class EventStore(Admin):
    """A connection to one EventStoreDB (the source or the target of a job).

    Transient failures (unavailable, deadline exceeded, not leader) are retried with
    exponential backoff until `retry_deadline` (a `time.monotonic()` value; None = a few
    attempts). A retried append is harmless: the server treats the repeat of an append that did
    land as idempotent, because it carries the same event ids at the same expected revision.
    """

    def __init__(
        self,
        connection_string: str,
        *,
        side: str,
        timeout: float = 30.0,
        retry_deadline: float | None = None,
    ) -> None:
        self.side = side
        self.timeout = timeout
        self.retry_deadline = retry_deadline
        self.retries = 0
        self._v2: tuple[object, v2.Client, bool | None] | None = None
        try:
            self._client = EventStoreDBClient(esdbclient_uri(connection_string))
        except ValueError as e:
            raise PermanentError(
                f"{side}: invalid connection string: {first_line(e)}",
                hint="use esdb://user:password@host:2113 or esdb+discover://... (see the docs)",
            ) from None
        except esdb.EventStoreDBClientException as e:
            raise _translate(e, side, "connect") from None
        except OSError as e:  # esdbclient reads tlsCaFile here
            raise PermanentError(
                f"{side}: cannot read the tlsCaFile {e.filename}: {e.strerror}",
                hint="set tlsCaFile in the connection string to the PEM file of the CA that "
                "signed the server certificate (a path readable where the relay runs)",
            ) from None

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> EventStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _retrying(self) -> Retrying:
        def stop(state: RetryCallState) -> bool:
            if self.retry_deadline is None:
                return state.attempt_number >= _DEFAULT_ATTEMPTS
            upcoming = state.next_action.sleep if state.next_action else 0.0
            return time.monotonic() + upcoming >= self.retry_deadline

        def count(_: RetryCallState) -> None:
            self.retries += 1

        return Retrying(
            retry=retry_if_exception_type(TransientError),
            wait=wait_exponential(multiplier=0.05, max=2.0),
            stop=stop,
            before_sleep=count,
            reraise=True,
        )

    def _call(self, action: str, fn: Callable[[], T]) -> T:
        def attempt() -> T:
            try:
                return fn()
            except esdb.EventStoreDBClientException as e:
                raise _translate(e, self.side, action) from None
            except ValueError as e:  # another thread's reconnect closed the channel under us
                if "hannel closed" not in str(e) and "closed channel" not in str(e):
                    raise
                raise TransientError(f"{self.side}: {action}: the channel was reset") from None

        return self._retrying()(attempt)

    # ------------------------------------------------------------------ reads
    def _read_all(self, **kwargs: object) -> Iterator[object]:
        return self._whole(self._client.read_all(**kwargs))  # type: ignore[arg-type]

    def _get_stream(self, stream: str, **kwargs: object) -> tuple[object, ...]:
        return tuple(self._whole(self._client.read_stream(stream, **kwargs)))  # type: ignore[arg-type]

    def _whole(self, response: object) -> Iterator[object]:
        """The records of an esdbclient read, every one of them, or TransientError.

        esdbclient ends a read silently, as if the server had sent its last record, when its
        reconnect (after another thread's UNAVAILABLE or not-leader on this shared connection)
        cancels the reads in flight on the old channel: a stream would read as absent or
        shorter than it is, and a writer would then take an existing stream for a new one.
        Such a cut read raises TransientError (retried) instead.
        """
        with response:  # type: ignore[attr-defined]
            yield from response  # type: ignore[misc]
            if internals.read_cancelled(response):
                raise TransientError(f"{self.side}: a read was cut short by a reconnect")

    def read_all_after(self, position: int | None, limit: int) -> Iterator[Event]:
        """Up to `limit` records of `$all` strictly after `position` (None = from the start).

        Nothing is filtered server-side: system records ($metadata, tombstones) are needed. A
        read broken off by a transient error resumes after the last record it yielded.
        """
        sent = 0
        last = position
        for attempt in self._retrying():
            with attempt:
                try:
                    for event in self._read_all_once(last, limit - sent):
                        sent += 1
                        last = event.commit_position
                        yield event
                    return
                except esdb.EventStoreDBClientException as e:
                    raise _translate(e, self.side, "read $all") from None

    def _read_all_once(self, position: int | None, limit: int) -> Iterator[Event]:
        if limit <= 0:
            return
        if position is None:
            for recorded in self._read_all(filter_exclude=[], limit=limit, timeout=self.timeout):
                yield _event(recorded)
            return
        # read_all is inclusive of the given position; ask for one more and drop it.
        sent = 0
        for recorded in self._read_all(
            commit_position=position, filter_exclude=[], limit=limit + 1, timeout=self.timeout
        ):
            if recorded.commit_position == position:
                continue
            if sent == limit:
                return
            sent += 1
            yield _event(recorded)

    def head_position(self) -> int:
        """Commit position of the last record in `$all` (0 for an empty database)."""
        return self._call(
            "read the head of $all",
            lambda: self._client.get_commit_position(filter_exclude=[], timeout=self.timeout),
        )

    def last_events(self, count: int) -> list[Event]:
        """The newest `count` records of `$all`, newest first."""
        return self._call(
            "read the end of $all",
            lambda: [
                _event(r)
                for r in self._read_all(
                    backwards=True, filter_exclude=[], limit=count, timeout=self.timeout
                )
            ],
        )

    def stream_records_backwards(self, stream: str, before: int | None, limit: int) -> list[Event]:
        """The stream's `limit` records in `$all` strictly before `before` (None = from the
        end), newest first, even if stream reads hide them (`$tb`, `$maxCount`): `$all` keeps
        records until a scavenge."""
        start = {} if before is None else {"commit_position": before}

        def read() -> list[Event]:
            records = self._read_all(
                **start,
                backwards=True,
                filter_include=[re.escape(stream)],
                filter_by_stream_name=True,
                limit=limit,
                timeout=self.timeout,
            )
            return [_event(r) for r in records]

        return self._call(f"read $all for {stream!r}", read)

    def stream_records_after(self, stream: str, position: int | None, limit: int) -> list[Event]:
        """The stream's next `limit` records in `$all` after `position` (None = from the
        start), hidden from stream reads or not."""

        def read() -> list[Event]:
            records = self._read_all(
                commit_position=position,
                filter_include=[re.escape(stream)],
                filter_by_stream_name=True,
                limit=limit + 1,
                timeout=self.timeout,
            )
            found = [_event(r) for r in records if r.commit_position != position]
            return found[:limit]

        return self._call(f"read $all for {stream!r}", read)

    def read_all_backwards(self, before: int | None, limit: int) -> list[Event]:
        """Up to `limit` records of `$all` strictly before `before` (None = from the end),
        newest first, unfiltered."""

        def read() -> list[Event]:
            if before is None:
                records = self._read_all(
                    backwards=True, filter_exclude=[], limit=limit, timeout=self.timeout
                )
            else:
                records = self._read_all(
                    commit_position=before,
                    backwards=True,
                    filter_exclude=[],
                    limit=limit,
                    timeout=self.timeout,
                )
            return [_event(r) for r in records]

        return self._call("read $all backwards", read)

    def record_at(self, position: int) -> Event | None:
        """The `$all` record at exactly this commit position, if there is one."""

        def read() -> Event | None:
            for r in self._read_all(
                commit_position=position, filter_exclude=[], limit=1, timeout=self.timeout
            ):
                return _event(r) if r.commit_position == position else None
            return None

        return self._call(f"read $all at {position}", read)

    def read_stream_backwards(
        self, stream: str, from_revision: int | None, limit: int
    ) -> list[Event]:
        """A stream's visible events at or before `from_revision` (None = its end), newest
        first; [] if it does not exist."""

        def read() -> list[Event]:
            try:
                recorded = self._get_stream(
                    stream,
                    stream_position=from_revision,
                    backwards=True,
                    limit=limit,
                    timeout=self.timeout,
                )
            except esdb.NotFound:
                return []
            return [_event(r) for r in recorded]

        return self._call(f"read {stream!r} backwards", read)

    # ------------------------------------------------------- persistent subscriptions
    def stream_tail(self, stream: str, limit: int) -> StreamTail:
        def read() -> StreamTail:
            try:
                recorded = self._get_stream(
                    stream, backwards=True, limit=max(1, limit), timeout=self.timeout
                )
            except esdb.NotFound:
                return StreamTail((), NO_STREAM)
            except esdb.StreamIsDeleted:
                return StreamTail((), DELETED_STREAM, tombstoned=True)
            events = tuple(_event(r) for r in reversed(recorded))
            return StreamTail(events, events[-1].revision if events else NO_STREAM)

        return self._call(f"read the tail of {stream!r}", read)

    def read_stream(
        self, stream: str, *, from_revision: int = 0, limit: int = sys.maxsize
    ) -> list[Event]:
        """A stream's visible events; [] if it does not exist; StreamTombstoned if hard-deleted."""

        def read() -> list[Event]:
            try:
                recorded = self._get_stream(
                    stream, stream_position=from_revision, limit=limit, timeout=self.timeout
                )
            except esdb.NotFound:
                return []
            return [_event(r) for r in recorded]

        return self._call(f"read {stream!r}", read)

    def stream_metadata(self, stream: str) -> dict:
        def read() -> dict:
            try:
                recorded = self._get_stream(
                    "$$" + stream, backwards=True, limit=1, timeout=self.timeout
                )
                metadata = json.loads(recorded[0].data) if recorded else {}  # type: ignore[attr-defined]
            except esdb.NotFound:
                return {}
            except json.JSONDecodeError:
                return {}
            return metadata

        return self._call(f"read the metadata of {stream!r}", read)

    # ----------------------------------------------------------------- writes
    def append(self, stream: str, expected: int, events: Sequence[OutEvent]) -> int:
        """Append with an exact expected revision (NO_STREAM for a new stream).

        Returns the commit position of the last event. An append that repeats events already
        at exactly these revisions succeeds without writing them again (the server's
        idempotence by event id), which makes replays after a crash harmless.
        """
        current: int | StreamState = StreamState.NO_STREAM if expected == NO_STREAM else expected
        return self._append(stream, current, events)

    def append_any(self, stream: str, events: Sequence[OutEvent]) -> int:
        return self._append(stream, StreamState.ANY, events)

    def _append(self, stream: str, current: int | StreamState, events: Sequence[OutEvent]) -> int:
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
        return self._call(
            f"append to {stream!r}",
            lambda: self._client.append_to_stream(
                stream, current_version=current, events=new_events, timeout=self.timeout
            ),
        )

    # ------------------------------------------------------- multi-stream append (v2)
    def _v2_client(self) -> tuple[object, v2.Client]:
        """A v2 client on esdbclient's current channel (it changes when esdbclient
        reconnects), made once per connection."""
        connection = internals.connection(self._client)
        cached = self._v2
        if cached is None or cached[0] is not connection:
            client = v2.Client(
                internals.channel(self._client),
                internals.call_credentials(self._client),
                internals.call_metadata(self._client),
            )
            cached = self._v2 = (connection, client, None)
        return cached[0], cached[1]

    def supports_multi_append(self) -> bool:
        """Whether the server lists KurrentDB's multi-stream append (AppendSession) among its
        features (ServerFeatures.GetSupportedMethods); asked once per connection."""
        connection, client = self._v2_client()
        assert self._v2 is not None
        if self._v2[2] is not None:
            return self._v2[2]

        def ask() -> bool:
            try:
                methods = client.supported_methods(self.timeout)
            except grpc.RpcError as e:
                raise self._v2_error(v2.parse_error(e), e, "read the server's features") from None
            return (v2.SERVICE_NAME, v2.METHOD_NAME) in methods

        supported = self._call("read the server's features", ask)
        self._v2 = (connection, client, supported)
        return supported

    def multi_append(self, appends: list[StreamAppend]) -> int | None:
        """Append to several streams atomically in one call: all or nothing; returns the
        commit position of the last record (None when there was nothing to append).

        Each stream's expected revision is exact (or NO_STREAM). Replaying the same event ids
        at the same revisions succeeds without writing them again, so a retry of an append
        that landed is harmless. Raises MultiAppendConflict (nothing written),
        StreamTombstoned, AppendTooLarge (`limit`), or MultiAppendUnsupported (see
        multi_append_problem; the server lacks the call)."""
        appends = [a for a in appends if a.events]
        if not appends:
            return None
        # The events' problems come to light as their records are built (each is parsed once).
        problem = _streams_problem(appends)
        messages = []
        if not problem:
            try:
                messages = v2.requests((a.stream, a.expected_revision, a.events) for a in appends)
            except ValueError:
                problem = multi_append_problem(appends)
        if problem:
            raise MultiAppendUnsupported(
                f"{self.side}: cannot multi-append: {problem}",
                hint="append these streams one by one",
            )
        named = ", ".join(repr(a.stream) for a in appends[:3])
        more = ", ..." if len(appends) > 3 else ""
        action = f"multi-append to {len(appends)} streams ({named}{more})"

        def attempt() -> int:
            _, client = self._v2_client()
            try:
                return client.append_session(messages, self.timeout).position
            except grpc.RpcError as e:
                found = v2.parse_error(e)
                if found.kind == "not_leader" and found.leader and self._may_follow_leader():
                    self._client.reconnect(f"{found.leader[0]}:{found.leader[1]}")
                if found.kind == "unimplemented" and self._v2 is not None:
                    self._v2 = (self._v2[0], self._v2[1], False)
                size = sum(v2.record_size(r) for m in messages for r in m.records)
                raise self._v2_error(found, e, action, size) from None

        return self._call(action, attempt)

    def _may_follow_leader(self) -> bool:
        # As esdbclient's autoreconnect: not for a single esdb:// target.
        spec = self._client.connection_spec
        return spec.options.NodePreference == "leader" and not (
            spec.scheme == "esdb" and len(spec.targets) == 1
        )

    def _v2_error(
        self, found: v2.V2Error, error: grpc.RpcError, action: str, size: int | None = None
    ) -> Exception:
        where = f"{self.side}: {action}"
        if found.kind == "revision_conflict":
            assert found.stream is not None
            actual = None if found.actual is None or found.actual < 0 else found.actual
            return MultiAppendConflict(
                f"{where}: {found.stream!r} is at {_revision(actual)}, expected "
                f"{_revision(found.expected)}; nothing was written",
                {found.stream: actual},
            )
        if found.kind == "tombstoned":
            tombstoned = StreamTombstoned(f"{where}: stream {found.stream!r} is deleted")
            tombstoned.stream = found.stream  # type: ignore[attr-defined]
            return tombstoned
        if found.kind in ("record_too_large", "transaction_too_large"):
            return AppendTooLarge(
                f"{where}: {size if size is not None else '?'} bytes are over the server's "
                f"maximum append size of {found.limit} bytes",
                found.limit,
            )
        if found.kind == "unimplemented":
            return MultiAppendUnsupported(
                f"{where}: the server has no multi-stream append (KurrentDB 25.1 or later)",
                hint="append per stream; supports_multi_append() tells beforehand",
            )
        if found.kind == "not_leader":
            return TransientError(f"{where}: not the leader")
        if found.kind in ("duplicate_stream", "invalid"):
            return MultiAppendUnsupported(
                f"{where}: the server refused the request: {found.message}"
            )
        return _translate(error, self.side, action)

    def current_revision(self, stream: str) -> int:
        """The stream's last revision even when `$tb`/`$maxCount` hide every event from reads
        (NO_STREAM if it has none). Asks with an empty append expecting an impossible
        revision: the server answers with the current one and writes nothing."""
        try:
            self._append(stream, _PROBE_REVISION, [])
        except WrongExpectedRevision as e:
            if e.actual is not None:
                return e.actual
            raise
        return _PROBE_REVISION

    def delete(self, stream: str) -> None:
        """Soft-delete a stream (as the server's Delete does: `$tb` = long.MaxValue); a stream
        that does not exist counts as deleted."""

        def delete() -> None:
            try:
                self._client.delete_stream(
                    stream, current_version=StreamState.ANY, timeout=self.timeout
                )
            except esdb.NotFound:
                return

        self._call(f"delete {stream!r}", delete)

    def tombstone(self, stream: str) -> None:
        """Hard-delete a stream; a stream already tombstoned counts as done."""

        def tombstone() -> None:
            try:
                self._client.tombstone_stream(
                    stream, current_version=StreamState.ANY, timeout=self.timeout
                )
            except esdb.StreamIsDeleted:
                return

        self._call(f"tombstone {stream!r}", tombstone)


def _revision(revision: int | None) -> str:
    return "no stream" if revision is None or revision < 0 else f"revision {revision}"
