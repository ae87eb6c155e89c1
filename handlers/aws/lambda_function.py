"""AWS Lambda entry point: `handlers.aws.lambda_function.handler`.

Triggers: an EventBridge Scheduler schedule (its input is the payload, e.g. `{}`), an SQS
message (the body is the payload; the chain queue), or a direct invoke (the event is the
payload: `aws lambda invoke --payload '{"from": 0, "to": 123}'`). Each invocation runs one slice
with the deadline Lambda gives it; when the source's tail was not reached it chains the next
invocation at once: an SQS message when `ESDB_RELAY_CHAIN_QUEUE_URL` is set, otherwise an
asynchronous invoke of this same function.
"""

from __future__ import annotations

import json
import os
from typing import Any

import boto3

from core.invocation import InvocationClock, handle
from core.logs import configure
from core.metrics import print_emf
from handlers.aws.checkpoint_store import register
from handlers.aws.secrets import connection_settings

configure("json")
register()


def handler(event: Any, context: Any) -> dict[str, Any]:
    responses = [
        handle(
            payload,
            clock=_clock(context),
            chain=lambda request: chain(request, context),
            settings=connection_settings,
            metrics=print_emf,  # CloudWatch embedded metric format on stdout
        )
        for payload in _payloads(event)
    ]
    return responses[-1] if responses else {"status": "ok", "next_action": "stop"}


def _payloads(event: Any) -> list[Any]:
    if isinstance(event, dict) and isinstance(event.get("Records"), list):
        records = event["Records"]
        if records and all(
            isinstance(r, dict) and r.get("eventSource") == "aws:sqs" for r in records
        ):
            return [_json_body(r.get("body", "")) for r in records]
    if isinstance(event, dict) and event.get("source") in ("aws.scheduler", "aws.events"):
        return [event.get("detail") or {}]
    return [event]


def _json_body(body: str) -> Any:
    try:
        return json.loads(body) if body else {}
    except (TypeError, ValueError):
        return body  # parse_request rejects it with a clear message


def _clock(context: Any) -> InvocationClock:
    """Lambda's own remaining time, read whenever the relay needs it (it counts the start-up)."""
    get = getattr(context, "get_remaining_time_in_millis", None)
    if get is None:
        return InvocationClock()
    return InvocationClock(remaining=lambda: get() / 1000.0)


def chain(request: dict[str, Any], context: Any) -> None:
    """Enqueue the next invocation at once (the schedule resumes a broken chain)."""
    body = json.dumps(request)
    queue_url = os.environ.get("ESDB_RELAY_CHAIN_QUEUE_URL")
    if queue_url:
        boto3.client("sqs").send_message(QueueUrl=queue_url, MessageBody=body)
    else:
        boto3.client("lambda").invoke(
            FunctionName=context.invoked_function_arn,
            InvocationType="Event",
            Payload=body.encode(),
        )
