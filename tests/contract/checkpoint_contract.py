"""The contract every CheckpointStore passes: SQLite now; DynamoDB, Firestore, Table Storage later.

Subclass ``CheckpointStoreContract`` in a ``test_*.py`` module and override:

- ``store_factory`` (or at least ``store``): new store handles on one shared backend, each built
  with ``now=clock``. Separate handles model separate invocations; the default factory hands out
  the ``store`` fixture itself, which must then be thread-safe.
- ``corrupt_record``: a callable(job_id) that damages the job's stored checkpoint behind the
  store's back, the way only that backend can.

Nothing here knows which backend it runs on. Job ids are unique per test, so backends may be
shared between tests.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from core.checkpoint import (
    HISTORY_LIMIT,
    Checkpoint,
    CheckpointStore,
    Lease,
    Position,
    SliceRecord,
)
from core.errors import CorruptCheckpointError, LeaseLostError
from core.shards import plan_shards
from core.stores.base import StoreBase

TTL = 30.0


class FakeClock:
    """Mutable time for lease expiry: ``clock()`` is now, ``clock.advance(s)`` moves it."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2024, 1, 1, 12, 0, tzinfo=UTC)
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += timedelta(seconds=seconds)


def advanced(
    checkpoint: Checkpoint | None, job_id: str, commit: int, **extra: object
) -> Checkpoint:
    """The next checkpoint after ``checkpoint`` (None: first commit), at position ``commit``."""
    base = checkpoint or Checkpoint(job_id=job_id)
    return base.model_copy(
        update={
            "position": Position(commit=commit, prepare=commit),
            "events_read": base.events_read + 10,
            "events_written": base.events_written + 9,
            "bytes_written": base.bytes_written + 1000,
            **extra,
        }
    )


def slice_record(job_id: str, n: int, start: datetime) -> SliceRecord:
    return SliceRecord(
        job_id=job_id,
        started_at=start + timedelta(seconds=n),
        finished_at=start + timedelta(seconds=n, milliseconds=500),
        owner=f"owner-{n}",
        events_read=n,
        events_written=n,
        events_skipped=0,
        from_position=Position(commit=n, prepare=n) if n else None,
        to_position=Position(commit=n + 1, prepare=n + 1),
        lag_bytes=None if n % 3 == 0 else 1000 * n,
        caught_up=n % 2 == 0,
        error=None if n % 3 else f"error {n}",
    )


# --- records of the previous version ---------------------------------------------------------


@dataclass(frozen=True)
class PreviousRecords:
    """What a job's records hold when the previous version (before the stores shared
    core/stores/base.py) left them: a lease of ``owner`` with ``token`` until clock() + ``ttl``,
    the checkpoint at ``version`` and one slice record (sequence 1). Each backend's tests write
    them behind the store in its layout and call ``carry_on``."""

    owner: str = "old"
    token: int = 3
    version: int = 2
    ttl: float = 5.0

    def checkpoint(self, job_id: str) -> Checkpoint:
        at = datetime(2023, 12, 31, 23, 0, tzinfo=UTC)
        return advanced(None, job_id, 100).model_copy(
            update={"updated_at": at, "version": self.version}
        )

    def slice(self, job_id: str) -> SliceRecord:
        return slice_record(job_id, 1, datetime(2023, 12, 31, tzinfo=UTC))

    def carry_on(self, store: CheckpointStore, clock: FakeClock, job_id: str) -> None:
        """The store reads what was left and carries on from it."""
        assert store.load(job_id) == self.checkpoint(job_id)
        assert store.history(job_id) == [self.slice(job_id)]
        with pytest.raises(LeaseLostError, match=f"held by {self.owner!r}"):
            store.acquire(job_id, "new", TTL)
        clock.advance(self.ttl)
        lease = store.acquire(job_id, "new", TTL)
        assert lease.token == self.token + 1
        stored = store.commit(lease, advanced(store.load(job_id), job_id, 200))
        assert stored.version == self.version + 1
        store.record_slice(lease, slice_record(job_id, 2, clock()))
        assert [r.owner for r in store.history(job_id)] == ["owner-2", "owner-1"]
        assert store.release(lease) is True
        assert store.load(job_id) == stored


PREVIOUS = PreviousRecords()
OLD_CHECKPOINT = {"version", "events_filtered", "events_dead_lettered"}
"""Fields a stored checkpoint of the previous version lacks (``version`` is kept apart)."""
OLD_SLICE = {"events_filtered", "events_dead_lettered", "stopped"}
"""Fields a slice record of the previous version lacks."""


