"""The emulator's projections service driven by esdbclient (and kurrentdbclient in
`.venv-kurrent`): the calls, the errors as the clients decode them, the definitions written to
`$projections-$all` / `$projections-<name>` as the server writes them, and their survival
across RestartSubsystem and a snapshot."""

from __future__ import annotations

import json
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from esdbclient import EventStoreDBClient
from esdbclient import exceptions as esdb
from esdbclient.protos.Grpc import projections_pb2, projections_pb2_grpc, shared_pb2

from esdb_emulator import Emulator
from tests.emulator.test_kurrentdbclient import KURRENT_PYTHON, PROBE_TIMEOUT

SYSTEM = {"$streams", "$stream_by_category", "$by_category", "$by_event_type", "$by_correlation_id"}
QUERY = "fromAll().when({ $any: function (s, e) { return s; } });"


def _statistics(db: Emulator, **mode: object) -> list[projections_pb2.StatisticsResp.Details]:
    with grpc.insecure_channel(db.target) as channel:
        stub = projections_pb2_grpc.ProjectionsStub(channel)
        request = projections_pb2.StatisticsReq(
            options=projections_pb2.StatisticsReq.Options(**mode)
        )
        return [r.details for r in stub.Statistics(request, timeout=10)]


def _stream(client: EventStoreDBClient, stream: str) -> list:
    return list(client.get_stream(stream))


def test_system_projections_are_listed_stopped_on_first_use(client, emulator):
    details = _statistics(emulator, all=shared_pb2.Empty())
    assert {d.name for d in details} == SYSTEM
    assert all(d.mode == "Continuous" and d.status == "Stopped" for d in details)
    registry = _stream(client, "$projections-$all")
    assert registry[0].type == "$ProjectionsInitialized"
    assert {e.data.decode() for e in registry[1:]} == SYSTEM
    state = json.loads(_stream(client, "$projections-$by_category")[-1].data)
    assert state["handlerType"].startswith("native:") and state["emitEnabled"] is True
    assert "enabled" not in state  # false is a default value: Json.cs leaves it out


def test_lifecycle_as_esdbclient_sees_it(client, emulator):
    client.create_projection(
        name="counter", query=QUERY, emit_enabled=True, track_emitted_streams=True
    )
    stats = client.get_projection_statistics(name="counter")
    assert (stats.name, stats.mode, stats.status) == ("counter", "Continuous", "Running")
    assert stats.effective_name == "counter" and stats.version == 0

    client.disable_projection("counter")
    assert client.get_projection_statistics(name="counter").status == "Stopped"
    client.update_projection("counter", query="fromAll();", emit_enabled=False)
    assert client.get_projection_statistics(name="counter").status == "Stopped"
    client.enable_projection("counter")
    client.reset_projection("counter")
    stats = client.get_projection_statistics(name="counter")
    assert stats.status == "Running" and stats.epoch == stats.version == 4
    assert client.get_projection_state("counter").value == {}

    definition = _stream(client, "$projections-counter")
    assert [e.type for e in definition] == ["$ProjectionUpdated"] * 5
    state = json.loads(definition[-1].data)
    assert state["query"] == "fromAll();" and state["enabled"] is True
    assert (state["emitEnabled"], state["trackEmittedStreams"]) == (False, True)
    assert (state["mode"], state["version"], state["epoch"]) == ("Continuous", 4, 4)

    client.disable_projection("counter")
    client.delete_projection("counter")
    with pytest.raises(esdb.NotFound):
        client.get_projection_statistics(name="counter")
    assert _stream(client, "$projections-$all")[-1].type == "$ProjectionDeleted"


def _abort(client, name: str) -> None:
    # esdbclient 1.1.7 has no abort_projection; its projections service sends Disable with
    # write_checkpoint false, which is what kurrentdbclient's abort_projection sends.
    client.projections.disable(name=name, write_checkpoint=False, timeout=5)


def test_an_aborted_projection_reports_aborted(client, emulator):
    # Disable with write_checkpoint false is Command.Abort (Grpc/ProjectionManagement.
    # Disable.cs); ManagedProjection.Abort kills a running projection and its status becomes
    # "Aborted" (servers >= 21.10; the Node client's disableProjection.test.ts checks it).
    client.create_projection(name="aborted", query=QUERY)
    _abort(client, "aborted")
    assert client.get_projection_statistics(name="aborted").status == "Aborted"
    client.enable_projection("aborted")
    assert client.get_projection_statistics(name="aborted").status == "Running"
    client.disable_projection("aborted")  # Command.Disable: stopped, not aborted
    assert client.get_projection_statistics(name="aborted").status == "Stopped"
    _abort(client, "aborted")  # a stopped projection stays Stopped
    assert client.get_projection_statistics(name="aborted").status == "Stopped"
    client.enable_projection("aborted")
    _abort(client, "aborted")
    client.restart_projections_subsystem()  # the Aborted state is not persisted
    assert client.get_projection_statistics(name="aborted").status == "Stopped"


def test_errors_as_the_server_reports_them(client):
    client.create_projection(name="p", query=QUERY)
    with pytest.raises(esdb.AlreadyExists):
        client.create_projection(name="p", query=QUERY)
    with pytest.raises(esdb.OperationFailed):
        client.delete_projection("p")  # running
    with pytest.raises(esdb.OperationFailed):
        client.delete_projection("$by_category")  # system
    with pytest.raises(esdb.ExceptionThrownByHandler):
        client.create_projection(name="q", query=QUERY, track_emitted_streams=True)
    for call in (
        lambda: client.get_projection_statistics(name="missing"),
        lambda: client.disable_projection("missing"),
        lambda: client.enable_projection("missing"),
        lambda: client.reset_projection("missing"),
        lambda: client.update_projection("missing", query=QUERY),
        lambda: client.delete_projection("missing"),
        lambda: client.get_projection_state("missing"),
    ):
        with pytest.raises(esdb.NotFound):
            call()


