"""Drive the emulator's KurrentDB 26.1 `AppendRecords` through kurrentdbclient (`.venv-kurrent`).

    .venv-kurrent/bin/python tests/emulator/kurrent_append_records_probe.py URI [--version V]

Prints one JSON line per check (`{"check": name, "ok": bool, "detail": ...}`); exit status 1
when any failed. `append_records()` sends `kurrentdb.protocol.v2.streams.StreamsService/
AppendRecords` and decodes errors from the google.rpc.Status in `grpc-status-details-bin`
(kurrentdbclient/common.py handle_rpc_error: ConsistencyChecksFailedError with each violation).
kurrentdbclient 1.3.5 cannot send the Deleted (-5) and Tombstoned (-6) expected states or a
record without a stream, so those checks send the request with kurrentdbclient's own protos and
stub and decode the error with its handle_rpc_error. The expectations are KurrentDB v26.1.0's
own tests (src/KurrentDB.Api.V2.Tests/Modules/Streams/AppendRecords/*.cs, cited by name).
With --version 25.1 or 24.10 only the "unimplemented" check runs. Nothing here imports the
project.
"""

from __future__ import annotations

import json
import sys
import traceback
import uuid
from collections.abc import Callable
from typing import Any

import grpc
from kurrentdbclient import KurrentDBClient, StreamState
from kurrentdbclient.common import handle_rpc_error
from kurrentdbclient.events import NewRecord, StreamStateCheck
from kurrentdbclient.exceptions import (
    ConsistencyChecksFailedError,
    KurrentDBClientError,
    NotFoundError,
    TransactionMaxSizeExceededError,
)
from kurrentdbclient.protos.v2.streams import streams_pb2, streams_pb2_grpc

TIMEOUT = 10.0
NOT_FOUND, DELETED, TOMBSTONED = -1, -5, -6  # ActualStreamCondition
EXISTS, ANY = -4, -2


class CheckFailed(AssertionError):
    pass


