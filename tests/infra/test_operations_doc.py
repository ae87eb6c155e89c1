"""docs/operations.md names everything an operator can see: every metric under each platform's
name, every field of the JSON log lines, every state, every alert the three templates create, and
the runbook's tools (`status --watch`, `dashboard`). A metric, a log field or an alert added
without its line here fails this test."""

from __future__ import annotations

import ast
import dataclasses
import re
from pathlib import Path
from typing import get_args

import pytest
from cfnlint.decode import cfn_yaml

from core.engine import SliceResult
from core.metrics import METRICS
from core.progress import State
from tests.infra.test_azure_terraform import INFRA as AZURE
from tests.infra.test_azure_terraform import Config as AzureConfig
from tests.infra.test_gcp_terraform import INFRA as GCP
from tests.infra.test_gcp_terraform import Config as GcpConfig

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "operations.md"
TEMPLATE = ROOT / "infra" / "aws" / "template.yaml"


@pytest.fixture(scope="module")
def doc() -> str:
    return DOC.read_text()


def named(doc: str, name: str) -> bool:
    return f"`{name}`" in doc


def test_every_metric_under_each_platforms_name(doc: str) -> None:
    for m in METRICS:
        for name in (m.key, m.cloudwatch, m.prometheus, m.otel):
            assert named(doc, name), name
        row = next(line for line in doc.splitlines() if line.startswith(f"| `{m.key}` |"))
        assert f"| {m.unit} | {m.kind} |" in row, row


def log_extras() -> set[str]:
    """Every key the relay's code passes as `extra=` to a log call (the JSON line's fields)."""
    found: set[str] = set()
    for folder in ("core", "handlers"):
        for path in (ROOT / folder).rglob("*.py"):
            if "protocol" in path.parts:
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if not isinstance(node, ast.Call):
                    continue
                for keyword in node.keywords:
                    if keyword.arg == "extra" and isinstance(keyword.value, ast.Dict):
                        found |= {
                            k.value for k in keyword.value.keys if isinstance(k, ast.Constant)
                        }
    return found


def test_every_log_field(doc: str) -> None:
    extras = log_extras()
    assert {"slice", "metrics", "job_id"} <= extras, "the parser found no extras"
    for field in ("time", "severity", "level", "logger", "message", "exception", *extras):
        assert f"| `{field}` |" in doc, field
    for field in dataclasses.fields(SliceResult):
        assert named(doc, f"slice.{field.name}"), field.name


def test_every_state(doc: str) -> None:
    for state in get_args(State):
        assert f"| `{state}` |" in doc, state


def test_every_alert_of_the_three_templates(doc: str) -> None:
    template = cfn_yaml.load(str(TEMPLATE))
    alarms = [
        r["Properties"]["AlarmName"]["Fn::Sub"]
        for r in template["Resources"].values()
        if r["Type"] == "AWS::CloudWatch::Alarm"
    ]
    assert len(alarms) >= 8
    for alarm in alarms:
        assert named(doc, alarm.replace("${JobId}", "JOB")), alarm
    for policy in GcpConfig(GCP).of("google_monitoring_alert_policy"):
        assert re.search(rf"GCP policy\s+`{policy}`", doc), policy
    for alert in AzureConfig(AZURE).locals["alerts"]:
        assert re.search(rf"Azure alert\s+`{alert}`", doc), alert


def test_the_runbook_uses_status_watch_and_the_dashboard(doc: str) -> None:
    assert "esdb-relay status --watch" in doc
    assert "esdb-relay dashboard" in doc
    assert "run --metrics-port" in doc and "infra/grafana/esdb-relay.json" in doc
