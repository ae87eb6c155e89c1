"""`esdb-relay emulator`: every fault the Python API offers (FaultConfig) is a flag, and each
flag works, checked against the running command through esdbclient's protos on a raw channel
(so no client retry hides a fault) or esdbclient itself."""

from __future__ import annotations

import dataclasses
import inspect
import os
import random
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from esdbclient import EventStoreDBClient, NewEvent, StreamState
from esdbclient.exceptions import MaximumAppendSizeExceededError
from esdbclient.protos.Grpc import shared_pb2, streams_pb2, streams_pb2_grpc
from google.protobuf import empty_pb2

from core.protocol import serverfeatures_pb2_grpc
from esdb_emulator import FaultConfig
from handlers.cli import main

ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def cli_emulator(*flags: str, **env_vars: str) -> Iterator[tuple[str, str]]:
    """`esdb-relay emulator --port 0 FLAGS`: (host:port, connection string)."""
    command = [sys.executable, "-m", "handlers.cli.main", "emulator", "--port", "0", *flags]
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "400", **env_vars}
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=ROOT, env=env)
    try:
        assert proc.stdout is not None
        target = re.search(r"listening on (\S+)", proc.stdout.readline())
        uri = re.search(r"connection string: (\S+)", proc.stdout.readline())
        assert target and uri, "the emulator did not start"
        yield target.group(1), uri.group(1)
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def read(target: str, stream: str = "s") -> tuple[grpc.StatusCode, int]:
    """Read a stream on a raw channel: (status, events received)."""
    options = streams_pb2.ReadReq.Options(
        stream=streams_pb2.ReadReq.Options.StreamOptions(
            stream_identifier=shared_pb2.StreamIdentifier(stream_name=stream.encode()),
            start=shared_pb2.Empty(),
        ),
        read_direction=streams_pb2.ReadReq.Options.Forwards,
        count=100,
        no_filter=shared_pb2.Empty(),
        uuid_option=streams_pb2.ReadReq.Options.UUIDOption(string=shared_pb2.Empty()),
    )
    received = 0
    with grpc.insecure_channel(target) as channel:
        try:
            for response in streams_pb2_grpc.StreamsStub(channel).Read(
                streams_pb2.ReadReq(options=options), timeout=10
            ):
                received += response.WhichOneof("content") == "event"
        except grpc.RpcError as e:
            return e.code(), received  # type: ignore[attr-defined]
    return grpc.StatusCode.OK, received


def append(uri: str, stream: str = "s", count: int = 5) -> None:
    client = EventStoreDBClient(uri)
    try:
        client.append_to_stream(
            stream,
            current_version=StreamState.ANY,
            events=[NewEvent(type="E", data=b"{}") for _ in range(count)],
        )
    finally:
        client.close()


def test_every_fault_setting_is_a_flag() -> None:
    flags = set(inspect.signature(main.emulator).parameters)
    assert {f.name for f in dataclasses.fields(FaultConfig)} <= flags


def test_latency_and_jitter_with_seed() -> None:
    seed = next(s for s in range(100) if random.Random(s).uniform(0, 600) > 400)
    delay = random.Random(seed).uniform(0, 600) / 1000  # the first call's jitter
    with cli_emulator("--latency-ms", "200", "--jitter-ms", "600", "--seed", str(seed)) as (
        target,
        _,
    ):
        started = time.monotonic()
        assert read(target) == (grpc.StatusCode.OK, 0)
        assert time.monotonic() - started >= 0.2 + delay


@pytest.mark.parametrize(
    ("flag", "code"),
    [
        ("--unavailable-next", grpc.StatusCode.UNAVAILABLE),
        ("--deadline-next", None),
        ("--http-500-next", grpc.StatusCode.UNKNOWN),  # as grpcio sees Kestrel's HTTP 500
    ],
)
def test_next_n_calls_fail(flag: str, code: grpc.StatusCode | None) -> None:
    expected = code or grpc.StatusCode.DEADLINE_EXCEEDED
    with cli_emulator(flag, "2") as (target, _):
        assert [read(target)[0] for _ in range(3)] == [expected, expected, grpc.StatusCode.OK]


