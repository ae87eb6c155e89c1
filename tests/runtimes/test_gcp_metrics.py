"""The log lines the packaged GCP function really writes under functions-framework, selected
and extracted by infra/gcp/monitoring.tf's own log-based metric filters.

Set-up of test_gcp_runtime.py (Firestore and Pub/Sub emulators, two TLS esdb emulators, the zip
served by functions-framework). Not run here: Cloud Logging, so each JSON line the function
wrote becomes the entry Cloud Logging makes of it (tests/infra/logging_filter.py), and every
log-based metric's filter, as Terraform renders it, is applied to them: a filter that selects
nothing fails, and the values extracted must be the figures the slices reported.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from core.metrics import METRICS
from esdb_emulator.workload import Workload, generate
from tests.infra.logging_filter import entry, extract, matches
from tests.infra.test_gcp_monitoring import NAME, rendered
from tests.infra.test_gcp_terraform import INFRA, Config
from tests.runtimes.test_gcp_runtime import (  # noqa: F401 - fixtures
    built,
    deployed,
    post,
    pubsub_push,
    pull,
    serve,
)
from tests.services.firestore import firestore_emulator  # noqa: F401 - fixture
from tests.services.pubsub import pubsub_host  # noqa: F401 - fixture

pytestmark = pytest.mark.slow


def entries(log: Path, service: str) -> list[dict[str, Any]]:
    resource = {"type": "cloud_run_revision", "labels": {"service_name": f"{NAME}-{service}"}}
    found = []
    for raw in log.read_text(errors="replace").splitlines():
        try:
            line = json.loads(raw)
        except ValueError:
            continue  # functions-framework's own lines
        if isinstance(line, dict):
            found.append(entry(line, resource))
    return found


def selected(tf: Config, name: str, items: list[dict[str, Any]], key: str | None = None):
    body = tf.of("google_logging_metric")[name]
    query = rendered(tf, body["filter"], key)
    chosen = [i for i in items if matches(query, i)]
    assert chosen, f"the filter of {name} {key or ''} selects none of the function's lines"
    extractor = body.get("value_extractor")
    if extractor is None:
        return chosen, []
    values = [extract(rendered(tf, extractor, key), i) for i in chosen]
    assert all(isinstance(v, int | float) for v in values), values
    return chosen, values


def test_the_chains_lines_feed_every_log_based_metric(
    deployed,  # noqa: F811
    serve,  # noqa: F811
    tmp_path,
) -> None:
    tf = Config(INFRA)
    source = deployed["source"]
    generate(source.store, Workload(events=400, streams=20, links=False))
    url = serve("on_event", "cloudevent", deployed["env"])
    assert pubsub_push(url, b"{}") == 200
    hops = 0
    while messages := pull(deployed):
        for data in messages:
            assert pubsub_push(url, data) == 200
        hops += 1
        assert hops < 30
    items = entries(tmp_path / "on_event.log", "event")
    slices, _ = selected(tf, "slices", items)
    reported = [s["jsonPayload"]["slice"] for s in slices]
    values = {m.key: selected(tf, "relay", items, m.key)[1] for m in METRICS}
    assert values["lag_bytes"] == [r["lag_bytes"] for r in reported]
    assert values["events_written"] == [r["events_written"] for r in reported]
    assert values["lag_bytes"][0] > 0 and values["lag_bytes"][-1] == 0
    assert set(values["failed_slices"]) == {0} and set(values["consecutive_failures"]) == {0}
    assert values["lag_seconds"][0] > 0 and values["lag_seconds"][-1] == 0
    # nothing failed: the error-lines metric selects no line of this run
    query = rendered(tf, tf.of("google_logging_metric")["error_lines"]["filter"])
    assert not [i for i in items if matches(query, i)]


def test_a_failed_slices_lines_feed_the_error_and_failure_metrics(
    deployed,  # noqa: F811
    serve,  # noqa: F811
    tmp_path,
) -> None:
    tf = Config(INFRA)
    generate(deployed["source"].store, Workload(events=20, streams=2, links=False))
    env = {**deployed["env"], "ESDB_RELAY_TARGET": "esdb://127.0.0.1:1?Tls=false"}
    url = serve("on_http", "http", env)
    status, _ = post(url, b"{}", {"Content-Type": "application/json"})
    assert status == 500
    items = entries(tmp_path / "on_http.log", "http")
    selected(tf, "error_lines", items)
    _, failed = selected(tf, "relay", items, "failed_slices")
    assert failed == [1]
    query = rendered(tf, tf.of("google_logging_metric")["relay"]["filter"], "lag_bytes")
    assert not [i for i in items if matches(query, i)]  # not measured: never a zero lag
