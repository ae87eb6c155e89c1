"""The provider-neutral invocation: payload validation, slices, chaining, status."""

from __future__ import annotations

import pytest

from core.errors import ConfigError
from core.invocation import InvocationRequest, invoke, parse_request
from esdb_emulator.workload import Workload, generate
from tests.engine.helpers import differences, make_job


@pytest.mark.parametrize(
    ("payload", "named"),
    [
        ({"action": "explode"}, "action"),
        ({"source": "esdb://evil:2113"}, "source"),  # endpoints never come from a payload
        ({"target": "esdb://evil:2113"}, "target"),
        ({"to": 5}, "'to' needs 'from'"),
        ({"from": 9, "to": 5}, "'to' is before 'from'"),
        ({"from": -1}, "from"),
        ({"action": "status", "from": 3}, "apply to action 'slice'"),
        ({"dry_run": "perhaps"}, "dry_run"),
        ([1, 2], "JSON object"),
        ("slice", "JSON object"),
    ],
)
def test_bad_payloads_name_what_is_wrong(payload, named):
    with pytest.raises(ConfigError) as caught:
        parse_request(payload)
    assert named in str(caught.value)


def test_empty_payload_is_a_slice():
    assert parse_request(None) == InvocationRequest()
    assert parse_request({}).action == "slice"


def test_slices_chain_until_caught_up(pair, tmp_path):
    source, target = pair
    generate(source.store, Workload(events=500, streams=20, links=False))
    job = make_job(source, target, tmp_path, budget={"max_events": 200})
    request = parse_request({"action": "slice"})
    chained = 0
    for _ in range(20):
        response = invoke(request, job, remaining_seconds=60)
        assert response.status == "ok"
        if response.chain is None:
            assert response.next_action == "idle"
            break
        chained += 1
        request = parse_request(response.chain)
    assert chained >= 2
    assert differences(source.store, target.store) == []


def test_backfill_range_chains_with_the_same_range(pair, tmp_path):
    source, target = pair
    generate(source.store, Workload(events=300, streams=10, links=False))
    job = make_job(source, target, tmp_path, budget={"max_events": 50})
    end = source.store.last_position
    request = parse_request({"from": 0})
    response = invoke(request, job, remaining_seconds=60)
    assert response.job_id == f"{job.job_id}.backfill-0-{end}"
    assert response.chain == {"from": 0, "to": end, "chained": True, "generation": 1}
    for _ in range(30):
        if response.chain is None:
            break
        response = invoke(parse_request(response.chain), job, remaining_seconds=60)
    assert response.chain is None
    assert differences(source.store, target.store) == []


def test_status_and_preflight(pair, tmp_path):
    source, target = pair
    job = make_job(source, target, tmp_path)
    status = invoke(parse_request({"action": "status"}), job)
    assert status.result is not None and "lag_bytes" in status.result
    assert invoke(parse_request({"action": "preflight"}), job).status == "ok"


def test_a_payload_for_another_job_is_refused(pair, tmp_path):
    source, target = pair
    job = make_job(source, target, tmp_path)
    with pytest.raises(ConfigError, match="runs job 'test-job'"):
        invoke(parse_request({"job": "someone-else"}), job)


def test_a_scheduled_tick_does_not_start_a_second_chain(pair, tmp_path):
    source, target = pair
    generate(source.store, Workload(events=600, streams=20, links=False))
    job = make_job(source, target, tmp_path, budget={"max_events": 100})
    first = invoke(parse_request({}), job, remaining_seconds=60)  # the schedule starts a chain
    assert first.chain == {"chained": True, "generation": 1}
    tick = invoke(parse_request({}), job, remaining_seconds=60)  # the next tick, mid-chain
    assert tick.chain is None and tick.result == {
        "skipped": "a chain of slices is already copying this job"
    }
    hop = invoke(parse_request(first.chain), job, remaining_seconds=60)  # the chain goes on
    assert hop.chain == {"chained": True, "generation": 1} and hop.result["events_written"] > 0
