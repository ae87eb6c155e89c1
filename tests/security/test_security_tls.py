"""TLS through the relay (the CLI's `run`), against the emulator's TLS with a generated CA.

TLS is on unless the connection string says tls=false, and then every load of the job logs a
warning; the certificate is always verified (esdbclient 1.1.7 ignores tlsVerifyCert=false, so
the relay warns that it is ignored); a custom CA is given with tlsCaFile. Every mismatch ends
the run with exit code 1 and one clear line, no traceback, nothing written.

tests/emulator/test_security.py checks the same mismatches on a bare esdbclient and
tests/engine/test_preflight.py the preflight report; these check the relay's own path.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from esdb_emulator import Emulator
from esdb_emulator.workload import Workload, generate
from handlers.cli.main import app
from tests.engine.helpers import differences
from tests.passwords import TEST_PASSWORDS

PASSWORD = TEST_PASSWORDS["tests/security password"]
WRONG = TEST_PASSWORDS["tests/engine/test_preflight.py WRONG"]
USERS = {"admin": PASSWORD}


@pytest.fixture(scope="module")
def tls_source():
    with Emulator(tls=True, users=USERS) as db:
        generate(db.store, Workload(events=60, streams=4, links=False))
        yield db


@pytest.fixture(scope="module")
def plain_source():
    with Emulator() as db:
        generate(db.store, Workload(events=60, streams=4, links=False))
        yield db


def run_cli(tmp_path: Path, monkeypatch, source: str, target: str):
    store = tmp_path / "checkpoints.db"
    monkeypatch.setenv("ESDB_RELAY_JOB_ID", "tls-job")
    monkeypatch.setenv("ESDB_RELAY_SOURCE", source)
    monkeypatch.setenv("ESDB_RELAY_TARGET", target)
    monkeypatch.setenv("ESDB_RELAY_CHECKPOINT_STORE", f"sqlite:///{store}")
    result = CliRunner().invoke(
        app, ["run", "--until-caught-up", "--no-progress", "--connect-timeout", "2"]
    )
    output = " ".join((result.stdout + result.stderr).split())  # rich wraps long lines
    assert PASSWORD not in output and "Traceback" not in output
    return result.exit_code, output, store


def written(store: Path) -> int:
    """Slices recorded in the job's SQLite checkpoint store (0 if it was never created)."""
    if not store.exists():
        return 0
    import sqlite3

    with sqlite3.connect(store) as db:
        tables = [r[0] for r in db.execute("select name from sqlite_master where type='table'")]
        return sum(db.execute(f'select count(*) from "{t}"').fetchone()[0] for t in tables)


def test_tls_with_a_custom_ca_copies_everything_without_warnings(tls_source, tmp_path, monkeypatch):
    with Emulator(tls=True, users=USERS) as target:
        uri = tls_source.connection_string(password=PASSWORD)
        assert "tlsCaFile=" in uri and "tls=" not in uri.lower().replace("tlscafile", "")
        code, output, _ = run_cli(
            tmp_path, monkeypatch, uri, target.connection_string(password=PASSWORD)
        )
        assert code == 0, output
        assert "TLS is off" not in output and "tlsVerifyCert" not in output
        assert differences(tls_source.store, target.store) == []


def test_the_kurrentdb_scheme_names_the_same_protocol(tls_source, tmp_path, monkeypatch):
    with Emulator(tls=True, users=USERS) as target:
        source = tls_source.connection_string(password=PASSWORD).replace("esdb://", "kurrentdb://")
        code, output, _ = run_cli(
            tmp_path,
            monkeypatch,
            source,
            target.connection_string(password=PASSWORD, discover=True).replace(
                "esdb+discover://", "kurrentdb+discover://"
            ),
        )
        assert code == 0, output
        assert differences(tls_source.store, target.store) == []


def test_plaintext_only_when_asked_and_then_a_warning(plain_source, tmp_path, monkeypatch):
    with Emulator() as target:
        code, output, _ = run_cli(tmp_path, monkeypatch, plain_source.uri, target.uri)
        assert code == 0, output
        assert "source: TLS is off (tls=false" in output
        assert "target: TLS is off (tls=false" in output
        assert differences(plain_source.store, target.store) == []


def test_the_handlers_log_the_plaintext_warning_too(plain_source, monkeypatch, capsys):
    from core.invocation import handle

    with Emulator() as target:
        monkeypatch.setenv("ESDB_RELAY_JOB_ID", "tls-job")
        monkeypatch.setenv("ESDB_RELAY_SOURCE", plain_source.uri)
        monkeypatch.setenv("ESDB_RELAY_TARGET", target.uri)
        monkeypatch.setenv("ESDB_RELAY_CHECKPOINT_STORE", "sqlite:///:memory:")
        import logging

        records: list[str] = []
        handler = logging.Handler()
        handler.emit = lambda record: records.append(record.getMessage())  # type: ignore[method-assign]
        logging.getLogger("esdb_relay").addHandler(handler)
        try:
            result = handle({"action": "status"}, remaining_seconds=30, chain=pytest.fail)
        finally:
            logging.getLogger("esdb_relay").removeHandler(handler)
        assert result["status"] == "ok", json.dumps(result)
        assert any(r.startswith("source: TLS is off") for r in records), records


def ca_less(db: Emulator) -> str:
    return db.connection_string(password=PASSWORD).split("?")[0]


@pytest.mark.parametrize(
    ("case", "said"),
    [
        ("unknown CA", "TLS handshake failed"),
        ("tlsVerifyCert=false is still verified", "TLS handshake failed"),
        ("plaintext client, TLS server", "source"),
        ("TLS client, plaintext server", "source"),
        ("wrong password", "access denied (UNAUTHENTICATED)"),
        ("unreachable host", "connection refused"),
        ("missing CA file", "cannot read the tlsCaFile /no/such/ca.pem"),
    ],
)
def test_mismatches_end_the_run_with_one_clear_line(
    case, said, tls_source, plain_source, tmp_path, monkeypatch
):
    with Emulator(tls=True, users=USERS) as target:
        source = {
            "unknown CA": ca_less(tls_source),
            "tlsVerifyCert=false is still verified": ca_less(tls_source) + "?tlsVerifyCert=false",
            "plaintext client, TLS server": ca_less(tls_source) + "?tls=false",
            "TLS client, plaintext server": f"esdb://admin:{PASSWORD}@{plain_source.target}",
            "wrong password": tls_source.connection_string(password=WRONG),
            "unreachable host": f"esdb://admin:{PASSWORD}@127.0.0.1:9?tls=false",
            "missing CA file": ca_less(tls_source) + "?tlsCaFile=/no/such/ca.pem",
        }[case]
        before = target.store.last_position
        code, output, store = run_cli(
            tmp_path, monkeypatch, source, target.connection_string(password=PASSWORD)
        )
        assert code == 1, output
        error_lines = [line for line in output.split("error:")[1:]]
        assert len(error_lines) == 1 and said in error_lines[0], output
        # the way out: a hint, or preflight's fix for the check that failed (issue 16)
        assert "hint" in output or " — " in error_lines[0] or "fix:" in output
        if "tlsVerifyCert" in case:
            assert "tlsVerifyCert=false is ignored" in output
        assert target.store.last_position == before
        assert written(store) == 0
