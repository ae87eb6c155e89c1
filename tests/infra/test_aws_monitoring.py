"""infra/aws/template.yaml's metrics, dashboard and alarms against core/metrics.py.

The handler prints each slice's figures in CloudWatch's embedded metric format (core/metrics.py,
`emf`): namespace esdb-relay, dimension JobId. Every alarm and dashboard widget on that
namespace must name a metric of the table with that dimension, and every metric of the table
is on the dashboard; tests/runtimes/test_aws_metrics.py checks the lines the packaged handler
really prints under the Lambda runtime interface client.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from cfnlint.decode import cfn_yaml

from core.engine import SliceResult
from core.metrics import BY_KEY, METRICS, NAMESPACE, emf, from_slice
from tests.infra.test_aws_template import TEMPLATE, props, resources

CLOUDWATCH = {m.cloudwatch: m for m in METRICS}


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return cfn_yaml.load(str(TEMPLATE))


def relay_alarms(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: r["Properties"]
        for name, r in resources(template, "AWS::CloudWatch::Alarm").items()
        if r["Properties"]["Namespace"] == NAMESPACE
    }


def dashboard(template: dict[str, Any]) -> dict[str, Any]:
    """The dashboard body as CloudWatch receives it (the Fn::Sub variables filled in)."""
    ((_name, resource),) = resources(template, "AWS::CloudWatch::Dashboard").items()
    body, variables = resource["Properties"]["DashboardBody"]["Fn::Sub"]
    names = set(re.findall(r"\$\{([^}!]+)\}", body))
    for name in names:
        body = body.replace("${" + name + "}", f"<{name}>")
    parsed = json.loads(body)
    parsed["_variables"] = variables
    return parsed


def widget_metrics(body: dict[str, Any]) -> list[tuple[str, str, list[Any]]]:
    """(namespace, metric name, dimensions) of every metric line, '.' resolved as CloudWatch
    does (the value of the line above)."""
    found = []
    for widget in body["widgets"]:
        previous: list[Any] = []
        for line in widget["properties"].get("metrics", []):
            fields = [f for f in line if not isinstance(f, dict)]
            fields = [previous[i] if f == "." else f for i, f in enumerate(fields)]
            previous = fields
            found.append((fields[0], fields[1], fields[2:]))
    return found


def test_alarms_on_the_relays_metrics_name_metrics_the_handler_emits(template) -> None:
    alarms = relay_alarms(template)
    assert set(alarms) == {"LagAlarm", "StaleAlarm", "StalledAlarm", "DeadLetteredAlarm"}
    for name, alarm in alarms.items():
        assert alarm["MetricName"] in CLOUDWATCH, name
        assert alarm["Dimensions"] == [{"Name": "JobId", "Value": {"Ref": "JobId"}}], name
    # the metric filter the EMF lines replaced is gone: one source for each figure
    assert "LagMetricFilter" not in template["Resources"]
    # the relay's JSON (and EMF) lines reach CloudWatch as printed only with the Text format
    assert props(template, "RelayFunction")["LoggingConfig"] == {
        "LogGroup": {"Ref": "LogGroup"},
        "LogFormat": "Text",
    }


def test_stale_and_lag_alarms_breach_when_no_slice_reports(template) -> None:
    alarms = relay_alarms(template)
    stale, lag = alarms["StaleAlarm"], alarms["LagAlarm"]
    assert (stale["MetricName"], stale["TreatMissingData"]) == ("LastSuccessAge", "breaching")
    assert stale["EvaluationPeriods"] == {"Ref": "StaleAlarmMinutes"} and stale["Period"] == 60
    assert (lag["MetricName"], lag["Threshold"]) == ("LagBytes", {"Ref": "LagAlarmBytes"})
    assert lag["TreatMissingData"] == "breaching"
    assert alarms["StalledAlarm"]["Threshold"] == 3  # core.relay.STALL_AFTER_SLICES
    from core.relay import STALL_AFTER_SLICES

    assert alarms["StalledAlarm"]["Threshold"] == STALL_AFTER_SLICES


def test_a_slices_emf_document_feeds_the_alarms() -> None:
    """What the alarms read is what `emf` writes: a successful slice reports LastSuccessAge near
    0 (the stale alarm stays quiet), lag and rates in the units the alarms compare."""
    result = SliceResult(
        job_id="orders",
        status="ok",
        events_read=100,
        events_written=90,
        from_position=1000,
        position=11000,
        lag_bytes=50_000,
        seconds=2.0,
    )
    document = emf(from_slice(result, lag_seconds=12.5, source_write_rate=3.0))
    (directive,) = document["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == NAMESPACE and directive["Dimensions"] == [["JobId"]]
    assert document["JobId"] == "orders"
    units = {m["Name"]: m["Unit"] for m in directive["Metrics"]}
    for name, unit in units.items():
        assert CLOUDWATCH[name].cloudwatch_unit == unit
        assert isinstance(document[name], float)
    assert document["LagBytes"] == 50_000 and document["LagEvents"] == 500
    assert document["CopyRate"] == 50 and document["LagSeconds"] == 12.5
    assert document["FailedSlices"] == 0 and document["ConsecutiveFailures"] == 0


def test_dashboard_shows_every_metric_and_every_alarm(template) -> None:
    body = dashboard(template)
    lines = widget_metrics(body)
    shown = set()
    for namespace, name, dimensions in lines:
        assert namespace == NAMESPACE, (namespace, name)
        assert name in CLOUDWATCH, f"the dashboard reads {name}, which no handler emits"
        assert dimensions == ["JobId", "<JobId>"], name
        shown.add(CLOUDWATCH[name].key)
    assert shown == set(BY_KEY), f"not on the dashboard: {set(BY_KEY) - shown}"
    (alarm_widget,) = [w for w in body["widgets"] if w["type"] == "alarm"]
    on_widget = {
        body["_variables"][ref.strip("<>")]["Fn::GetAtt"][0]
        for ref in alarm_widget["properties"]["alarms"]
    }
    assert on_widget == set(resources(template, "AWS::CloudWatch::Alarm"))
