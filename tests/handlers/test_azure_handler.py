"""The Azure Functions app end to end: Azurite (Table for checkpoints, Queue for the chain) and
two emulators. The functions are called with azure.functions objects, as the host calls them
(the Functions host itself cannot be installed here)."""

from __future__ import annotations

import json
import uuid

import azure.functions as func
import pytest
from azure.storage.queue import QueueClient, TextBase64DecodePolicy

from esdb_emulator import Emulator
from esdb_emulator.workload import Workload, generate
from tests.engine.helpers import differences
from tests.services.azurite import azurite_queue, azurite_table  # noqa: F401 - fixtures


@pytest.fixture
def deployed(azurite_table, azurite_queue, monkeypatch):  # noqa: F811
    suffix = uuid.uuid4().hex[:8]
    queue_name = f"chain-{suffix}"
    QueueClient.from_connection_string(azurite_queue, queue_name).create_queue()
    with Emulator(tls=True) as source, Emulator(tls=True) as target:
        monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite_table)
        monkeypatch.setenv("ESDB_RELAY_QUEUE", azurite_queue)
        monkeypatch.setenv("ESDB_RELAY_CHAIN_QUEUE", queue_name)
        monkeypatch.setenv("ESDB_RELAY_JOB_ID", "azure-job")
        monkeypatch.setenv("ESDB_RELAY_SOURCE", source.uri)  # a Key Vault reference resolves
        monkeypatch.setenv("ESDB_RELAY_TARGET", target.uri)  # into an app setting like these
        monkeypatch.setenv("ESDB_RELAY_CHECKPOINT_STORE", f"azuretable://relay{suffix}")
        monkeypatch.setenv("ESDB_RELAY_BUDGET__MAX_EVENTS", "150")
        yield (
            source,
            target,
            QueueClient.from_connection_string(
                azurite_queue, queue_name, message_decode_policy=TextBase64DecodePolicy()
            ),
        )


def drain(queue: QueueClient) -> list[str]:
    bodies = []
    for message in queue.receive_messages(max_messages=32):
        bodies.append(message.content)
        queue.delete_message(message)
    return bodies


def test_timer_then_queue_chain_until_caught_up(deployed):
    from handlers.azure import function_app

    source, target, queue = deployed
    generate(source.store, Workload(events=600, streams=30, links=False))
    function_app.scheduled(None)
    hops = 0
    while bodies := drain(queue):
        for body in bodies:
            function_app.chained(func.QueueMessage(body=body.encode()))
        hops += 1
        assert hops < 30
    assert hops >= 3
    assert differences(source.store, target.store) == []


def test_http_manual_invoke_status_backfill_and_bad_payload(deployed):
    from handlers.azure import function_app

    source, _target, _queue = deployed
    generate(source.store, Workload(events=100, streams=5, links=False))

    def post(body: object) -> func.HttpResponse:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        return function_app.manual(func.HttpRequest("POST", "/api/invoke", body=data))

    status = post({"action": "status"})
    assert status.status_code == 200 and json.loads(status.get_body())["result"]["lag_bytes"] > 0
    shown = json.loads(status.get_body())["result"]
    assert (shown["state"], shown["caught_up"]) == ("not-started", False) and shown["lag_events"]
    backfill = post({"from": 0, "dry_run": True})
    assert backfill.status_code == 200
    refused = post({"source": "esdb://elsewhere:2113"})
    assert refused.status_code == 400 and "source" in json.loads(refused.get_body())["error"]
    garbage = post(b"not json")
    assert garbage.status_code == 400
    assert "changeit" not in (status.get_body() + refused.get_body()).decode()


def test_http_trigger_requires_a_function_key():
    from handlers.azure import function_app

    manual = next(f for f in function_app.app.get_functions() if f.get_function_name() == "manual")
    trigger = next(b for b in manual.get_bindings() if b.type == "httpTrigger")
    assert trigger.auth_level == func.AuthLevel.FUNCTION


def test_duplicate_deliveries_and_overlapping_timers_are_harmless(deployed):
    from handlers.azure import function_app

    source, target, queue = deployed
    generate(source.store, Workload(events=300, streams=10, links=False))
    for _ in range(20):
        function_app.scheduled(None)  # two timers firing at once ...
        function_app.scheduled(None)
        for body in drain(queue):  # ... and every chain message delivered twice
            function_app.chained(func.QueueMessage(body=body.encode()))
            function_app.chained(func.QueueMessage(body=body.encode()))
    drain(queue)
    assert differences(source.store, target.store) == []


def test_identity_based_chain_connection(monkeypatch):
    """With only `ESDB_RELAY_QUEUE__queueServiceUri` (managed identity, as the template sets
    it) the chain queue is reached with the function's identity. Azure AD cannot run here, so
    this checks the client that would be used instead of sending."""
    from azure.identity import DefaultAzureCredential

    from handlers.azure import function_app

    monkeypatch.delenv("ESDB_RELAY_QUEUE", raising=False)
    monkeypatch.setenv("ESDB_RELAY_CHAIN_QUEUE", "esdb-relay-chain")
    monkeypatch.setenv(
        "ESDB_RELAY_QUEUE__queueServiceUri", "https://relaystore.queue.core.windows.net"
    )
    monkeypatch.setenv("ESDB_RELAY_QUEUE__clientId", "00000000-0000-0000-0000-000000000001")
    queue = function_app.chain_queue()
    assert queue.url == "https://relaystore.queue.core.windows.net/esdb-relay-chain"
    assert isinstance(queue.credential, DefaultAzureCredential)
