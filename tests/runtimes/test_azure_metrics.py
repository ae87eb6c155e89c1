"""Application Insights custom metrics from the packaged Azure app, run by the Azure Functions
Python worker's own code (the set-up of test_azure_runtime.py: Azurite, two TLS emulators, the
worker driven by tests/runtimes/azure_worker_host.py).

Not run here: Application Insights. The app's `APPLICATIONINSIGHTS_CONNECTION_STRING` points its
IngestionEndpoint at an HTTP server of this test, which answers as the ingestion service does
and keeps what arrives: the exporter's own envelopes (`/v2.1/track`), whose MetricData must name
the metrics of core/metrics.py with the job in their properties (customDimensions) and carry
the slices' figures. Signing in with the managed identity (APPLICATIONINSIGHTS_AUTHENTICATION_
STRING, set by infra/azure/function.tf) cannot be done here: the test sends no such setting.
Statsbeat (the exporter's own usage telemetry to Microsoft) is off so nothing leaves the machine.
"""

from __future__ import annotations

import gzip
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from core.metrics import METRICS
from esdb_emulator.workload import Workload, generate
from tests.infra.test_azure_monitoring import read_names
from tests.infra.test_azure_terraform import INFRA, Config
from tests.runtimes.test_azure_runtime import deployed, drain, start_worker  # noqa: F401
from tests.services.azurite import azurite_queue, azurite_table  # noqa: F401 - fixtures

pytestmark = pytest.mark.slow

IKEY = "00000000-0000-0000-0000-0000000000e5"
OTEL = {m.otel: m for m in METRICS}


class Ingestion(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Track)
        self.envelopes: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self.lock = threading.Lock()


class _Track(BaseHTTPRequestHandler):
    server: Ingestion

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        items = json.loads(body)
        with self.server.lock:
            self.server.paths.append(self.path)
            self.server.envelopes.extend(items)
        answer = json.dumps(
            {"itemsReceived": len(items), "itemsAccepted": len(items), "errors": []}
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def ingestion() -> Iterator[Ingestion]:
    server = Ingestion()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def metric_points(server: Ingestion) -> list[tuple[str, float, dict[str, Any]]]:
    """(name, value, properties) of every metric that arrived, in order."""
    points = []
    for envelope in server.envelopes:
        if envelope["data"]["baseType"] != "MetricData":
            continue
        assert envelope["iKey"] == IKEY
        base = envelope["data"]["baseData"]
        for metric in base["metrics"]:
            points.append((metric["name"], metric["value"], base.get("properties", {})))
    return points


def test_each_slice_sends_its_figures_as_custom_metrics(deployed, start_worker, ingestion):  # noqa: F811
    source, _target, queue, settings = deployed
    generate(source.store, Workload(events=400, streams=20, links=False))
    port = ingestion.server_address[1]
    worker = start_worker(
        {
            **settings,
            "APPLICATIONINSIGHTS_CONNECTION_STRING": (
                f"InstrumentationKey={IKEY};IngestionEndpoint=http://127.0.0.1:{port}/"
            ),
            "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL": "true",
        }
    )
    assert worker.ask({"op": "init"})["ok"]
    assert worker.ask({"op": "invoke", "function": "scheduled"})["ok"]
    hops = 0
    while bodies := drain(queue):
        for body in bodies:
            assert worker.ask({"op": "invoke", "function": "chained", "data": body})["ok"]
        hops += 1
        assert hops < 30
    assert hops >= 2
    assert ingestion.paths and set(ingestion.paths) == {"/v2.1/track"}
    points = metric_points(ingestion)
    names = {name for name, _, _ in points}
    assert names <= set(OTEL), names - set(OTEL)
    assert names == set(OTEL), f"never sent: {set(OTEL) - names}"
    # every custom metric infra/azure/monitoring.tf's workbook and alerts read was sent
    read = read_names(Config(INFRA))
    assert read and read <= names, read - names
    assert {p["job_id"] for _, _, p in points} == {"azure-runtime-job"}
    lag = [v for n, v, _ in points if n == "esdb_relay_lag_bytes"]
    assert len(lag) == hops + 1  # one per slice, flushed with it
    assert lag[0] > 0 and lag[-1] == 0
    written = sum(v for n, v, _ in points if n == "esdb_relay_events_written")
    assert written >= 400  # every generated event (and the streams' metadata) was copied
    assert {v for n, v, _ in points if n == "esdb_relay_failed_slices"} == {0}


def test_a_sharded_jobs_slices_send_the_jobs_metrics_with_their_shard(
    deployed,  # noqa: F811
    start_worker,  # noqa: F811
    ingestion,
):
    """core/metrics.SHARDS on Azure: customDimensions.job_id stays the job's (the workbook and
    alerts read it as one), customDimensions.shard names each shard's slices."""
    source, _target, queue, settings = deployed
    generate(source.store, Workload(events=300, streams=30, links=False))
    port = ingestion.server_address[1]
    worker = start_worker(
        {
            **settings,
            "ESDB_RELAY_SHARDS": "3",
            "APPLICATIONINSIGHTS_CONNECTION_STRING": (
                f"InstrumentationKey={IKEY};IngestionEndpoint=http://127.0.0.1:{port}/"
            ),
            "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL": "true",
        }
    )
    assert worker.ask({"op": "init"})["ok"]
    assert worker.ask({"op": "invoke", "function": "scheduled"})["ok"]
    hops = 0
    while bodies := drain(queue):
        for body in bodies:
            assert worker.ask({"op": "invoke", "function": "chained", "data": body})["ok"]
        hops += 1
        assert hops < 60
    points = metric_points(ingestion)
    written = [(v, p) for n, v, p in points if n == "esdb_relay_events_written"]
    assert {p["job_id"] for _, p in written} == {"azure-runtime-job"}
    assert {str(p["shard"]) for _, p in written} == {"0", "1", "2"}
    assert sum(v for v, _ in written) >= 300
