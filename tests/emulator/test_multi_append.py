"""KurrentDB's v2 multi-stream append: the emulator's AppendSession checked with the real
kurrentdbclient 1.3.5 (in `.venv-kurrent`, see test_kurrentdbclient.py), and our esdbclient
adapter's multi_append over plaintext and TLS with credentials."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf import empty_pb2

from core.errors import (
    AccessDenied,
    AppendTooLarge,
    MultiAppendConflict,
    MultiAppendUnsupported,
    StreamTombstoned,
    TransientError,
)
from core.eventstore import EventStore
from core.eventstore.v2 import stored_metadata_matches
from core.model import NO_STREAM, OutEvent, StreamAppend
from core.protocol import serverfeatures_pb2_grpc
from core.protocol.google.rpc import error_details_pb2, status_pb2
from core.protocol.kurrent.rpc import errors_pb2 as server_errors_pb2
from core.protocol.kurrentdb.protocol.v2.streams import (
    errors_pb2,
    shared_pb2,
    streams_pb2,
    streams_pb2_grpc,
)
from esdb_emulator import Emulator
from esdb_emulator.faults import FaultConfig
from tests.emulator.test_kurrentdbclient import CREATE_VENV, KURRENT_PYTHON, ROOT

PROBE = Path(__file__).with_name("kurrent_multi_append_probe.py")
PROBE_CHECKS = [
    "success_and_read_back",
    "exact_revision",
    "wrong_expected_version",
    "no_stream_on_existing",
    "deleted_stream",
    "idempotent_replay",
    "same_stream_twice",
    "transaction_too_large",
]


# ------------------------------------------------------------------ kurrentdbclient
def _probe(db: Emulator, *extra: str) -> dict[str, dict]:
    if not KURRENT_PYTHON.exists():
        pytest.fail(f"{KURRENT_PYTHON} is missing;\n{CREATE_VENV}", pytrace=False)
    env = dict(os.environ, PYTHONUNBUFFERED="1", GRPC_VERBOSITY="ERROR")
    env.pop("PYTHONPATH", None)
    proc = subprocess.run(
        [str(KURRENT_PYTHON), str(PROBE), db.connection_string(), *extra],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=ROOT,
        check=False,
    )
    results = {}
    for line in proc.stdout.splitlines():
        record = json.loads(line)
        results[record["check"]] = record
    if not results:
        pytest.fail(f"probe printed nothing; stderr:\n{proc.stderr[-3000:]}")
    return results


@pytest.fixture(scope="module")
def probe_results() -> Iterator[dict[str, dict[str, dict]]]:
    """The probe run once per mode (plaintext, TLS with credentials) for the module."""
    results: dict[str, dict[str, dict]] = {}
    with Emulator() as plain, Emulator(tls=True) as secure:
        results["plain"] = _probe(plain)
        results["tls"] = _probe(secure)
    yield results


@pytest.mark.parametrize("mode", ["plain", "tls"])
@pytest.mark.parametrize("check", PROBE_CHECKS)
def test_kurrentdbclient_multi_append(
    probe_results: dict[str, dict[str, dict]], mode: str, check: str
) -> None:
    result = probe_results[mode].get(check)
    assert result is not None, f"check {check} did not run"
    assert result["ok"], result["detail"]


def test_kurrentdbclient_on_a_node_without_multi_append_gets_an_error() -> None:
    with Emulator(multi_append=False) as db:
        result = _probe(db, "--old-server")["unimplemented"]
    assert result["ok"], result["detail"]


# ------------------------------------------------------------------ our adapter
def _event(type_: str = "Happened", metadata: bytes = b"") -> OutEvent:
    return OutEvent(uuid.uuid4(), type_, "application/json", b'{"n": 1}', metadata)


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(params=["plain", "tls"])
def target(request: pytest.FixtureRequest) -> Iterator[tuple[Emulator, EventStore]]:
    with Emulator(tls=request.param == "tls") as db, EventStore(db.uri, side="target") as es:
        yield db, es


def test_adapter_writes_several_streams_and_reads_them_back(
    target: tuple[Emulator, EventStore],
) -> None:
    _, es = target
    a, b = _name("order"), _name("invoice")
    es.append(b, NO_STREAM, [_event()])
    events_a = [_event("Placed", b'{"tenant": "acme", "$correlationId": "c-1"}'), _event("Paid")]
    events_b = [_event("Issued")]
    es.multi_append([StreamAppend(a, NO_STREAM, events_a), StreamAppend(b, 0, events_b)])

    read_a, read_b = es.read_stream(a), es.read_stream(b)
    assert [e.event_id for e in read_a] == [e.event_id for e in events_a]
    assert [e.revision for e in read_a] == [0, 1]
    assert [e.event_id for e in read_b[1:]] == [events_b[0].event_id]
    assert read_a[0].type == "Placed" and read_a[0].data == b'{"n": 1}'
    assert read_a[0].content_type == "application/json"
    metadata = json.loads(read_a[0].metadata)
    assert metadata["tenant"] == "acme" and metadata["$correlationId"] == "c-1"
    assert metadata["$schema.name"] == "Placed"  # as the server's v1 reads show it
    assert all(
        stored_metadata_matches(sent.metadata, got.metadata)
        for sent, got in zip(events_a, read_a, strict=True)
    )
    assert read_b[1].commit_position > read_a[-1].commit_position  # one transaction, in order


def test_one_bad_stream_writes_nothing(target: tuple[Emulator, EventStore]) -> None:
    _, es = target
    good, bad, missing = _name("good"), _name("bad"), _name("missing")
    es.append(bad, NO_STREAM, [_event(), _event()])
    with pytest.raises(MultiAppendConflict) as caught:
        es.multi_append(
            [StreamAppend(good, NO_STREAM, [_event()]), StreamAppend(bad, 0, [_event()])]
        )
    assert caught.value.streams == {bad: 1}
    assert es.read_stream(good) == [] and len(es.read_stream(bad)) == 2

    with pytest.raises(MultiAppendConflict) as caught:
        es.multi_append([StreamAppend(missing, 4, [_event()])])
    assert caught.value.streams == {missing: None}


def test_replaying_the_same_event_ids_writes_nothing_twice(
    target: tuple[Emulator, EventStore],
) -> None:
    _, es = target
    a, b = _name("a"), _name("b")
    batch = [
        StreamAppend(a, NO_STREAM, [_event(), _event()]),
        StreamAppend(b, NO_STREAM, [_event()]),
    ]
    es.multi_append(batch)
    es.multi_append(batch)
    assert len(es.read_stream(a)) == 2 and len(es.read_stream(b)) == 1


def test_a_partly_written_batch_is_a_conflict_not_a_replay(
    target: tuple[Emulator, EventStore],
) -> None:
    # StorageWriterService.VerifyCommitChecks: a mix of idempotent and new streams fails, and
    # the answer names the first such stream (the idempotent one here).
    _, es = target
    a, b = _name("a"), _name("b")
    first = StreamAppend(a, NO_STREAM, [_event()])
    es.multi_append([first])
    with pytest.raises(MultiAppendConflict) as caught:
        es.multi_append([first, StreamAppend(b, NO_STREAM, [_event()])])
    assert caught.value.streams == {a: 0}
    assert es.read_stream(b) == []


def test_a_tombstoned_stream_fails_the_whole_append(target: tuple[Emulator, EventStore]) -> None:
    _, es = target
    dead, other = _name("dead"), _name("other")
    es.append(dead, NO_STREAM, [_event()])
    es.tombstone(dead)
    with pytest.raises(StreamTombstoned) as caught:
        es.multi_append(
            [StreamAppend(other, NO_STREAM, [_event()]), StreamAppend(dead, 1, [_event()])]
        )
    assert caught.value.stream == dead  # type: ignore[attr-defined]
    assert es.read_stream(other) == []


def test_the_metastream_of_a_tombstoned_stream_as_the_single_stream_append_has_it(
    target: tuple[Emulator, EventStore],
) -> None:
    """A multi-stream append checks `$$X` after `X` was tombstoned as a one-stream append does
    (IndexWriter.CheckCommit, one check for both; tests/emulator/test_streams.py has the
    server's sources): written before the tombstone, it is written again; never written, it is
    deleted with its stream."""
    _, es = target
    kept, bare = _name("kept"), _name("bare")
    for stream in (kept, bare):
        es.append(stream, NO_STREAM, [_event()])
    meta = OutEvent(uuid.uuid4(), "$metadata", "application/json", b'{"a":1}', b"")
    es.multi_append([StreamAppend("$$" + kept, NO_STREAM, [meta])])
    es.tombstone(kept)
    es.tombstone(bare)
    again = OutEvent(uuid.uuid4(), "$metadata", "application/json", b'{"a":2}', b"")
    es.multi_append([StreamAppend("$$" + kept, 0, [again])])
    with pytest.raises(StreamTombstoned):
        es.multi_append([StreamAppend("$$" + bare, NO_STREAM, [again])])


def test_a_soft_deleted_stream_is_written_again() -> None:
    with Emulator() as db, EventStore(db.uri, side="target") as es:
        a = _name("soft")
        es.append(a, NO_STREAM, [_event()])
        es.delete(a)
        es.multi_append([StreamAppend(a, 0, [_event()])])
        assert [e.revision for e in es.read_stream(a)] == [1]


def test_over_the_maximum_append_size_is_too_large_and_writes_nothing() -> None:
    with (
        Emulator(faults=FaultConfig(max_append_size=2_000)) as db,
        EventStore(db.uri, side="target") as es,
    ):
        a, b = _name("a"), _name("b")
        big = OutEvent(uuid.uuid4(), "Big", "application/octet-stream", b"x" * 1_500, b"")
        with pytest.raises(AppendTooLarge) as caught:
            es.multi_append(
                [StreamAppend(a, NO_STREAM, [big]), StreamAppend(b, NO_STREAM, [_event(), big])]
            )
        assert caught.value.limit == 2_000
        assert es.read_stream(a) == [] and es.read_stream(b) == []


def test_feature_detection() -> None:
    with Emulator() as new, Emulator(multi_append=False) as old:
        with EventStore(new.uri, side="target") as es:
            assert es.supports_multi_append() is True
        with EventStore(old.uri, side="target") as es:
            assert es.supports_multi_append() is False
            a = _name("a")
            with pytest.raises(MultiAppendUnsupported):
                es.multi_append([StreamAppend(a, NO_STREAM, [_event()])])
            assert es.read_stream(a) == []


def test_server_features_list_append_session_as_kurrentdb_does() -> None:
    with Emulator() as new, Emulator(multi_append=False) as old:
        listed = {}
        for name, db in (("new", new), ("old", old)):
            with grpc.insecure_channel(db.target) as channel:
                stub = serverfeatures_pb2_grpc.ServerFeaturesStub(channel)
                reply = stub.GetSupportedMethods(empty_pb2.Empty(), timeout=5)
            listed[name] = {
                (m.service_name, m.method_name): list(m.features) for m in reply.methods
            }
    v2 = ("kurrentdb.protocol.v2.streams.streamsservice", "appendsession")
    assert v2 in listed["new"] and v2 not in listed["old"]
    batch = ("event_store.client.streams.streams", "batchappend")
    assert listed["old"][batch] == ["deadline_duration"]
    assert listed["new"][("event_store.client.streams.streams", "read")] == ["position", "events"]
    create = ("event_store.client.projections.projections", "create")
    assert listed["new"][create] == ["track_emitted_streams"]  # projections run by default


def test_wrong_credentials_are_access_denied() -> None:
    with Emulator(tls=True) as db:
        uri = db.connection_string(password="wrong")
        with EventStore(uri, side="target") as es, pytest.raises(AccessDenied):
            es.multi_append([StreamAppend(_name("a"), NO_STREAM, [_event()])])


def test_batches_the_v2_api_cannot_carry_are_refused_before_sending() -> None:
    with Emulator() as db, EventStore(db.uri, side="target") as es:
        a = _name("a")
        with pytest.raises(MultiAppendUnsupported, match="twice"):
            es.multi_append(
                [StreamAppend(a, NO_STREAM, [_event()]), StreamAppend(a.upper(), 0, [_event()])]
            )
        with pytest.raises(MultiAppendUnsupported, match="metadata"):
            es.multi_append([StreamAppend(a, NO_STREAM, [_event(metadata=b"not json")])])
        with pytest.raises(MultiAppendUnsupported, match="event type"):
            es.multi_append([StreamAppend(a, NO_STREAM, [_event("has space")])])
        assert es.read_stream(a) == []


# ------------------------------------------------------------------ faults
def test_unavailable_and_deadline_faults_apply_and_are_retried() -> None:
    faults = FaultConfig(unavailable_next=2, deadline_next=1, methods=frozenset({"AppendSession"}))
    with Emulator(faults=faults) as db, EventStore(db.uri, side="target") as es:
        a = _name("a")
        es.append(a, NO_STREAM, [_event()])  # another method: not affected
        es.multi_append([StreamAppend(a, 0, [_event()])])
        assert db.faults.injected == {"unavailable": 2, "deadline": 1}
        assert es.retries == 3
        assert len(es.read_stream(a)) == 2


def test_not_leader_is_retried_on_a_single_node() -> None:
    faults = FaultConfig(not_leader_next=1, methods=frozenset({"AppendSession"}))
    with Emulator(faults=faults) as db, EventStore(db.uri, side="target") as es:
        a = _name("a")
        es.multi_append([StreamAppend(a, NO_STREAM, [_event()])])
        assert db.faults.injected == {"not_leader": 1} and es.retries == 1
        assert len(es.read_stream(a)) == 1


def test_a_fault_past_the_retry_deadline_is_raised() -> None:
    faults = FaultConfig(unavailable_rate=1.0, methods=frozenset({"AppendSession"}), seed=1)
    with Emulator(faults=faults) as db:
        es = EventStore(db.uri, side="target", retry_deadline=time.monotonic())
        with es, pytest.raises(TransientError):
            es.multi_append([StreamAppend(_name("a"), NO_STREAM, [_event()])])
        assert db.faults.injected["unavailable"] >= 1


def test_latency_applies_to_append_session() -> None:
    # Observed through the call's deadline, not a clock: 2 s of latency outlasts a 0.2 s call.
    faults = FaultConfig(latency_ms=2_000, methods=frozenset({"AppendSession"}))
    with Emulator(faults=faults) as db:
        es = EventStore(db.uri, side="target", timeout=0.2, retry_deadline=time.monotonic())
        with es, pytest.raises(TransientError, match="DEADLINE_EXCEEDED"):
            es.multi_append([StreamAppend(_name("a"), NO_STREAM, [_event()])])


def test_faults_for_other_methods_leave_append_session_alone() -> None:
    faults = FaultConfig(unavailable_next=5, methods=frozenset({"Append", "BatchAppend"}))
    with Emulator(faults=faults) as db, EventStore(db.uri, side="target") as es:
        es.multi_append([StreamAppend(_name("a"), NO_STREAM, [_event()])])
        assert db.faults.injected == {} and es.retries == 0


# ------------------------------------------------------------------ the wire, directly
def _record(type_: str = "T") -> streams_pb2.AppendRecord:
    return streams_pb2.AppendRecord(
        record_id=str(uuid.uuid4()),
        schema=shared_pb2.SchemaInfo(format=shared_pb2.SCHEMA_FORMAT_BYTES, name=type_),
        data=b"\x00\x01",
    )


def test_append_session_answers_revisions_and_the_last_position() -> None:
    with Emulator() as db, grpc.insecure_channel(db.target) as channel:
        stub = streams_pb2_grpc.StreamsServiceStub(channel)
        requests = [
            streams_pb2.AppendRequest(stream="x", records=[_record(), _record()]),
            streams_pb2.AppendRequest(stream="y", records=[_record()], expected_revision=-1),
        ]
        reply = stub.AppendSession(iter(requests), timeout=5)
        assert [(o.stream, o.stream_revision) for o in reply.output] == [("x", 1), ("y", 0)]
        last = db.store.stream_state("y")[0]
        record = db.store.visible_records("y")[last]
        assert reply.position == record.position
        assert record.content_type == "application/octet-stream"
        assert json.loads(record.metadata)["$schema.format"] == "Bytes"


@pytest.mark.parametrize(
    ("requests", "code"),
    [
        ([], grpc.StatusCode.FAILED_PRECONDITION),  # no requests in the session
        ([streams_pb2.AppendRequest(stream="x")], grpc.StatusCode.INVALID_ARGUMENT),  # no records
        (
            [streams_pb2.AppendRequest(stream="x", records=[_record("bad name")])],
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (
            [streams_pb2.AppendRequest(stream="x", records=[_record()], expected_revision=-3)],
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
    ],
)
def test_append_session_refuses_malformed_sessions(
    requests: list[streams_pb2.AppendRequest], code: grpc.StatusCode
) -> None:
    with Emulator() as db, grpc.insecure_channel(db.target) as channel:
        stub = streams_pb2_grpc.StreamsServiceStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            stub.AppendSession(iter(requests), timeout=5)
        assert caught.value.code() == code  # type: ignore[attr-defined]
        assert db.store.stream_state("x") == (-1, False)


def test_a_conflict_is_a_rich_status_as_kurrentdb_builds_it() -> None:
    with Emulator() as db, grpc.insecure_channel(db.target) as channel:
        stub = streams_pb2_grpc.StreamsServiceStub(channel)
        request = streams_pb2.AppendRequest(stream="x", records=[_record()], expected_revision=7)
        with pytest.raises(grpc.RpcError) as caught:
            stub.AppendSession(iter([request]), timeout=5)
    error = caught.value
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION  # type: ignore[attr-defined]
    trailers = dict(error.trailing_metadata())  # type: ignore[attr-defined]
    status = status_pb2.Status.FromString(trailers["grpc-status-details-bin"])
    assert [d.type_url for d in status.details] == [
        "type.googleapis.com/google.rpc.ErrorInfo",
        "type.googleapis.com/kurrentdb.protocol.v2.streams.errors.StreamRevisionConflictErrorDetails",
    ]
    info = error_details_pb2.ErrorInfo.FromString(status.details[0].value)
    assert (info.reason, info.domain) == ("STREAM_REVISION_CONFLICT", "streams")
    details = errors_pb2.StreamRevisionConflictErrorDetails()
    status.details[1].Unpack(details)
    assert (details.stream, details.expected_revision, details.actual_revision) == ("x", 7, -1)


@pytest.mark.parametrize(
    ("flag", "supported"), [("--multi-append", True), ("--no-multi-append", False)]
)
def test_cli_emulator_switch(flag: str, supported: bool) -> None:
    command = [sys.executable, "-m", "handlers.cli.main", "emulator", "--port", "0", flag]
    env = dict(os.environ, NO_COLOR="1", COLUMNS="200")
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=ROOT, env=env)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        found = re.search(r"listening on (\S+)", line)
        assert found, line
        with EventStore(f"esdb://{found.group(1)}?Tls=false", side="target") as es:
            assert es.supports_multi_append() is supported
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_not_leader_is_answered_the_v2_way() -> None:
    # ApiErrors.NotLeaderNode: FAILED_PRECONDITION with NotLeaderNodeErrorDetails (not the v1
    # NOT_FOUND "Leader info available" with trailers).
    faults = FaultConfig(not_leader_next=1, methods=frozenset({"AppendSession"}))
    with Emulator(faults=faults) as db, grpc.insecure_channel(db.target) as channel:
        stub = streams_pb2_grpc.StreamsServiceStub(channel)
        request = streams_pb2.AppendRequest(stream="x", records=[_record()])
        with pytest.raises(grpc.RpcError) as caught:
            stub.AppendSession(iter([request]), timeout=5)
        error = caught.value
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION  # type: ignore[attr-defined]
        trailers = dict(error.trailing_metadata())  # type: ignore[attr-defined]
        status = status_pb2.Status.FromString(trailers["grpc-status-details-bin"])
        details = server_errors_pb2.NotLeaderNodeErrorDetails()
        status.details[1].Unpack(details)
        leader = details.current_leader
        assert (leader.host, leader.port) == (db.host, db.port)
        assert stub.AppendSession(iter([request]), timeout=5).output[0].stream_revision == 0


def test_append_session_sends_its_messages_on_the_calling_thread(
    target: tuple[Emulator, EventStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    """grpcio's stream-unary call starts a thread per call to consume the request iterator
    (`_consume_request_iterator`), with two thread switches a message: ~70 µs of CPU per
    stream of a multi-append (docs/benchmarks.md). The adapter's call sends on its own thread.
    (A spy on grpcio's function, passing through: threads alone do not tell, the in-process
    emulator and the credentials plugin start their own.)"""
    from grpc import _channel as grpc_channel

    _, es = target
    consumed: list[object] = []
    consume = grpc_channel._consume_request_iterator

    def spy(*args: object, **kwargs: object) -> object:
        consumed.append(args[0])
        return consume(*args, **kwargs)

    monkeypatch.setattr(grpc_channel, "_consume_request_iterator", spy)
    names = [_name(f"s{i}") for i in range(20)]
    es.multi_append([StreamAppend(name, NO_STREAM, [_event()]) for name in names])
    assert consumed == []
    assert all(len(es.read_stream(name)) == 1 for name in names)
