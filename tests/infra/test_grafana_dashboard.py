"""infra/grafana/esdb-relay.json against what `run --metrics-port` really exposes.

The exposed names are read from the exporter itself (handlers/cli/metrics_server.py fed one sample
with every metric, its exposition parsed); every query of the dashboard must name only those,
filter on the label they carry, and apply rate()/increase() to counters only. Every metric of
core/metrics.py is on the dashboard.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from core.metrics import BY_KEY, METRICS, Sample
from handlers.cli.metrics_server import PrometheusMetrics

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "infra" / "grafana" / "esdb-relay.json"
NAME = re.compile(r"\besdb_relay_\w+")


@pytest.fixture(scope="module")
def exposed() -> dict[str, tuple[str, set[str]]]:
    """{sample name: (family type, label names)} as the exporter serves them."""
    metrics = PrometheusMetrics()
    metrics.observe(Sample(job_id="j", values={m.key: 1.0 for m in METRICS}))
    found: dict[str, tuple[str, set[str]]] = {}
    for family in text_string_to_metric_families(generate_latest(metrics.registry).decode()):
        for sample in family.samples:
            found[sample.name] = (family.type, set(sample.labels))
    return found


def queries(dashboard: dict[str, Any]) -> list[str]:
    found = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            found.append(variable["definition"])
    return found


def test_every_query_names_a_metric_the_exporter_exposes(exposed) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    shown = set()
    for expr in queries(dashboard):
        names = NAME.findall(expr)
        assert names, f"a query that names no esdb-relay metric: {expr}"
        for name in names:
            assert name in exposed, f"{expr}: {name} is not exposed (exposed: {sorted(exposed)})"
            kind, labels = exposed[name]
            assert "job_id" in labels
            counted = re.search(r"\b(rate|increase)\(\s*" + name, expr)
            assert bool(counted) == (kind == "counter"), f"{expr}: {name} is a {kind}"
            shown.add(name)
    expected = {m.prometheus for m in METRICS}
    assert expected <= shown, f"not on the dashboard: {expected - shown}"


def test_panels_use_the_datasource_and_job_variables() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert variables == {"datasource", "job_id"}
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        for target in panel["targets"]:
            assert 'job_id=~"$job_id"' in target["expr"], target["expr"]


def test_the_exporter_exposes_the_table_and_nothing_else(exposed) -> None:
    own = {name for name in exposed if name.startswith("esdb_relay_")}
    # a counter's _created sample (when it started counting) is OpenMetrics' own
    created = {m.otel + "_created" for m in METRICS if m.kind == "counter"}
    assert own - created == {m.prometheus for m in METRICS}
    for metric in METRICS:
        assert exposed[metric.prometheus][0] == ("counter" if metric.kind == "counter" else "gauge")
    assert set(BY_KEY) == {m.key for m in METRICS}