def test_statistics_by_mode_and_transient_and_one_time_projections(emulator):
    with grpc.insecure_channel(emulator.target) as channel:
        stub = projections_pb2_grpc.ProjectionsStub(channel)
        options = projections_pb2.CreateReq.Options
        stub.Create(
            projections_pb2.CreateReq(
                options=options(transient=options.Transient(name="adhoc"), query=QUERY)
            ),
            timeout=10,
        )
        stub.Create(
            projections_pb2.CreateReq(options=options(one_time=shared_pb2.Empty(), query=QUERY)),
            timeout=10,
        )
    (transient,) = _statistics(emulator, transient=shared_pb2.Empty())
    (one_time,) = _statistics(emulator, one_time=shared_pb2.Empty())
    assert transient.name == "adhoc"
    assert len(one_time.name) == 36  # a GUID: the server names one-time projections itself
    assert {d.name for d in _statistics(emulator, continuous=shared_pb2.Empty())} == SYSTEM
    assert len(_statistics(emulator, all=shared_pb2.Empty())) == 7
    registered = {e.data.decode() for e in emulator.store.visible_records("$projections-$all")}
    assert one_time.name in registered and "adhoc" not in registered  # transient: not written


def test_restart_subsystem_and_snapshot_keep_persisted_projections(tmp_path):
    snapshot = tmp_path / "db.gz"
    with Emulator(snapshot_path=snapshot) as db:
        c = EventStoreDBClient(db.uri)
        c.create_projection(name="kept", query=QUERY, emit_enabled=True)
        c.disable_projection("kept")
        c.enable_projection("$by_event_type")
        c.restart_projections_subsystem()
        assert c.get_projection_statistics(name="kept").status == "Stopped"
        c.close()
    with Emulator(snapshot_path=snapshot) as db:
        c = EventStoreDBClient(db.uri)
        assert c.get_projection_statistics(name="kept").status == "Stopped"
        assert c.get_projection_statistics(name="$by_event_type").status == "Running"
        state = json.loads(list(c.get_stream("$projections-kept"))[-1].data)
        assert state["query"] == QUERY and state["emitEnabled"] is True
        assert len(_statistics(db, all=shared_pb2.Empty())) == 6
        c.close()


def test_credentials_are_required_on_a_secure_node(tls_emulator):
    wrong = tls_emulator.uri.replace("admin:changeit@", "admin:nope@")
    client = EventStoreDBClient(wrong)
    try:
        with pytest.raises(esdb.GrpcError) as raised:
            client.get_projection_statistics(name="$by_category")
        assert "UNAUTHENTICATED" in str(raised.value)
    finally:
        client.close()


def test_absent_when_projections_do_not_run():
    with Emulator(run_projections=False) as db, grpc.insecure_channel(db.target) as channel:
        stub = projections_pb2_grpc.ProjectionsStub(channel)
        with pytest.raises(grpc.RpcError) as raised:
            list(stub.Statistics(projections_pb2.StatisticsReq(), timeout=5))
        assert raised.value.code() == grpc.StatusCode.UNIMPLEMENTED


KURRENT_PROBE = textwrap.dedent(
    """
    import json, sys
    from kurrentdbclient import KurrentDBClient
    from kurrentdbclient.exceptions import AlreadyExistsError, NotFoundError
    c = KurrentDBClient(sys.argv[1])
    out = {}
    c.create_projection(name="k", query=sys.argv[2], emit_enabled=True)
    out["all"] = sorted(s.name for s in c.list_all_projection_statistics())
    out["continuous"] = len(c.list_continuous_projection_statistics())
    c.disable_projection("k")
    out["status"] = c.get_projection_statistics(name="k").status
    c.enable_projection("k")
    c.abort_projection("k")
    out["aborted"] = c.get_projection_statistics(name="k").status
    c.update_projection("k", query="fromAll();", emit_enabled=False)
    c.reset_projection("k")
    out["state"] = c.get_projection_state("k").value
    try:
        c.create_projection(name="k", query="x")
    except AlreadyExistsError:
        out["duplicate"] = "AlreadyExistsError"
    c.delete_projection("k")
    try:
        c.get_projection_statistics(name="k")
    except NotFoundError:
        out["deleted"] = "NotFoundError"
    print(json.dumps(out))
    """
)


@pytest.fixture
def kurrent_python() -> Iterator[Path]:
    if not KURRENT_PYTHON.exists():
        pytest.fail(f"{KURRENT_PYTHON} is missing: run `make kurrent-env`")
    yield KURRENT_PYTHON


def test_kurrentdbclient_drives_the_projections_service(emulator, kurrent_python):
    result = subprocess.run(
        [str(kurrent_python), "-c", KURRENT_PROBE, emulator.uri, QUERY],
        capture_output=True,
        text=True,
        timeout=PROBE_TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["all"] == sorted(SYSTEM | {"k"}) and out["continuous"] == 6
    assert out["status"] == "Stopped" and out["state"] == {}
    assert out["aborted"] == "Aborted"
    assert out["duplicate"] == "AlreadyExistsError" and out["deleted"] == "NotFoundError"
