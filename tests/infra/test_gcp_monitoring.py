"""infra/gcp/monitoring.tf's log-based metrics, dashboard and alerts against core/metrics.py.

Offline (the google provider cannot be downloaded): the configuration parsed by python-hcl2, the
filters applied by tests/infra/logging_filter.py to the entries of the JSON lines the handler
writes (core/metrics.py's log_sample); tests/runtimes/test_gcp_metrics.py applies them to the
lines the packaged function really wrote under functions-framework.
"""

from __future__ import annotations

import io
import json
import logging
import re
from typing import Any

import pytest

from core.metrics import BY_KEY, METRICS, Sample, log_sample
from tests.infra.logging_filter import entry, extract, matches
from tests.infra.test_gcp_terraform import INFRA, Config

NAME = "relay-orders"
RESOURCE = {"type": "cloud_run_revision", "labels": {"service_name": f"{NAME}-event"}}


@pytest.fixture(scope="module")
def tf() -> Config:
    return Config(INFRA)


def rendered(tf: Config, text: str, key: str | None = None) -> str:
    """A metric's filter or extractor as Terraform renders it for var.name = NAME."""
    text = text.replace("${local.function_logs}", tf.locals["function_logs"])
    text = text.replace("${var.name}", NAME)
    if key is not None:
        text = text.replace("${each.key}", key)
    assert "${" not in text, f"not rendered: {text}"
    return text.replace('\\"', '"')


def relay_metric(tf: Config, key: str) -> tuple[str, str]:
    """(filter, value extractor) of the log-based metric of one figure."""
    body = tf.of("google_logging_metric")["relay"]
    return rendered(tf, body["filter"], key), rendered(tf, body["value_extractor"], key)


def written(sample: Sample) -> dict[str, Any]:
    from core.logs import JsonFormatter, logger

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    saved = (logger.handlers[:], logger.level, logger.propagate)
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        log_sample(sample)
    finally:
        logger.handlers[:], level, logger.propagate = saved
        logger.setLevel(level)
    return json.loads(stream.getvalue())


def test_one_log_based_metric_per_figure_with_its_unit(tf: Config) -> None:
    relay_metrics = tf.locals["relay_metrics"]
    assert set(relay_metrics) == set(BY_KEY)
    for key, spec in relay_metrics.items():
        assert spec["unit"] == BY_KEY[key].ucum, key
    body = tf.of("google_logging_metric")["relay"]
    assert body["for_each"] == "${local.relay_metrics}"
    descriptor = body["metric_descriptor"]
    descriptor = descriptor[0] if isinstance(descriptor, list) else descriptor
    assert (descriptor["metric_kind"], descriptor["value_type"]) == ("DELTA", "DISTRIBUTION")


def test_each_filter_selects_the_metrics_line_and_extracts_its_figure(tf: Config) -> None:
    sample = Sample(job_id="orders", values={m.key: float(i + 1) for i, m in enumerate(METRICS)})
    line = written(sample)
    item = entry(line, RESOURCE)
    other = entry(line, {"type": "cloud_run_revision", "labels": {"service_name": "other"}})
    for metric in METRICS:
        query, extractor = relay_metric(tf, metric.key)
        assert matches(query, item), (metric.key, query)
        assert extract(extractor, item) == sample.values[metric.key]
        assert not matches(query, other)  # another service's lines are not counted
    # a figure the line does not carry is not counted as 0
    partial = entry(written(Sample(job_id="orders", values={"failed_slices": 1.0})), RESOURCE)
    query, _ = relay_metric(tf, "lag_bytes")
    assert not matches(query, partial)


def test_dashboard_charts_every_figure_and_lists_every_alert(tf: Config) -> None:
    (dashboard,) = tf.of("google_monitoring_dashboard").values()
    text = dashboard["dashboard_json"]
    assert "for i, k in keys(local.relay_metrics)" in text
    assert "local.relay_metric_type[k]" in text
    assert tf.locals["relay_metric_type"].startswith("${{for k, m in local.relay_metrics")
    assert "logging.googleapis.com/user/${var.name}-${replace(k, " in tf.locals["relay_metric_type"]
    listed = set(re.findall(r"google_monitoring_alert_policy\.(\w+)\.name", text))
    assert listed == set(tf.of("google_monitoring_alert_policy"))


def test_alerts_on_the_relays_figures_name_metrics_of_the_table(tf: Config) -> None:
    from core.relay import STALL_AFTER_SLICES

    for name, policy in tf.of("google_monitoring_alert_policy").items():
        text = json.dumps(policy)
        for key in re.findall(r'google_logging_metric\.relay\[\\*"(\w+)\\*"\]', text):
            assert key in BY_KEY, (name, key)
    stalled = tf.of("google_monitoring_alert_policy")["stalled"]["conditions"]
    stalled = stalled[0] if isinstance(stalled, list) else stalled
    threshold = stalled["condition_threshold"]
    threshold = threshold[0] if isinstance(threshold, list) else threshold
    assert STALL_AFTER_SLICES - 1 < threshold["threshold_value"] < STALL_AFTER_SLICES
