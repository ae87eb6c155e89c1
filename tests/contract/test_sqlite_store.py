from __future__ import annotations

import multiprocessing
import sqlite3
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from core.checkpoint import HISTORY_LIMIT, CheckpointStore, open_store
from core.errors import (
    CorruptCheckpointError,
    LeaseLostError,
    StoreUnavailableError,
    TransientError,
)
from core.stores.sqlite import FORMAT, HISTORY, JOBS, SqliteCheckpointStore
from tests.contract import _sqlite_race
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


class TestSqliteFileStore(CheckpointStoreContract):
    @pytest.fixture
    def db_path(self, tmp_path: Path) -> Path:
        return tmp_path / "relay.db"

    @pytest.fixture
    def store_factory(
        self, db_path: Path, clock: FakeClock
    ) -> Iterator[Callable[[], CheckpointStore]]:
        opened: list[SqliteCheckpointStore] = []

        def make() -> CheckpointStore:
            opened.append(SqliteCheckpointStore(db_path, now=clock))
            return opened[-1]

        yield make
        for s in opened:
            s.close()

    @pytest.fixture
    def store(self, store_factory: Callable[[], CheckpointStore]) -> CheckpointStore:
        return store_factory()

    @pytest.fixture
    def corrupt_record(self, db_path: Path) -> Callable[[str], None]:
        def corrupt(job_id: str) -> None:
            with sqlite3.connect(db_path) as conn:
                conn.execute(
                    f"UPDATE {JOBS} SET checkpoint = ? WHERE job_id = ?", ("{not json", job_id)
                )
            conn.close()

        return corrupt


class TestSqliteMemoryStore(CheckpointStoreContract):
    """One shared in-memory store: the default store_factory shares it between threads."""

    @pytest.fixture
    def store(self, clock: FakeClock) -> Iterator[CheckpointStore]:
        with SqliteCheckpointStore(":memory:", now=clock) as store:
            yield store

    @pytest.fixture
    def corrupt_record(self, store: SqliteCheckpointStore) -> Callable[[str], None]:
        def corrupt(job_id: str) -> None:
            store._connect().execute(
                f"UPDATE {JOBS} SET checkpoint = '[1, 2]' WHERE job_id = ?", (job_id,)
            )

        return corrupt


# --- SQLite specifics ---------------------------------------------------------------------


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def db(tmp_path: Path, clock: FakeClock) -> Iterator[SqliteCheckpointStore]:
    with SqliteCheckpointStore(tmp_path / "relay.db", now=clock) as store:
        yield store


def _committed(store: SqliteCheckpointStore, job_id: str = "job") -> None:
    lease = store.acquire(job_id, "a", TTL)
    store.commit(lease, advanced(None, job_id, 100))


def _execute(path: Path, sql: str, *args: object) -> None:
    conn = sqlite3.connect(path)
    with conn:
        conn.execute(sql, args)
    conn.close()


