"""A shard's slice emits the job's metrics (its id, the shard as a property): its own streak,
and the events left of its own streams only. Real emulators, a real SQLite store."""

from __future__ import annotations

from pathlib import Path

from core.eventstore import EventStore
from core.invocation import invoke, parse_request
from core.metrics import PENDING_RECORDS, Sample, emf
from core.progress import copied
from core.shard_plans import stored_plan
from core.stores.sqlite import SqliteCheckpointStore
from esdb_emulator.workload import Workload, generate
from tests.engine.helpers import make_job


def test_a_shard_slice_emits_under_the_job_with_its_own_lag(pair, tmp_path):
    source, target = pair
    generate(source.store, Workload(events=120, streams=30, links=False))
    job = make_job(source, target, tmp_path, shards=3, budget={"max_events": 10})
    fan_out = invoke(parse_request({}), job, remaining_seconds=60).fan_out
    samples: list[Sample] = []
    response = invoke(parse_request(fan_out[1]), job, remaining_seconds=60, metrics=samples.append)
    assert response.status == "ok" and response.next_action == "continue"
    (sample,) = samples
    assert (sample.job_id, sample.shard) == (job.job_id, 1)
    path = Path(job.checkpoint_store.removeprefix("sqlite:///"))
    with SqliteCheckpointStore(path) as store:
        plan = stored_plan(store, job.job_id)
        checkpoint = store.load(f"{job.job_id}.shard-1")
    assert plan is not None and checkpoint is not None and checkpoint.position is not None
    with EventStore(job.source.get_secret_value(), side="source") as s:
        after = list(s.read_all_after(checkpoint.position.commit, 10_000))
    assert len(after) < PENDING_RECORDS  # all of it within what a slice's metrics read
    everything = [e for e in after if copied(job, e)]
    ours = [e for e in everything if plan.shard_of(e.stream) == 1]
    assert sample.values["lag_events"] == len(ours) < len(everything)
    document = emf(sample)
    assert document["Shard"] == 1 and document["JobId"] == job.job_id
    assert document["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["JobId"]]


def test_a_failing_shard_slice_emits_its_own_failure_under_the_job(pair, tmp_path):
    """The target answers UNAVAILABLE once the relay is connected (the emulator's own fault
    injection): the failed slice's sample is the job's, with the shard and its streak."""
    import pytest

    from core.errors import RelayError
    from core.relay import Relay

    source, target = pair
    generate(source.store, Workload(events=60, streams=12, links=False))
    job = make_job(source, target, tmp_path, shards=3, budget={"max_events": 10})
    fan_out = invoke(parse_request({}), job, remaining_seconds=60).fan_out

    def failing_target(j):
        relay = Relay(j)
        target.faults.update(unavailable_rate=1.0)
        return relay

    samples: list[Sample] = []
    with pytest.raises(RelayError):
        invoke(
            parse_request(fan_out[2]),
            job,
            remaining_seconds=20,
            metrics=samples.append,
            relay_factory=failing_target,
        )
    target.faults.reset()
    (sample,) = samples
    assert (sample.job_id, sample.shard) == (job.job_id, 2)
    assert sample.values["failed_slices"] == 1 and sample.values["consecutive_failures"] >= 1
