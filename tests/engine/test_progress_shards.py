"""`measure()` of a sharded job: one truth over its shards, against a real emulator and a real
SQLite store whose clock the test moves.

The plan is fixed by `fix_plan` from the real source, as a job's first shard does. The shards'
own records (checkpoint, lease, slice history) are written through the store's own API at the
positions each case needs, as a shard's slices leave them: `measure` reads nothing else.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from core.checkpoint import Checkpoint, Position, SliceRecord
from core.config import JobConfig
from core.eventstore import EventStore
from core.progress import copied, measure
from core.shard_plans import fix_plan
from core.shards import ShardPlan
from core.stores.sqlite import SqliteCheckpointStore
from esdb_emulator import Emulator
from esdb_emulator.store import ANY, ProposedEvent
from tests.contract.checkpoint_contract import FakeClock
from tests.engine.helpers import make_job

K = 3


def store_of(job: JobConfig, clock: FakeClock) -> SqliteCheckpointStore:
    return SqliteCheckpointStore(Path(job.checkpoint_store.removeprefix("sqlite:///")), now=clock)


def seed(db: Emulator, streams: int = 30, per_stream: int = 4) -> None:
    """Streams whose names end in varied suffixes, appended interleaved."""
    for round_ in range(per_stream):
        for s in range(streams):
            db.store.append(
                f"order-{s:03d}",
                ANY,
                [ProposedEvent(str(uuid.uuid4()), f"E{round_}", "application/json", b"{}")],
            )


def all_records(job: JobConfig) -> list:
    with EventStore(job.source.get_secret_value(), side="source") as s:
        return list(s.read_all_after(None, 100_000))


def planned(job: JobConfig, clock: FakeClock) -> ShardPlan:
    with (
        EventStore(job.source.get_secret_value(), side="source") as s,
        store_of(job, clock) as store,
    ):
        return fix_plan(store, job.job_id, K, s, "planner")


def place(
    job: JobConfig,
    clock: FakeClock,
    index: int,
    position: int | None,
    *,
    written: int = 0,
    slice_ago: float | None = None,
    hold: bool = False,
    caught_up: bool = False,
    read: int = 0,
) -> None:
    """Shard `index`'s record: its checkpoint at `position`, and a slice that ended `slice_ago`
    seconds before the clock (its lease kept when `hold`)."""
    key = f"{job.job_id}.shard-{index}"
    with store_of(job, clock) as store:
        lease = store.acquire(key, f"worker-{index}", 300)
        pos = Position(commit=position, prepare=position) if position is not None else None
        cp = store.load(key) or Checkpoint(job_id=key)
        store.commit(
            lease,
            cp.model_copy(update={"position": pos, "events_written": written, "events_read": read}),
        )
        if slice_ago is not None:
            end = clock() - timedelta(seconds=slice_ago)
            store.record_slice(
                lease,
                SliceRecord(
                    job_id=key,
                    started_at=end - timedelta(seconds=2),
                    finished_at=end,
                    owner=f"worker-{index}",
                    events_read=read,
                    events_written=written,
                    to_position=pos,
                    caught_up=caught_up,
                ),
            )
        if not hold:
            store.release(lease)


def measured(job: JobConfig, clock: FakeClock, **options: object):
    with (
        EventStore(job.source.get_secret_value(), side="source") as s,
        store_of(job, clock) as store,
    ):
        return measure(job, s, store, now=clock(), **options)  # type: ignore[arg-type]


def expected_lag(job: JobConfig, plan: ShardPlan, positions: list[int | None]) -> list[int]:
    lag = [0] * plan.count
    for e in all_records(job):
        i = plan.shard_of(e.stream)
        if (positions[i] is None or e.commit_position > positions[i]) and copied(job, e):
            lag[i] += 1
    return lag


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime.now(UTC))


@pytest.fixture
def job(pair, tmp_path) -> JobConfig:
    source, target = pair
    seed(source)
    return make_job(source, target, tmp_path, shards=K)


def test_a_sharded_job_without_a_stored_plan_says_it_has_not_started(job, clock):
    p = measured(job, clock)
    assert p.state == "not-started" and p.shards == [] and not p.caught_up
    assert any("no shard has started yet" in w for w in p.warnings)


def test_the_lag_is_counted_per_shard_after_each_shard_checkpoint(job, clock):
    plan = planned(job, clock)
    records = all_records(job)
    middle = records[len(records) // 2].commit_position
    head = records[-1].commit_position
    positions = [head, None, middle]
    place(job, clock, 0, head, written=40)
    place(job, clock, 2, middle, written=7)
    p = measured(job, clock)
    want = expected_lag(job, plan, positions)
    assert [s.lag_events for s in p.shards] == want and want[1] > 0 and want[2] > 0
    assert p.lag_events == sum(want) and p.lag_events_exact
    assert p.position is None  # the lowest shard checkpoint: shard 1 has none
    assert [s.key for s in p.shards] == [f"{job.job_id}.shard-{i}" for i in range(K)]
    assert [s.position for s in p.shards] == positions
    assert [s.caught_up for s in p.shards] == [True, False, False]
    assert not p.caught_up
    assert (p.events_written, p.shards[0].events_written) == (47, 40)
    # shard 1 never ran, shard 2 is behind with no relay: the job is behind, and says which
    assert [s.state for s in p.shards] == ["idle", "not-started", "behind-and-not-running"]
    assert p.state == "behind-and-not-running" and p.eta_seconds is None
    assert any("shard(s) 1, 2" in w for w in p.warnings)


def test_the_count_stays_within_the_cap_and_says_it_estimates(job, clock):
    planned(job, clock)
    p = measured(job, clock, count_limit=20)
    assert not p.lag_events_exact and p.lag_events_counted <= 20
    assert all(s.lag_events is not None for s in p.shards) and not p.caught_up


def test_caught_up_only_when_every_shard_is_then_following_while_all_run(job, clock):
    planned(job, clock)
    head = all_records(job)[-1].commit_position
    place(job, clock, 0, head, slice_ago=1, caught_up=True)
    place(job, clock, 1, head, slice_ago=1, caught_up=True)
    place(job, clock, 2, head - 1, slice_ago=1, caught_up=False)
    p = measured(job, clock)
    assert not p.caught_up  # shard 2 still has the last record of its streams or more
    place(job, clock, 2, head, slice_ago=1, caught_up=True)
    p = measured(job, clock)
    assert p.caught_up and p.lag_events == 0 and p.state == "following" and p.relay_running
    clock.advance(3600)  # no shard ran for an hour: idle
    assert measured(job, clock).state == "idle"


def test_copying_sums_the_rates_and_the_eta_is_the_slowest_shards(job, clock):
    planned(job, clock)
    clock.advance(600)  # the seed is older than the source's rate window: no writes now
    place(job, clock, 0, None, slice_ago=1, hold=True, read=100)
    place(job, clock, 1, None, slice_ago=1, hold=True, read=50)
    place(job, clock, 2, None, slice_ago=1, hold=True, read=10)
    p = measured(job, clock)
    assert p.state == "copying" and all(s.state == "copying" for s in p.shards)
    rates = [s.copy_rate for s in p.shards]
    assert rates == [50.0, 25.0, 5.0]  # events over the 2 s each slice took
    assert p.copy_rate == pytest.approx(sum(rates))
    assert all(s.lease is not None and s.lease.owner == f"worker-{s.index}" for s in p.shards)
    etas = [s.eta_seconds for s in p.shards]
    assert p.source_write_rate == 0
    assert etas == [s.lag_events / s.copy_rate for s in p.shards]
    assert p.eta_seconds == max(e for e in etas if e is not None)
    place(job, clock, 2, None, slice_ago=3600, read=10)  # shard 2's chain stopped
    p = measured(job, clock)
    assert p.state == "behind-and-not-running" and p.eta_seconds is None


@pytest.mark.parametrize("k", [2, 5, 64])
def test_the_lag_count_files_each_stream_under_the_shard_its_regex_passes(k):
    """progress._shard_index skips the last shard's costly regex: the same answer as
    ShardPlan.shard_of for every name, odd ones included."""
    from core.progress import _shard_index
    from core.shards import plan_shards

    names = [f"order-{n:05d}" for n in range(3000)] + ["x", "$$order-00001", "a\nb", "é-ü", "$all"]
    plan = plan_shards({n: 1 + len(n) % 7 for n in names}, k, exact=True)
    assert [_shard_index(plan, n) for n in names] == [plan.shard_of(n) for n in names]
