"""`EventStore`'s multi-stream appends: KurrentDB's v2 `AppendSession` (25.1) and
`AppendRecords` (26.1) (core/eventstore/v2.py builds and reads the messages) over esdbclient's
channel, their answers as core.errors; which of them the server has, from its ServerFeatures."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
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
from core.protocol.kurrentdb.protocol.v2.streams import streams_pb2

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


def records_problem(
    records: Sequence[tuple[str, v2.EventLike]], expected: Mapping[str, int]
) -> str | None:
    """Why these records cannot be one AppendRecords call (None if they can): two streams whose
    names differ only in case (the server takes them for one), a stream without its exact
    expected revision, or an event the v2 API cannot carry."""
    return _record_streams_problem(records, expected) or next(
        (
            f"{stream!r} event {event.event_id}: {problem}"
            for stream, event in records
            if (problem := v2.event_problem(event))
        ),
        None,
    )


def _record_streams_problem(
    records: Sequence[tuple[str, v2.EventLike]], expected: Mapping[str, int]
) -> str | None:
    names: dict[str, str] = {}
    for stream, _ in records:
        other = names.setdefault(stream.casefold(), stream)
        if other != stream:
            return f"streams {other!r} and {stream!r} differ only in case"
    for stream in names.values():
        if expected.get(stream, NO_STREAM - 1) < NO_STREAM:
            return f"no exact expected revision for {stream!r}"
    return None


@dataclass(frozen=True, slots=True)
class PreparedRecords:
    """An AppendRecords request, built, and what it does (for messages)."""

    request: bytes  # serialized (core/eventstore/v2_wire.py)
    action: str


class MultiAppender:
    """Mixed into EventStore (core/eventstore/client.py)."""

    _client: EventStoreDBClient
    # (esdbclient's connection, the v2 client on its channel, the methods the server lists)
    _v2: tuple[object, v2.Client, frozenset[tuple[str, str]] | None] | None
    timeout: float
    side: str
    retries: int

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

    def _supported_methods(self) -> frozenset[tuple[str, str]]:
        """The (service, method) pairs the server lists in ServerFeatures.GetSupportedMethods;
        asked once per connection."""
        connection, client = self._v2_client()
        assert self._v2 is not None
        if self._v2[2] is not None:
            return self._v2[2]

        def ask() -> frozenset[tuple[str, str]]:
            try:
                return frozenset(client.supported_methods(self.timeout))
            except grpc.RpcError as e:
                raise self._v2_error(v2.parse_error(e), e, "read the server's features") from None

        methods = self._call("read the server's features", ask)
        self._v2 = (connection, client, methods)
        return methods

    def _forget_method(self, method: str) -> None:
        """The server answered UNIMPLEMENTED: it lacks the method whatever it listed."""
        if self._v2 is not None and self._v2[2] is not None:
            self._v2 = (self._v2[0], self._v2[1], self._v2[2] - {(v2.SERVICE_NAME, method)})

    def supports_multi_append(self) -> bool:
        """Whether the server lists KurrentDB's multi-stream append (AppendSession, 25.1)."""
        return (v2.SERVICE_NAME, v2.METHOD_NAME) in self._supported_methods()

    def supports_append_records(self) -> bool:
        """Whether the server lists KurrentDB's AppendRecords (26.1): records of several
        streams, interleaved in any order, in one atomic append that keeps their order."""
        return (v2.SERVICE_NAME, v2.RECORDS_METHOD_NAME) in self._supported_methods()

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
            except ValueError as e:
                problem = multi_append_problem(appends) or str(e)
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
                if found.kind == "unimplemented":
                    self._forget_method(v2.METHOD_NAME)
                size = sum(
                    v2.record_size(r)
                    for m in messages
                    for r in streams_pb2.AppendRequest.FromString(m).records
                )
                raise self._v2_error(found, e, action, size) from None

        return self._call(action, attempt)

    def append_records(
        self, records: Sequence[tuple[str, v2.EventLike]], expected: Mapping[str, int]
    ) -> int | None:
        """Append records of several streams, in this order (the order they take in `$all`;
        a stream may come back after others), in one atomic call (KurrentDB 26.1
        AppendRecords): all or nothing; returns the commit position of the last record (None
        when there is nothing to append).

        `expected` holds each written stream's exact revision (or NO_STREAM), sent as a
        consistency check. Replaying the same event ids at the same revisions succeeds without
        writing them again. Raises MultiAppendConflict naming every stream whose check failed
        (nothing written; a tombstoned stream maps to None), AppendTooLarge, or
        MultiAppendUnsupported (see records_problem; the server lacks the call)."""
        if not records:
            return None
        return self.send_records(self.prepare_records(records, expected))

    def prepare_records(
        self, records: Sequence[tuple[str, v2.EventLike]], expected: Mapping[str, int]
    ) -> PreparedRecords:
        """The AppendRecords request of `append_records`, built (MultiAppendUnsupported, saying
        why, if it cannot be one), to send later with `send_records` or `start_records`."""
        streams = list(dict.fromkeys(stream for stream, _ in records))
        # The events' problems come to light as their records are built (each is parsed once).
        problem = _record_streams_problem(records, expected)
        if not problem:
            try:
                request = v2.records_request(records, [(s, expected[s]) for s in streams])
            except ValueError as e:
                problem = records_problem(records, expected) or str(e)
        if problem:
            raise MultiAppendUnsupported(
                f"{self.side}: cannot append these records in one call: {problem}",
                hint="append them stream by stream",
            )
        named = ", ".join(repr(s) for s in streams[:3])
        more = ", ..." if len(streams) > 3 else ""
        action = f"append {len(records)} records to {len(streams)} streams ({named}{more})"
        return PreparedRecords(request, action)

    def send_records(self, prepared: PreparedRecords) -> int:
        """Send a prepared AppendRecords request and wait for its answer (see append_records),
        transient failures retried (the same ids at the same checks: a retry of a call that
        landed is an idempotent replay)."""

        def attempt() -> int:
            _, client = self._v2_client()
            try:
                return client.append_records(prepared.request, self.timeout).position
            except grpc.RpcError as e:
                raise self._records_error(e, prepared) from None

        return self._call(prepared.action, attempt)

    def start_records(self, prepared: PreparedRecords) -> Callable[[], int]:
        """Send a prepared AppendRecords request now and return at once: the caller may do
        other work (build the next request) while the server writes, then calls the returned
        function for the answer, as `send_records` gives it (a transient failure is sent
        again, waiting). One call in flight is the caller's to keep: this does not order
        calls."""
        try:
            _, client = self._v2_client()
            future = client.append_records_future(prepared.request, self.timeout)
        except (grpc.RpcError, ValueError):  # (a channel closed by a reconnect: ValueError)
            return lambda: self.send_records(prepared)

        def answer() -> int:
            try:
                return future.result().position
            except grpc.RpcError as e:
                error = self._records_error(e, prepared)
            except ValueError:
                error = TransientError(f"{self.side}: {prepared.action}: the channel was reset")
            if isinstance(error, TransientError):
                self.retries += 1
                return self.send_records(prepared)
            raise error

        return answer

    def _records_error(self, error: grpc.RpcError, prepared: PreparedRecords) -> Exception:
        found = v2.parse_error(error)
        if found.kind == "not_leader" and found.leader and self._may_follow_leader():
            self._client.reconnect(f"{found.leader[0]}:{found.leader[1]}")
        if found.kind == "unimplemented":
            self._forget_method(v2.RECORDS_METHOD_NAME)
        records = streams_pb2.AppendRecordsRequest.FromString(prepared.request).records
        size = sum(v2.record_size(r) for r in records)
        return self._v2_error(found, error, prepared.action, size)

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
        if found.kind == "consistency_violation":
            actual = {v.stream: v.actual if v.actual >= 0 else None for v in found.violations}
            shown = "; ".join(
                f"{v.stream!r} is {_state_text(v.actual)}, expected {revision_text(v.expected)}"
                for v in found.violations[:3]
            )
            return MultiAppendConflict(f"{where}: {shown}; nothing was written", actual)
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
                f"{where}: the request ({size if size is not None else '?'} bytes of records) "
                "is over the size of message the server takes",
            )
        if found.kind == "unimplemented":
            return MultiAppendUnsupported(
                f"{where}: the server has no such multi-stream append (AppendSession: "
                "KurrentDB 25.1 or later; AppendRecords: 26.1 or later)",
                hint="append per stream; supports_multi_append() and supports_append_records() "
                "tell beforehand",
            )
        if found.kind == "not_leader":
            return TransientError(f"{where}: not the leader")
        if found.kind in ("duplicate_stream", "invalid"):
            return MultiAppendUnsupported(
                f"{where}: the server refused the request: {found.message}"
            )
        return translate(error, self.side, action)


def _state_text(state: int) -> str:
    if state >= 0:
        return f"at revision {state}"
    return {
        v2.STATE_NO_STREAM: "absent",
        v2.STATE_DELETED: "soft-deleted",
        v2.STATE_TOMBSTONED: "tombstoned",
    }.get(state, f"in state {state}")
