"""KurrentDB 26.1's `AppendRecords`, served when the emulator runs as 26.1 and refused as the
older servers refuse it, checked with the real kurrentdbclient (`.venv-kurrent`) by
kurrent_append_records_probe.py: one test per check, the expectations being KurrentDB's own
AppendRecords tests (v26.1.0). The ServerFeatures listing of each version is checked here."""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf import empty_pb2

from core.protocol import serverfeatures_pb2_grpc
from esdb_emulator import Emulator
from tests.emulator.test_kurrentdbclient import CREATE_VENV, KURRENT_PYTHON, ROOT

PROBE = Path(__file__).with_name("kurrent_append_records_probe.py")
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
V2 = "kurrentdb.protocol.v2.streams.streamsservice"


def run_probe(db: Emulator, version: str) -> dict[str, dict]:
    if not KURRENT_PYTHON.exists():
        pytest.fail(f"{KURRENT_PYTHON} is missing;\n{CREATE_VENV}", pytrace=False)
    env = dict(os.environ, PYTHONUNBUFFERED="1", GRPC_VERBOSITY="ERROR")
    env.pop("PYTHONPATH", None)
    proc = subprocess.run(
        [str(KURRENT_PYTHON), str(PROBE), db.connection_string(), "--version", version],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=ROOT,
        check=False,
    )
    results = {r["check"]: r for r in map(json.loads, proc.stdout.splitlines())}
    if not results:
        pytest.fail(f"probe printed nothing; stderr:\n{proc.stderr[-3000:]}")
    return results


@pytest.fixture(scope="module")
def results() -> Iterator[dict[str, dict]]:
    with Emulator(server_version="26.1") as db:
        yield run_probe(db, "26.1")


@pytest.mark.parametrize("check", CHECKS)
def test_kurrentdbclient_append_records(results: dict[str, dict], check: str) -> None:
    result = results.get(check)
    assert result is not None, f"check {check} did not run"
    assert result["ok"], json.dumps(result["detail"], indent=1)


def test_probe_ran_every_check(results: dict[str, dict]) -> None:
    assert list(results) == CHECKS


@pytest.mark.parametrize(
    ("version", "details"),
    [("25.1", "Method is unimplemented."), ("24.10", "Service is unimplemented.")],
)
def test_older_servers_refuse_append_records(version: str, details: str) -> None:
    # Grpc.AspNetCore answers a method a service lacks, or a service the node lacks, with
    # UNIMPLEMENTED (ServerCallHandlerFactory): 25.1 has AppendSession only, 24.10 no v2 API.
    with Emulator(server_version=version) as db:
        result = run_probe(db, version)["unimplemented"]
    assert result["ok"], result["detail"]
    assert result["detail"] == details


def listed(db: Emulator) -> tuple[str, set[tuple[str, str]]]:
    with grpc.insecure_channel(db.target) as channel:
        stub = serverfeatures_pb2_grpc.ServerFeaturesStub(channel)
        reply = stub.GetSupportedMethods(empty_pb2.Empty(), timeout=5)
    return reply.event_store_server_version, {
        (m.service_name, m.method_name) for m in reply.methods
    }


@pytest.mark.parametrize(
    ("version", "full", "v2"),
    [
        ("24.10", "24.10.0", set()),
        ("25.1", "25.1.0", {"appendsession"}),
        ("26.1", "26.1.0", {"appendsession", "appendrecords"}),
    ],
)
def test_server_features_follow_the_version(version: str, full: str, v2: set[str]) -> None:
    with Emulator(server_version=version) as db:
        reported, methods = listed(db)
    assert reported == full
    assert {m for s, m in methods if s == V2} == v2
    assert ("event_store.client.streams.streams", "batchappend") in methods


def test_the_default_is_25_1_and_multi_append_false_is_24_10() -> None:
    with Emulator() as default, Emulator(multi_append=False) as old:
        assert listed(default)[0] == "25.1.0"
        assert listed(old)[0] == "24.10.0"
    with pytest.raises(ValueError, match="contradicts"):
        Emulator(multi_append=False, server_version="26.1")
    with pytest.raises(ValueError, match=re.escape("24.10, 25.1, 26.1")):
        Emulator(server_version="23.10")
