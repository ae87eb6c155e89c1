"""The checkpoint store algorithm, once: leases, fencing, versions and history.

``StoreBase`` implements every ``CheckpointStore`` method the same way for every backend, as
aws-lambda-powertools' idempotency ``BasePersistenceLayer`` does for its backends: read the job
record, decide (is the lease free? still held by this lease? is the version the stored one?),
and write the outcome only if the record is still what was read — a compare-and-swap, decided
again from a fresh read when another writer got there first. A backend implements five storage
primitives and nothing else:

- ``_read_state(job_id)``: the job record as a ``JobState``, or None when there is none;
- ``_write_state(job_id, write, read)``: store ``write`` if the record is still ``read`` (create
  it when ``read`` is None); False, having written nothing, when it changed;
- ``_decode_checkpoint(job_id, state)``: the stored checkpoint as a ``Checkpoint``;
- ``_append_slice(job_id, record)``: one attempt at adding a slice record under the next
  sequence number and dropping what fell out of the window; False on a conflict;
- ``_newest_slices(job_id, limit)``: the newest ``limit`` slice records, newest first.
"""

from __future__ import annotations

import json
import random
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, ClassVar, Self, TypeVar

from pydantic import ValidationError

from core.errors import CorruptCheckpointError, LeaseLostError, StoreUnavailableError
from core.stores.models import (
    HISTORY_LIMIT,
    Checkpoint,
    Clock,
    ClosingStore,
    Lease,
    SliceRecord,
    utcnow,
)
from core.stores.registry import register_store

T = TypeVar("T")


@dataclass(frozen=True)
class JobState:
    """The job record as a backend read it.

    ``owner`` None means released (or never taken); ``expires_at`` is set whenever ``owner`` is.
    ``checkpoint`` is the checkpoint as the backend stores it (None before the first commit),
    decoded only by ``load``. ``revision`` is what the backend's compare-and-swap compares: an
    ETag, an update time, or the values read.
    """

    owner: str | None
    token: int
    expires_at: datetime | None
    version: int
    checkpoint: Any = None
    revision: Any = None


@dataclass(frozen=True)
class StateWrite:
    """What a write stores in the job record: the lease and the version always, the
    checkpoint only when a commit sets one (None keeps the stored checkpoint)."""

    owner: str | None
    token: int
    expires_at: datetime | None
    version: int
    checkpoint: Checkpoint | None = None


def _unchanged(state: JobState) -> StateWrite:
    return StateWrite(state.owner, state.token, state.expires_at, state.version)


