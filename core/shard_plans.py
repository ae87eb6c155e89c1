"""A sharded job's plan: made from the source's data once, fixed in the job's own checkpoint
record, read back by every shard (core/shards.py says how names are split)."""

from __future__ import annotations

import time

from core.checkpoint import Checkpoint, CheckpointStore
from core.errors import ConfigError, LeaseLostError
from core.eventstore import EventStore
from core.shards import ShardPlan, plan_shards, sample_counts

PLAN_LEASE_SECONDS = 120.0  # held while the first shard plans: a sample read and one commit
SAMPLE_RECORDS = 100_000


def stored_plan(store: CheckpointStore, job_id: str) -> ShardPlan | None:
    checkpoint = store.load(job_id)
    return checkpoint.shards if checkpoint else None


def check_unsharded(checkpoint: Checkpoint | None, shards: int) -> None:
    """Refuse to run a job as one chain once it has been split (its own record holds no
    position: a run from it would copy everything again), or to split one that has copied."""
    if checkpoint is None:
        return
    if checkpoint.shards is not None and shards != checkpoint.shards.count:
        raise ConfigError(
            f"job {checkpoint.job_id!r} was split into {checkpoint.shards.count} shards when it "
            f"started; this configuration says shards = {shards}",
            hint=f"set shards = {checkpoint.shards.count} (a job's shards are fixed for its "
            "life), or start a new job id to copy with another split",
        )
    if checkpoint.shards is None and shards > 1 and checkpoint.position is not None:
        raise ConfigError(
            f"job {checkpoint.job_id!r} has copied up to {checkpoint.position} as one chain; "
            f"it cannot be split into {shards} shards now",
            hint="set shards = 1 to go on with it, or start a new job id to copy with shards",
        )


def fix_plan(
    store: CheckpointStore,
    job_id: str,
    shards: int,
    source: EventStore,
    owner: str,
    *,
    sample_records: int = SAMPLE_RECORDS,
    wait_seconds: float = PLAN_LEASE_SECONDS,
) -> ShardPlan:
    """The job's plan: the stored one, or one planned now from a sample of the source and
    stored under the job's lease (another shard planning at the same time waits for it)."""
    deadline = time.monotonic() + wait_seconds
    while True:
        existing = store.load(job_id)
        check_unsharded(existing, shards)
        if existing is not None and existing.shards is not None:
            return existing.shards
        try:
            lease = store.acquire(job_id, owner, PLAN_LEASE_SECONDS)
        except LeaseLostError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1.0)  # another shard is planning: read its plan when it is stored
            continue
        try:
            checkpoint = store.load(job_id) or Checkpoint(job_id=job_id)
            check_unsharded(checkpoint, shards)
            if checkpoint.shards is not None:
                return checkpoint.shards
            counts, exact = sample_counts(source, sample_records)
            plan = plan_shards(counts, shards, exact=exact)
            stored = store.commit(lease, checkpoint.model_copy(update={"shards": plan}))
            assert stored.shards is not None
            return stored.shards
        finally:
            store.release(lease)
