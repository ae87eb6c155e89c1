"""The checkpoint contract and Firestore specifics, against the real Firestore emulator started by
tests/services/firestore.py."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from google.api_core import exceptions as gexc

from core.checkpoint import Checkpoint, CheckpointStore, Lease, Position, open_store
from core.errors import (
    ConfigError,
    CorruptCheckpointError,
    LeaseLostError,
    StoreUnavailableError,
    TransientError,
)
from handlers.gcp.checkpoint_store import (
    FORMAT,
    MAX_ERROR_CHARS,
    SLICES,
    FirestoreCheckpointStore,
    parse_firestore_url,
    register,
)
from tests.contract.checkpoint_contract import (
    OLD_CHECKPOINT,
    OLD_SLICE,
    PREVIOUS,
    TTL,
    CheckpointStoreContract,
    FakeClock,
    advanced,
    slice_record,
)
from tests.services import firestore as services

firestore_emulator = services.firestore_emulator  # the session-scoped emulator
firestore_env = services.firestore_env  # FIRESTORE_EMULATOR_HOST for one test

PROJECT = services.PROJECT


def _collection() -> str:
    return f"relay-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def collection() -> str:
    """Each test writes to its own collection (job ids are unique too)."""
    return _collection()


@pytest.fixture
def raw(firestore_emulator: str) -> Iterator[Any]:
    """A plain Firestore client on the emulator, for inspecting and tampering with documents."""
    client = services.raw_client(firestore_emulator)
    yield client
    client._firestore_api._transport.close()


@pytest.fixture
def make_store(
    firestore_env: str, collection: str, clock: FakeClock
) -> Iterator[Callable[..., FirestoreCheckpointStore]]:
    opened: list[FirestoreCheckpointStore] = []

    def make(**options: Any) -> FirestoreCheckpointStore:
        settings: dict[str, Any] = {"project": PROJECT, "now": clock, "timeout": 10.0}
        opened.append(FirestoreCheckpointStore(collection, **{**settings, **options}))
        return opened[-1]

    yield make
    for store in opened:
        store.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


class TestFirestoreStore(CheckpointStoreContract):
    """Separate store objects (separate clients, like separate invocations) on one emulator."""

    @pytest.fixture
    def store_factory(
        self, make_store: Callable[..., FirestoreCheckpointStore]
    ) -> Callable[[], CheckpointStore]:
        return make_store

    @pytest.fixture
    def store(self, store_factory: Callable[[], CheckpointStore]) -> CheckpointStore:
        return store_factory()

    @pytest.fixture
    def corrupt_record(self, raw: Any, collection: str) -> Callable[[str], None]:
        def corrupt(job_id: str) -> None:
            raw.collection(collection).document(job_id).update({"checkpoint": "garbage{"})

        return corrupt


# --- layout -------------------------------------------------------------------------------


def test_document_layout(
    make_store: Callable[..., FirestoreCheckpointStore],
    raw: Any,
    collection: str,
    clock: FakeClock,
) -> None:
    store = make_store()
    lease = store.acquire("job", "a", TTL)
    stored = store.commit(lease, advanced(None, "job", 100))
    store.record_slice(lease, slice_record("job", 1, clock()))

    doc = raw.collection(collection).document("job").get().to_dict()
    assert doc["format"] == FORMAT
    assert (doc["owner"], doc["token"], doc["version"], doc["history_seq"]) == ("a", 1, 1, 1)
    assert doc["lease_expires_at"] == lease.expires_at
    assert doc["checkpoint"]["position"] == {"commit": 100, "prepare": 100}
    assert doc["checkpoint"]["updated_at"] == stored.updated_at
    assert "version" not in doc["checkpoint"]

    slices = list(raw.collection(collection).document("job").collection(SLICES).stream())
    assert [s.id for s in slices] == ["0" * 19 + "1"]
    entry = slices[0].to_dict()
    assert (entry["format"], entry["seq"]) == (FORMAT, 1)
    assert entry["record"]["owner"] == "owner-1"
    assert entry["expire_at"] == clock() + timedelta(days=90)

    store.release(lease)
    doc = raw.collection(collection).document("job").get().to_dict()
    assert (doc["owner"], doc["lease_expires_at"], doc["token"]) == (None, None, 1)


def test_documents_of_the_previous_version_load_and_go_on(
    make_store: Callable[..., FirestoreCheckpointStore],
    raw: Any,
    collection: str,
    clock: FakeClock,
) -> None:
    job = raw.collection(collection).document("job")
    job.set(
        {
            "format": FORMAT,
            "owner": PREVIOUS.owner,
            "token": PREVIOUS.token,
            "lease_expires_at": clock() + timedelta(seconds=PREVIOUS.ttl),
            "version": PREVIOUS.version,
            "checkpoint": PREVIOUS.checkpoint("job").model_dump(exclude=OLD_CHECKPOINT),
            "history_seq": 1,
        }
    )
    record = {
        "format": FORMAT,
        "seq": 1,
        "record": PREVIOUS.slice("job").model_dump(exclude=OLD_SLICE),
    }
    job.collection(SLICES).document(f"{1:020d}").set(record)
    PREVIOUS.carry_on(make_store(), clock, "job")
    assert [d.id for d in job.collection(SLICES).stream()] == [f"{1:020d}", f"{2:020d}"]
    assert job.get().to_dict()["history_seq"] == 2


def test_history_is_pruned_in_the_store(
    make_store: Callable[..., FirestoreCheckpointStore],
    raw: Any,
    collection: str,
    clock: FakeClock,
) -> None:
    store = make_store(history_limit=5, history_ttl_days=0)
    for n in range(12):
        store.record_slice("job", slice_record("job", n, clock()))
    store.record_slice("other", slice_record("other", 1, clock()))

    def ids(job: str) -> list[str]:
        docs = raw.collection(collection).document(job).collection(SLICES).stream()
        return [d.id for d in docs]

    assert [int(i) for i in ids("job")] == [8, 9, 10, 11, 12]
    assert [int(i) for i in ids("other")] == [1]
    assert [r.owner for r in store.history("job", limit=100)] == [
        f"owner-{n}" for n in (11, 10, 9, 8, 7)
    ]
    entry = raw.collection(collection).document("job").collection(SLICES).document(ids("job")[0])
    assert "expire_at" not in entry.get().to_dict()  # history_ttl_days=0: no TTL field
    assert store.load("job") is None  # history alone is not a checkpoint


def test_huge_error_text_is_cut_so_the_record_fits(
    make_store: Callable[..., FirestoreCheckpointStore], clock: FakeClock
) -> None:
    store = make_store()
    failed = slice_record("job", 1, clock()).model_copy(update={"error": "x" * 2_000_000})
    store.record_slice("job", failed)  # 2 MB would not fit in a 1 MiB document
    (stored,) = store.history("job")
    assert stored.error is not None
    assert stored.error.startswith("x" * MAX_ERROR_CHARS)
    assert stored.error.endswith(f"(truncated {2_000_000 - MAX_ERROR_CHARS} characters)")


def test_history_never_returns_more_than_the_limit(
    make_store: Callable[..., FirestoreCheckpointStore],
    raw: Any,
    collection: str,
    clock: FakeClock,
) -> None:
    # Records left behind by a larger limit (or written by hand) are never returned.
    store = make_store(history_limit=3)
    slices = raw.collection(collection).document("job").collection(SLICES)
    for n in range(1, 8):
        record = slice_record("job", n, clock()).model_dump()
        slices.document(f"{n:020d}").set({"format": FORMAT, "seq": n, "record": record})
    assert [r.owner for r in store.history("job", limit=50)] == ["owner-7", "owner-6", "owner-5"]
    assert store.history("job", limit=0) == []


# --- nothing written when a condition fails -----------------------------------------------


def test_refused_writes_leave_the_document_untouched(
    make_store: Callable[..., FirestoreCheckpointStore],
    raw: Any,
    collection: str,
    clock: FakeClock,
) -> None:
    store = make_store()
    a = store.acquire("job", "a", TTL)
    committed = store.commit(a, advanced(None, "job", 100))
    ref = raw.collection(collection).document("job")
    before = ref.get()

    stale = a.model_copy(update={"token": a.token + 1})
    refused: list[Callable[[], object]] = [
        lambda: store.acquire("job", "b", TTL),
        lambda: store.commit(stale, advanced(committed, "job", 999)),
        lambda: store.commit(a, advanced(None, "job", 999)),  # stale version
        lambda: store.renew(stale, TTL),
    ]
    for attempt in refused:
        with pytest.raises(LeaseLostError):
            attempt()
    assert store.release(stale) is False
    clock.advance(TTL)
    with pytest.raises(LeaseLostError):
        store.commit(a, advanced(committed, "job", 999))  # expired

    after = ref.get()
    assert after.update_time == before.update_time
    assert after.to_dict() == before.to_dict()


def test_takeover_race_of_an_expired_lease_has_one_winner(
    make_store: Callable[..., FirestoreCheckpointStore], clock: FakeClock
) -> None:
    # Kept to 4 racers: every contended transaction costs the emulator about 2 s.
    old = make_store().acquire("job", "old", TTL)
    clock.advance(TTL + 1)
    racers = 4
    stores = [make_store() for _ in range(racers)]
    barrier = threading.Barrier(racers)
    won: list[Lease] = []
    lost: list[BaseException] = []

    def race(i: int) -> None:
        barrier.wait()
        try:
            won.append(stores[i].acquire("job", f"racer-{i}", TTL))
        except BaseException as exc:
            lost.append(exc)

    threads = [threading.Thread(target=race, args=(i,)) for i in range(racers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(won) == 1, (won, lost)
    assert len(lost) == racers - 1 and all(isinstance(e, LeaseLostError) for e in lost), lost
    assert won[0].token == old.token + 1
    assert {e.holder for e in lost if isinstance(e, LeaseLostError)} == {won[0].owner}
    with pytest.raises(LeaseLostError):
        stores[0].commit(old, advanced(None, "job", 1))


def test_racing_commits_of_one_version_have_one_winner(
    make_store: Callable[..., FirestoreCheckpointStore],
) -> None:
    # A duplicated invocation under the same lease: only one commit of a version may land.
    lease = make_store().acquire("job", "a", TTL)
    racers = 3
    stores = [make_store() for _ in range(racers)]
    barrier = threading.Barrier(racers)
    won: list[Checkpoint] = []
    lost: list[BaseException] = []

    def race(i: int) -> None:
        barrier.wait()
        try:
            won.append(stores[i].commit(lease, advanced(None, "job", 100 + i)))
        except BaseException as exc:
            lost.append(exc)

    threads = [threading.Thread(target=race, args=(i,)) for i in range(racers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(won) == 1, (won, lost)
    assert all(isinstance(e, LeaseLostError) for e in lost), lost
    assert stores[0].load("job") == won[0]
    assert won[0].version == 1


# --- corruption ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "detail"),
    [
        ({"format": FORMAT + 1}, "format"),
        ({"format": "1"}, "format"),
        ({"checkpoint": "garbage{"}, "not a map"),
        ({"checkpoint.position": {"commit": "x", "prepare": 1}}, "position"),
        ({"checkpoint.job_id": "someone-else"}, "another job"),
        ({"checkpoint.surprise": 1}, "surprise"),
        ({"version": "7"}, "version"),
        ({"token": 1.5}, "token"),
        ({"owner": 42}, "owner"),
        ({"lease_expires_at": "tomorrow"}, "lease_expires_at"),
    ],
)
def test_damaged_documents_are_corrupt(
    make_store: Callable[..., FirestoreCheckpointStore],
    raw: Any,
    collection: str,
    fields: dict[str, Any],
    detail: str,
) -> None:
    store = make_store()
    lease = store.acquire("job", "a", TTL)
    store.commit(lease, advanced(None, "job", 100))
    raw.collection(collection).document("job").update(fields)
    with pytest.raises(CorruptCheckpointError, match=detail) as info:
        if any(k in fields for k in ("format", "checkpoint", "version")) or any(
            k.startswith("checkpoint.") for k in fields
        ):
            store.load("job")
        else:
            store.acquire("job", "b", TTL)
    assert info.value.job_id == "job"
    assert f"{collection}/job" in str(info.value)


def test_foreign_document_is_corrupt_and_not_overwritten(
    make_store: Callable[..., FirestoreCheckpointStore], raw: Any, collection: str
) -> None:
    ref = raw.collection(collection).document("job")
    ref.set({"name": "a document of another program", "count": 3})
    store = make_store()
    for attempt in (
        lambda: store.load("job"),
        lambda: store.acquire("job", "a", TTL),
        lambda: store.record_slice("job", slice_record("job", 1, datetime.now(UTC))),
    ):
        with pytest.raises(CorruptCheckpointError, match="not a document written by esdb-relay"):
            attempt()
    assert ref.get().to_dict() == {"name": "a document of another program", "count": 3}


def test_corrupt_slice_records(
    make_store: Callable[..., FirestoreCheckpointStore],
    raw: Any,
    collection: str,
    clock: FakeClock,
) -> None:
    store = make_store()
    store.record_slice("job", slice_record("job", 1, clock()))
    slices = raw.collection(collection).document("job").collection(SLICES)
    (entry,) = list(slices.stream())
    for fields, detail in (
        ({"record": "garbage"}, "not a map"),
        ({"record.events_read": -1}, "events_read"),
        ({"record.job_id": "other"}, "another job"),
        ({"format": 9}, "format"),
    ):
        original = entry.to_dict()
        entry.reference.update(fields)
        with pytest.raises(CorruptCheckpointError, match=detail) as info:
            store.history("job")
        assert info.value.table == f"{collection}/job/{SLICES}"
        entry.reference.set(original)
    assert store.history("job") == [slice_record("job", 1, clock())]


# --- unavailable --------------------------------------------------------------------------


def test_unreachable_store_fails_fast_with_a_retryable_error(
    monkeypatch: pytest.MonkeyPatch, collection: str, clock: FakeClock
) -> None:
    host = f"127.0.0.1:{services.closed_port()}"
    monkeypatch.setenv(services.EMULATOR_ENV, host)
    lease = Lease(job_id="job", owner="a", token=1, expires_at=clock() + timedelta(seconds=TTL))
    with FirestoreCheckpointStore(collection, project=PROJECT, now=clock, timeout=1.0) as store:
        for operation in (
            lambda: store.load("job"),
            lambda: store.acquire("job", "a", TTL),
            lambda: store.commit(lease, advanced(None, "job", 1)),
            lambda: store.history("job"),
        ):
            started = time.monotonic()
            with pytest.raises(StoreUnavailableError) as info:
                operation()
            elapsed = time.monotonic() - started
            assert elapsed < 4.0, elapsed
            assert isinstance(info.value, TransientError)
            message = str(info.value)
            assert repr(collection) in message and host in message
            assert "FIRESTORE_EMULATOR_HOST" in message  # the fix for the emulator case
            assert "Bearer" not in message


@pytest.mark.parametrize(
    ("error", "fix"),
    [
        (gexc.PermissionDenied("Missing or insufficient permissions."), "roles/datastore.user"),
        (gexc.Unauthenticated("Request had invalid authentication credentials."), "datastore.user"),
        (gexc.NotFound("The database (default) does not exist for project p"), "databases create"),
        (
            gexc.FailedPrecondition("The Cloud Firestore API is not available for Datastore Mode"),
            "Native mode",
        ),
        (gexc.Cancelled("The operation was cancelled."), "firestore.googleapis.com"),
    ],
)
def test_service_errors_name_the_collection_and_the_fix(
    make_store: Callable[..., FirestoreCheckpointStore],
    monkeypatch: pytest.MonkeyPatch,
    collection: str,
    error: Exception,
    fix: str,
) -> None:
    # What the real service answers and the emulator cannot be made to: injected at the
    # library's API client, below everything of ours.
    store = make_store(timeout=3.0)  # these errors are not retried: no waiting

    def fail(*args: object, **kwargs: object) -> None:
        raise error

    monkeypatch.setattr(store._client._firestore_api, "batch_get_documents", fail)
    for operation in (lambda: store.load("job"), lambda: store.acquire("job", "a", TTL)):
        with pytest.raises(StoreUnavailableError, match=fix) as info:
            operation()
        assert repr(collection) in str(info.value)


def test_contention_aborts_are_retried_then_reported(
    make_store: Callable[..., FirestoreCheckpointStore],
    monkeypatch: pytest.MonkeyPatch,
    raw: Any,
    collection: str,
) -> None:
    store = make_store(attempts=3)
    api = store._client._firestore_api
    real_commit = api.commit
    commits: list[int] = []

    def aborted_once(*args: Any, **kwargs: Any) -> Any:
        commits.append(1)
        if len(commits) == 1:
            raise gexc.Aborted("Too much contention on these documents. Please try again.")
        return real_commit(*args, **kwargs)

    monkeypatch.setattr(api, "commit", aborted_once)
    lease = store.acquire("job", "a", TTL)
    assert (len(commits), lease.token) == (2, 1)  # the second attempt went through

    def always_aborted(*args: Any, **kwargs: Any) -> Any:
        commits.append(1)
        raise gexc.Aborted("Too much contention on these documents. Please try again.")

    before = raw.collection(collection).document("job").get()
    monkeypatch.setattr(api, "commit", always_aborted)
    commits.clear()
    with pytest.raises(StoreUnavailableError, match="3 transaction attempts"):
        store.commit(lease, advanced(None, "job", 1))
    assert len(commits) == 3
    assert raw.collection(collection).document("job").get().to_dict() == before.to_dict()


def test_missing_credentials_are_a_config_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any, collection: str
) -> None:
    # A credentials file that does not exist: google-auth refuses at once, no network involved.
    monkeypatch.delenv(services.EMULATOR_ENV, raising=False)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    with pytest.raises(ConfigError, match="credentials") as info:
        FirestoreCheckpointStore(collection, project=PROJECT)
    assert "GOOGLE_APPLICATION_CREDENTIALS" in str(info.value)


# --- URLs and arguments -------------------------------------------------------------------


def test_open_store_opens_firestore_urls(firestore_env: str, clock: FakeClock) -> None:
    register()
    register()  # idempotent
    collection = _collection()
    store = open_store(
        f"firestore://{collection}?project={PROJECT}&timeout=5&attempts=3", now=clock
    )
    try:
        assert isinstance(store, FirestoreCheckpointStore)
        assert (store.collection, store.project, store.database) == (
            collection,
            PROJECT,
            "(default)",
        )
        lease = store.acquire("job", "a", TTL)
        stored = store.commit(lease, advanced(None, "job", 5))
        assert stored.updated_at == clock()
    finally:
        store.close()
    with open_store(f"firestore://{collection}/", now=clock) as again:  # project from the env
        assert again.load("job") == stored
        assert "FirestoreCheckpointStore" in repr(again) and firestore_env in repr(again)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("firestore://relay", ("relay", {})),
        ("FIRESTORE://relay/", ("relay", {})),
        (
            "firestore://relay?project=p-1&database=db&timeout=2.5&attempts=2&history_ttl_days=0",
            (
                "relay",
                {
                    "project": "p-1",
                    "database": "db",
                    "timeout": 2.5,
                    "attempts": 2,
                    "history_ttl_days": 0.0,
                },
            ),
        ),
    ],
)
def test_parse_urls(url: str, expected: tuple[str, dict[str, Any]]) -> None:
    assert parse_firestore_url(url) == expected


@pytest.mark.parametrize(
    ("url", "detail"),
    [
        ("dynamodb://relay", "not a firestore"),
        ("firestore://", "no collection"),
        ("firestore://relay/job-1", "path after the collection"),
        ("firestore://__relay__", "not a valid collection id"),
        ("firestore://user:s3cret@relay", "not a valid collection id"),
        ("firestore://relay?key=s3cret", "unknown firestore store option"),
        ("firestore://relay?timeout=0", "timeout"),
        ("firestore://relay?timeout=soon", "timeout"),
        ("firestore://relay?attempts=0", "attempts"),
        ("firestore://relay?history_ttl_days=-1", "history_ttl_days"),
        ("firestore://relay?project=", "empty"),
        ("firestore://relay?database=a/b", "database"),
    ],
)
def test_bad_urls_are_config_errors(url: str, detail: str) -> None:
    with pytest.raises(ConfigError, match=detail) as info:
        parse_firestore_url(url)
    assert "s3cret" not in str(info.value)
    assert info.value.field == "checkpoint_store"


def test_bad_arguments_are_refused_before_any_write(
    make_store: Callable[..., FirestoreCheckpointStore], raw: Any, collection: str
) -> None:
    store = make_store()
    for job_id in ("a/b", "..", "__x__", ""):
        with pytest.raises(ValueError):
            store.load(job_id)
        with pytest.raises(ValueError):
            store.acquire(job_id, "a", TTL)
    lease = store.acquire("job", "a", TTL)
    huge = advanced(None, "job", 1).model_copy(
        update={"position": Position(commit=2**64 - 1, prepare=2**64 - 1)}
    )
    with pytest.raises(ValueError, match="64-bit"):
        store.commit(lease, huge)
    assert store.load("job") is None
    with pytest.raises(ValueError):
        store.history("job", limit=-1)
    assert [d.id for d in raw.collection(collection).stream()] == ["job"]
