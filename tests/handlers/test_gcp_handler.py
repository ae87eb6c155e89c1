"""The Cloud Functions entry points end to end: the Firestore emulator (checkpoints), the
Pub/Sub emulator (schedule and chain) and two emulators. Functions are called with the objects
functions-framework passes (a CloudEvent, a Flask request), as the runtime would."""

from __future__ import annotations

import base64
import json
import uuid

import pytest
from cloudevents.http import CloudEvent
from flask import Flask
from google.cloud import pubsub_v1

from esdb_emulator import Emulator
from esdb_emulator.workload import Workload, generate
from tests.engine.helpers import differences
from tests.services.firestore import PROJECT, firestore_emulator, firestore_env  # noqa: F401
from tests.services.pubsub import pubsub_host  # noqa: F401 - fixture


@pytest.fixture
def deployed(firestore_env, pubsub_host, monkeypatch):  # noqa: F811
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", pubsub_host)
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", PROJECT)
    suffix = uuid.uuid4().hex[:8]
    publisher = pubsub_v1.PublisherClient()
    subscriber = pubsub_v1.SubscriberClient()
    topic = publisher.topic_path(PROJECT, f"relay-{suffix}")
    subscription = subscriber.subscription_path(PROJECT, f"relay-{suffix}")
    publisher.create_topic(name=topic)
    subscriber.create_subscription(name=subscription, topic=topic)
    import handlers.gcp.main as main

    main._publisher = None  # a fresh client bound to this emulator
    with Emulator(tls=True) as source, Emulator(tls=True) as target:
        monkeypatch.setenv("ESDB_RELAY_CHAIN_TOPIC", topic)
        monkeypatch.setenv("ESDB_RELAY_JOB_ID", "gcp-job")
        monkeypatch.setenv("ESDB_RELAY_SOURCE", source.uri)  # Secret Manager secrets arrive
        monkeypatch.setenv("ESDB_RELAY_TARGET", target.uri)  # as environment variables
        monkeypatch.setenv("ESDB_RELAY_CHECKPOINT_STORE", f"firestore://relay-{suffix}")
        monkeypatch.setenv("ESDB_RELAY_BUDGET__MAX_EVENTS", "150")
        yield source, target, subscriber, subscription


def pull(subscriber, subscription) -> list[bytes]:
    response = subscriber.pull(
        request={"subscription": subscription, "max_messages": 10}, timeout=10
    )
    if response.received_messages:
        subscriber.acknowledge(
            request={
                "subscription": subscription,
                "ack_ids": [m.ack_id for m in response.received_messages],
            }
        )
    return [m.message.data for m in response.received_messages]


def pubsub_event(data: bytes) -> CloudEvent:
    return CloudEvent(
        {"type": "google.cloud.pubsub.topic.v1.messagePublished", "source": "//pubsub"},
        {"message": {"data": base64.b64encode(data).decode()}},
    )


def test_scheduled_event_chains_through_pubsub_until_caught_up(deployed):
    import handlers.gcp.main as main

    source, target, subscriber, subscription = deployed
    generate(source.store, Workload(events=600, streams=30, links=False))
    main.on_event(pubsub_event(b"{}"))  # what Cloud Scheduler publishes
    hops = 0
    while messages := pull(subscriber, subscription):
        for data in messages:
            main.on_event(pubsub_event(data))
        hops += 1
        assert hops < 30
    assert hops >= 3
    assert differences(source.store, target.store) == []


def test_http_invoke_status_dry_run_and_refusals(deployed):
    import handlers.gcp.main as main

    source, _target, _subscriber, _subscription = deployed
    generate(source.store, Workload(events=100, streams=5, links=False))
    app = Flask(__name__)

    def post(body: bytes) -> tuple[dict, int]:
        with app.test_request_context("/", method="POST", data=body):
            from flask import request

            text, status, _headers = main.on_http(request)
        return json.loads(text), status

    status, code = post(b'{"action": "status"}')
    assert code == 200 and status["result"]["lag_bytes"] > 0
    assert status["result"]["state"] == "not-started" and status["result"]["caught_up"] is False
    dry, code = post(b'{"from": 0, "dry_run": true}')
    assert code == 200 and dry["result"]["events_written"] > 0
    refused, code = post(b'{"target": "esdb://elsewhere:2113"}')
    assert code == 400 and "target" in refused["error"]
    garbage, code = post(b"not json")
    assert code == 400 and "JSON object" in garbage["error"]
    assert "changeit" not in json.dumps([status, refused])


def test_duplicate_deliveries_and_overlapping_schedules_are_harmless(deployed):
    import handlers.gcp.main as main

    source, target, subscriber, subscription = deployed
    generate(source.store, Workload(events=300, streams=10, links=False))
    main.on_event(pubsub_event(b"{}"))  # the schedule fires twice at once ...
    main.on_event(pubsub_event(b"{}"))
    hops = 0
    while messages := pull(subscriber, subscription):
        for data in messages:  # ... and Pub/Sub delivers every chain message twice
            main.on_event(pubsub_event(data))
            main.on_event(pubsub_event(data))
        hops += 1
        assert hops < 40
    assert differences(source.store, target.store) == []
