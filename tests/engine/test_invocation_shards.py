"""A sharded job's invocations: a tick fans out one chain per shard, a shard's message runs that
shard and chains its own next slice (real emulators, a real SQLite store)."""

from __future__ import annotations

from typing import Any

import pytest

from core.checkpoint import open_store
from core.errors import ConfigError
from core.invocation import handle, invoke, parse_request
from core.shard_plans import stored_plan
from esdb_emulator.workload import Workload, generate
from tests.engine.helpers import differences, make_job

K = 3


@pytest.fixture
def sharded(pair, tmp_path):
    source, target = pair
    generate(source.store, Workload(events=400, streams=40, links=False))
    return source, target, make_job(source, target, tmp_path, shards=K, budget={"max_events": 60})


def test_a_tick_fixes_the_plan_and_starts_one_chain_per_shard(sharded):
    _, _, job = sharded
    response = invoke(parse_request({}), job, remaining_seconds=60)
    assert response.status == "ok" and response.chain is None
    assert response.fan_out == [{"shard": i, "chained": True, "generation": 1} for i in range(K)]
    assert response.result == {"shards": K, "started": [0, 1, 2], "running": []}
    with open_store(job.checkpoint_store) as store:
        plan = stored_plan(store, job.job_id)
        assert plan is not None and plan.count == K
        assert [store.load(f"{job.job_id}.shard-{i}").chain for i in range(K)] == [1, 1, 1]


def test_handle_sends_one_chain_message_per_shard(sharded):
    _, _, job = sharded
    sent: list[dict[str, Any]] = []
    out = handle({}, remaining_seconds=60, chain=sent.append, settings=lambda: job_payload(job))
    assert out["status"] == "ok"
    assert sorted(m["shard"] for m in sent) == [0, 1, 2]
    assert all(m["chained"] and m["generation"] == 1 for m in sent)


def test_a_second_tick_replaces_the_chains_and_the_first_ones_messages_are_dropped(sharded):
    _, _, job = sharded
    first = invoke(parse_request({}), job, remaining_seconds=60).fan_out
    second = invoke(parse_request({}), job, remaining_seconds=60).fan_out
    assert [m["generation"] for m in second] == [2, 2, 2]
    stale = invoke(parse_request(first[1]), job, remaining_seconds=60)
    assert stale.result is not None and "stale chain message" in stale.result["skipped"]
    assert stale.chain is None


@pytest.mark.parametrize(
    ("payload", "named"),
    [
        ({"from": 0, "shard": 1}, "needs 'to'"),
        ({"shard": 7}, "has 3 shards (0-2), not shard 7"),
        ({"dry_run": True}, "a dry run reads one"),
    ],
)
def test_what_a_sharded_job_refuses(sharded, payload, named):
    _, _, job = sharded
    with pytest.raises(ConfigError) as caught:
        invoke(parse_request(payload), job, remaining_seconds=60)
    assert named in str(caught.value) and caught.value.hint


def test_a_shard_on_an_unsharded_job_is_refused(pair, tmp_path):
    source, target = pair
    job = make_job(source, target, tmp_path)
    with pytest.raises(ConfigError, match="is not sharded"):
        invoke(parse_request({"shard": 0}), job, remaining_seconds=60)


def job_payload(job) -> dict[str, Any]:
    return {
        "job_id": job.job_id,
        "source": job.source.get_secret_value(),
        "target": job.target.get_secret_value(),
        "checkpoint_store": job.checkpoint_store,
        "shards": job.shards,
        "budget": {"max_events": job.budget.max_events},
    }


def test_a_chain_message_without_a_shard_is_dropped_not_fanned_out_again(sharded):
    _, _, job = sharded
    invoke(parse_request({}), job, remaining_seconds=60)
    dropped = invoke(parse_request({"chained": True}), job, remaining_seconds=60)
    assert dropped.fan_out == [] and dropped.chain is None
    assert dropped.result is not None and "without a shard" in dropped.result["skipped"]
    with open_store(job.checkpoint_store) as store:  # the shards' chains were not replaced
        assert [store.load(f"{job.job_id}.shard-{i}").chain for i in range(K)] == [1, 1, 1]


def test_a_backfill_range_fans_out_to_the_same_end_and_each_shard_copies_its_part(sharded):
    source, target, job = sharded
    end = source.store.last_position
    response = invoke(parse_request({"from": 0}), job, remaining_seconds=60)
    assert response.job_id == f"{job.job_id}.backfill-0-{end}"
    assert response.fan_out == [
        {"from": 0, "to": end, "shard": i, "chained": True, "generation": 1} for i in range(K)
    ]
    queue = list(response.fan_out)
    for _ in range(200):
        if not queue:
            break
        message = queue.pop(0)
        ran = invoke(parse_request(message), job, remaining_seconds=60)
        assert ran.status == "ok", ran.error
        assert ran.job_id == f"{job.job_id}.backfill-0-{end}"
        if ran.chain is not None:
            assert (ran.chain["shard"], ran.chain["to"]) == (message["shard"], end)
            queue.append(ran.chain)
    assert not queue
    assert differences(source.store, target.store) == []
    with open_store(job.checkpoint_store) as store:  # the range's own plan, in its own record
        assert stored_plan(store, f"{job.job_id}.backfill-0-{end}") is not None
        assert stored_plan(store, job.job_id) is None
