"""Google Cloud Functions (2nd gen) entry points, for functions-framework.

- `on_event`: a Pub/Sub CloudEvent — Cloud Scheduler publishes `{}` to the job's topic on its
  schedule, and the function publishes the next invocation's payload to the same topic when a
  slice did not reach the source's tail (the chain);
- `on_http`: a manual invoke (`{"from": 0, "to": 123}`); deploy with ingress internal-only and
  without `--allow-unauthenticated`, so only principals with the invoker role can call it.

Connection strings come from Secret Manager as secret environment variables (the platform
resolves them); the function's timeout is given as `ESDB_RELAY_FUNCTION_TIMEOUT` (Cloud
Functions does not tell a function its remaining time): the slice's deadline and its lease end
with it, counted from the process's start on a cold start.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from typing import Any

import functions_framework
from google.cloud import pubsub_v1

from core.errors import RelayError
from core.invocation import failure_response, handle, platform_clock
from core.logs import configure
from core.metrics import log_sample
from handlers.gcp.checkpoint_store import register

configure("json")
register()

DEFAULT_TIMEOUT_SECONDS = 540.0
_publisher: pubsub_v1.PublisherClient | None = None


@functions_framework.cloud_event
def on_event(cloud_event: Any) -> None:
    data = cloud_event.data or {}
    if not isinstance(data, dict) or not isinstance(data.get("message", {}), dict):
        run(data)  # not a Pub/Sub message: refused with a clear message
        return
    run(_decode(data.get("message", {}).get("data")))


@functions_framework.http
def on_http(request: Any) -> tuple[str, int, dict[str, str]]:
    raw = request.get_data() or b"{}"
    try:
        payload: Any = json.loads(raw)
    except ValueError:
        payload = raw.decode("utf-8", "replace")  # refused with a clear message
    try:
        response = run(payload)
    except RelayError as e:
        response, status = failure_response(e), 500
    else:
        status = 400 if response.get("status") == "failed" else 200
    return json.dumps(response), status, {"Content-Type": "application/json"}


def run(payload: Any) -> dict[str, Any]:
    # Cloud Functions gives a function no remaining time: its timeout counts from the request
    # (and a cold start's instance start-up), so the clock counts from this process's start on
    # the first request (core/invocation.py, platform_clock).
    timeout = float(os.environ.get("ESDB_RELAY_FUNCTION_TIMEOUT", DEFAULT_TIMEOUT_SECONDS))
    # Each slice's figures as a JSON line: infra/gcp/monitoring.tf's log-based metrics.
    return handle(payload, clock=platform_clock(timeout), chain=publish, metrics=log_sample)


def publish(request: dict[str, Any]) -> None:
    """The next invocation, as a message on the job's topic (`ESDB_RELAY_CHAIN_TOPIC`)."""
    global _publisher
    if _publisher is None:
        _publisher = pubsub_v1.PublisherClient()
    topic = os.environ["ESDB_RELAY_CHAIN_TOPIC"]
    _publisher.publish(topic, json.dumps(request).encode()).result(timeout=30)


def _decode(data: str | None) -> Any:
    if not data:
        return {}
    try:
        return json.loads(base64.b64decode(data))
    except (binascii.Error, TypeError, ValueError):
        return data  # refused with a clear message
