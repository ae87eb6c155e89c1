"""The Azure zip loaded and run by the Azure Functions Python worker's own code.

`esdb-relay package azure` builds the zip; it is unpacked as zip deploy lays it out under
/home/site/wwwroot, and tests/runtimes/azure_worker_host.py (run with .venv-azure-worker's
Python, which holds the worker library and nothing of the relay) plays the Functions host: it
sends the worker the same protocol messages the host sends over gRPC. The worker imports
function_app.py, indexes every function with its bindings (a parameter the decorators do not
bind, e.g. `request` where `@app.route` binds `req`, fails the whole app: no function is left),
and runs timer ticks, queue messages and HTTP requests through its own binding converters.

Real here: Azurite (the checkpoint table and the chain queue) and two TLS esdb emulators, reached
by the worker process over TCP. Not run here: the Functions host itself (.NET, downloaded by
Core Tools), so what the host does around the worker is done by this test: it drains the chain
queue (as the queue trigger's poller would, base64 decoded per host.json) and hands each
message to the worker as a queue trigger invocation.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.storage.queue import QueueClient, TextBase64DecodePolicy

from esdb_emulator import Emulator
from esdb_emulator.workload import Workload, generate
from tests.engine.helpers import differences
from tests.runtimes.conftest import base_env, runtime_python
from tests.services.azurite import azurite_queue, azurite_table  # noqa: F401 - fixtures

pytestmark = pytest.mark.slow

HOST = Path(__file__).with_name("azure_worker_host.py")
ANSWER = "@@host "


class Worker:
    """One worker process serving one app, driven line by line."""

    def __init__(self, app: Path, env: dict[str, str], log: Path) -> None:
        self.log = log
        self.proc = subprocess.Popen(
            [str(runtime_python(".venv-azure-worker")), "-I", str(HOST), str(app)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log.open("wb"),
            env=env,
            text=True,
        )

    def ask(self, request: dict[str, Any]) -> dict[str, Any]:
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        for line in self.proc.stdout:
            if line.startswith(ANSWER):
                return json.loads(line[len(ANSWER) :])
        raise AssertionError(f"the worker exited: {self.log.read_text()[-3000:]}")

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def start_worker(unpacked, tmp_path) -> Iterator[Callable[[dict[str, str]], Worker]]:
    app = unpacked("azure")
    started: list[Worker] = []

    def start(settings: dict[str, str]) -> Worker:
        worker = Worker(app, {**base_env(tmp_path), **settings}, tmp_path / "worker.log")
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.close()


@pytest.fixture
def deployed(azurite_table, azurite_queue) -> Iterator[tuple[Any, Any, QueueClient, dict]]:  # noqa: F811
    """App settings as infra/azure wires them (connection strings where the template uses the
    identity: Azurite has no Entra ID), two emulators, a fresh table and queue."""
    suffix = uuid.uuid4().hex[:8]
    queue_name = f"chain-{suffix}"
    QueueClient.from_connection_string(azurite_queue, queue_name).create_queue()
    with Emulator(tls=True) as source, Emulator(tls=True) as target:
        settings = {
            "AZURE_STORAGE_CONNECTION_STRING": azurite_table,
            "ESDB_RELAY_QUEUE": azurite_queue,
            "ESDB_RELAY_CHAIN_QUEUE": queue_name,
            "ESDB_RELAY_SCHEDULE": "0 */5 * * * *",
            "ESDB_RELAY_JOB_ID": "azure-runtime-job",
            "ESDB_RELAY_SOURCE": source.uri,  # Key Vault references resolve into settings
            "ESDB_RELAY_TARGET": target.uri,
            "ESDB_RELAY_CHECKPOINT_STORE": f"azuretable://relay{suffix}",
            "ESDB_RELAY_BUDGET__MAX_EVENTS": "150",
            "ESDB_RELAY_FUNCTION_TIMEOUT": "600",
        }
        queue = QueueClient.from_connection_string(
            azurite_queue, queue_name, message_decode_policy=TextBase64DecodePolicy()
        )
        yield source, target, queue, settings


def drain(queue: QueueClient) -> list[str]:
    bodies = []
    for message in queue.receive_messages(max_messages=32):
        bodies.append(message.content)
        queue.delete_message(message)
    return bodies


def by_name(functions: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    return {f["name"]: {b["name"]: b for b in f["bindings"]} for f in functions}


def test_the_worker_indexes_every_function_with_its_bindings(start_worker, tmp_path):
    worker = start_worker({})  # indexing needs no settings: the app reads them per invocation
    answer = worker.ask({"op": "init"})
    assert answer["ok"], answer["error"]
    functions = by_name(answer["functions"])
    assert set(functions) == {"scheduled", "chained", "manual"}
    timer = functions["scheduled"]["timer"]
    assert timer["type"] == "timerTrigger" and timer["schedule"] == "%ESDB_RELAY_SCHEDULE%"
    queue = functions["chained"]["message"]
    assert queue["type"] == "queueTrigger"
    assert queue["queueName"] == "%ESDB_RELAY_CHAIN_QUEUE%"
    assert queue["connection"] == "ESDB_RELAY_QUEUE"
    http = functions["manual"]
    trigger = next(b for b in http.values() if b["type"] == "httpTrigger")
    assert trigger["authLevel"] == "FUNCTION" and trigger["route"] == "invoke"
    assert [m.upper() for m in trigger["methods"]] == ["POST"]
    assert http["$return"]["type"] == "http"
    assert all(f["script_file"].endswith("function_app.py") for f in answer["functions"])


def test_timer_then_queue_messages_chain_to_the_tail(deployed, start_worker):
    source, target, queue, settings = deployed
    generate(source.store, Workload(events=600, streams=30, links=False))
    worker = start_worker(settings)
    assert worker.ask({"op": "init"})["ok"]
    tick = worker.ask({"op": "invoke", "function": "scheduled"})
    assert tick["ok"], tick["error"]
    hops = 0
    while bodies := drain(queue):
        for body in bodies:
            answer = worker.ask({"op": "invoke", "function": "chained", "data": body})
            assert answer["ok"], answer["error"]
        hops += 1
        assert hops < 30
    assert hops >= 3
    assert differences(source.store, target.store) == []


def test_http_invoke_status_backfill_and_refusals(deployed, start_worker):
    source, _target, _queue, settings = deployed
    generate(source.store, Workload(events=100, streams=5, links=False))
    worker = start_worker(settings)
    assert worker.ask({"op": "init"})["ok"]

    def post(body: Any) -> dict[str, Any]:
        return worker.ask({"op": "invoke", "function": "manual", "data": body})

    status = post({"action": "status"})
    assert status["ok"] and status["status_code"] == 200, status
    assert status["body"]["result"]["lag_bytes"] > 0
    dry = post({"from": 0, "dry_run": True})
    assert dry["status_code"] == 200 and dry["body"]["result"]["events_written"] > 0
    refused = post({"source": "esdb://elsewhere:2113"})
    assert refused["status_code"] == 400 and "source" in refused["body"]["error"]
    garbage = post("not json")
    assert garbage["status_code"] == 400


def test_a_timer_on_a_sharded_job_queues_one_message_per_shard_and_each_runs_its_shard(
    deployed, start_worker
):
    source, target, queue, settings = deployed
    generate(source.store, Workload(events=600, streams=30, links=False))
    worker = start_worker({**settings, "ESDB_RELAY_SHARDS": "3"})
    assert worker.ask({"op": "init"})["ok"]
    tick = worker.ask({"op": "invoke", "function": "scheduled"})
    assert tick["ok"], tick["error"]
    bodies = drain(queue)
    assert sorted(json.loads(b)["shard"] for b in bodies) == [0, 1, 2]
    one = next(b for b in bodies if json.loads(b)["shard"] == 1)
    answer = worker.ask({"op": "invoke", "function": "chained", "data": one})
    assert answer["ok"], answer["error"]
    chained = drain(queue)
    assert [json.loads(b)["shard"] for b in chained] == [1]  # shard 1 chains only itself
    pending = [b for b in bodies if b is not one] + chained
    hops = 0
    while pending:
        for body in pending:
            assert worker.ask({"op": "invoke", "function": "chained", "data": body})["ok"]
        pending = drain(queue)
        hops += 1
        assert hops < 60
    assert differences(source.store, target.store) == []
