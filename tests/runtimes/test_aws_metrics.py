"""The metrics the packaged Lambda handler really prints, run by the Lambda runtime interface
client (the set-up of test_aws_runtime.py: moto server, two TLS emulators, awslambdaric).

Each slice prints one CloudWatch embedded-metric-format line on stdout. Not run here: CloudWatch
itself, so this test applies the EMF specification's rules to every line the function printed
(a directive's metrics and dimensions are root members, values are numbers) and checks that they
carry the figures the slices reported and the names infra/aws/template.yaml's alarms and
dashboard read (core/metrics.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from core.metrics import METRICS, NAMESPACE
from esdb_emulator.workload import Workload, generate
from tests.runtimes.test_aws_runtime import (  # noqa: F401 - fixtures
    SQS_RECORD,
    aws,
    receive,
    runtime,
    sqs_event,
)
from tests.services.moto import moto_endpoint  # noqa: F401 - fixture

pytestmark = pytest.mark.slow

CLOUDWATCH = {m.cloudwatch: m for m in METRICS}


def emf_lines(log: Path) -> list[dict[str, Any]]:
    """Every EMF document in the function's output, checked against the EMF specification."""
    documents = []
    for raw in log.read_text(errors="replace").splitlines():
        try:
            line = json.loads(raw)
        except ValueError:
            continue
        if not isinstance(line, dict) or "_aws" not in line:
            continue
        meta = line["_aws"]
        assert isinstance(meta["Timestamp"], int) and meta["Timestamp"] > 1_600_000_000_000
        for directive in meta["CloudWatchMetrics"]:
            assert directive["Namespace"] == NAMESPACE
            for dimension_set in directive["Dimensions"]:
                for key in dimension_set:
                    assert isinstance(line[key], str) and line[key], key
            for metric in directive["Metrics"]:
                name = metric["Name"]
                assert name in CLOUDWATCH, f"{name} is not a metric of core/metrics.py"
                assert metric["Unit"] == CLOUDWATCH[name].cloudwatch_unit
                value = line[name]
                assert isinstance(value, int | float) and not isinstance(value, bool), name
        documents.append(line)
    return documents


def test_each_slice_prints_its_figures_as_emf(runtime, tmp_path) -> None:  # noqa: F811
    api, source, _target, aws_ = runtime
    generate(source.store, Workload(events=400, streams=20, links=False))
    outcomes = [api.invoke({})]
    assert outcomes[0].ok, outcomes[0].body
    hops = 0
    while messages := receive(aws_):
        outcomes.append(api.invoke(sqs_event(messages)))
        assert outcomes[-1].ok, outcomes[-1].body
        hops += 1
        assert hops < 30
    slices = [o.body["result"] for o in outcomes]
    lines = emf_lines(tmp_path / "runtime.log")
    assert len(lines) == len(slices) >= 3
    assert {line["JobId"] for line in lines} == {"lambda-runtime-job"}
    for line, result in zip(lines, slices, strict=True):
        assert line["LagBytes"] == result["lag_bytes"]
        assert line["EventsWritten"] == result["events_written"]
        assert line["FailedSlices"] == 0 and line["ConsecutiveFailures"] == 0
        assert 0 <= line["LastSuccessAge"] < 60  # this slice's own record
        assert line["SliceSeconds"] > 0
        assert line["SourceWriteRate"] >= 0
    first, last = lines[0], lines[-1]
    assert first["LagBytes"] > 0 and first["LagEvents"] > 0 and first["LagSeconds"] > 0
    assert first["CopyRate"] > 0
    assert last["LagBytes"] == 0 and last["LagEvents"] == 0 and last["LagSeconds"] == 0
    assert slices[-1]["caught_up"]
    # a status action emits the measured progress (core.progress.measure): no slice counters
    status = api.invoke({"action": "status"})
    assert status.ok and status.body["result"]["caught_up"]
    measured = emf_lines(tmp_path / "runtime.log")[len(lines) :]
    assert len(measured) == 1
    assert measured[0]["LagBytes"] == 0 and measured[0]["LagSeconds"] == 0
    assert 0 <= measured[0]["LastSuccessAge"] < 120
    assert "EventsWritten" not in measured[0] and "FailedSlices" not in measured[0]


@pytest.mark.parametrize(
    "runtime",
    [{"ESDB_RELAY_TARGET_SECRET": None, "ESDB_RELAY_TARGET": "esdb://127.0.0.1:1?Tls=false"}],
    indirect=True,
)
def test_a_failed_slice_prints_a_failure(runtime, tmp_path) -> None:  # noqa: F811
    api, source, _target, _aws = runtime
    generate(source.store, Workload(events=20, streams=2, links=False))
    failed = api.invoke(sqs_event([]) | {"Records": [SQS_RECORD]}, wait=180)
    assert not failed.ok
    (line,) = emf_lines(tmp_path / "runtime.log")
    assert line["FailedSlices"] == 1 and line["ConsecutiveFailures"] >= 1
    assert "LagBytes" not in line  # not measured: never reported as zero lag
