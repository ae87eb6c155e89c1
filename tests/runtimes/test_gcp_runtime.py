"""The GCP zip served by functions-framework, as Cloud Functions (2nd gen) runs it.

`esdb-relay package gcp` builds the zip; it is unpacked, its requirements.txt is installed into a
folder of its own (what Cloud Build's Python buildpack does; functions-framework comes from those
requirements too), and `python -m functions_framework --target=on_event
--signature-type=cloudevent` (and `--target=on_http`) runs in the unpacked folder with a bare
Python that sees nothing but the zip and those requirements: the entry points are found in the
zip's root main.py, as the deployed functions' `entry_point` names them.

Real here: the Firestore and Pub/Sub emulators and two TLS esdb emulators. Not run here:
Pub/Sub's push delivery, so this test does its part: it pulls each chained request from the
job's topic (a subscription on the Pub/Sub emulator) and POSTs it to the event function in the
push subscription's request format.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from google.cloud import pubsub_v1

from esdb_emulator import Emulator
from esdb_emulator.workload import Workload, generate
from handlers.cli.packaging import find_uv
from tests.engine.helpers import differences
from tests.runtimes.conftest import base_env
from tests.services.azurite import free_port
from tests.services.firestore import PROJECT, firestore_emulator  # noqa: F401 - fixture
from tests.services.pubsub import pubsub_host  # noqa: F401 - fixture

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def built(unpacked, tmp_path_factory) -> tuple[Path, Path, Path]:
    """(the unpacked zip, its installed requirements, a bare Python 3.11)."""
    tree = unpacked("gcp")
    site = tmp_path_factory.mktemp("gcp-site")
    subprocess.run(
        [
            find_uv(),
            *("pip", "install", "--quiet", "--target", str(site)),
            *("--requirements", str(tree / "requirements.txt"), "--python-version", "3.11"),
        ],
        check=True,
        timeout=600,
    )
    venv = tmp_path_factory.mktemp("gcp-python")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    return tree, site, venv / "bin" / "python"


@pytest.fixture
def deployed(firestore_emulator, pubsub_host) -> Iterator[dict[str, Any]]:  # noqa: F811
    suffix = uuid.uuid4().hex[:8]
    with _emulator_env(pubsub_host):
        publisher = pubsub_v1.PublisherClient()
        subscriber = pubsub_v1.SubscriberClient()
        topic = publisher.topic_path(PROJECT, f"slices-{suffix}")
        subscription = subscriber.subscription_path(PROJECT, f"slices-{suffix}")
        publisher.create_topic(name=topic)
        subscriber.create_subscription(name=subscription, topic=topic)
    with Emulator(tls=True) as source, Emulator(tls=True) as target:
        yield {
            "source": source,
            "target": target,
            "subscriber": subscriber,
            "subscription": subscription,
            "pubsub_host": pubsub_host,
            # infra/gcp/main.tf's environment; the secrets arrive as environment variables.
            "env": {
                "FIRESTORE_EMULATOR_HOST": firestore_emulator,
                "PUBSUB_EMULATOR_HOST": pubsub_host,
                "GOOGLE_CLOUD_PROJECT": PROJECT,
                "ESDB_RELAY_JOB_ID": "gcp-runtime-job",
                "ESDB_RELAY_SOURCE": source.uri,
                "ESDB_RELAY_TARGET": target.uri,
                "ESDB_RELAY_CHECKPOINT_STORE": f"firestore://relay-{suffix}",
                "ESDB_RELAY_CHAIN_TOPIC": topic,
                "ESDB_RELAY_FUNCTION_TIMEOUT": "540",
                "ESDB_RELAY_BUDGET__MAX_EVENTS": "150",
            },
        }


def _emulator_env(host: str) -> Any:
    """PUBSUB_EMULATOR_HOST for this process's own Pub/Sub clients."""
    return mock.patch.dict(os.environ, {"PUBSUB_EMULATOR_HOST": host})