def expect(condition: object, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


def record(stream: str, type_: str = "TestEvent.V1") -> NewRecord:
    return NewRecord(stream_name=stream, type=type_, data=b'{"test": true}')


class Probe:
    def __init__(self, uri: str) -> None:
        self.client = KurrentDBClient(uri)
        self.channel = grpc.insecure_channel(uri.split("//", 1)[1].split("?", 1)[0])
        self.stub = streams_pb2_grpc.StreamsServiceStub(self.channel)

    def close(self) -> None:
        self.client.close()
        self.channel.close()

    # -------------------------------------------------------------------- helpers
    def seed(self, stream: str, count: int = 1) -> None:
        self.client.append_records([record(stream) for _ in range(count)], timeout=TIMEOUT)

    def seed_deleted(self, stream: str, count: int = 1) -> None:  # SeedDeletedStream
        self.seed(stream, count)
        self.client.delete_stream(stream, current_version=count - 1, timeout=TIMEOUT)

    def seed_tombstoned(self, stream: str, count: int = 1) -> None:  # SeedTombstonedStream
        self.seed(stream, count)
        self.client.tombstone_stream(stream, current_version=count - 1, timeout=TIMEOUT)

    def ids(self, stream: str) -> list[str]:
        try:
            return [str(e.id) for e in self.client.get_stream(stream, timeout=TIMEOUT)]
        except NotFoundError:
            return []

    def raw(
        self, records: list[tuple[str | None, str]], checks: list[tuple[str, int]]
    ) -> streams_pb2.AppendRecordsResponse:
        """AppendRecords with kurrentdbclient's protos: any expected state, any record."""
        request = streams_pb2.AppendRecordsRequest(
            records=[
                streams_pb2.AppendRecord(
                    record_id=str(uuid.uuid4()),
                    schema=streams_pb2.SchemaInfo(format=streams_pb2.SCHEMA_FORMAT_JSON, name=t),
                    data=b"{}",
                    **({} if stream is None else {"stream": stream}),
                )
                for stream, t in records
            ],
            checks=[
                streams_pb2.ConsistencyCheck(
                    stream_state=streams_pb2.ConsistencyCheck.StreamStateCheck(
                        stream=s, expected_state=state
                    )
                )
                for s, state in checks
            ],
        )
        try:
            return self.stub.AppendRecords(request, timeout=TIMEOUT)
        except grpc.RpcError as e:
            raise handle_rpc_error(e) from e

    def violations(self, call: Callable[[], object]) -> list[tuple[int, str, int, int]]:
        try:
            call()
        except ConsistencyChecksFailedError as e:
            return [
                (
                    f.check_index,
                    f.stream_state_failure.stream_name,
                    f.stream_state_failure.expected_state,
                    f.stream_state_failure.actual_state,
                )
                for f in e.failures
                if f.stream_state_failure is not None
            ]
        raise CheckFailed("the append succeeded")

    # --------------------------------------------------------------------- checks
    def interleaved_order(self) -> dict[str, Any]:
        # interleaved_tracks_revisions; and the records keep the request's order in $all.
        a, b = unique("a"), unique("b")
        records = [record(s) for s in (a, b, a, b, a)]
        result = self.client.append_records(records, timeout=TIMEOUT)
        revisions = {p.stream_name: p.stream_position for p in result.stream_positions}
        expect(revisions == {a: 2, b: 1}, f"revisions {revisions}")
        expect([p.stream_name for p in result.stream_positions] == [a, b], "one entry per stream")
        in_all = [e for e in self.client.read_all(timeout=TIMEOUT) if e.stream_name in (a, b)]
        expect([e.id for e in in_all] == [r.id for r in records], "$all holds the request order")
        expect([e.stream_position for e in in_all] == [0, 0, 1, 1, 2], "stream revisions")
        last = in_all[-1].commit_position
        expect(result.commit_position == last, f"position {result.commit_position} != {last}")
        return {"revisions": revisions, "position": result.commit_position}

    def checks_pass_and_write(self) -> str:
        # CheckOnly/WhenMultipleChecks.succeeds_when_all_mixed_check_types_pass
        write, revision, exists, missing = (unique(n) for n in ("w", "rev", "ex", "none"))
        self.seed(revision, 3)
        self.seed(exists, 1)
        result = self.client.append_records(
            record(write),
            [
                StreamStateCheck(revision, 2),
                StreamStateCheck(exists, StreamState.EXISTS),
                StreamStateCheck(missing, StreamState.NO_STREAM),
            ],
            timeout=TIMEOUT,
        )
        positions = [(p.stream_name, p.stream_position) for p in result.stream_positions]
        expect(positions == [(write, 0)], f"revisions {positions}")
        expect(self.ids(missing) == [], "a checked stream is not written")
        return "written"

    def mixed_violations(self) -> list:
        # CheckOnly/WhenMultipleChecks.fails_with_mixed_violation_states: every failing check
        # is reported, with the actual state; nothing is written.
        write, deleted, tombstoned, missing = (unique(n) for n in ("w", "del", "tomb", "none"))
        self.seed_deleted(deleted, 3)
        self.seed_tombstoned(tombstoned)
        found = self.violations(
            lambda: self.client.append_records(
                record(write),
                [
                    StreamStateCheck(deleted, StreamState.EXISTS),
                    StreamStateCheck(tombstoned, StreamState.EXISTS),
                    StreamStateCheck(missing, 10),
                ],
                timeout=TIMEOUT,
            )
        )
        expected = [
            (0, deleted, EXISTS, DELETED),
            (1, tombstoned, EXISTS, TOMBSTONED),
            (2, missing, 10, NOT_FOUND),
        ]
        expect(found == expected, f"violations {found}")
        expect(self.ids(write) == [], "nothing written")
        return found

    def only_failing_checks_reported(self) -> list:
        # WhenMultipleChecks.fails_when_check_on_write_target_and_separate_check_fails
        check, write = unique("c"), unique("w")
        self.seed(write, 4)
        found = self.violations(
            lambda: self.client.append_records(
                record(write),
                [StreamStateCheck(check, 5), StreamStateCheck(write, 3)],
                timeout=TIMEOUT,
            )
        )
        expect(found == [(0, check, 5, NOT_FOUND)], f"violations {found}")
        expect(len(self.ids(write)) == 4, "nothing written")
        return found

    def expect_deleted(self) -> dict[str, Any]:
        # CheckOnly/WhenExpectingDeleted and WriteOnly/WhenExpectingDeleted
        deleted, fresh, revised, write = (unique(n) for n in ("del", "new", "rev", "w"))
        self.seed_deleted(deleted)
        self.seed(revised, 3)
        ok = self.raw([(write, "A")], [(deleted, DELETED)])
        expect([(r.stream, r.revision) for r in ok.revisions] == [(write, 0)], f"{ok}")
        found = self.violations(lambda: self.raw([(write, "A")], [(fresh, DELETED)]))
        expect(found == [(0, fresh, DELETED, NOT_FOUND)], f"not found: {found}")
        found = self.violations(lambda: self.raw([(write, "A")], [(revised, DELETED)]))
        expect(found == [(0, revised, DELETED, 2)], f"has revision: {found}")
        # Writing to the soft-deleted stream itself restores it, revisions continuing.
        restored = self.raw([(deleted, "B")], [(deleted, DELETED)])
        expect([r.revision for r in restored.revisions] == [1], f"{restored}")
        events = self.client.get_stream(deleted, timeout=TIMEOUT)
        expect([e.stream_position for e in events] == [1], "only the new event is visible")
        return {"restored_revision": restored.revisions[0].revision}

    def expect_tombstoned(self) -> list:
        # CheckOnly/WhenExpectingTombstoned and WriteOnly/WhenExpectingTombstoned
        tomb, deleted, write = unique("tomb"), unique("del"), unique("w")
        self.seed_tombstoned(tomb)
        self.seed_deleted(deleted)
        ok = self.raw([(write, "A")], [(tomb, TOMBSTONED)])
        expect([r.stream for r in ok.revisions] == [write], f"{ok}")
        found = self.violations(lambda: self.raw([(write, "A")], [(deleted, TOMBSTONED)]))
        expect(found == [(0, deleted, TOMBSTONED, 0)], f"soft deleted: {found}")
        found = self.violations(lambda: self.raw([(tomb, "A")], [(tomb, TOMBSTONED)]))
        expect(found == [(0, tomb, TOMBSTONED, TOMBSTONED)], f"writing to it: {found}")
        return found

    def write_to_tombstoned(self) -> list:
        # WriteOnly/WhenExpectingAny.fails_when_stream_is_tombstoned; NoStream on a
        # tombstoned stream passes as a check (CheckOnly/WhenExpectingNoStream).
        tomb, write = unique("tomb"), unique("w")
        self.seed_tombstoned(tomb)
        found = self.violations(lambda: self.client.append_records(record(tomb), timeout=TIMEOUT))
        expect(found == [(0, tomb, ANY, TOMBSTONED)], f"violations {found}")
        result = self.client.append_records(
            record(write), StreamStateCheck(tomb, StreamState.NO_STREAM), timeout=TIMEOUT
        )
        expect([p.stream_name for p in result.stream_positions] == [write], "written")
        return found

    def idempotent_replay(self) -> dict[str, Any]:
        a, b = unique("a"), unique("b")
        records = [record(a), record(b), record(a)]
        first = self.client.append_records(records, timeout=TIMEOUT)
        second = self.client.append_records(records, timeout=TIMEOUT)
        expect(first == second, f"replay answered {second}, first {first}")
        expect(len(self.ids(a)) == 2 and len(self.ids(b)) == 1, "no duplicates")
        return {"position": first.commit_position}

    def refused_requests(self) -> dict[str, str]:
        # AppendRecordsMiscTests: checks with zero records, a stream twice in the checks, Any
        # as a check: INVALID_ARGUMENT before anything is written.
        s, w = unique("s"), unique("w")
        cases: dict[str, Callable[[], object]] = {
            "no records": lambda: self.raw([], [(s, NOT_FOUND)]),
            "stream checked twice": lambda: self.raw(
                [(w, "A")], [(s, NOT_FOUND), (s.upper(), EXISTS)]
            ),
            "Any as a check": lambda: self.raw([(w, "A")], [(s, ANY)]),
            "bad schema name": lambda: self.raw([(w, "not a name")], []),
        }
        out = {}
        for what, call in cases.items():
            try:
                call()
            except KurrentDBClientError as e:
                cause = e.__cause__
                expect(
                    isinstance(cause, grpc.RpcError)
                    and cause.code() == grpc.StatusCode.INVALID_ARGUMENT,
                    f"{what}: {e!r}",
                )
                out[what] = cause.details()
                continue
            raise CheckFailed(f"{what}: accepted")
        expect(self.ids(w) == [], "nothing written")
        return out

    def record_without_stream(self) -> str:
        # The record's stream reaches ClientMessage.WriteEvents as "": ArgumentOutOfRange
        # exception in the handler, UNKNOWN "Exception was thrown by handler.".
        try:
            self.raw([(None, "A")], [])
        except KurrentDBClientError as e:
            cause = e.__cause__
            expect(isinstance(cause, grpc.RpcError), repr(e))
            got = (cause.code(), cause.details())
            expect(got == (grpc.StatusCode.UNKNOWN, "Exception was thrown by handler."), f"{got}")
            return str(got)
        raise CheckFailed("accepted")

    def too_large(self) -> str:
        w = unique("w")
        big = [NewRecord(stream_name=w, type="Big", data=b"x" * 400_000) for _ in range(3)]
        try:
            self.client.append_records(big, timeout=TIMEOUT)
        except TransactionMaxSizeExceededError as e:
            expect(self.ids(w) == [], "nothing written")
            return f"{type(e).__name__}: {e}"
        raise CheckFailed("accepted 1.2 MB")

    def v1_reads_see_the_records(self) -> str:
        s = unique("v1")
        self.client.append_records(
            NewRecord(s, "Placed", b'{"n":1}', metadata=b'{"tenant":"acme"}'), timeout=TIMEOUT
        )
        (event,) = self.client.get_stream(s, timeout=TIMEOUT)
        expect(event.type == "Placed" and event.data == b'{"n":1}', f"{event}")
        metadata = json.loads(event.metadata)
        expect(metadata.get("tenant") == "acme", f"metadata {metadata}")
        expect(metadata.get("$schema.name") == "Placed", f"metadata {metadata}")
        return event.metadata.decode()


CHECKS = [
    "interleaved_order",
    "checks_pass_and_write",
    "mixed_violations",
    "only_failing_checks_reported",
    "expect_deleted",
    "expect_tombstoned",
    "write_to_tombstoned",
    "idempotent_replay",
    "refused_requests",
    "record_without_stream",
    "too_large",
    "v1_reads_see_the_records",
]


def check_unimplemented(probe: Probe) -> str:
    try:
        probe.client.append_records(record(unique("x")), timeout=TIMEOUT)
    except KurrentDBClientError as e:
        cause = e.__cause__
        expect(isinstance(cause, grpc.RpcError), repr(e))
        expect(cause.code() == grpc.StatusCode.UNIMPLEMENTED, f"{cause.code()}")
        return cause.details()
    raise CheckFailed("an older server accepted AppendRecords")


def main() -> int:
    uri = sys.argv[1]
    version = sys.argv[sys.argv.index("--version") + 1] if "--version" in sys.argv else "26.1"
    probe = Probe(uri)
    checks: dict[str, Callable[[], object]]
    if version == "26.1":
        checks = {name: getattr(probe, name) for name in CHECKS}
    else:
        checks = {"unimplemented": lambda: check_unimplemented(probe)}
    failed = 0
    try:
        for name, check in checks.items():
            try:
                detail = check()
                print(json.dumps({"check": name, "ok": True, "detail": detail}), flush=True)
            except Exception as e:
                failed += 1
                detail = {"error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc()}
                print(json.dumps({"check": name, "ok": False, "detail": detail}), flush=True)
    finally:
        probe.close()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
