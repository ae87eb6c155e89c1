"""verify of a sharded job: per stream, never by the order of `$all` across streams (shards do
not keep it), differences attributed to shards by the stored plan. Real emulators; the shards
copy through the engine (`Relay.run(shard=)`), one after another, so the target's `$all`
order differs from the source's while every stream is equal."""

from __future__ import annotations

import json
import uuid

import pytest
from typer.testing import CliRunner

from core.checkpoint import open_store
from core.eventstore import EventStore
from core.relay import Relay
from core.shard_plans import stored_plan
from core.tools.verify import DifferenceKind, verify
from esdb_emulator.store import ANY, ProposedEvent
from handlers.cli.main import app
from tests.engine.helpers import make_job

K = 3


def event() -> ProposedEvent:
    return ProposedEvent(str(uuid.uuid4()), "Placed", "application/json", b"{}")


@pytest.fixture
def copied(pair, tmp_path):
    source, target = pair
    for _ in range(3):
        for n in range(24):
            source.store.append(f"order-{n:02d}", ANY, [event()])
    job = make_job(source, target, tmp_path, shards=K, mode="ordered")
    with Relay(job) as relay:
        plan = relay.shard_plan()
        assert plan is not None
        for shard in reversed(plan.shards(job.job_id)):  # the last shard first
            relay.run(until_caught_up=True, shard=shard, idle_seconds=0.01)
    return source, target, job, plan


def report_of(job, plan):
    with (
        EventStore(job.source.get_secret_value(), side="source") as s,
        EventStore(job.target.get_secret_value(), side="target") as t,
    ):
        return verify(job, s, t, plan=plan)


def test_a_sharded_copy_is_equal_stream_by_stream_and_says_order_across_is_not_compared(copied):
    source, target, job, plan = copied
    source_order = [e.stream for e in source.store.iter_all() if e.stream.startswith("order-")]
    target_order = [e.stream for e in target.store.iter_all() if e.stream.startswith("order-")]
    assert source_order != target_order  # the shards copied their streams one after another
    report = report_of(job, plan)
    assert report.ok, report.differences
    assert report.shards == K and report.differences_by_shard == {}
    assert any("order of $all across streams is not" in n for n in report.notes)


def test_a_difference_is_attributed_to_the_shard_of_its_stream(copied):
    _, target, job, plan = copied
    target.store.append("order-07", ANY, [event()])
    report = report_of(job, plan)
    assert not report.ok
    shard = plan.shard_of("order-07")
    assert {d.stream for d in report.differences} == {"order-07"}
    assert {d.shard for d in report.differences} == {shard}
    assert report.differences_by_shard == {shard: report.differences_total}
    assert DifferenceKind.ALL_ORDER not in {d.kind for d in report.differences}


def test_the_command_reads_the_stored_plan_and_lists_shards(copied, tmp_path):
    _, target, job, plan = copied
    target.store.append("order-11", ANY, [event()])
    with open_store(job.checkpoint_store) as store:
        assert stored_plan(store, job.job_id) == plan
    env = {
        "ESDB_RELAY_JOB_ID": job.job_id,
        "ESDB_RELAY_SOURCE": job.source.get_secret_value(),
        "ESDB_RELAY_TARGET": job.target.get_secret_value(),
        "ESDB_RELAY_CHECKPOINT_STORE": job.checkpoint_store,
        "ESDB_RELAY_SHARDS": str(K),
        "ESDB_RELAY_MODE": "ordered",
    }
    shown = CliRunner().invoke(app, ["verify", "--json"], env=env)
    assert shown.exit_code == 1, shown.output
    report = json.loads(shown.stdout)
    shard = plan.shard_of("order-11")
    assert report["differences_by_shard"] == {str(shard): report["differences_total"]}
    text = CliRunner().invoke(app, ["verify"], env=env)
    flat = " ".join(text.output.split())
    assert f"shard {shard}: {report['differences_total']}" in flat
    assert "the order of $all across streams is not, as shards do not keep it" in flat