def test_processes_racing_to_acquire_exactly_one_wins(tmp_path: Path) -> None:
    path = str(tmp_path / "race.db")
    ctx = multiprocessing.get_context("spawn")
    racers = 4
    barrier = ctx.Barrier(racers)
    results = ctx.Queue()
    procs = [
        ctx.Process(target=_sqlite_race.acquire, args=(path, "job", f"proc-{i}", barrier, results))
        for i in range(racers)
    ]
    for p in procs:
        p.start()
    outcomes = dict(results.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    winners = {owner: token for owner, token in outcomes.items() if token is not None}
    assert len(outcomes) == racers
    assert len(winners) == 1, outcomes
    assert list(winners.values()) == [1], outcomes

    with SqliteCheckpointStore(path) as store:
        with pytest.raises(LeaseLostError) as info:
            store.acquire("job", "late", TTL)
        assert info.value.holder == next(iter(winners))


def test_rows_of_the_previous_version_load_and_go_on(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "relay.db"
    with SqliteCheckpointStore(path, now=clock) as store:
        store.load("job")  # the schema, as the previous version created it
    _execute(
        path,
        f"INSERT INTO {JOBS} (job_id, format, owner, token, expires_at, version, checkpoint) "
        "VALUES ('job', 1, ?, ?, ?, ?, ?)",
        PREVIOUS.owner,
        PREVIOUS.token,
        (clock() + timedelta(seconds=PREVIOUS.ttl)).isoformat(),
        PREVIOUS.version,
        PREVIOUS.checkpoint("job").model_dump_json(exclude=OLD_CHECKPOINT),
    )
    _execute(
        path,
        f"INSERT INTO {HISTORY} (job_id, format, record) VALUES ('job', 1, ?)",
        PREVIOUS.slice("job").model_dump_json(exclude=OLD_SLICE),
    )
    with SqliteCheckpointStore(path, now=clock) as store:
        PREVIOUS.carry_on(store, clock, "job")


def test_garbage_json_in_row_is_corrupt(db: SqliteCheckpointStore, tmp_path: Path) -> None:
    _committed(db)
    _execute(
        tmp_path / "relay.db", f"UPDATE {JOBS} SET checkpoint = 'garbage{{' WHERE job_id = ?", "job"
    )
    with pytest.raises(CorruptCheckpointError) as info:
        db.load("job")
    assert (info.value.job_id, info.value.table) == ("job", JOBS)
    assert "'job'" in str(info.value) and JOBS in str(info.value)


@pytest.mark.parametrize(
    ("column", "value", "detail"),
    [
        ("format", FORMAT + 1, "format"),
        ("checkpoint", '{"job_id": "job", "position": {"commit": "x"}}', "position"),
        ("checkpoint", '{"job_id": "someone-else"}', "another job"),
        ("checkpoint", '"a string"', "not a JSON object"),
        ("expires_at", "yesterday", "expiry"),
        ("token", "abc", "integer"),
    ],
)
def test_foreign_or_damaged_rows_are_corrupt(
    db: SqliteCheckpointStore, tmp_path: Path, column: str, value: object, detail: str
) -> None:
    _committed(db)
    _execute(
        tmp_path / "relay.db", f"UPDATE {JOBS} SET {column} = ? WHERE job_id = ?", value, "job"
    )
    with pytest.raises(CorruptCheckpointError, match=detail):
        if column in ("format", "checkpoint"):
            db.load("job")
        else:
            db.acquire("job", "b", TTL)


def test_history_rows_are_pruned(
    db: SqliteCheckpointStore, tmp_path: Path, clock: FakeClock
) -> None:
    for n in range(HISTORY_LIMIT + 7):
        db.record_slice("job", slice_record("job", n, clock()))
    db.record_slice("other", slice_record("other", 1, clock()))
    conn = sqlite3.connect(tmp_path / "relay.db")
    counts = dict(conn.execute(f"SELECT job_id, count(*) FROM {HISTORY} GROUP BY job_id"))
    conn.close()
    assert counts == {"job": HISTORY_LIMIT, "other": 1}


def test_corrupt_history_record(
    db: SqliteCheckpointStore, tmp_path: Path, clock: FakeClock
) -> None:
    db.record_slice("job", slice_record("job", 1, clock()))
    _execute(tmp_path / "relay.db", f"UPDATE {HISTORY} SET record = '{{}}'")
    with pytest.raises(CorruptCheckpointError) as info:
        db.history("job")
    assert info.value.table == HISTORY


def test_table_of_another_program_is_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "foreign.db"
    _execute(path, f"CREATE TABLE {JOBS} (job_id TEXT PRIMARY KEY, data BLOB)")
    with SqliteCheckpointStore(path) as store, pytest.raises(CorruptCheckpointError) as info:
        store.load("job")
    assert JOBS in str(info.value)


def test_not_a_database_file_is_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_bytes(b"these are my notes, not a database" * 100)
    with SqliteCheckpointStore(path) as store, pytest.raises(CorruptCheckpointError):
        store.load("job")


def test_unwritable_location_is_unavailable() -> None:
    # Not a chmod'ed directory: tests may run as root, which ignores permissions; nobody,
    # root included, can create a file under /proc.
    with (
        SqliteCheckpointStore(Path("/proc/self/esdb-relay.db")) as store,
        pytest.raises(StoreUnavailableError),
    ):
        store.load("job")


def test_unopenable_path_is_unavailable(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    store = SqliteCheckpointStore(blocker / "sub" / "relay.db")
    with pytest.raises(StoreUnavailableError) as info:
        store.load("job")
    assert isinstance(info.value, TransientError)
    assert str(blocker) in str(info.value)


def test_locked_too_long_is_unavailable(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "relay.db"
    with SqliteCheckpointStore(path, now=clock) as setup:
        setup.load("job")
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process holding the write lock
    try:
        with SqliteCheckpointStore(path, now=clock, timeout=0.2) as store:
            with pytest.raises(StoreUnavailableError, match="locked"):
                store.acquire("job", "a", TTL)
            assert store.load("job") is None  # WAL readers are not blocked
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    with SqliteCheckpointStore(path, now=clock) as store:
        assert store.acquire("job", "a", TTL).token == 1  # nothing half-written


def test_wal_mode_and_state_shared_between_handles(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "relay.db"
    with (
        SqliteCheckpointStore(path, now=clock) as one,
        SqliteCheckpointStore(path, now=clock) as two,
    ):
        lease = one.acquire("job", "a", TTL)
        stored = one.commit(lease, advanced(None, "job", 5))
        assert two.load("job") == stored
        with pytest.raises(LeaseLostError):
            two.acquire("job", "b", TTL)
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def test_creates_parent_directories(tmp_path: Path) -> None:
    path = tmp_path / "state" / "nested" / "relay.db"
    with SqliteCheckpointStore(path) as store:
        assert store.load("job") is None
    assert path.exists()


def test_open_store_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    relative = open_store("sqlite:///rel/relay.db")
    absolute = open_store(f"sqlite:///{tmp_path}/abs.db")
    memory = open_store("sqlite://:memory:")
    try:
        assert isinstance(relative, SqliteCheckpointStore)
        assert relative.path == "rel/relay.db"
        assert absolute.path == f"{tmp_path}/abs.db"
        assert memory.path == ":memory:"
        for s in (relative, absolute, memory):
            lease = s.acquire("job", "a", TTL)
            s.commit(lease, advanced(None, "job", 1))
            assert s.load("job").version == 1
        assert (tmp_path / "rel" / "relay.db").exists()
        assert (tmp_path / "abs.db").exists()
    finally:
        for s in (relative, absolute, memory):
            s.close()