@pytest.fixture
def serve(built, tmp_path) -> Iterator[Callable[[str, str, dict[str, str]], str]]:
    """Start functions-framework on one entry point; returns its URL once it answers."""
    tree, site, python = built
    procs: list[subprocess.Popen[bytes]] = []

    def start(target: str, signature: str, env: dict[str, str]) -> str:
        port = free_port()
        log = tmp_path / f"{target}.log"
        proc = subprocess.Popen(
            [
                *(str(python), "-m", "functions_framework", f"--target={target}"),
                *(f"--signature-type={signature}", "--source=main.py", f"--port={port}"),
            ],
            cwd=tree,
            env={**base_env(tmp_path), "PYTHONPATH": str(site), "PORT": str(port), **env},
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        procs.append(proc)
        deadline = time.monotonic() + 60
        while True:  # listening (no request: any request to the HTTP function runs a slice)
            try:
                socket.create_connection(("127.0.0.1", port), timeout=2).close()
                break
            except OSError:
                assert proc.poll() is None, log.read_text(errors="replace")[-3000:]
                assert time.monotonic() < deadline, "functions-framework did not start"
                time.sleep(0.3)
        return f"http://127.0.0.1:{port}/"

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(timeout=10)


def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=300) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def pubsub_push(url: str, data: bytes) -> int:
    """What the job's push subscription (infra/gcp/pubsub.tf) POSTs for one message: Pub/Sub's
    push body, which functions-framework turns into the CloudEvent on_event takes."""
    body = {
        "message": {
            "data": base64.b64encode(data).decode(),
            "messageId": uuid.uuid4().hex,
            "publishTime": "2026-12-07T12:00:00Z",
            "attributes": {},
        },
        "subscription": f"projects/{PROJECT}/subscriptions/relay-slices-push",
    }
    status, _ = post(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    return status


def pull(deployed: dict[str, Any]) -> list[bytes]:
    subscriber, subscription = deployed["subscriber"], deployed["subscription"]
    with _emulator_env(deployed["pubsub_host"]):
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


def test_event_function_chains_through_pubsub_to_the_tail(deployed, serve):
    source, target = deployed["source"], deployed["target"]
    generate(source.store, Workload(events=600, streams=30, links=False))
    url = serve("on_event", "cloudevent", deployed["env"])
    assert pubsub_push(url, b"{}") == 200  # what Cloud Scheduler publishes
    hops = 0
    while messages := pull(deployed):
        for data in messages:
            assert pubsub_push(url, data) == 200
        hops += 1
        assert hops < 30
    assert hops >= 3
    assert differences(source.store, target.store) == []


def test_http_function_status_dry_run_and_refusals(deployed, serve):
    generate(deployed["source"].store, Workload(events=100, streams=5, links=False))
    url = serve("on_http", "http", deployed["env"])

    def call(body: bytes) -> tuple[int, dict[str, Any]]:
        status, raw = post(url, body, {"Content-Type": "application/json"})
        return status, json.loads(raw)

    code, status = call(b'{"action": "status"}')
    assert code == 200 and status["result"]["lag_bytes"] > 0
    code, dry = call(b'{"from": 0, "dry_run": true}')
    assert code == 200 and dry["result"]["events_written"] > 0, dry
    code, refused = call(b'{"target": "esdb://elsewhere:2113"}')
    assert code == 400 and "target" in refused["error"]


def test_a_tick_on_a_sharded_job_publishes_one_message_per_shard_and_each_runs_its_shard(
    deployed, serve
):
    source, target = deployed["source"], deployed["target"]
    generate(source.store, Workload(events=600, streams=30, links=False))
    url = serve("on_event", "cloudevent", {**deployed["env"], "ESDB_RELAY_SHARDS": "3"})
    assert pubsub_push(url, b"{}") == 200
    messages = pull(deployed)
    assert sorted(json.loads(m)["shard"] for m in messages) == [0, 1, 2]
    one = next(m for m in messages if json.loads(m)["shard"] == 1)
    assert pubsub_push(url, one) == 200
    chained = pull(deployed)
    assert [json.loads(m)["shard"] for m in chained] == [1]  # shard 1 chains only itself
    pending = [m for m in messages if m is not one] + chained
    hops = 0
    while pending:
        for data in pending:
            assert pubsub_push(url, data) == 200
        pending = pull(deployed)
        hops += 1
        assert hops < 60
    assert differences(source.store, target.store) == []
