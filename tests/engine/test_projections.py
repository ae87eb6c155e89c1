"""`core.tools.projections` against emulators: list, export, create on the target (stopped, same
query and settings), idempotent re-runs, conflicts never overwritten without --update, and
what the relay's `$all` replication does with projection definitions and emitted events."""

from __future__ import annotations

import json
import uuid

import pytest
from esdbclient import EventStoreDBClient, NewEvent, StreamState

from core.errors import AccessDenied, ConfigError, PermanentError, RelayError
from core.eventstore import EventStore
from core.tools.projections import (
    PLACEHOLDER_QUERY,
    apply_create,
    custom_definitions,
    export_definitions,
    list_projections,
    load_export,
    plan_create,
    read_definition,
    system_projections,
)
from esdb_emulator import Emulator
from tests.engine.helpers import make_job, run_until_caught_up

COUNTER = """fromAll()
  .when({
    $init: function () { return { count: 0 }; },
    $any: function (s, e) { s.count += 1; }
  })
  .outputState();
"""
EMITTER = (
    "fromCategory('order').when({ Placed: function (s, e) { emit('totals', 'Counted', {}); } });\n"
)
LINKER = "fromAll().when({ $any: function (s, e) { linkTo('everything-' + e.eventType, e); } });"


def _client(db: Emulator) -> EventStoreDBClient:
    return EventStoreDBClient(db.uri)


def _seed_projections(db: Emulator) -> None:
    client = _client(db)
    client.create_projection(name="counter", query=COUNTER)
    client.create_projection(
        name="order totals/v2", query=EMITTER, emit_enabled=True, track_emitted_streams=True
    )
    client.create_projection(name="linker", query=LINKER, emit_enabled=True)
    client.disable_projection("linker")
    client.enable_projection("$by_category")
    client.close()


@pytest.fixture
def source_target():
    with Emulator() as source, Emulator() as target:
        _seed_projections(source)
        yield source, target


def test_list_shows_custom_and_system_projections_with_modes_and_status(source_target):
    source, _ = source_target
    with EventStore(source.uri, side="source") as store:
        rows = {r.name: r for r in list_projections(store)}
    assert set(rows) == {
        "$by_category",
        "$by_correlation_id",
        "$by_event_type",
        "$stream_by_category",
        "$streams",
        "counter",
        "order totals/v2",
        "linker",
    }
    assert all(r.mode == "Continuous" for r in rows.values())
    assert rows["counter"].status == "Running" and rows["linker"].status == "Stopped"
    assert rows["$by_category"].status == "Running" and rows["$streams"].status == "Stopped"
    assert rows["order totals/v2"].emit_enabled is True
    assert rows["order totals/v2"].track_emitted_streams is True
    assert rows["counter"].emit_enabled is False
    assert "emitted events are replicated" in rows["order totals/v2"].advice
    assert "Re-create this projection on the target" in rows["counter"].advice
    assert rows["$by_category"].system and "$ce-" in rows["$by_category"].advice


def test_export_writes_the_exact_query_text_and_a_manifest(source_target, tmp_path):
    source, _ = source_target
    with EventStore(source.uri, side="source") as store:
        manifest = export_definitions(custom_definitions(store), tmp_path)
    by_name = {e.name: e for e in manifest.projections}
    assert set(by_name) == {"counter", "order totals/v2", "linker"}
    assert (tmp_path / by_name["counter"].file).read_bytes() == COUNTER.encode()
    assert (tmp_path / by_name["linker"].file).read_bytes() == LINKER.encode()
    emitter = by_name["order totals/v2"]
    assert "/" not in emitter.file and (tmp_path / emitter.file).read_text() == EMITTER
    assert emitter.emit_enabled and emitter.track_emitted_streams
    saved = json.loads((tmp_path / "manifest.json").read_text())
    assert saved["format"] == "esdb-relay-projections" and len(saved["projections"]) == 3
    reloaded = {d.name: d for d in load_export(tmp_path)}
    assert reloaded["order totals/v2"].query == EMITTER
    assert reloaded["linker"].emit_enabled and not reloaded["linker"].track_emitted_streams


def _target_definition(target: Emulator, name: str):
    with EventStore(target.uri, side="target") as store:
        return read_definition(store, name)


def test_create_on_target_is_stopped_with_the_same_settings_and_idempotent(source_target):
    source, target = source_target
    with EventStore(source.uri, side="source") as s, EventStore(target.uri, side="target") as t:
        definitions = custom_definitions(s)
        plan = plan_create(t, definitions, update=False)
        assert [r.action for r in plan] == ["create"] * 3
        # A plan alone changes nothing.
        assert t.projection_statistics("counter") == []
        done = apply_create(t, plan)
        assert all(r.done and r.action == "create" for r in done), done

        for d in definitions:
            (stats,) = t.projection_statistics(d.name)
            assert stats.status == "Stopped" and stats.mode == "Continuous"
            assert _target_definition(target, d.name) == d
        # Reset after the query was set: when enabled it starts from the beginning.
        assert stats.epoch == stats.version

        again = plan_create(t, definitions, update=False)
        assert [r.action for r in again] == ["unchanged"] * 3
        assert [r.done for r in apply_create(t, again)] == [False] * 3


