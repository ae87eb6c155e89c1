"""The `esdb-relay` command end to end, in process (typer's CliRunner) against emulators.

Bad input gets a clear message naming what is wrong and a non-zero exit, nothing is written,
and no password ever reaches the output.
"""

from __future__ import annotations

import json
import socket
import uuid

import pytest
from typer.testing import CliRunner

from esdb_emulator import Emulator
from esdb_emulator.store import NO_STREAM, ProposedEvent
from handlers.cli.main import app
from tests.engine.helpers import differences

runner = CliRunner()
PASSWORD = "changeit"


def seed(db: Emulator, streams: int = 5, events: int = 4) -> None:
    for s in range(streams):
        db.store.append(
            f"order-{s}",
            NO_STREAM,
            [
                ProposedEvent(str(uuid.uuid4()), "Placed", "application/json", b'{"n": 1}')
                for _ in range(events)
            ],
        )


def env_for(source: Emulator, target: Emulator, tmp_path, **extra: str) -> dict[str, str]:
    return {
        "ESDB_RELAY_JOB_ID": "cli-job",
        "ESDB_RELAY_SOURCE": source.uri,
        "ESDB_RELAY_TARGET": target.uri,
        "ESDB_RELAY_CHECKPOINT_STORE": f"sqlite:///{tmp_path}/cp.db",
        **extra,
    }


def invoke(args: list[str], env: dict[str, str]):
    result = runner.invoke(app, args, env=env)
    assert PASSWORD not in result.output, "a password reached the CLI output"
    return result


@pytest.fixture
def tls_pair():
    with Emulator(tls=True) as source, Emulator(tls=True) as target:
        yield source, target


def test_run_until_caught_up_then_status_and_verify(tls_pair, tmp_path):
    source, target = tls_pair
    seed(source)
    env = env_for(source, target, tmp_path)
    result = invoke(["run", "--until-caught-up", "--no-progress", "--log-format", "json"], env)
    assert result.exit_code == 0, result.output
    assert "caught up" in result.output
    assert differences(source.store, target.store) == []

    status = invoke(["status", "--json"], env)
    assert status.exit_code == 0, status.output
    figures = json.loads(status.output)
    assert figures["lag_bytes"] == 0 and figures["caught_up"] is True
    assert figures["events_written"] == 20

    verified = invoke(["verify"], env)
    assert verified.exit_code == 0, verified.output
    sampled = invoke(["verify", "--sample", "2"], env)
    assert sampled.exit_code == 0, sampled.output
    assert "EventStoreDB keeps no complete list of them but `$all`" in sampled.output


def test_json_log_lines_carry_each_slice(tls_pair, tmp_path):
    source, target = tls_pair
    seed(source)
    env = env_for(source, target, tmp_path, ESDB_RELAY_BUDGET__MAX_EVENTS="7")
    result = invoke(["run", "--until-caught-up", "--no-progress", "--log-format", "json"], env)
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    slices = [line["slice"] for line in lines if "slice" in line]
    assert len(slices) >= 3
    assert sum(s["events_written"] for s in slices) == 20
    assert all(PASSWORD not in json.dumps(line) for line in lines)


def test_backfill_dry_run_reports_without_writing(tls_pair, tmp_path):
    source, target = tls_pair
    seed(source)
    before = len(target.store)
    result = invoke(["backfill", "--from", "0", "--dry-run"], env_for(source, target, tmp_path))
    assert result.exit_code == 0, result.output
    assert len(target.store) == before


def test_malformed_config_names_the_field_and_writes_nothing(tls_pair, tmp_path):
    source, target = tls_pair
    seed(source)
    config = tmp_path / "job.toml"
    config.write_text('job_id = "x"\nmode = "sideways"\n[budget]\nmax_events = "lots"\n')
    env = env_for(source, target, tmp_path)
    del env["ESDB_RELAY_JOB_ID"]
    before = len(target.store)
    result = invoke(["run", "--until-caught-up", "--config", str(config)], env)
    assert result.exit_code == 2
    assert "mode" in result.output and "budget.max_events" in result.output
    assert len(target.store) == before


def test_malformed_connection_string_is_named_without_the_password(tmp_path):
    env = {
        "ESDB_RELAY_JOB_ID": "x",
        "ESDB_RELAY_SOURCE": f"http://admin:{PASSWORD}@host:2113",
        "ESDB_RELAY_TARGET": f"esdb://admin:{PASSWORD}@",
    }
    result = invoke(["status"], env)
    assert result.exit_code == 2
    assert "source" in result.output and "target" in result.output


def test_unreachable_source_is_a_clear_error(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with Emulator() as target:
        env = {
            "ESDB_RELAY_JOB_ID": "x",
            "ESDB_RELAY_SOURCE": f"esdb://127.0.0.1:{port}?Tls=false",
            "ESDB_RELAY_TARGET": target.uri,
            "ESDB_RELAY_CHECKPOINT_STORE": f"sqlite:///{tmp_path}/cp.db",
        }
        before = len(target.store)
        result = invoke(["run", "--until-caught-up", "--connect-timeout", "1"], env)
        assert result.exit_code == 1
        assert "source" in result.output
        assert len(target.store) == before


def test_wrong_credentials_are_refused_with_the_side_named(tls_pair, tmp_path):
    source, target = tls_pair
    seed(source)
    env = env_for(source, target, tmp_path)
    env["ESDB_RELAY_TARGET"] = target.connection_string(password="wrong-" + PASSWORD[:3])
    before = len(target.store)
    result = invoke(["run", "--until-caught-up", "--connect-timeout", "1"], env)
    assert result.exit_code == 1
    assert "target" in result.output and "password" in result.output
    assert len(target.store) == before


def test_plaintext_client_against_tls_server_fails_clearly(tls_pair, tmp_path):
    source, target = tls_pair
    env = env_for(source, target, tmp_path)
    env["ESDB_RELAY_SOURCE"] = f"esdb://{source.target}?Tls=false"
    result = invoke(["status", "--connect-timeout", "1"], env)
    assert result.exit_code == 1
    assert "source" in result.output
