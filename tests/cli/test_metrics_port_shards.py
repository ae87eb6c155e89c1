"""`run --shard I --metrics-port`: the Prometheus series are the job's (label job_id = the job,
as core/metrics.SHARDS says), with the shard's own lag (real emulators, a real SQLite store)."""

from __future__ import annotations

import pytest

from core.relay import Relay
from esdb_emulator import Emulator
from esdb_emulator.workload import Workload, generate
from handlers.cli.metrics_server import PrometheusMetrics, SliceFeed
from tests.engine.helpers import make_job


@pytest.fixture
def pair():
    with Emulator() as source, Emulator() as target:
        yield source, target


def test_a_shards_run_is_scraped_under_the_job(pair, tmp_path):
    source, target = pair
    generate(source.store, Workload(events=150, streams=30, links=False))
    job = make_job(source, target, tmp_path, shards=3, budget={"max_events": 10})
    metrics = PrometheusMetrics()
    with Relay(job) as relay:
        plan = relay.shard_plan()
        assert plan is not None
        shard = plan.shard(job.job_id, 1)
        feed = SliceFeed(metrics, relay)
        feed.shard = shard  # as `run --shard 1` sets it
        result = relay.run_once(shard=shard)
        assert result.status == "ok" and not result.caught_up
        feed.slice(result)
    get = metrics.registry.get_sample_value
    assert get("esdb_relay_events_written_total", {"job_id": job.job_id}) == result.events_written
    assert get("esdb_relay_lag_bytes", {"job_id": job.job_id}) is not None
    assert get("esdb_relay_lag_bytes", {"job_id": shard.key}) is None
