"""The Lambda handler end to end: moto server (DynamoDB, SQS, Secrets Manager) and two
emulators; the handler is called as Lambda calls it (event, context).

Mocked, because it cannot run here: Lambda's own Invoke API for the async self-invoke chain
(moto executes Lambda functions only with Docker) — that one test replaces the boto3 client.
Everything else is real: the checkpoints go to DynamoDB, the chain through SQS.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import boto3
import pytest

from esdb_emulator import Emulator
from esdb_emulator.workload import Workload, generate
from handlers.aws.checkpoint_store import create_table
from tests.engine.helpers import differences
from tests.services.moto import REGION, moto_endpoint  # noqa: F401 - pytest fixture

PASSWORD = "changeit"


class Context:
    """What Lambda passes: the remaining time and the function's ARN."""

    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:esdb-relay"

    def __init__(self, remaining_ms: int = 60_000) -> None:
        self.remaining_ms = remaining_ms

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


@pytest.fixture
def aws(moto_endpoint, monkeypatch):  # noqa: F811 - the fixture from tests.services.moto
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_REGION", REGION)
    suffix = uuid.uuid4().hex[:8]
    table = f"checkpoints-{suffix}"
    create_table(boto3.client("dynamodb"), table)
    queue_url = boto3.client("sqs").create_queue(QueueName=f"chain-{suffix}")["QueueUrl"]
    return {"table": table, "queue_url": queue_url, "suffix": suffix}


@pytest.fixture
def deployed(aws, monkeypatch):
    """Two TLS emulators and the function's environment, connection strings in Secrets Manager."""
    from handlers.aws import secrets

    secrets._cache.clear()
    with Emulator(tls=True) as source, Emulator(tls=True) as target:
        client = boto3.client("secretsmanager")
        for side, db in (("source", source), ("target", target)):
            name = f"esdb-relay/{side}-{aws['suffix']}"
            client.create_secret(Name=name, SecretString=db.uri)
            monkeypatch.setenv(f"ESDB_RELAY_{side.upper()}_SECRET", name)
        monkeypatch.setenv("ESDB_RELAY_JOB_ID", "lambda-job")
        monkeypatch.setenv("ESDB_RELAY_CHECKPOINT_STORE", f"dynamodb://{aws['table']}")
        monkeypatch.setenv("ESDB_RELAY_BUDGET__MAX_EVENTS", "150")
        monkeypatch.setenv("ESDB_RELAY_CHAIN_QUEUE_URL", aws["queue_url"])
        yield source, target, aws


def drain(queue_url: str) -> list[dict[str, Any]]:
    sqs = boto3.client("sqs")
    messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", [])
    for m in messages:
        sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"])
    return messages


def sqs_event(messages: list[dict[str, Any]]) -> dict[str, Any]:
    """An SQS event as Lambda delivers it (batch of records)."""
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "0"},
                "messageAttributes": {},
                "md5OfBody": m["MD5OfBody"],
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:esdb-relay-chain",
                "awsRegion": REGION,
            }
            for m in messages
        ]
    }


# EventBridge Scheduler passes the schedule's input as the event; an EventBridge rule wraps it.
SCHEDULER_INPUT: dict[str, Any] = {}
RULE_EVENT = {
    "version": "0",
    "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
    "detail-type": "Scheduled Event",
    "source": "aws.events",
    "account": "123456789012",
    "time": "2026-11-25T12:00:00Z",
    "region": REGION,
    "resources": ["arn:aws:events:us-east-1:123456789012:rule/esdb-relay"],
    "detail": {},
}


def test_scheduled_slice_chains_through_sqs_until_caught_up(deployed, capsys):
    from handlers.aws.lambda_function import handler

    source, target, aws = deployed
    generate(source.store, Workload(events=600, streams=30, links=False))
    response = handler(SCHEDULER_INPUT, Context())
    assert response["status"] == "ok" and response["next_action"] == "continue"
    hops = 0
    while True:
        messages = drain(aws["queue_url"])
        if not messages:
            break
        hops += 1
        response = handler(sqs_event(messages), Context())
        assert hops < 30
    assert response["next_action"] == "idle"
    assert hops >= 3
    assert differences(source.store, target.store) == []
    output = capsys.readouterr()
    assert PASSWORD not in output.out + output.err + json.dumps(response)


def test_duplicate_deliveries_and_overlapping_schedules_are_harmless(deployed):
    from handlers.aws.lambda_function import handler

    source, target, aws = deployed
    generate(source.store, Workload(events=300, streams=10, links=False))
    for event in (SCHEDULER_INPUT, RULE_EVENT, {"action": "slice"}):  # ticks at once
        handler(event, Context())
    hops = 0
    while messages := drain(aws["queue_url"]):
        handler(sqs_event(messages), Context())  # every chain message delivered twice
        handler(sqs_event(messages), Context())
        hops += 1
        assert hops < 40
    assert differences(source.store, target.store) == []


def test_manual_backfill_status_and_bad_payloads(deployed):
    from handlers.aws.lambda_function import handler

    source, target, _aws = deployed
    generate(source.store, Workload(events=200, streams=10, links=False))
    end = source.store.last_position
    first = handler({"from": 0, "to": end, "dry_run": True}, Context())
    assert first["status"] == "ok" and first["result"]["events_written"] > 0
    totals = first["result"]["totals"]  # what the dry run would copy, every record named
    assert totals["dry_run"] is True and totals["written"] == first["result"]["events_written"]
    assert totals["read"] == totals["copied"] + totals["skipped"] + totals["filtered"]
    assert len(target.store) == len(Emulator().store)  # dry run wrote nothing
    status = handler({"action": "status"}, Context())
    assert status["result"]["lag_bytes"] > 0
    assert status["result"]["state"] == "not-started" and status["result"]["caught_up"] is False
    assert status["result"]["lag_events"] > 0 and status["result"]["eta_seconds"] is None
    refused = handler({"target": "esdb://attacker:2113"}, Context())
    assert refused["status"] == "failed" and "target" in refused["error"]
    assert "attacker" not in json.dumps(status)


def test_async_self_invoke_chain_when_no_queue(deployed, monkeypatch):
    import handlers.aws.lambda_function as function

    source, _target, _aws = deployed
    monkeypatch.delenv("ESDB_RELAY_CHAIN_QUEUE_URL")
    generate(source.store, Workload(events=400, streams=10, links=False))
    invoked: list[dict[str, Any]] = []

    class FakeLambda:  # Lambda's Invoke cannot run here (moto needs Docker to run functions)
        def invoke(self, **kwargs: Any) -> None:
            invoked.append(kwargs)

    real_client = boto3.client
    monkeypatch.setattr(
        function.boto3,
        "client",
        lambda name, *a, **k: FakeLambda() if name == "lambda" else real_client(name, *a, **k),
    )
    function.handler({}, Context())
    assert invoked and invoked[0]["InvocationType"] == "Event"
    assert invoked[0]["FunctionName"] == Context.invoked_function_arn
    assert json.loads(invoked[0]["Payload"]) == {"chained": True, "generation": 1}


def test_a_failing_slice_raises_so_lambda_retries(deployed, monkeypatch):
    from handlers.aws.lambda_function import handler

    _source, _target, _aws = deployed
    monkeypatch.setenv("ESDB_RELAY_TARGET", "esdb://127.0.0.1:1?Tls=false")
    monkeypatch.delenv("ESDB_RELAY_TARGET_SECRET")
    from core.errors import RelayError

    with pytest.raises(RelayError, match="target"):
        handler({}, Context(remaining_ms=15_000))
