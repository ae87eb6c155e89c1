"""A store wrapper that cuts every lease at a deadline (the moment the platform kills the
invocation)."""

from __future__ import annotations

from datetime import datetime, timedelta

from core.stores.models import (
    Checkpoint,
    CheckpointStore,
    Clock,
    ClosingStore,
    Lease,
    SliceRecord,
    utcnow,
)


class LeasesUntil(ClosingStore):
    """A store whose leases never last past ``until``: acquires and renewals are cut to it.

    A cloud function is killed at its timeout, where no ``finally`` runs and its lease stays
    held until it expires. Cutting the lease at the kill (core/invocation.py passes the time the
    platform stops the invocation) frees the job the moment the function is gone, so the next
    tick or redelivered message finds it free. A renewal that could not extend the lease is
    answered with the lease as it is, without a write.
    """

    def __init__(self, store: CheckpointStore, until: datetime, *, now: Clock = utcnow) -> None:
        self.store = store
        self.until = until
        self._now = now

    def __repr__(self) -> str:
        return f"LeasesUntil({self.store!r}, until={self.until.isoformat()})"

    def _ttl(self, ttl_seconds: float) -> float:
        left = (self.until - self._now()).total_seconds()
        return max(MIN_LEASE_SECONDS, min(ttl_seconds, left))

    def load(self, job_id: str) -> Checkpoint | None:
        return self.store.load(job_id)

    def lease_info(self, job_id: str) -> Lease | None:
        return self.store.lease_info(job_id)

    def acquire(self, job_id: str, owner: str, ttl_seconds: float) -> Lease:
        return self.store.acquire(job_id, owner, self._ttl(ttl_seconds))

    def renew(self, lease: Lease, ttl_seconds: float) -> Lease:
        ttl = self._ttl(ttl_seconds)
        if lease.expires_at >= self._now() + timedelta(seconds=ttl - 1.0):
            return lease  # it already lasts as long as it may
        return self.store.renew(lease, ttl)

    def commit(self, lease: Lease, checkpoint: Checkpoint) -> Checkpoint:
        return self.store.commit(lease, checkpoint)

    def release(self, lease: Lease) -> bool:
        return self.store.release(lease)

    def record_slice(self, lease_or_job_id: Lease | str, record: SliceRecord) -> None:
        self.store.record_slice(lease_or_job_id, record)

    def history(self, job_id: str, limit: int = 20) -> list[SliceRecord]:
        return self.store.history(job_id, limit)

    def close(self) -> None:
        self.store.close()


MIN_LEASE_SECONDS = 1.0
"""The shortest lease LeasesUntil asks for (a store refuses a TTL of 0)."""


__all__ = ["MIN_LEASE_SECONDS", "LeasesUntil"]