def test_conflicting_definition_is_reported_and_kept_unless_update(source_target):
    source, target = source_target
    tc = _client(target)
    tc.create_projection(name="counter", query="fromAll().when({});")
    with EventStore(source.uri, side="source") as s, EventStore(target.uri, side="target") as t:
        definitions = [d for d in custom_definitions(s) if d.name == "counter"]
        (row,) = apply_create(t, plan_create(t, definitions, update=False))
        assert row.action == "conflict" and "query" in row.detail and not row.done
        assert _target_definition(target, "counter").query == "fromAll().when({});"
        assert t.projection_statistics("counter")[0].status == "Running"

        (row,) = apply_create(t, plan_create(t, definitions, update=True))
        assert row.action == "update" and row.done
        assert _target_definition(target, "counter").query == COUNTER
        assert t.projection_statistics("counter")[0].status == "Stopped"


def test_mode_or_tracking_differences_are_conflicts_even_with_update(source_target):
    source, target = source_target
    tc = _client(target)
    tc.create_projection(name="order totals/v2", query=EMITTER, emit_enabled=True)
    with EventStore(source.uri, side="source") as s, EventStore(target.uri, side="target") as t:
        definitions = [d for d in custom_definitions(s) if d.name == "order totals/v2"]
        (row,) = apply_create(t, plan_create(t, definitions, update=True))
        assert row.action == "conflict" and "track_emitted_streams" in row.detail


def test_a_create_broken_off_half_way_is_finished_by_the_next_run(source_target):
    source, target = source_target
    tc = _client(target)
    tc.create_projection(name="counter", query=PLACEHOLDER_QUERY)  # the first call's effect
    with EventStore(source.uri, side="source") as s, EventStore(target.uri, side="target") as t:
        definitions = [d for d in custom_definitions(s) if d.name == "counter"]
        (row,) = apply_create(t, plan_create(t, definitions, update=False))
        assert row.action == "finish" and row.done
        assert _target_definition(target, "counter").query == COUNTER
        assert t.projection_statistics("counter")[0].status == "Stopped"


def test_target_system_projections_report_whether_they_run(source_target):
    _, target = source_target
    with EventStore(target.uri, side="target") as t:
        assert not any(s.running for s in system_projections(t))
        _client(target).enable_projection("$by_category")
        running = {s.name for s in system_projections(t) if s.running}
    assert running == {"$by_category"}


def test_load_export_explains_a_bad_directory(tmp_path):
    with pytest.raises(ConfigError, match=r"manifest\.json not found"):
        load_export(tmp_path)
    (tmp_path / "manifest.json").write_text(
        '{"format": "esdb-relay-projections", "projections": [{"name": "x", "file": "x.js"}]}'
    )
    with pytest.raises(ConfigError, match=r"query file 'x\.js'.*missing"):
        load_export(tmp_path)
    (tmp_path / "manifest.json").write_text("not json")
    with pytest.raises(ConfigError, match="not a projections manifest"):
        load_export(tmp_path)


def test_bad_credentials_and_no_projections_subsystem_are_clear_errors():
    with Emulator(tls=True) as secure, Emulator(run_projections=False) as off:
        wrong = secure.uri.replace("admin:changeit@", "admin:wrong@")
        with EventStore(wrong, side="source") as store, pytest.raises(AccessDenied) as denied:
            list_projections(store)
        assert "access denied (UNAUTHENTICATED)" in str(denied.value)
        with (
            EventStore(off.uri, side="target") as store,
            pytest.raises(PermanentError, match="projections subsystem is not running"),
        ):
            system_projections(store)


def test_unreachable_target_is_a_clear_error():
    with Emulator() as db:
        uri = db.uri
    with (
        EventStore(uri, side="target", timeout=2) as store,
        pytest.raises(RelayError, match="target"),
    ):
        system_projections(store)


def test_replication_copies_emitted_events_but_not_definitions_or_links(source_target, tmp_path):
    """Emitted events are ordinary events and are replicated; `$projections-*` streams and
    links are system records the relay skips (core.rules.classify)."""
    source, target = source_target
    client = _client(source)
    client.append_to_stream(
        "order-1", current_version=StreamState.NO_STREAM, events=[NewEvent("Placed", b"{}")]
    )
    # What the emitter's emit() and a $by_category link would write on a real server.
    client.append_to_stream(
        "totals",
        current_version=StreamState.NO_STREAM,
        events=[NewEvent("Counted", b"{}", metadata=b'{"$causedBy":"x"}', id=uuid.uuid4())],
    )
    client.append_to_stream(
        "$ce-order", current_version=StreamState.NO_STREAM, events=[NewEvent("$>", b"0@order-1")]
    )
    run_until_caught_up(make_job(source, target, tmp_path))
    target_client = _client(target)
    assert [e.type for e in target_client.get_stream("totals")] == ["Counted"]
    streams = {e.stream_name for e in target_client.read_all(filter_exclude=[])}
    assert "$ce-order" not in streams
    assert not any(s.startswith("$projections-") for s in streams)
