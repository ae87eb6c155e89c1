"""infra/azure/monitoring.tf's workbook and alerts against core/metrics.py.

The handler sends each slice's figures as Application Insights custom metrics
(handlers/azure/metrics.py): `customMetrics` rows named `esdb_relay_<key>` with the job in
`customDimensions.job_id`; tests/runtimes/test_azure_metrics.py checks what the packaged app
really sends under the Functions worker, and that every name these queries read is among them.
Offline (no azurerm provider, no Log Analytics): the configuration parsed by python-hcl2.
"""

from __future__ import annotations

import re

import pytest

from core.metrics import METRICS
from core.relay import STALL_AFTER_SLICES
from tests.infra.test_azure_terraform import INFRA, Config

OTEL = {m.otel: m for m in METRICS}
# customMetrics' columns (Application Insights' schema); a query reading another one is wrong.
COLUMNS = {"name", "value", "valueCount", "valueSum", "valueMin", "valueMax", "customDimensions"}


@pytest.fixture(scope="module")
def tf() -> Config:
    return Config(INFRA)


def metric_names(text: str) -> set[str]:
    return set(re.findall(r"\besdb_relay_\w+", text))


def read_names(tf: Config) -> set[str]:
    """Every custom metric a query of monitoring.tf reads."""
    text = tf.texts["monitoring.tf"]
    return metric_names(text)


def test_the_workbook_charts_every_metric_the_handler_sends(tf: Config) -> None:
    workbook_metrics = tf.locals["workbook_metrics"]
    assert set(workbook_metrics) == set(OTEL)
    for name, spec in workbook_metrics.items():
        assert spec["counter"] is (OTEL[name].kind == "counter"), name
    (workbook,) = tf.of("azurerm_application_insights_workbook").values()
    data = workbook["data_json"]
    assert "for name, metric in local.workbook_metrics" in data
    assert "${local.relay_metric}'${name}'" in data
    assert workbook["source_id"] == "${lower(azurerm_application_insights.relay.id)}"
    assert workbook["name"].startswith("${uuidv5(")


def test_every_query_reads_metrics_of_the_table_by_the_jobs_dimension(tf: Config) -> None:
    assert read_names(tf) <= set(OTEL), read_names(tf) - set(OTEL)
    relay_metric = tf.locals["relay_metric"]
    assert relay_metric.startswith("customMetrics")
    assert "tostring(customDimensions.job_id) == '${var.job_id}'" in relay_metric
    text = tf.texts["monitoring.tf"]
    for column in re.findall(r"\b(value\w*)\b", text):
        assert column in COLUMNS, column


def test_alerts_on_the_figures(tf: Config) -> None:
    alerts = tf.locals["alerts"]
    assert metric_names(alerts["lag"]["query"]) == {"esdb_relay_lag_bytes"}
    assert alerts["lag"]["threshold"] == "${var.lag_alert_bytes}"
    stalled = alerts["stalled"]
    assert metric_names(stalled["query"]) == {"esdb_relay_consecutive_failures"}
    assert (stalled["operator"], stalled["threshold"]) == (
        "GreaterThanOrEqual",
        STALL_AFTER_SLICES,
    )
    assert metric_names(alerts["dead_lettered"]["query"]) == {"esdb_relay_dead_lettered"}
