"""The provider-neutral rules every checkpoint store applies (see ``CheckpointStore``).

Pure functions only: no I/O and no SDK. A store reads its record, hands what it read to these
functions to decide (or to explain a refused conditional write), and writes conditionally in its
own way. Keeping the decisions here keeps the four stores' behaviour and messages identical.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Protocol, TypeVar

from pydantic import ValidationError

from core.checkpoint import Checkpoint, Lease, SliceRecord
from core.errors import LeaseLostError


class LeaseState(Protocol):
    """The lease part of a job's stored record, as a store parsed it.

    ``owner`` None means released (or never taken); ``expires_at`` is set whenever ``owner`` is.
    """

    @property
    def owner(self) -> str | None: ...

    @property
    def token(self) -> int: ...

    @property
    def expires_at(self) -> datetime | None: ...


S = TypeVar("S", bound=LeaseState)


# --- arguments ------------------------------------------------------------------------------


def require_text(**values: str) -> None:
    """ValueError unless every value is a non-empty string (``job_id=...``, ``owner=...``)."""
    for name, value in values.items():
        if not isinstance(value, str) or not value:
            raise ValueError(f"{name} must be a non-empty string")


def require_ttl(ttl_seconds: float) -> None:
    if not ttl_seconds > 0:
        raise ValueError("ttl_seconds must be positive")


def require_same_job(lease: Lease, checkpoint: Checkpoint) -> None:
    """A checkpoint is committed only under its own job's lease."""
    if checkpoint.job_id != lease.job_id:
        raise ValueError(
            f"checkpoint of job {checkpoint.job_id!r} committed under the lease of job "
            f"{lease.job_id!r}"
        )


def slice_job_id(lease_or_job_id: Lease | str, record: SliceRecord) -> str:
    """The job ``record_slice`` writes to; ValueError if the record names another job."""
    job_id = lease_or_job_id.job_id if isinstance(lease_or_job_id, Lease) else lease_or_job_id
    if record.job_id != job_id:
        raise ValueError(f"slice record of job {record.job_id!r} recorded for job {job_id!r}")
    return job_id


def history_window(limit: int, history_limit: int) -> int:
    """How many records ``history(job_id, limit)`` returns at most."""
    if limit < 0:
        raise ValueError("limit must not be negative")
    return min(limit, history_limit)


# --- lease decisions ------------------------------------------------------------------------


def lease_expiry(now: datetime, ttl_seconds: float) -> datetime:
    return now + timedelta(seconds=ttl_seconds)


def held_by_another(job_id: str, holder: str | None, expires_at: datetime | None) -> LeaseLostError:
    """The refusal of an acquire: ``holder`` has the lease (until ``expires_at``, if known)."""
    until = f" until {expires_at.isoformat()}" if expires_at else ""
    return LeaseLostError(
        job_id, f"held by {holder!r}{until}", holder=holder, expires_at=expires_at
    )


def next_lease(
    job_id: str, owner: str, ttl_seconds: float, now: datetime, state: LeaseState | None
) -> Lease:
    """The lease an acquire by ``owner`` stores, given the stored ``state`` (None: no record).

    Raises ``LeaseLostError`` while another owner's lease has not expired. The token is the
    stored one + 1, so it rises with every acquire (re-acquiring by the same owner included).
    """
    if state is not None and state.owner is not None and state.owner != owner:
        assert state.expires_at is not None
        if state.expires_at > now:
            raise held_by_another(job_id, state.owner, state.expires_at)
    return Lease(
        job_id=job_id,
        owner=owner,
        token=(state.token if state else 0) + 1,
        expires_at=lease_expiry(now, ttl_seconds),
    )


def lease_lost(lease: Lease, state: LeaseState | None, now: datetime) -> LeaseLostError | None:
    """Why ``lease`` is not held according to the stored ``state``; None when it is held.

    Held means: the stored owner and token are the lease's and the stored expiry is after
    ``now``.
    """
    if state is None:
        return LeaseLostError(lease.job_id, "the job has no lease")
    if state.owner is None and state.token == lease.token:
        return LeaseLostError(lease.job_id, "the lease was released")
    if state.owner != lease.owner or state.token != lease.token:
        return LeaseLostError(
            lease.job_id,
            f"taken over by {state.owner!r} (token {state.token}, ours {lease.token})"
            if state.owner
            else f"released after a takeover (token {state.token}, ours {lease.token})",
            holder=state.owner,
            expires_at=state.expires_at,
        )
    assert state.expires_at is not None
    if state.expires_at <= now:
        return LeaseLostError(lease.job_id, f"the lease expired at {state.expires_at.isoformat()}")
    return None


def check_held(lease: Lease, state: S | None, now: datetime) -> S:
    """``state`` if it shows ``lease`` held at ``now``; ``LeaseLostError`` otherwise."""
    lost = lease_lost(lease, state, now)
    if lost is not None:
        raise lost
    assert state is not None
    return state


def owns(lease: Lease, state: LeaseState | None) -> bool:
    """Whether ``release(lease)`` may give the stored lease up (owner and token match)."""
    return state is not None and state.owner == lease.owner and state.token == lease.token


def renewed(lease: Lease, now: datetime, ttl_seconds: float) -> Lease:
    """``lease`` extended to ``now + ttl_seconds``; same token."""
    return lease.model_copy(update={"expires_at": lease_expiry(now, ttl_seconds)})


def version_moved(job_id: str, ours: int | None, stored: int) -> LeaseLostError:
    return LeaseLostError(
        job_id,
        f"checkpoint version moved: this invocation has version {ours}, the store has {stored}",
    )


def check_version(job_id: str, checkpoint: Checkpoint, stored_version: int) -> None:
    """A commit must carry the stored version."""
    if checkpoint.version != stored_version:
        raise version_moved(job_id, checkpoint.version, stored_version)


def committed(checkpoint: Checkpoint, now: datetime) -> Checkpoint:
    """What a commit of ``checkpoint`` (carrying the stored version) stores and returns."""
    return checkpoint.model_copy(update={"version": checkpoint.version + 1, "updated_at": now})


# --- records --------------------------------------------------------------------------------


def checkpoint_json(checkpoint: Checkpoint) -> str:
    """The stored form of a checkpoint: JSON without ``version`` (the store keeps that apart)."""
    return checkpoint.model_dump_json(exclude={"version"})


def format_mismatch(fmt: object, expected: int, *, noun: str = "record") -> str:
    return f"{noun} format {fmt!r}, this version of esdb-relay reads format {expected}"


def describe_invalid(exc: Exception) -> str:
    """A one-line ``CorruptCheckpointError`` detail for a record that does not validate."""
    if isinstance(exc, ValidationError):
        first = exc.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(p) for p in first["loc"]) or "record"
        return f"not a valid record ({where}: {first['msg']})"
    return f"not a valid record ({exc})"


__all__ = [
    "LeaseState",
    "check_held",
    "check_version",
    "checkpoint_json",
    "committed",
    "describe_invalid",
    "format_mismatch",
    "held_by_another",
    "history_window",
    "lease_expiry",
    "lease_lost",
    "next_lease",
    "owns",
    "renewed",
    "require_same_job",
    "require_text",
    "require_ttl",
    "slice_job_id",
    "version_moved",
]
