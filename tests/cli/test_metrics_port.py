"""`esdb-relay run --metrics-port`: a real run (a subprocess) against two emulators, scraped
over HTTP while it copies and follows the tail, in OpenMetrics as Prometheus asks for it.

The exposition is parsed by prometheus-client's own OpenMetrics parser; every metric of
core/metrics.py must be there, with the figures the run really produced. Then the target refuses
appends (the emulator's fault injection) and the failures show while the relay retries.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from core.metrics import METRICS
from esdb_emulator import Emulator
from esdb_emulator.store import NO_STREAM, ProposedEvent
from tests.cli.test_cli import PASSWORD, seed
from tests.engine.helpers import differences
from tests.services.moto import free_port

ROOT = Path(__file__).resolve().parents[2]
OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"
JOB = "metrics-job"


def scrape(port: int) -> tuple[str, dict[str, dict[tuple[tuple[str, str], ...], float]]]:
    """(content type, {sample name: {labels: value}})."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/metrics", headers={"Accept": OPENMETRICS}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        content_type = response.headers["Content-Type"]
        text = response.read().decode()
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):  # raises on invalid OpenMetrics
        for s in family.samples:
            samples.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return content_type, samples


def value(samples: dict[str, Any], name: str) -> float | None:
    return samples.get(name, {}).get((("job_id", JOB),))


@pytest.fixture
def relay_run(tmp_path) -> Iterator[dict[str, Any]]:
    with Emulator(tls=True) as source, Emulator(tls=True) as target:
        seed(source, streams=10, events=30)  # 300 events
        port = free_port()
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "ESDB_RELAY_JOB_ID": JOB,
            "ESDB_RELAY_SOURCE": source.uri,
            "ESDB_RELAY_TARGET": target.uri,
            "ESDB_RELAY_CHECKPOINT_STORE": f"sqlite:///{tmp_path}/cp.db",
            "ESDB_RELAY_BUDGET__MAX_EVENTS": "50",  # several slices
            "ESDB_RELAY_BUDGET__DEADLINE_SECONDS": "3",  # a failing slice gives up quickly
        }
        log = tmp_path / "run.log"
        proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "handlers.cli.main", "run", "--no-progress"),
                *("--log-format", "json", "--metrics-port", str(port), "--idle-seconds", "0.2"),
            ],
            env=env,
            cwd=tmp_path,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        try:
            yield {"source": source, "target": target, "port": port, "proc": proc, "log": log}
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            assert PASSWORD not in log.read_text(errors="replace")


def wait_for(run: dict[str, Any], done: Any, what: str, seconds: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    last: dict[str, Any] = {}
    while time.monotonic() < deadline:
        assert run["proc"].poll() is None, run["log"].read_text(errors="replace")[-3000:]
        try:
            _, last = scrape(run["port"])
        except (urllib.error.URLError, ConnectionError):
            last = {}  # not listening yet (connecting first)
        if last and done(last):
            return last
        time.sleep(0.3)
    raise AssertionError(f"{what} not seen in time; last scrape: {last}")


def test_a_run_is_scraped_while_it_copies_and_follows(relay_run) -> None:
    run = relay_run
    samples = wait_for(
        run,
        lambda s: (
            value(s, "esdb_relay_events_written_total") == 300
            and value(s, "esdb_relay_lag_bytes") == 0
        ),
        "all 300 events copied",
    )
    content_type, samples = scrape(run["port"])
    assert content_type.startswith("application/openmetrics-text")
    for metric in METRICS:
        assert value(samples, metric.prometheus) is not None, f"{metric.prometheus} missing"
    assert value(samples, "esdb_relay_lag_events") == 0
    assert value(samples, "esdb_relay_lag_seconds") == 0
    assert value(samples, "esdb_relay_failed_slices_total") == 0
    assert value(samples, "esdb_relay_consecutive_failures") == 0
    assert value(samples, "esdb_relay_dead_lettered_total") == 0
    assert value(samples, "esdb_relay_slice_seconds") > 0
    assert value(samples, "esdb_relay_source_write_rate") >= 0
    assert value(samples, "esdb_relay_last_success_age") >= 0
    # following the tail: slices find nothing to copy
    wait_for(run, lambda s: value(s, "esdb_relay_copy_rate") == 0, "a copy rate of 0")
    assert differences(run["source"].store, run["target"].store) == []

    # the target refuses every append: slices fail while the relay retries them
    run["target"].faults.update(unavailable_rate=1.0, methods={"Append", "BatchAppend"})
    run["source"].store.append(
        "late-1",
        NO_STREAM,
        [ProposedEvent(str(uuid.uuid4()), "Late", "application/json", b"{}") for _ in range(5)],
    )
    failing = wait_for(
        run,
        lambda s: (value(s, "esdb_relay_failed_slices_total") or 0) >= 1,
        "a failed slice",
    )
    assert value(failing, "esdb_relay_consecutive_failures") >= 1
    assert value(failing, "esdb_relay_lag_bytes") > 0  # measured on the source, still readable


def test_a_metrics_port_in_use_is_a_clear_error(tmp_path) -> None:
    from typer.testing import CliRunner

    from handlers.cli.main import app

    with Emulator(tls=True) as source, Emulator(tls=True) as target, socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {
            "ESDB_RELAY_JOB_ID": JOB,
            "ESDB_RELAY_SOURCE": source.uri,
            "ESDB_RELAY_TARGET": target.uri,
            "ESDB_RELAY_CHECKPOINT_STORE": f"sqlite:///{tmp_path}/cp.db",
        }
        result = CliRunner().invoke(
            app, ["run", "--until-caught-up", "--metrics-port", str(port)], env=env
        )
    assert result.exit_code == 2, result.output
    assert f"cannot serve metrics on 127.0.0.1:{port}" in result.output
    assert "choose a free --metrics-port" in result.output
    assert PASSWORD not in result.output
