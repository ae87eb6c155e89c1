"""`cutover` of a sharded job: it waits until every shard is caught up, runs one relay per shard
(--run-relay), verifies per stream and lists the shards in its report. Two emulators."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from esdbclient import EventStoreDBClient, StreamState

from core.relay import Relay
from core.tools.cutover import EXIT_COMPLETED, EXIT_NOT_CAUGHT_UP, Cutover, CutoverOptions
from tests.engine.helpers import make_job
from tests.engine.test_cutover import FAST, Operator, event, history, saved

K = 3


@pytest.fixture
def sharded(pair, tmp_path):
    source, target = pair
    client = EventStoreDBClient(source.uri)
    history(client, streams=12)
    job = make_job(source, target, tmp_path, shards=K)
    yield source, target, client, job
    client.close()


def cutover(job, tmp_path: Path, observer=None, **options: object):
    settings = {**FAST, "report_dir": tmp_path / "reports", **options}
    return Cutover(job, CutoverOptions(**settings), observer=observer).run()


def test_refused_while_one_shard_is_behind_then_completed_with_a_relay_per_shard(sharded, tmp_path):
    _, _, client, job = sharded
    with Relay(job) as relay:
        plan = relay.shard_plan()
        assert plan is not None
        for shard in plan.shards(job.job_id)[:-1]:  # every shard but the last
            relay.run(until_caught_up=True, shard=shard, idle_seconds=0.01)
    refused = cutover(job, tmp_path)
    assert refused.exit_code == EXIT_NOT_CAUGHT_UP
    assert refused.lag_at_start is not None
    assert [s.caught_up for s in refused.lag_at_start.shards] == [True, True, False]
    assert f"shards not caught up: {K - 1} (" in refused.message

    stop_writers = threading.Event()
    client.append_to_stream("late-order", current_version=StreamState.ANY, events=[event(1)])
    report = cutover(job, tmp_path, Operator(stop_writers), wait=True, run_relay=True)
    assert report.exit_code == EXIT_COMPLETED, report.message
    assert [s.key for s in report.shards] == [f"{job.job_id}.shard-{i}" for i in range(K)]
    assert report.events_written_total == sum(s.events_written for s in report.shards)
    assert report.checkpoint_position == min(s.checkpoint_position for s in report.shards)
    assert report.verify is not None and report.verify.ok and report.verify.shards == K
    data, md = saved(report)
    assert len(data["shards"]) == K
    assert f"## Shards ({K})" in md and "global order is not kept across shards" in md
