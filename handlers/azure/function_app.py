"""Azure Functions app (Python v2 programming model): `function_app.py` at the package root.

- timer trigger (schedule from the `ESDB_RELAY_SCHEDULE` app setting, NCRONTAB),
- queue trigger on the chain queue (`ESDB_RELAY_CHAIN_QUEUE`, in the storage account named by
  the `ESDB_RELAY_QUEUE` connection setting) — each message is one invocation's payload,
- HTTP trigger `POST /api/invoke` for a manual backfill, at function auth level (a function key
  is required; nothing is anonymous).

A slice that does not reach the source's tail enqueues the next invocation at once. Secrets
arrive as app settings (Key Vault references are resolved by the platform into env vars).
"""

from __future__ import annotations

import json
import os
from typing import Any

import azure.functions as func
from azure.storage.queue import QueueClient, TextBase64EncodePolicy

from core.errors import RelayError
from core.invocation import failure_response, handle, platform_clock
from core.logs import configure
from handlers.azure import metrics
from handlers.azure.checkpoint_store import register

configure("json")
register()

app = func.FunctionApp()

QUEUE_CONNECTION = "ESDB_RELAY_QUEUE"  # the chain queue's connection (as the trigger names it)
# An identity-based connection (managed identity, no key) is given as <name>__queueServiceUri.
QUEUE_SERVICE_URI = "ESDB_RELAY_QUEUE__queueServiceUri"
QUEUE_CLIENT_ID = "ESDB_RELAY_QUEUE__clientId"
DEFAULT_TIMEOUT_SECONDS = 600.0  # the host's functionTimeout; set ESDB_RELAY_FUNCTION_TIMEOUT


@app.timer_trigger(arg_name="timer", schedule="%ESDB_RELAY_SCHEDULE%", run_on_startup=False)
def scheduled(timer: func.TimerRequest) -> None:
    run({})


@app.queue_trigger(
    arg_name="message", queue_name="%ESDB_RELAY_CHAIN_QUEUE%", connection=QUEUE_CONNECTION
)
def chained(message: func.QueueMessage) -> None:
    try:
        payload: Any = json.loads(message.get_body() or b"{}")
    except ValueError:
        payload = message.get_body().decode("utf-8", "replace")  # refused with a clear message
    run(payload)


# The worker binds the request to the parameter named by `trigger_arg_name` ("req" by default):
# a parameter of any other name fails indexing, and with it every function of the app.
@app.route(
    route="invoke",
    methods=["POST"],
    auth_level=func.AuthLevel.FUNCTION,
    trigger_arg_name="req",
)
def manual(req: func.HttpRequest) -> func.HttpResponse:
    try:
        payload = req.get_json() if req.get_body() else {}
    except ValueError:
        payload = req.get_body().decode("utf-8", "replace")
    try:
        response = run(payload)
    except RelayError as e:
        return _json(failure_response(e), 500)
    return _json(response, 400 if response.get("status") == "failed" else 200)


def run(payload: Any) -> dict[str, Any]:
    # Azure does not tell a function its remaining time: it has the host's functionTimeout,
    # counted here from the worker process's start on its first invocation (cold start).
    timeout = float(os.environ.get("ESDB_RELAY_FUNCTION_TIMEOUT", DEFAULT_TIMEOUT_SECONDS))
    # Each slice's figures as Application Insights custom metrics (handlers/azure/metrics.py).
    return handle(payload, clock=platform_clock(timeout), chain=enqueue, metrics=metrics.emit)


def enqueue(request: dict[str, Any]) -> None:
    """The next invocation, as a message on the chain queue (base64, as the trigger expects)."""
    with chain_queue() as queue:
        queue.send_message(json.dumps(request))


def chain_queue() -> QueueClient:
    """The chain queue, through the same connection setting the queue trigger uses: a
    connection string, or the identity-based form with the function's managed identity."""
    name = os.environ["ESDB_RELAY_CHAIN_QUEUE"]
    encode = TextBase64EncodePolicy()
    connection_string = os.environ.get(QUEUE_CONNECTION)
    if connection_string:
        return QueueClient.from_connection_string(
            connection_string, name, message_encode_policy=encode
        )
    from azure.identity import DefaultAzureCredential

    credential = DefaultAzureCredential(managed_identity_client_id=os.environ.get(QUEUE_CLIENT_ID))
    return QueueClient(
        os.environ[QUEUE_SERVICE_URI], name, credential=credential, message_encode_policy=encode
    )


def _json(body: dict[str, Any], status: int) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(body), status_code=status, mimetype="application/json")
