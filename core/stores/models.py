"""What a checkpoint store keeps, and the protocol every store implements.

One record per job holds the lease (owner, fencing token, expiry) and the checkpoint (position,
counters and version). Every write that moves the job forward is conditional on the lease still
being held, so an invocation that lost its lease cannot commit. ``core/stores/base.py`` holds the
algorithm that keeps these rules; the stores themselves only read and conditionally write.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol, Self, runtime_checkable

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from core.shards import ShardPlan

Clock = Callable[[], datetime]
"""Returns the current time, timezone-aware. Stores take one so tests can move time."""

HISTORY_LIMIT = 200
"""Slice records kept per job; older ones are dropped so the store stays bounded."""


def utcnow() -> datetime:
    return datetime.now(UTC)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


@functools.total_ordering
class Position(_Frozen):
    """A position in ``$all``, ordered by (commit, prepare)."""

    commit: int = Field(ge=0)
    prepare: int = Field(ge=0)

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Position):
            return NotImplemented
        return (self.commit, self.prepare) < (other.commit, other.prepare)

    def __str__(self) -> str:
        return f"C:{self.commit}/P:{self.prepare}"


class Checkpoint(_Frozen):
    """Where a job stands. ``position`` None means the start of ``$all``.

    ``version`` is managed by the store: a commit must carry the stored version and the store
    saves version + 1. Nothing per target stream is stored (memory stays bounded): the engine
    learns what a crashed run left behind from the target streams themselves.
    """

    job_id: str = Field(min_length=1)
    position: Position | None = None
    events_read: int = Field(default=0, ge=0)
    events_written: int = Field(default=0, ge=0)
    events_skipped: int = Field(
        default=0,
        ge=0,
        description="records already on the target (a replay, a backfill over copied events); "
        "before events_filtered existed, records not copied by the job's rules were counted here",
    )
    events_filtered: int = Field(
        default=0,
        ge=0,
        description="records not copied by the job's rules: system records, links, filters, "
        "dropped by the transform",
    )
    events_dead_lettered: int = Field(
        default=0,
        ge=0,
        description="events the target refused as oversize and the job recorded in its "
        "dead-letter stream instead (`dead_letter = true`); absent in records written before "
        "it was counted",
    )
    bytes_written: int = Field(default=0, ge=0)
    updated_at: AwareDatetime = Field(default_factory=utcnow)
    version: int = Field(default=0, ge=0)
    chain: int = Field(
        default=0,
        ge=0,
        description="generation of the job's chain of slices: a schedule tick or a manual "
        "invoke that starts a chain raises it, and a chained request sent under an older one "
        "is dropped (core/invocation.py), so a retried message never starts a second chain",
    )
    shards: ShardPlan | None = Field(
        default=None,
        description="a sharded job's plan (core/shards.py), fixed in the job's own record "
        "when its first shard starts; the shards keep their checkpoints under their own keys",
    )


class Lease(_Frozen):
    """Exclusive right to advance a job until ``expires_at``.

    ``token`` is a fencing token: it strictly increases with every acquire of the job, so a
    write carrying an older token is recognisably stale.
    """

    job_id: str = Field(min_length=1)
    owner: str = Field(min_length=1)
    token: int = Field(ge=1)
    expires_at: AwareDatetime

    def expired(self, now: datetime) -> bool:
        return now >= self.expires_at


class SliceRecord(_Frozen):
    """One invocation's figures, kept in the job's bounded history for `status`."""

    job_id: str = Field(min_length=1)
    started_at: AwareDatetime
    finished_at: AwareDatetime
    owner: str
    events_read: int = Field(default=0, ge=0)
    events_written: int = Field(default=0, ge=0)
    events_skipped: int = Field(default=0, ge=0)
    events_filtered: int = Field(default=0, ge=0)
    events_dead_lettered: int = Field(default=0, ge=0)
    bytes_written: int = Field(default=0, ge=0)
    from_position: Position | None = None
    to_position: Position | None = None
    lag_bytes: int | None = Field(
        default=None,
        ge=0,
        description="source log bytes not yet copied when the slice ended (None: not measured, "
        "as for a failed slice or a record written before this field existed)",
    )
    caught_up: bool = False
    error: str | None = None
    stopped: bool = Field(
        default=False,
        description="not a slice: a relay that ran slices back to back (`esdb-relay run`) "
        "stopped after the one before (caught up with --until-caught-up, Ctrl-C, SIGTERM); "
        "`caught_up` is that slice's, the counts are 0",
    )


@runtime_checkable
class CheckpointStore(Protocol):
    """Where jobs keep their lease, checkpoint and slice history.

    Rules every implementation follows (tests/contract/checkpoint_contract.py checks them):

    - A lease is *held* by ``lease`` when the stored owner and token equal the lease's and the
      stored expiry is after ``now()``. Writes that require the lease raise ``LeaseLostError``
      and write nothing when it is not held.
    - The stored checkpoint version is 0 when the job has no checkpoint yet.
    - Transient failures raise ``StoreUnavailableError``; an unreadable record raises
      ``CorruptCheckpointError``.
    """

    def load(self, job_id: str) -> Checkpoint | None:
        """The job's checkpoint, or None if the job never committed."""
        ...

    def lease_info(self, job_id: str) -> Lease | None:
        """The job's stored lease (owner, token, expiry) as it stands, expired or not; None when
        nobody took it or it was released. A read: it changes nothing."""
        ...

    def acquire(self, job_id: str, owner: str, ttl_seconds: float) -> Lease:
        """Take the job's lease for ``ttl_seconds``, with a token above every earlier one.

        Succeeds when nobody holds it, it was released, it expired, or ``owner`` holds it;
        otherwise raises ``LeaseLostError``.
        """
        ...

    def renew(self, lease: Lease, ttl_seconds: float) -> Lease:
        """Extend a held lease to ``now() + ttl_seconds``; same token."""
        ...

    def commit(self, lease: Lease, checkpoint: Checkpoint) -> Checkpoint:
        """Store ``checkpoint`` (position and counters) if the lease is held and
        ``checkpoint.version`` equals the stored version.

        Returns what was stored: version + 1 and ``updated_at`` = now().
        """
        ...

    def release(self, lease: Lease) -> bool:
        """Give the lease up if ``lease`` is still the stored one (owner and token); otherwise do
        nothing. Idempotent. True if this call released it."""
        ...

    def record_slice(self, lease_or_job_id: Lease | str, record: SliceRecord) -> None:
        """Append to the job's history, dropping all but the newest ``HISTORY_LIMIT`` records.
        Not fenced: a fenced-out or failed invocation still reports what happened."""
        ...

    def history(self, job_id: str, limit: int = 20) -> list[SliceRecord]:
        """The newest ``limit`` (at most ``HISTORY_LIMIT``) slice records, newest first."""
        ...

    def close(self) -> None:
        """Release connections; the store is not used afterwards."""
        ...


class ClosingStore:
    """Mixin for store classes: ``with store:`` closes the store when the block ends."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()  # type: ignore[attr-defined]


__all__ = [
    "HISTORY_LIMIT",
    "Checkpoint",
    "CheckpointStore",
    "Clock",
    "ClosingStore",
    "Lease",
    "Position",
    "SliceRecord",
    "utcnow",
]
