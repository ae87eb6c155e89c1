"""KurrentDB 26.1's v2 `AppendRecords`: records of several streams, in any interleaving, in one
atomic write, with consistency checks on any stream (written or not).

KurrentDB v26.1.0 src/KurrentDB.Api.V2/Modules/Streams/StreamsService.cs (AppendRecordsCommand),
Validators/AppendRecordsRequestValidator.cs and ConsistencyCheckValidator.cs,
Modules/Streams/ApiErrors.cs (AppendConsistencyViolation), Model/StreamCondition.cs:
- the request is validated first (at least one record; each check a stream state check on a
  named stream expecting a revision, NoStream, Exists, Deleted or Tombstoned, never Any; each
  stream in one check at most, case-insensitively): INVALID_ARGUMENT BAD_REQUEST;
- the checked streams come first, in order, then each stream a record names for the first
  time (case-insensitively, expecting Any); each record is validated (as an AppendRequest's),
  sized and mapped in order; a record without a stream reaches the writer as stream "" and the
  write message refuses it (ArgumentOutOfRangeException: UNKNOWN "Exception was thrown by
  handler.");
- the write is esdb_emulator.transaction's; Tombstoned is sent as long.MaxValue;
- on success: one revision per stream written, in the order the records first name them,
  with the name as first registered; the position of the last record;
- on a failed check: FAILED_PRECONDITION APPEND_CONSISTENCY_VIOLATION listing every failing
  stream (its index among the streams, expected state, actual state: the revision, -1 not
  found, -5 soft deleted when expected to exist, -6 tombstoned).
"""

from __future__ import annotations

import grpc

from core.protocol.kurrentdb.protocol.v2.streams import errors_pb2, shared_pb2, streams_pb2
from esdb_emulator.store import DELETED_STREAM, NO_STREAM, STREAM_EXISTS, ProposedEvent, Store
from esdb_emulator.transaction import ChecksFailed, Failure, write_or_replay
from esdb_emulator.v2_errors import (
    Failures,
    HandlerException,
    SessionError,
    bad_request,
    record_too_big,
    transaction_too_big,
)
from esdb_emulator.v2_records import (
    MAX_RECORD_SIZE,
    Rules,
    prepare,
    record_failures,
    stream_name_failures,
)

# ExpectedStreamCondition / ActualStreamCondition
ANY_STATE, DELETED, TOMBSTONED = -2, -5, -6
_VALID_STATES = (NO_STREAM, STREAM_EXISTS, DELETED, TOMBSTONED)


def request_failures(request: streams_pb2.AppendRecordsRequest) -> Failures:
    """AppendRecordsRequestValidator (with ConsistencyCheckValidator for each check)."""
    failures: Failures = []
    if not request.records:
        failures.append(("Records", "Append records request must contain at least one record."))
    seen: set[str] = set()
    unique = True
    for i, check in enumerate(request.checks):
        if check.WhichOneof("type") != "stream_state":
            failures.append(
                (f"Checks[{i}].TypeCase", "Each consistency check must specify a type.")
            )
            continue
        state = check.stream_state
        failures += stream_name_failures(state.stream, f"Checks[{i}].StreamState.Stream")
        if state.expected_state < 0 and state.expected_state not in _VALID_STATES:
            failures.append(
                (
                    f"Checks[{i}].StreamState.ExpectedState",
                    "Expected state must be positive or one of the allowed constants: NoStream "
                    "(-1), Exists (-4), Deleted (-5), or Tombstoned (-6). Any (-2) is not allowed.",
                )
            )
        key = state.stream.casefold()
        unique = unique and key not in seen
        seen.add(key)
    if not unique:
        failures.append(("Checks", "Each stream can only appear once in consistency checks."))
    return failures


