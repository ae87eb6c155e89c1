"""The AWS zip run by the Lambda runtime interface client, as a Lambda Python runtime runs it.

`esdb-relay package aws` builds the zip; it is unpacked as Lambda lays it out in /var/task and
`python -m awslambdaric handlers.aws.lambda_function.handler` (the template's Handler) runs in
that folder with .venv-lambda's Python, which holds awslambdaric and nothing of the relay: the
zip's own dependencies are what the handler imports. The runtime client polls a Runtime API
served by this test (tests/runtimes/lambda_runtime_api.py) and builds the context (remaining
time from the deadline header, the function's ARN) as it does in Lambda.

Real here: moto server (DynamoDB checkpoints, the SQS chain queue, Secrets Manager) and two TLS
esdb emulators. Not run here: the Lambda service itself, so this test does its part: it delivers
a scheduler tick, SQS batches (messages received from moto's queue, in the event shape the
SQS event source mapping delivers) and a direct invoke.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from esdb_emulator import Emulator
from esdb_emulator.workload import Workload, generate
from handlers.aws.checkpoint_store import create_table
from tests.engine.helpers import differences
from tests.runtimes.conftest import base_env, runtime_python
from tests.runtimes.lambda_runtime_api import RuntimeApi
from tests.services.moto import REGION, moto_endpoint  # noqa: F401 - fixture

pytestmark = pytest.mark.slow

HANDLER = "handlers.aws.lambda_function.handler"
ARN = "arn:aws:lambda:us-east-1:123456789012:function:esdb-relay-runtime"
PASSWORD = "changeit"


@pytest.fixture
def aws(moto_endpoint) -> dict[str, Any]:  # noqa: F811
    env = {
        "AWS_ENDPOINT_URL": moto_endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
    }
    session = boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION
    )
    suffix = uuid.uuid4().hex[:8]
    table = f"checkpoints-{suffix}"
    create_table(session.client("dynamodb", endpoint_url=moto_endpoint), table)
    sqs = session.client("sqs", endpoint_url=moto_endpoint)
    queue_url = sqs.create_queue(QueueName=f"chain-{suffix}")["QueueUrl"]
    return {
        "env": env,
        "session": session,
        "endpoint": moto_endpoint,
        "table": table,
        "queue_url": queue_url,
        "sqs": sqs,
        "suffix": suffix,
    }


@pytest.fixture
def runtime(
    request, unpacked, aws, tmp_path
) -> Iterator[tuple[RuntimeApi, Any, Any, dict[str, Any]]]:
    task_root = unpacked("aws")
    overrides: dict[str, str | None] = getattr(request, "param", {})
    secrets = aws["session"].client("secretsmanager", endpoint_url=aws["endpoint"])
    with Emulator(tls=True) as source, Emulator(tls=True) as target:
        arns = {
            side: secrets.create_secret(
                Name=f"esdb-relay/{side}-{aws['suffix']}", SecretString=db.uri
            )["ARN"]
            for side, db in (("source", source), ("target", target))
        }
        env = {
            **base_env(tmp_path),
            **aws["env"],
            # What Lambda sets for a python3.11 function (infra/aws/template.yaml's Handler).
            "LAMBDA_TASK_ROOT": str(task_root),
            "_HANDLER": HANDLER,
            "AWS_EXECUTION_ENV": "AWS_Lambda_python3.11",
            "AWS_LAMBDA_FUNCTION_NAME": "esdb-relay-runtime",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1024",
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            # The template's environment.
            "ESDB_RELAY_JOB_ID": "lambda-runtime-job",
            "ESDB_RELAY_CHECKPOINT_STORE": f"dynamodb://{aws['table']}",
            "ESDB_RELAY_SOURCE_SECRET": arns["source"],
            "ESDB_RELAY_TARGET_SECRET": arns["target"],
            "ESDB_RELAY_CHAIN_QUEUE_URL": aws["queue_url"],
            "ESDB_RELAY_BUDGET__MAX_EVENTS": "150",
        }
        for name, value in overrides.items():
            if value is None:
                env.pop(name, None)
            else:
                env[name] = value
        with RuntimeApi(ARN, timeout_seconds=120) as api:
            env["AWS_LAMBDA_RUNTIME_API"] = api.address
            log = (tmp_path / "runtime.log").open("wb")
            proc = subprocess.Popen(
                [str(runtime_python(".venv-lambda")), "-s", "-m", "awslambdaric", HANDLER],
                cwd=task_root,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            try:
                yield api, source, target, aws
            finally:
                proc.kill()
                proc.wait()
                output = (tmp_path / "runtime.log").read_text(errors="replace")
                assert PASSWORD not in output, "a password reached the function's log"


def receive(aws: dict[str, Any]) -> list[dict[str, Any]]:
    sqs = aws["sqs"]
    messages = sqs.receive_message(QueueUrl=aws["queue_url"], MaxNumberOfMessages=10).get(
        "Messages", []
    )
    for m in messages:
        sqs.delete_message(QueueUrl=aws["queue_url"], ReceiptHandle=m["ReceiptHandle"])
    return messages


def sqs_event(messages: list[dict[str, Any]]) -> dict[str, Any]:
    """The event the SQS event source mapping delivers for a batch."""
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


def test_scheduler_tick_then_sqs_batches_chain_to_the_tail(runtime):
    api, source, target, aws = runtime
    generate(source.store, Workload(events=600, streams=30, links=False))
    tick = api.invoke({})  # EventBridge Scheduler's input, as the template sets it
    assert tick.ok, tick.body
    assert tick.body["status"] == "ok" and tick.body["next_action"] == "continue"
    hops = 0
    while messages := receive(aws):
        outcome = api.invoke(sqs_event(messages))
        assert outcome.ok, outcome.body
        hops += 1
        assert hops < 30
    assert outcome.body["next_action"] == "idle"
    assert hops >= 3
    assert differences(source.store, target.store) == []


def test_direct_invoke_status_backfill_and_refusal(runtime):
    api, source, _target, _aws = runtime
    generate(source.store, Workload(events=100, streams=5, links=False))
    status = api.invoke({"action": "status"})
    assert status.ok and status.body["result"]["lag_bytes"] > 0
    dry = api.invoke({"from": 0, "dry_run": True})
    assert dry.ok and dry.body["result"]["events_written"] > 0
    refused = api.invoke({"target": "esdb://elsewhere:2113"})
    assert refused.ok and refused.body["status"] == "failed" and "target" in refused.body["error"]


@pytest.mark.parametrize(
    "runtime",
    [{"ESDB_RELAY_TARGET_SECRET": None, "ESDB_RELAY_TARGET": "esdb://127.0.0.1:1?Tls=false"}],
    indirect=True,
)
def test_a_failing_slice_is_a_function_error_so_sqs_redelivers(runtime):
    api, source, _target, _aws = runtime
    generate(source.store, Workload(events=20, streams=2, links=False))
    failed = api.invoke(sqs_event([]) | {"Records": [SQS_RECORD]}, wait=180)
    assert not failed.ok, failed
    assert failed.body["errorType"] == "TransientError"
    assert "target" in failed.body["errorMessage"]


SQS_RECORD = {
    "messageId": "1",
    "receiptHandle": "r",
    "body": json.dumps({"chained": True}),
    "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "0"},
    "messageAttributes": {},
    "md5OfBody": "",
    "eventSource": "aws:sqs",
    "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:esdb-relay-chain",
    "awsRegion": REGION,
}


@pytest.mark.parametrize("runtime", [{"ESDB_RELAY_SHARDS": "3"}], indirect=True)
def test_a_tick_on_a_sharded_job_sends_one_message_per_shard_and_each_runs_its_shard(runtime):
    api, source, target, aws = runtime
    generate(source.store, Workload(events=600, streams=30, links=False))
    tick = api.invoke({})
    assert tick.ok, tick.body
    assert tick.body["result"]["started"] == [0, 1, 2]
    messages = receive(aws)
    assert sorted(json.loads(m["Body"])["shard"] for m in messages) == [0, 1, 2]
    one = next(m for m in messages if json.loads(m["Body"])["shard"] == 1)
    ran = api.invoke(sqs_event([one]))
    assert ran.ok and ran.body["status"] == "ok", ran.body
    assert ran.body["result"]["events_read"] > 0  # shard 1's streams only
    assert ran.body["chain"]["shard"] == 1  # it chains its own next slice
    shards = api.invoke({"action": "status"}).body["result"]["shards"]
    assert [s["position"] is not None for s in shards] == [False, True, False]
    pending = [m for m in messages if m is not one]
    hops = 0
    while pending or (pending := receive(aws)):
        for m in pending:
            assert api.invoke(sqs_event([m])).ok
        pending = []
        hops += 1
        assert hops < 60
    assert differences(source.store, target.store) == []
