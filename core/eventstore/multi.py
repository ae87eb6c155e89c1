"""`EventStore`'s multi-stream appends: KurrentDB's v2 `AppendSession` (core/eventstore/v2.py
builds and reads the messages) over esdbclient's channel, its answers as core.errors."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TypeVar

import grpc

import core.eventstore.internals as internals
import core.eventstore.v2 as v2
from core.errors import (
    AppendTooLarge,
    MultiAppendConflict,
    MultiAppendUnsupported,
    StreamTombstoned,
    TransientError,
)
from core.eventstore.failures import revision_text, translate
from core.model import NO_STREAM, StreamAppend

if TYPE_CHECKING:
    from esdbclient import EventStoreDBClient

T = TypeVar("T")


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


class MultiAppender:
    """Mixed into EventStore (core/eventstore/client.py)."""

    _client: EventStoreDBClient
    _v2: tuple[object, v2.Client, bool | None] | None
    timeout: float
    side: str

    if TYPE_CHECKING:  # EventStore's

        def _call(self, action: str, fn: Callable[[], T]) -> T: ...

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
                f"{where}: {found.stream!r} is at {revision_text(actual)}, expected "
                f"{revision_text(found.expected)}; nothing was written",
                {found.stream: actual},
            )
        if found.kind == "tombstoned":
            return StreamTombstoned(
                f"{where}: stream {found.stream!r} is deleted", stream=found.stream
            )
        if found.kind in ("record_too_large", "transaction_too_large"):
            return AppendTooLarge(
                f"{where}: {size if size is not None else '?'} bytes are over the server's "
                f"maximum append size of {found.limit} bytes",
                found.limit,
            )
        if found.kind == "message_too_large":
            # Nothing was written; smaller appends (the writer halves the batch) may pass.
            return AppendTooLarge(
                f"{where}: the request ({size if size is not None else '?'} bytes) is over the "
                "server's maximum message size",
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
        return translate(error, self.side, action)