@pytest.mark.parametrize(
    ("flag", "code"),
    [
        ("--unavailable-rate", grpc.StatusCode.UNAVAILABLE),
        ("--deadline-rate", grpc.StatusCode.DEADLINE_EXCEEDED),
    ],
)
def test_rates_and_methods(flag: str, code: grpc.StatusCode) -> None:
    # Rate 1.0 fails every call of the methods named; other methods are untouched.
    with cli_emulator(flag, "1.0", "--methods", "Read") as (target, uri):
        assert read(target)[0] == code
        append(uri)  # Append / BatchAppend are not in --methods
    with cli_emulator(flag, "1.0", "--methods", "Append,BatchAppend") as (target, _):
        assert read(target)[0] == grpc.StatusCode.OK


def test_not_leader_next() -> None:
    with cli_emulator("--not-leader-next", "1") as (target, _):
        assert read(target)[0] == grpc.StatusCode.NOT_FOUND  # "Leader info available"
        assert read(target)[0] == grpc.StatusCode.OK


def test_reset_read_after_and_reset_reads_next() -> None:
    with cli_emulator("--reset-read-after", "2", "--reset-reads-next", "1") as (target, uri):
        append(uri)
        assert read(target) == (grpc.StatusCode.UNAVAILABLE, 2)  # reset after 2 events
        assert read(target) == (grpc.StatusCode.OK, 5)  # only the next read was reset
    with cli_emulator("--reset-read-after", "3") as (target, uri):
        append(uri)
        assert [read(target) for _ in range(2)] == [(grpc.StatusCode.UNAVAILABLE, 3)] * 2


def test_max_append_size() -> None:
    with cli_emulator("--max-append-size", "100") as (_, uri):
        client = EventStoreDBClient(uri)
        try:
            with pytest.raises(MaximumAppendSizeExceededError):
                client.append_to_stream(
                    "big",
                    current_version=StreamState.NO_STREAM,
                    events=[NewEvent(type="E", data=b"x" * 200)],
                )
            client.append_to_stream(
                "small", current_version=StreamState.NO_STREAM, events=NewEvent("E", b"{}")
            )
        finally:
            client.close()


@pytest.mark.parametrize(
    ("flags", "version"),
    [((), "25.1.0"), (("--server-version", "26.1"), "26.1.0"), (("--no-multi-append",), "24.10.0")],
)
def test_server_version(flags: tuple[str, ...], version: str) -> None:
    with cli_emulator(*flags) as (target, _), grpc.insecure_channel(target) as channel:
        stub = serverfeatures_pb2_grpc.ServerFeaturesStub(channel)
        reply = stub.GetSupportedMethods(empty_pb2.Empty(), timeout=5)
    assert reply.event_store_server_version == version


def test_an_unknown_server_version_is_refused() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "handlers.cli.main", "emulator", "--server-version", "9.9"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=dict(os.environ, NO_COLOR="1", COLUMNS="400"),
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2 and "24.10, 25.1, 26.1" in proc.stderr


def test_tls_cert_dir_and_self_signed(tmp_path: Path) -> None:
    with cli_emulator("--tls", "--cert-dir", str(tmp_path)) as (_, uri):
        assert f"tlsCaFile={tmp_path / 'ca.crt'}" in uri
        append(uri, f"tls-{uuid.uuid4()}", 1)
    node = x509.load_pem_x509_certificate((tmp_path / "node.crt").read_bytes())
    assert not node.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    with cli_emulator("--tls", "--tls-self-signed") as (_, uri):
        ca_file = re.search(r"tlsCaFile=([^&]+)", uri)
        assert ca_file
        cert = x509.load_pem_x509_certificate(Path(ca_file.group(1)).read_bytes())
        assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        assert cert.issuer == cert.subject


def test_connection_string_on_one_line_and_the_ca_stable_across_restarts(tmp_path: Path) -> None:
    """Redirected at 40 columns (rich would wrap it), the connection string is still one
    line, and without --cert-dir the CA stays at one path from one start to the next."""
    cache = str(tmp_path / "cache")
    with cli_emulator("--tls", COLUMNS="40", XDG_CACHE_HOME=cache) as (_, first):
        append(first, f"tls-{uuid.uuid4()}", 1)  # the whole string, as printed, connects
    with cli_emulator("--tls", COLUMNS="40", XDG_CACHE_HOME=cache) as (_, second):
        append(second, f"tls-{uuid.uuid4()}", 1)
    ca = re.search(r"tlsCaFile=([^&]+)", first)
    assert ca and ca.group(1).startswith(cache) and ca.group(1).endswith("ca.crt")
    assert ca.group(1) == re.search(r"tlsCaFile=([^&]+)", second).group(1)  # type: ignore[union-attr]