class CheckpointStoreContract:
    # --- fixtures a backend overrides -----------------------------------------------------

    @pytest.fixture
    def clock(self) -> FakeClock:
        return FakeClock()

    @pytest.fixture
    def store(self) -> CheckpointStore:
        raise NotImplementedError("override the `store` or `store_factory` fixture")

    @pytest.fixture
    def store_factory(self, store: CheckpointStore) -> Callable[[], CheckpointStore]:
        return lambda: store

    @pytest.fixture
    def corrupt_record(self) -> Callable[[str], None]:
        raise NotImplementedError("override `corrupt_record` for this backend")

    @pytest.fixture
    def job_id(self) -> str:
        return f"job-{uuid.uuid4().hex[:12]}"

    # --- first run, round trip, resume ----------------------------------------------------

    def test_first_run_has_no_checkpoint(self, store: CheckpointStore, job_id: str) -> None:
        assert store.load(job_id) is None
        assert store.history(job_id) == []

    def test_acquire_gives_a_lease_until_now_plus_ttl(
        self, store: CheckpointStore, clock: FakeClock, job_id: str
    ) -> None:
        lease = store.acquire(job_id, "a", TTL)
        assert (lease.job_id, lease.owner) == (job_id, "a")
        assert lease.token >= 1
        assert lease.expires_at == clock() + timedelta(seconds=TTL)
        assert store.load(job_id) is None  # a lease alone is not a checkpoint

    def test_commit_round_trip(self, store: CheckpointStore, clock: FakeClock, job_id: str) -> None:
        lease = store.acquire(job_id, "a", TTL)
        clock.advance(1)
        stored = store.commit(lease, advanced(None, job_id, 100))
        assert stored.version == 1
        assert stored.updated_at == clock()
        assert stored.position == Position(commit=100, prepare=100)
        loaded = store.load(job_id)
        assert loaded == stored
        assert (loaded.events_read, loaded.events_written, loaded.bytes_written) == (10, 9, 1000)

    def test_chain_generation_round_trips_and_survives_later_commits(
        self, store: CheckpointStore, job_id: str
    ) -> None:
        """The chain generation (core/invocation.py) lives in the checkpoint: raised once, it
        is what every later commit carries on (the engine copies the loaded checkpoint)."""
        lease = store.acquire(job_id, "a", TTL)
        first = store.commit(lease, advanced(None, job_id, 100, chain=3))
        assert store.load(job_id).chain == 3
        store.commit(lease, advanced(first, job_id, 200))
        assert store.load(job_id).chain == 3

    def test_a_shard_plan_round_trips_and_survives_later_commits(
        self, store: CheckpointStore, job_id: str
    ) -> None:
        """A sharded job's plan (core/shards.py) is fixed in its own record: nested lists of
        suffixes and regexes read back as written (Firestore refuses arrays in arrays)."""
        plan = plan_shards({"order-1": 5, "order-2": 3, "user-a": 4, "x$": 1}, 3, exact=True)
        lease = store.acquire(job_id, "a", TTL)
        cp = Checkpoint(job_id=job_id, shards=plan)
        first = store.commit(lease, cp)
        assert store.load(job_id).shards == plan
        store.commit(lease, first.model_copy(update={"chain": 2}))
        assert store.load(job_id).shards == plan

    def test_resume_versions_increase(self, store: CheckpointStore, job_id: str) -> None:
        lease = store.acquire(job_id, "a", TTL)
        first = store.commit(lease, advanced(None, job_id, 100))
        second = store.commit(lease, advanced(first, job_id, 200))
        assert second.version == first.version + 1 == 2
        store.release(lease)

        lease2 = store.acquire(job_id, "b", TTL)
        resumed = store.load(job_id)
        assert resumed == second
        third = store.commit(lease2, advanced(resumed, job_id, 300))
        assert third.version == 3
        assert third.position is not None and second.position is not None
        assert third.position > second.position
        assert store.load(job_id) == third
        assert store.load(job_id).events_read == 30

    def test_jobs_are_independent(self, store: CheckpointStore, job_id: str) -> None:
        other = job_id + "-other"
        lease = store.acquire(job_id, "a", TTL)
        other_lease = store.acquire(other, "b", TTL)  # a different job: no conflict
        store.commit(lease, advanced(None, job_id, 100))
        assert store.load(other) is None
        store.commit(other_lease, advanced(None, other, 7))
        assert store.load(job_id).position == Position(commit=100, prepare=100)

    def test_commit_of_another_jobs_checkpoint_is_refused(
        self, store: CheckpointStore, job_id: str
    ) -> None:
        lease = store.acquire(job_id, "a", TTL)
        with pytest.raises(ValueError):
            store.commit(lease, advanced(None, job_id + "-other", 1))
        assert store.load(job_id) is None

    # --- leases ---------------------------------------------------------------------------

    def test_lease_info_reads_the_stored_lease_and_changes_nothing(
        self, store_factory: Callable[[], CheckpointStore], clock: FakeClock, job_id: str
    ) -> None:
        store, other = store_factory(), store_factory()
        assert other.lease_info(job_id) is None  # never taken
        lease = store.acquire(job_id, "holder", TTL)
        assert other.lease_info(job_id) == lease  # owner, token and expiry, from any handle
        renewed = store.renew(lease, 2 * TTL)
        assert other.lease_info(job_id) == renewed
        clock.advance(2 * TTL)
        expired = other.lease_info(job_id)  # as stored: the reader compares with its clock
        assert expired == renewed and expired.expired(clock())
        fresh = other.acquire(job_id, "next", TTL)  # reading took nothing
        assert fresh.token == lease.token + 1
        assert store.lease_info(job_id) == fresh
        assert other.release(fresh) is True
        assert store.lease_info(job_id) is None  # released
        assert store.load(job_id) is None  # and no checkpoint was made up

    def test_new_counters_and_stop_records_round_trip(
        self, store: CheckpointStore, job_id: str
    ) -> None:
        lease = store.acquire(job_id, "a", TTL)
        stored = store.commit(
            lease, advanced(None, job_id, 10, events_dead_lettered=4, events_filtered=2)
        )
        assert store.load(job_id) == stored
        assert (stored.events_dead_lettered, stored.events_filtered) == (4, 2)
        record = slice_record(job_id, 1, stored.updated_at).model_copy(
            update={"events_dead_lettered": 4, "events_filtered": 2, "stopped": True}
        )
        store.record_slice(lease, record)
        assert store.history(job_id) == [record]

    def test_second_owner_cannot_acquire_a_live_lease(
        self, store: CheckpointStore, clock: FakeClock, job_id: str
    ) -> None:
        lease = store.acquire(job_id, "a", TTL)
        clock.advance(TTL - 1)
        with pytest.raises(LeaseLostError) as info:
            store.acquire(job_id, "b", TTL)
        assert info.value.job_id == job_id
        assert info.value.holder == "a"
        store.commit(lease, advanced(None, job_id, 1))  # the holder is unaffected

    def test_concurrent_acquire_with_threads_exactly_one_wins(
        self, store_factory: Callable[[], CheckpointStore], job_id: str
    ) -> None:
        racers = 8
        stores = [store_factory() for _ in range(racers)]
        barrier = threading.Barrier(racers)
        won: list[Lease] = []
        lost: list[BaseException] = []

        def race(i: int) -> None:
            barrier.wait()
            try:
                won.append(stores[i].acquire(job_id, f"owner-{i}", TTL))
            except BaseException as exc:  # collected and checked below
                lost.append(exc)

        threads = [threading.Thread(target=race, args=(i,)) for i in range(racers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert len(won) == 1, (won, lost)
        assert len(lost) == racers - 1
        assert all(isinstance(e, LeaseLostError) for e in lost), lost
        winner = won[0]
        winning_store = stores[int(winner.owner.split("-")[1])]
        assert winning_store.commit(winner, advanced(None, job_id, 5)).version == 1

    def test_expired_lease_is_taken_over_with_a_higher_token(
        self, store: CheckpointStore, clock: FakeClock, job_id: str
    ) -> None:
        a = store.acquire(job_id, "a", TTL)
        clock.advance(TTL)  # expiry is exclusive: at expires_at the lease is gone
        b = store.acquire(job_id, "b", TTL)
        assert b.token > a.token
        assert b.owner == "b"
        with pytest.raises(LeaseLostError):
            store.acquire(job_id, "a", TTL)

    def test_token_increases_with_every_acquire(
        self, store: CheckpointStore, clock: FakeClock, job_id: str
    ) -> None:
        tokens = []
        lease = store.acquire(job_id, "a", TTL)
        tokens.append(lease.token)
        store.release(lease)
        lease = store.acquire(job_id, "b", TTL)
        tokens.append(lease.token)
        lease = store.acquire(job_id, "b", TTL)  # the holder re-acquiring fences its old handle
        tokens.append(lease.token)
        clock.advance(TTL + 1)
        tokens.append(store.acquire(job_id, "c", TTL).token)
        assert tokens == sorted(set(tokens)), tokens

    def test_reacquire_by_same_owner_fences_the_old_handle(
        self, store: CheckpointStore, job_id: str
    ) -> None:
        old = store.acquire(job_id, "a", TTL)
        new = store.acquire(job_id, "a", TTL)
        with pytest.raises(LeaseLostError):
            store.commit(old, advanced(None, job_id, 1))
        assert store.commit(new, advanced(None, job_id, 2)).version == 1

    def test_fenced_out_owner_cannot_commit_and_nothing_is_overwritten(
        self, store: CheckpointStore, clock: FakeClock, job_id: str
    ) -> None:
        a = store.acquire(job_id, "a", TTL)
        committed = store.commit(a, advanced(None, job_id, 100))
        clock.advance(TTL + 5)  # a is paused past its lease
        b = store.acquire(job_id, "b", TTL)

        with pytest.raises(LeaseLostError):
            store.commit(a, advanced(committed, job_id, 999))
        with pytest.raises(LeaseLostError):
            store.renew(a, TTL)
        assert store.load(job_id) == committed

        assert store.commit(b, advanced(committed, job_id, 200)).version == 2

    def test_expired_lease_cannot_commit_even_if_nobody_took_over(
        self, store: CheckpointStore, clock: FakeClock, job_id: str
    ) -> None:
        a = store.acquire(job_id, "a", TTL)
        clock.advance(TTL)
        with pytest.raises(LeaseLostError):
            store.commit(a, advanced(None, job_id, 1))
        with pytest.raises(LeaseLostError):
            store.renew(a, TTL)
        assert store.load(job_id) is None

    def test_commit_with_stale_version_is_rejected(
        self, store: CheckpointStore, job_id: str
    ) -> None:
        lease = store.acquire(job_id, "a", TTL)
        first = store.commit(lease, advanced(None, job_id, 100))
        with pytest.raises(LeaseLostError):
            store.commit(lease, advanced(None, job_id, 500))  # version 0, store has 1
        with pytest.raises(LeaseLostError):
            store.commit(lease, advanced(first, job_id, 500, version=7))
        assert store.load(job_id) == first
        assert store.commit(lease, advanced(first, job_id, 200)).version == 2

    def test_renew_extends_the_lease(
        self, store: CheckpointStore, clock: FakeClock, job_id: str
    ) -> None:
        lease = store.acquire(job_id, "a", TTL)
        clock.advance(TTL - 1)
        renewed = store.renew(lease, TTL)
        assert renewed.token == lease.token
        assert renewed.expires_at == clock() + timedelta(seconds=TTL)
        clock.advance(TTL - 1)  # past the first expiry, inside the renewed one
        with pytest.raises(LeaseLostError):
            store.acquire(job_id, "b", TTL)
        assert store.commit(renewed, advanced(None, job_id, 1)).version == 1

    def test_renew_by_wrong_owner_or_token_is_rejected(
        self, store: CheckpointStore, clock: FakeClock, job_id: str
    ) -> None:
        lease = store.acquire(job_id, "a", TTL)
        for forged in (
            lease.model_copy(update={"owner": "mallory"}),
            lease.model_copy(update={"token": lease.token + 1}),
            lease.model_copy(update={"token": lease.token - 1 or 99}),
        ):
            with pytest.raises(LeaseLostError):
                store.renew(forged, TTL * 10)
            with pytest.raises(LeaseLostError):
                store.commit(forged, advanced(None, job_id, 1))
        clock.advance(TTL)  # the forged renewals did not extend anything
        assert store.acquire(job_id, "b", TTL).token > lease.token

    def test_release_is_idempotent_and_only_by_owner(
        self, store: CheckpointStore, job_id: str
    ) -> None:
        lease = store.acquire(job_id, "a", TTL)
        assert store.release(lease.model_copy(update={"owner": "mallory"})) is False
        with pytest.raises(LeaseLostError):
            store.acquire(job_id, "b", TTL)  # still held by a

        assert store.release(lease) is True
        assert store.release(lease) is False  # idempotent: no error, nothing to do
        with pytest.raises(LeaseLostError):
            store.commit(lease, advanced(None, job_id, 1))

        b = store.acquire(job_id, "b", TTL)
        assert b.token > lease.token
        assert store.release(lease) is False  # a's late release does not free b's lease
        with pytest.raises(LeaseLostError):
            store.acquire(job_id, "c", TTL)
        assert store.commit(b, advanced(None, job_id, 1)).version == 1

    def test_release_of_unknown_job_is_a_no_op(self, store: CheckpointStore, job_id: str) -> None:
        ghost = Lease(
            job_id=job_id, owner="a", token=1, expires_at=datetime(2030, 1, 1, tzinfo=UTC)
        )
        assert store.release(ghost) is False
        assert store.load(job_id) is None

    def test_lease_survives_commits_and_release_keeps_checkpoint(
        self, store: CheckpointStore, job_id: str
    ) -> None:
        lease = store.acquire(job_id, "a", TTL)
        stored = store.commit(lease, advanced(None, job_id, 100))
        store.release(lease)
        assert store.load(job_id) == stored

    # --- history --------------------------------------------------------------------------

    def test_history_newest_first_and_bounded(
        self, store: CheckpointStore, clock: FakeClock, job_id: str
    ) -> None:
        lease = store.acquire(job_id, "a", TTL)
        total = HISTORY_LIMIT + 5
        for n in range(total):
            store.record_slice(lease if n % 2 else job_id, slice_record(job_id, n, clock()))

        recent = store.history(job_id)
        assert [r.owner for r in recent] == [f"owner-{n}" for n in range(total - 1, total - 21, -1)]
        assert recent[0] == slice_record(job_id, total - 1, clock())

        everything = store.history(job_id, limit=10 * HISTORY_LIMIT)
        assert len(everything) == HISTORY_LIMIT
        assert everything[-1].owner == f"owner-{total - HISTORY_LIMIT}"
        assert store.history(job_id, limit=3) == everything[:3]
        assert store.history(job_id + "-other") == []

    def test_history_records_failures_without_a_lease(
        self, store: CheckpointStore, clock: FakeClock, job_id: str
    ) -> None:
        failed = slice_record(job_id, 3, clock()).model_copy(update={"error": "source down"})
        store.record_slice(job_id, failed)
        assert store.history(job_id) == [failed]

    def test_record_slice_of_another_job_is_refused(
        self, store: CheckpointStore, clock: FakeClock, job_id: str
    ) -> None:
        with pytest.raises(ValueError):
            store.record_slice(job_id, slice_record(job_id + "-other", 1, clock()))

    # --- corruption -----------------------------------------------------------------------

    def test_corrupted_record_is_reported_not_guessed(
        self,
        store: CheckpointStore,
        corrupt_record: Callable[[str], None],
        job_id: str,
    ) -> None:
        lease = store.acquire(job_id, "a", TTL)
        store.commit(lease, advanced(None, job_id, 100))
        corrupt_record(job_id)
        with pytest.raises(CorruptCheckpointError) as info:
            store.load(job_id)
        assert info.value.job_id == job_id
        assert job_id in str(info.value)

    # --- the compare-and-swap -------------------------------------------------------------

    def test_a_write_racing_a_takeover_is_refused_and_writes_nothing(
        self, store_factory: Callable[[], CheckpointStore], clock: FakeClock, job_id: str
    ) -> None:
        """Another invocation takes the lease over between this one's read of the job record
        and its write: the write finds the record changed, and the read after it refuses."""
        a_store, b_store = store_factory(), store_factory()
        if not isinstance(a_store, StoreBase):
            pytest.skip("the store does not read and write through core/stores/base.py")
        a = a_store.acquire(job_id, "a", TTL)
        first = a_store.commit(a, advanced(None, job_id, 1))
        clock.advance(TTL - 1)  # still held by a when a reads ...
        read = a_store._read_state
        took_over: list[Lease] = []

        def read_then_takeover(job: str) -> object:
            state = read(job)
            if not took_over:
                took_over.append(a)  # once (a_store may be b_store)
                clock.advance(2)  # ... and expired when b looks
                took_over.append(b_store.acquire(job_id, "b", TTL))
                clock.advance(-2)  # a's clock still says the lease is fine
            return state

        a_store._read_state = read_then_takeover  # type: ignore[method-assign]
        try:
            with pytest.raises(LeaseLostError, match="taken over by 'b'"):
                a_store.commit(a, advanced(first, job_id, 999))
        finally:
            del a_store._read_state
        assert b_store.load(job_id) == first
        clock.advance(2)
        assert b_store.commit(took_over[1], advanced(first, job_id, 2)).version == 2
