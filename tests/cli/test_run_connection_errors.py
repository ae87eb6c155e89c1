"""`esdb-relay run` that cannot reach a side, in a subprocess so the real stderr is checked:
each case is named as preflight names it (plaintext client against a TLS server, an
unresolvable host, a refused port, an unknown CA, a wrong password), with its fix and a
pointer to `esdb-relay preflight`; no gRPC C-core chatter, no "usually temporary"."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from esdb_emulator import Emulator

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "changeit"
CHATTER = ("absl::InitializeLog", "Handshake failed", "ssl_transport_security", "I0000")


@pytest.fixture(scope="module")
def tls_db():
    with Emulator(tls=True) as db:
        yield db


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_against(source: str, target: str, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "GRPC_VERBOSITY"}
    env.update(
        ESDB_RELAY_JOB_ID="unreachable",
        ESDB_RELAY_SOURCE=source,
        ESDB_RELAY_TARGET=target,
        ESDB_RELAY_CHECKPOINT_STORE=f"sqlite:///{tmp_path}/cp.db",
        COLUMNS="300",
    )
    return subprocess.run(
        [sys.executable, "-m", "handlers.cli.main", "run", "--until-caught-up", "--no-progress",
         "--connect-timeout", "2"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


CASES = {
    "plaintext-vs-tls": ("{host}?tls=false", "source: TLS", "speaks TLS but the connection"),
    "unresolvable": ("no-such-host.invalid:2113?tls=false", "source: DNS", "cannot resolve"),
    "refused": ("127.0.0.1:{closed}?tls=false", "source: TCP", "connection refused"),
    "unknown-ca": ("{host}", "source: TLS", "does not trust"),
    "wrong-password": ("{host}?tlsCaFile={ca}", "source: credentials", "does not accept"),
}


@pytest.mark.parametrize("case", CASES)
def test_run_names_the_connection_problem_as_preflight_does(tls_db, tmp_path, case):
    where, check, says = CASES[case]
    ca = tls_db.uri.split("tlsCaFile=", 1)[1]
    user = f"admin:{'wrong' if case == 'wrong-password' else PASSWORD}"
    source = f"esdb://{user}@" + where.format(host=tls_db.target, closed=closed_port(), ca=ca)
    result = run_against(source, tls_db.uri, tmp_path)
    stderr = result.stderr
    assert result.returncode == 1, stderr
    assert f"preflight's check {check} fails" in stderr and says in stderr, stderr
    assert "fix:" in stderr and "esdb-relay preflight" in stderr
    assert "usually temporary" not in stderr
    assert not [c for c in CHATTER if c in stderr], stderr
    assert PASSWORD not in stderr + result.stdout and "wrong@" not in stderr