class StoreBase(ClosingStore, ABC):
    """A ``CheckpointStore`` built on a backend's read and compare-and-swap primitives."""

    scheme: ClassVar[str]
    """The URL scheme of the store (``open_store`` opens ``scheme://...`` with ``from_url``)."""
    state_attempts: int = 6
    """Read-decide-write rounds before a contended change gives up (a store may set its own)."""
    history_attempts: int = 12
    backoff_seconds: ClassVar[float] = 0.005
    """The first pause between rounds (jittered, doubling, at most a second)."""

    def __init__(self, *, now: Clock, history_limit: int = HISTORY_LIMIT) -> None:
        if not 1 <= history_limit <= HISTORY_LIMIT:
            raise ValueError(f"history_limit must be between 1 and {HISTORY_LIMIT}")
        self._now = now
        self._history_limit = history_limit

    @classmethod
    @abstractmethod
    def parse_url(cls, url: str) -> tuple[str, dict[str, Any]]:
        """``scheme://NAME?options`` → ``(NAME, options)``: the constructor's arguments."""

    @classmethod
    def from_url(cls, url: str, *, now: Clock = utcnow, **options: Any) -> Self:
        """Open the store a URL names. Keyword options are the caller's defaults: what the URL
        says, which is the user's configuration, wins over them."""
        name, url_options = cls.parse_url(url)
        return cls(name, now=now, **{**options, **url_options})  # type: ignore[call-arg]

    @classmethod
    def register(cls) -> None:
        """Make ``open_store`` open this store's URLs (idempotent)."""
        register_store(cls.scheme, cls.from_url)

    # --- storage primitives ---------------------------------------------------------------

    @abstractmethod
    def _read_state(self, job_id: str) -> JobState | None: ...

    @abstractmethod
    def _write_state(self, job_id: str, write: StateWrite, read: JobState | None) -> bool: ...

    @abstractmethod
    def _decode_checkpoint(self, job_id: str, state: JobState) -> Checkpoint: ...

    @abstractmethod
    def _append_slice(self, job_id: str, record: SliceRecord) -> bool: ...

    @abstractmethod
    def _newest_slices(self, job_id: str, limit: int) -> list[SliceRecord]: ...

    def _check_key(self, job_id: str) -> None:
        """ValueError if the backend cannot name a record after ``job_id``."""

    def _contended(self, job_id: str, *, history: bool) -> Exception:
        """The error when ``state_attempts`` (``history_attempts``) rounds all conflicted."""
        if history:
            return StoreUnavailableError(
                f"the slice history of job {job_id!r} kept changing under this writer "
                f"({self.history_attempts} attempts)",
                hint="many invocations are recording slices of one job at once; retry",
            )
        return StoreUnavailableError(
            f"the lease record of job {job_id!r} kept changing under this invocation "
            f"({self.state_attempts} attempts)",
            hint="several invocations are changing this job at once; retry",
        )

    # --- the protocol ---------------------------------------------------------------------

    def load(self, job_id: str) -> Checkpoint | None:
        self._check_key(job_id)
        state = self._read_state(job_id)
        if state is None or state.checkpoint is None:
            return None
        return self._decode_checkpoint(job_id, state)

    def lease_info(self, job_id: str) -> Lease | None:
        self._check_key(job_id)
        state = self._read_state(job_id)
        if state is None or state.owner is None or state.expires_at is None:
            return None
        return Lease(
            job_id=job_id, owner=state.owner, token=state.token, expires_at=state.expires_at
        )

    def acquire(self, job_id: str, owner: str, ttl_seconds: float) -> Lease:
        require_text(job_id=job_id, owner=owner)
        require_ttl(ttl_seconds)
        self._check_key(job_id)

        def decide(state: JobState | None) -> tuple[Lease, StateWrite]:
            lease = next_lease(job_id, owner, ttl_seconds, self._now(), state)
            version = state.version if state else 0
            return lease, StateWrite(owner, lease.token, lease.expires_at, version)

        return self._change(job_id, decide)

    def renew(self, lease: Lease, ttl_seconds: float) -> Lease:
        require_ttl(ttl_seconds)
        self._check_key(lease.job_id)

        def decide(state: JobState | None) -> tuple[Lease, StateWrite]:
            now = self._now()
            held = check_held(lease, state, now)
            new = lease.model_copy(update={"expires_at": now + timedelta(seconds=ttl_seconds)})
            return new, replace(_unchanged(held), expires_at=new.expires_at)

        return self._change(lease.job_id, decide)

    def commit(self, lease: Lease, checkpoint: Checkpoint) -> Checkpoint:
        if checkpoint.job_id != lease.job_id:
            raise ValueError(
                f"checkpoint of job {checkpoint.job_id!r} committed under the lease of job "
                f"{lease.job_id!r}"
            )
        self._check_key(lease.job_id)

        def decide(state: JobState | None) -> tuple[Checkpoint, StateWrite]:
            now = self._now()
            held = check_held(lease, state, now)
            if checkpoint.version != held.version:
                raise _version_moved(lease.job_id, checkpoint.version, held.version)
            stored = checkpoint.model_copy(
                update={"version": checkpoint.version + 1, "updated_at": now}
            )
            return stored, replace(_unchanged(held), version=stored.version, checkpoint=stored)

        return self._change(lease.job_id, decide)

    def release(self, lease: Lease) -> bool:
        self._check_key(lease.job_id)

        def decide(state: JobState | None) -> tuple[bool, StateWrite | None]:
            if state is None or (state.owner, state.token) != (lease.owner, lease.token):
                return False, None  # not this lease (any more): nothing to give up
            return True, replace(_unchanged(state), owner=None, expires_at=None)

        try:
            return self._change(lease.job_id, decide)
        except CorruptCheckpointError:
            return False  # a record this version cannot read holds no lease of ours

    def record_slice(self, lease_or_job_id: Lease | str, record: SliceRecord) -> None:
        job_id = lease_or_job_id.job_id if isinstance(lease_or_job_id, Lease) else lease_or_job_id
        if record.job_id != job_id:
            raise ValueError(f"slice record of job {record.job_id!r} recorded for job {job_id!r}")
        self._check_key(job_id)
        for attempt in range(self.history_attempts):
            if attempt:
                self._pause(attempt)
            if self._append_slice(job_id, record):
                return
        raise self._contended(job_id, history=True)

    def history(self, job_id: str, limit: int = 20) -> list[SliceRecord]:
        if limit < 0:
            raise ValueError("limit must not be negative")
        self._check_key(job_id)
        limit = min(limit, self._history_limit)
        return self._newest_slices(job_id, limit) if limit else []

    # --- the loop -------------------------------------------------------------------------

    def _change(
        self, job_id: str, decide: Callable[[JobState | None], tuple[T, StateWrite | None]]
    ) -> T:
        """Read, decide, compare-and-swap; again from a fresh read when the record changed.

        ``decide`` raises to refuse (nothing is written) or returns the result and what to
        write (None: nothing to write).
        """
        for attempt in range(self.state_attempts):
            if attempt:
                self._pause(attempt)
            state = self._read_state(job_id)
            result, write = decide(state)
            if write is None or self._write_state(job_id, write, state):
                return result
        raise self._contended(job_id, history=False)

    def _pause(self, attempt: int) -> None:
        time.sleep(random.uniform(0, min(1.0, self.backoff_seconds * 2**attempt)))


# --- lease decisions ------------------------------------------------------------------------


