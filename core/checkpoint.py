"""Checkpoint store protocol, its models, and the store registry.

One record per job holds the lease (owner, fencing token, expiry) and the checkpoint (position,
counters and version). Every write that moves the job forward
is conditional on the lease still being held, so an invocation that lost its lease cannot commit.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, Self, runtime_checkable

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from core.errors import ConfigError

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
    events_skipped: int = Field(default=0, ge=0)
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
    bytes_written: int = Field(default=0, ge=0)
    from_position: Position | None = None
    to_position: Position | None = None
    caught_up: bool = False
    error: str | None = None


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


# --- registry -------------------------------------------------------------------------------

StoreFactory = Callable[..., CheckpointStore]
"""``factory(url: str, *, now: Clock) -> CheckpointStore``."""

_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")

# Cloud stores live with their handler so core never imports a cloud SDK; the handler registers
# its factory when imported.
_PROVIDED_BY: dict[str, tuple[str, str]] = {
    "dynamodb": ("aws", "DynamoDB"),
    "firestore": ("gcp", "Firestore"),
    "azuretable": ("azure", "Azure Table Storage"),
}


def _open_sqlite(url: str, *, now: Clock = utcnow) -> CheckpointStore:
    from core.stores.sqlite_store import SqliteCheckpointStore

    return SqliteCheckpointStore.from_url(url, now=now)


_FACTORIES: dict[str, StoreFactory] = {"sqlite": _open_sqlite}


def register_store(scheme: str, factory: StoreFactory) -> None:
    """Make ``open_store`` use ``factory`` for URLs of ``scheme`` (replaces an earlier one)."""
    scheme = scheme.lower()
    if not re.fullmatch(r"[a-z][a-z0-9+.-]*", scheme):
        raise ValueError(f"invalid URL scheme {scheme!r}")
    _FACTORIES[scheme] = factory


def known_schemes() -> list[str]:
    """Every scheme a checkpoint store URL may use, registered or not."""
    return sorted(set(_FACTORIES) | set(_PROVIDED_BY))


def store_scheme(url: str) -> str:
    """The URL's scheme, lower-cased, if it is a known one; ConfigError otherwise.

    The URL itself is never echoed: cloud store URLs may carry keys.
    """
    valid = ", ".join(f"{s}://" for s in known_schemes())
    match = _SCHEME_RE.match(url)
    if not match:
        raise ConfigError(
            "checkpoint store URL has no scheme",
            field="checkpoint_store",
            hint=f"use one of {valid} (e.g. sqlite:///esdb-relay.db)",
        )
    scheme = match.group(1).lower()
    if scheme not in known_schemes():
        raise ConfigError(
            f"unknown checkpoint store scheme {scheme!r}",
            field="checkpoint_store",
            hint=f"use one of {valid}",
        )
    return scheme


def open_store(url: str, *, now: Clock = utcnow, **options: Any) -> CheckpointStore:
    """Open the checkpoint store named by ``url`` (``sqlite:///esdb-relay.db``, ...)."""
    scheme = store_scheme(url)
    factory = _FACTORIES.get(scheme)
    if factory is None:
        extra, name = _PROVIDED_BY[scheme]
        raise ConfigError(
            f"the {name} checkpoint store ({scheme}://) is not available here",
            field="checkpoint_store",
            hint=(
                f"it is provided by handlers/{extra}: install it with "
                f"`pip install 'esdb-relay[{extra}]'` and run under that handler (importing "
                f"handlers.{extra} registers it), or use sqlite:///esdb-relay.db locally"
            ),
        )
    return factory(url, now=now, **options)


__all__ = [
    "HISTORY_LIMIT",
    "Checkpoint",
    "CheckpointStore",
    "Clock",
    "ClosingStore",
    "Lease",
    "LeasesUntil",
    "Position",
    "SliceRecord",
    "StoreFactory",
    "known_schemes",
    "open_store",
    "register_store",
    "store_scheme",
    "utcnow",
]
