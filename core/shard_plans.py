"""A sharded job's plan: made from the source's data once, fixed in the job's own checkpoint
record, read back by every shard (core/shards.py says how names are split)."""

from __future__ import annotations

import threading
import time

from core.checkpoint import Checkpoint, CheckpointStore, Lease
from core.errors import ConfigError, LeaseLostError, TransientError
from core.eventstore import EventStore
from core.shards import ShardPlan, plan_shards, sample_counts

PLAN_LEASE_SECONDS = 10.0  # the planning lease: a killed planner holds the others up this long
PLAN_WAIT_SECONDS = 120.0  # a shard waits this long for another's plan (a sample takes far less)
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
    wait_seconds: float = PLAN_WAIT_SECONDS,
    lease_seconds: float = PLAN_LEASE_SECONDS,
) -> ShardPlan:
    """The job's plan: the stored one, or one planned now from a sample of the source and
    stored under the job's lease (another shard planning at the same time waits for it).

    The planning lease is short (`lease_seconds`) and renewed by a thread while the sample is
    read, so a planner that dies mid-sample holds the others up for one short lease only: the
    first to take the lease over then plans. The plan is stored once: it is committed under
    the lease (a fenced compare-and-swap), so of two planners whose leases overlapped in time
    only the holder commits, and the other, fenced out, reads the stored plan like everyone.
    A shard that sees no plan stored within `wait_seconds` stops with a LeaseLostError saying
    who is planning and what to do."""
    deadline = time.monotonic() + wait_seconds
    while True:
        existing = store.load(job_id)
        check_unsharded(existing, shards)
        if existing is not None and existing.shards is not None:
            return existing.shards
        try:
            lease = store.acquire(job_id, owner, lease_seconds)
        except LeaseLostError as held:
            if time.monotonic() > deadline:
                raise _not_planned(job_id, wait_seconds, lease_seconds, held) from held
            time.sleep(min(1.0, lease_seconds / 4))  # read its plan when it is stored
            continue
        try:
            plan = _plan_under(
                store, lease, shards, source, sample_records, lease_seconds, wait_seconds
            )
        except LeaseLostError:
            if time.monotonic() > deadline:
                raise
            continue  # fenced out while sampling: another shard planned (or plans) instead
        return plan


def _plan_under(
    store: CheckpointStore,
    lease: Lease,
    shards: int,
    source: EventStore,
    sample_records: int,
    lease_seconds: float,
    max_seconds: float,
) -> ShardPlan:
    """Sample and store the plan while `lease` is renewed (for `max_seconds` at most: a
    planner stuck longer lets another take over); the plan stored (by this call or by the
    shard that planned first). LeaseLostError when fenced out."""
    renewer = _Renewer(store, lease, lease_seconds, max_seconds)
    try:
        checkpoint = store.load(lease.job_id) or Checkpoint(job_id=lease.job_id)
        check_unsharded(checkpoint, shards)
        if checkpoint.shards is not None:
            return checkpoint.shards
        renewer.start()
        counts, exact = sample_counts(source, sample_records)
        plan = plan_shards(counts, shards, exact=exact)
        held = renewer.stop()
        stored = store.commit(held, checkpoint.model_copy(update={"shards": plan}))
        assert stored.shards is not None
        return stored.shards
    finally:
        store.release(renewer.stop())


class _Renewer:
    """Renews a lease every third of its length on a thread until stopped, for `max_seconds`
    at most; stops renewing once the lease is lost (the holder's commit then fails, fenced
    out)."""

    def __init__(
        self, store: CheckpointStore, lease: Lease, seconds: float, max_seconds: float
    ) -> None:
        self.store = store
        self.lease = lease
        self.seconds = seconds
        self.max_seconds = max_seconds
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="plan-lease", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> Lease:
        """Stop renewing; the newest lease."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        with self._lock:
            return self.lease

    def _run(self) -> None:
        until = time.monotonic() + self.max_seconds
        while not self._stop.wait(self.seconds / 3) and time.monotonic() < until:
            with self._lock:
                try:
                    self.lease = self.store.renew(self.lease, self.seconds)
                except LeaseLostError:
                    return  # taken over: the commit is refused, the plan read from the store
                except TransientError:
                    continue  # two thirds of the lease are left: try again at the next tick


def _not_planned(
    job_id: str, wait_seconds: float, lease_seconds: float, held: LeaseLostError
) -> LeaseLostError:
    holder = repr(held.holder) if held.holder else "another shard"
    until = ""
    if held.expires_at is not None:
        until = f" (its lease ends at {held.expires_at.isoformat()} unless renewed)"
    return LeaseLostError(
        job_id,
        f"no shard plan was stored within {wait_seconds:g} s: {holder} is planning the "
        f"job's shards{until}",
        holder=held.holder,
        expires_at=held.expires_at,
        hint="run this shard again: it reads the plan once stored, or plans itself if "
        f"{holder} stopped (its lease then lapses within {lease_seconds:g} s); if it "
        "keeps failing, check that the planner can read the source",
    )