def next_lease(
    job_id: str, owner: str, ttl_seconds: float, now: datetime, state: JobState | None
) -> Lease:
    """The lease an acquire by ``owner`` stores, given the stored ``state`` (None: no record).

    Raises ``LeaseLostError`` while another owner's lease has not expired. The token is the
    stored one + 1, so it rises with every acquire (re-acquiring by the same owner included).
    """
    if state is not None and state.owner is not None and state.owner != owner:
        assert state.expires_at is not None
        if state.expires_at > now:
            until = f" until {state.expires_at.isoformat()}"
            raise LeaseLostError(
                job_id,
                f"held by {state.owner!r}{until}",
                holder=state.owner,
                expires_at=state.expires_at,
            )
    return Lease(
        job_id=job_id,
        owner=owner,
        token=(state.token if state else 0) + 1,
        expires_at=now + timedelta(seconds=ttl_seconds),
    )


def check_held(lease: Lease, state: JobState | None, now: datetime) -> JobState:
    """``state`` if it shows ``lease`` held at ``now``: the stored owner and token are the
    lease's and the stored expiry is after ``now``. ``LeaseLostError`` saying why otherwise."""
    if state is None:
        raise LeaseLostError(lease.job_id, "the job has no lease")
    if state.owner is None and state.token == lease.token:
        raise LeaseLostError(lease.job_id, "the lease was released")
    if state.owner != lease.owner or state.token != lease.token:
        raise LeaseLostError(
            lease.job_id,
            f"taken over by {state.owner!r} (token {state.token}, ours {lease.token})"
            if state.owner
            else f"released after a takeover (token {state.token}, ours {lease.token})",
            holder=state.owner,
            expires_at=state.expires_at,
        )
    assert state.expires_at is not None
    if state.expires_at <= now:
        raise LeaseLostError(lease.job_id, f"the lease expired at {state.expires_at.isoformat()}")
    return state


def _version_moved(job_id: str, ours: int, stored: int) -> LeaseLostError:
    return LeaseLostError(
        job_id,
        f"checkpoint version moved: this invocation has version {ours}, the store has {stored}",
    )


# --- helpers for backends -------------------------------------------------------------------


def require_text(**values: str) -> None:
    """ValueError unless every value is a non-empty string (``job_id=...``, ``owner=...``)."""
    for name, value in values.items():
        if not isinstance(value, str) or not value:
            raise ValueError(f"{name} must be a non-empty string")


def require_ttl(ttl_seconds: float) -> None:
    if not ttl_seconds > 0:
        raise ValueError("ttl_seconds must be positive")


def sequence_key(seq: int, digits: int, *, prefix: str = "", newest_first: bool = False) -> str:
    """The key of slice record ``seq``: zero-padded so that string order is numeric order,
    inverted (``10**digits - 1 - seq``) where a backend can only list keys in ascending order."""
    return f"{prefix}{(10**digits - 1 - seq) if newest_first else seq:0{digits}d}"


def checkpoint_json(checkpoint: Checkpoint) -> str:
    """The stored form of a checkpoint: JSON without ``version`` (the store keeps that apart)."""
    return checkpoint.model_dump_json(exclude={"version"})


def decode_checkpoint(
    job_id: str,
    where: str,
    stored: str | Mapping[str, Any],
    version: int,
    *,
    field: str = "checkpoint",
    prefix: str = "",
) -> Checkpoint:
    """The ``Checkpoint`` a record stores (JSON text, or a map) under ``version``;
    ``CorruptCheckpointError(job_id, where, ...)`` naming what is wrong otherwise."""

    def corrupt(detail: str) -> CorruptCheckpointError:
        return CorruptCheckpointError(job_id, where, prefix + detail)

    data: Any = stored
    if isinstance(stored, str):
        try:
            data = json.loads(stored)
        except ValueError as exc:
            detail = f" ({exc.msg})" if isinstance(exc, json.JSONDecodeError) else ""
            raise corrupt(f"{field} is not JSON{detail}") from None
    if not isinstance(data, Mapping):
        raise corrupt(f"{field} is not a JSON object")
    if data.get("job_id") != job_id:
        raise corrupt("the checkpoint names another job")
    try:
        return Checkpoint.model_validate({**data, "version": version})
    except ValidationError as exc:
        raise corrupt(describe_invalid(exc)) from None


def decode_slice(
    job_id: str, where: str, stored: str | Mapping[str, Any], *, prefix: str = ""
) -> SliceRecord:
    """The ``SliceRecord`` a history record stores (JSON text, or a map) for ``job_id``."""
    try:
        if isinstance(stored, str):
            record = SliceRecord.model_validate_json(stored)
        else:
            record = SliceRecord.model_validate(stored)
    except ValidationError as exc:
        raise CorruptCheckpointError(job_id, where, prefix + describe_invalid(exc)) from None
    if record.job_id != job_id:
        raise CorruptCheckpointError(job_id, where, prefix + "a slice record names another job")
    return record


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
    "JobState",
    "StateWrite",
    "StoreBase",
    "check_held",
    "checkpoint_json",
    "decode_checkpoint",
    "decode_slice",
    "describe_invalid",
    "format_mismatch",
    "next_lease",
    "require_text",
    "require_ttl",
    "sequence_key",
]
