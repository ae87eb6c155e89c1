"""`esdb-relay projections list | export | create` in process against emulators: tables and
JSON, dry run by default, --yes creates stopped, re-runs are no-ops, conflicts exit 1, bad
input exits 2 with a message, and no password reaches the output."""

from __future__ import annotations

import json
import socket

import pytest
from esdbclient import EventStoreDBClient
from typer.testing import CliRunner

from core.eventstore import EventStore
from esdb_emulator import Emulator
from handlers.cli.projections_cmd import projections_app

runner = CliRunner()
PASSWORD = "changeit"
QUERY = "fromAll().when({ $any: function (s, e) { linkTo('copy-' + e.streamId, e); } });\n"


@pytest.fixture
def env(tmp_path):
    with Emulator(tls=True) as source, Emulator(tls=True) as target:
        client = EventStoreDBClient(source.uri)
        client.create_projection(name="copier", query=QUERY, emit_enabled=True)
        client.enable_projection("$by_category")
        client.close()
        yield (
            {
                "ESDB_RELAY_JOB_ID": "cli-projections",
                "ESDB_RELAY_SOURCE": source.uri,
                "ESDB_RELAY_TARGET": target.uri,
                "ESDB_RELAY_CHECKPOINT_STORE": f"sqlite:///{tmp_path}/cp.db",
            },
            target,
        )


def invoke(args: list[str], env: dict[str, str]):
    result = runner.invoke(projections_app, args, env=env)
    assert PASSWORD not in result.output, "a password reached the CLI output"
    return result


def test_list_table_and_json(env):
    variables, _ = env
    result = invoke(["list"], variables)
    assert result.exit_code == 0, result.output
    assert "copier" in result.output and "$by_category" in result.output
    assert "running on the source but not on the target: $by_category" in result.output
    payload = json.loads(invoke(["list", "--json"], variables).output)
    (copier,) = [p for p in payload["source"] if p["name"] == "copier"]
    assert copier["status"] == "Running" and copier["emit_enabled"] is True
    assert len(payload["target_system_projections"]) == 5


def test_export_then_create_dry_run_apply_and_rerun(env, tmp_path):
    variables, target = env
    out = tmp_path / "export"
    result = invoke(["export", "--out", str(out)], variables)
    assert result.exit_code == 0, result.output
    assert (out / "copier.js").read_text() == QUERY

    dry = invoke(["create", "--from", str(out)], variables)
    assert dry.exit_code == 0, dry.output
    assert "dry run" in dry.output and "--apply" in dry.output
    assert "copier" not in {s.name for s in _all_stats(target)}
    client = EventStoreDBClient(target.uri)

    applied = invoke(["create", "--from", str(out), "--apply", "--json"], variables)
    assert applied.exit_code == 0, applied.output
    (row,) = json.loads(applied.output)["projections"]
    assert row["action"] == "create" and row["done"] is True
    assert client.get_projection_statistics(name="copier").status == "Stopped"

    again = json.loads(invoke(["create", "--apply", "--json"], variables).output)
    assert [r["action"] for r in again["projections"]] == ["unchanged"]


def test_conflict_exits_1_and_is_not_overwritten(env):
    variables, target = env
    client = EventStoreDBClient(target.uri)
    client.create_projection(name="copier", query="fromAll();", emit_enabled=True)
    result = invoke(["create", "--apply"], variables)
    assert result.exit_code == 1, result.output
    assert "conflict" in result.output and "--update" in result.output
    assert client.get_projection_statistics(name="copier").status == "Running"


def test_bad_from_directory_and_unreachable_source_are_explained(env, tmp_path):
    variables, _ = env
    result = invoke(["create", "--from", str(tmp_path)], variables)
    assert result.exit_code == 2 and "manifest.json not found" in result.output
    with Emulator() as gone:
        down = gone.uri
    result = invoke(["list"], {**variables, "ESDB_RELAY_SOURCE": down})
    assert result.exit_code == 1
    assert "did not answer" in result.output and "preflight" in result.output


def _all_stats(db: Emulator) -> list:
    with EventStore(db.uri, side="target") as store:
        return store.projection_statistics()


def test_list_exits_1_when_the_target_could_not_be_checked(env):
    variables, _ = env
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    unreachable = {**variables, "ESDB_RELAY_TARGET": f"esdb://127.0.0.1:{closed}?tls=false"}
    result = invoke(["list"], unreachable)
    assert result.exit_code == 1, result.output
    assert "copier" in result.output  # the source's half is still shown
    assert "target system projections: not checked" in result.output
    assert "the target could not be checked" in result.output
    as_json = invoke(["list", "--json"], unreachable)
    assert as_json.exit_code == 1
    assert "error" in json.loads(as_json.stdout)["target_system_projections"]