class AppendRecordsCommand:
    def __init__(
        self, request: streams_pb2.AppendRecordsRequest, max_append_size: int, rules: Rules
    ) -> None:
        failures = request_failures(request)
        if failures:
            raise bad_request("AppendRecordsRequest", failures)
        self.streams: list[str] = []  # ExpectedStreamStates
        self.states: list[int] = []
        self._index: dict[str, int] = {}  # StreamIndex, OrdinalIgnoreCase
        self.events: list[ProposedEvent] = []
        self.indexes: list[int] = []
        for check in request.checks:
            self._index.setdefault(check.stream_state.stream.casefold(), len(self.streams))
            self.streams.append(check.stream_state.stream)
            self.states.append(check.stream_state.expected_state)
        total = 0
        for record in request.records:
            errors = record_failures(record, rules)
            if errors:
                raise bad_request("AppendRequest", errors)  # sic: InvalidRequest<AppendRequest>
            prepared = prepare(record)
            index = self._stream_index(record.stream)
            if prepared.size > MAX_RECORD_SIZE:
                raise record_too_big(
                    record.stream, prepared.event.event_id, prepared.size, MAX_RECORD_SIZE
                )
            total += prepared.size
            if total > max_append_size:
                raise transaction_too_big(len(self.events) + 1, total, max_append_size)
            self.events.append(prepared.event)
            self.indexes.append(index)

    def _stream_index(self, stream: str) -> int:
        index = self._index.get(stream.casefold())
        if index is None:
            index = self._index[stream.casefold()] = len(self.streams)
            self.streams.append(stream)
            self.states.append(ANY_STATE)
        return index

    def execute(self, store: Store) -> streams_pb2.AppendRecordsResponse:
        if any(not s or s == "$$" for s in self.streams):  # SystemStreams.IsInvalidStream
            raise HandlerException("Invalid stream ID")
        expected = [DELETED_STREAM if s == TOMBSTONED else s for s in self.states]
        try:
            written = write_or_replay(store, self.streams, expected, self.events, self.indexes)
        except ChecksFailed as failed:
            raise self._violations(failed.failures) from None
        return streams_pb2.AppendRecordsResponse(
            revisions=[
                shared_pb2.StreamRevision(
                    stream=self.streams[i], revision=written.last_event_numbers[i]
                )
                for i in dict.fromkeys(self.indexes)
            ],
            position=written.position,
        )

    def _violations(self, failures: list[Failure]) -> SessionError:
        violations = []
        for f in failures:
            if f.actual == DELETED_STREAM:
                actual = TOMBSTONED
            elif f.soft_deleted is True:
                actual = DELETED
            else:
                actual = f.actual
            violations.append(
                errors_pb2.ConsistencyViolation(
                    check_index=f.stream_index,
                    stream_state=errors_pb2.ConsistencyViolation.StreamStateViolation(
                        stream=self.streams[f.stream_index],
                        expected_state=self.states[f.stream_index],
                        actual_state=actual,
                    ),
                )
            )
        lines = "".join(f"\n - {_describe(v.stream_state)}" for v in violations)
        return SessionError(
            grpc.StatusCode.FAILED_PRECONDITION,
            "APPEND_CONSISTENCY_VIOLATION",
            "Append failed due to consistency violations.\n" + lines,
            errors_pb2.AppendConsistencyViolationErrorDetails(violations=violations),
        )


def _describe(v: errors_pb2.ConsistencyViolation.StreamStateViolation) -> str:
    """ApiErrors.AppendConsistencyViolation FormatViolation."""
    s, expected, actual = v.stream, v.expected_state, v.actual_state
    if expected >= 0:
        if actual >= 0:
            return f"Stream '{s}' is at revision {actual}, expected revision {expected}."
        known = {NO_STREAM: "does not exist", DELETED: "is deleted", TOMBSTONED: "is tombstoned"}
        if actual in known:
            return f"Stream '{s}' {known[actual]}, expected revision {expected}."
    elif expected == NO_STREAM and actual >= 0:
        return f"Stream '{s}' already exists at revision {actual}."
    elif expected in (NO_STREAM, ANY_STATE) and actual == TOMBSTONED:
        return f"Stream '{s}' is tombstoned."
    elif expected == STREAM_EXISTS and actual in (NO_STREAM, DELETED, TOMBSTONED):
        what = {NO_STREAM: "does not exist", DELETED: "is deleted", TOMBSTONED: "is tombstoned"}
        return f"Stream '{s}' {what[actual]}."
    elif expected == DELETED and actual >= 0:
        return f"Stream '{s}' is at revision {actual}, explicitly expected deleted."
    elif expected == DELETED and actual in (NO_STREAM, TOMBSTONED):
        what = "does not exist" if actual == NO_STREAM else "is tombstoned"
        return f"Stream '{s}' {what}, explicitly expected deleted."
    elif expected == TOMBSTONED and actual in (NO_STREAM, DELETED):
        what = "does not exist" if actual == NO_STREAM else "is deleted"
        return f"Stream '{s}' {what}, explicitly expected tombstoned."
    return f"Stream '{s}': expected state {expected}, actual state {actual}."
