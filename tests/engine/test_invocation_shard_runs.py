"""A sharded job's shard messages run their shard and chain only it (real emulators, a real
SQLite store; the engine's `Relay.run_once(shard=)`)."""

from __future__ import annotations

import pytest

from core.invocation import invoke, parse_request
from esdb_emulator.workload import Workload, generate
from tests.engine.helpers import differences, make_job

K = 3


@pytest.fixture
def sharded(pair, tmp_path):
    source, target = pair
    generate(source.store, Workload(events=400, streams=40, links=False))
    return source, target, make_job(source, target, tmp_path, shards=K, budget={"max_events": 60})


def test_shard_messages_run_their_shard_and_chain_it_until_all_are_caught_up(sharded):
    source, target, job = sharded
    queue = list(invoke(parse_request({}), job, remaining_seconds=60).fan_out)
    ran: dict[int, int] = {}
    for _ in range(200):
        if not queue:
            break
        message = queue.pop(0)
        response = invoke(parse_request(message), job, remaining_seconds=60)
        assert response.status == "ok", response.error
        assert response.job_id == job.job_id
        ran[message["shard"]] = ran.get(message["shard"], 0) + 1
        if response.chain is not None:
            assert response.chain["shard"] == message["shard"]  # a shard chains only itself
            queue.append(response.chain)
    assert not queue and sorted(ran) == [0, 1, 2]
    assert differences(source.store, target.store) == []
    status = invoke(parse_request({"action": "status"}), job).result
    assert status is not None and status["caught_up"] and len(status["shards"]) == K
