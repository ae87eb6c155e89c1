"""The Azure Table Storage checkpoint store against real Azurite (tests/services/azurite.py)."""

from __future__ import annotations

import http.server
import json
import socket
import sys
import threading
import time
import types
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from azure.data.tables import EdmType, EntityProperty, TableServiceClient, UpdateMode

from core.checkpoint import HISTORY_LIMIT, CheckpointStore, Lease, open_store
from core.errors import (
    ConfigError,
    CorruptCheckpointError,
    LeaseLostError,
    StoreUnavailableError,
    TransientError,
)
from handlers.azure import checkpoint_store as azure_store
from handlers.azure.checkpoint_store import (
    HISTORY_ROW,
    PROPERTY_LIMIT,
    STATE_ROW,
    AzureTableCheckpointStore,
    parse_azuretable_url,
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
from tests.services import azurite as azurite_service
from tests.services.azurite import ACCOUNT_KEY, closed_port, connection_string

azurite_table = azurite_service.azurite_table
azurite_queue = azurite_service.azurite_queue

FAST = {"retry_total": 0, "connection_timeout": 1.0, "read_timeout": 1.0}


def new_table() -> str:
    return f"relay{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="module")
def service(azurite_table: str) -> Iterator[TableServiceClient]:
    """A raw SDK client for looking at and damaging what the store wrote."""
    with TableServiceClient.from_connection_string(azurite_table, retry_total=0) as client:
        yield client


@pytest.fixture
def table() -> str:
    return new_table()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def opened() -> Iterator[list[AzureTableCheckpointStore]]:
    stores: list[AzureTableCheckpointStore] = []
    yield stores
    for s in stores:
        s.close()


@pytest.fixture
def make(
    azurite_table: str, table: str, clock: FakeClock, opened: list[AzureTableCheckpointStore]
) -> Callable[..., AzureTableCheckpointStore]:
    """``make(**options)``: a new store handle on the test's table in Azurite."""

    def build(**options: Any) -> AzureTableCheckpointStore:
        options.setdefault("connection_string", azurite_table)
        opened.append(AzureTableCheckpointStore(options.pop("table", table), now=clock, **options))
        return opened[-1]

    return build


class TestAzureTableStore(CheckpointStoreContract):
    """The shared contract; a fresh table per test, created by the store on first write."""

    @pytest.fixture
    def store_factory(
        self, make: Callable[..., AzureTableCheckpointStore]
    ) -> Callable[[], CheckpointStore]:
        return make

    @pytest.fixture
    def store(self, store_factory: Callable[[], CheckpointStore]) -> CheckpointStore:
        return store_factory()

    @pytest.fixture
    def corrupt_record(self, service: TableServiceClient, table: str) -> Callable[[str], None]:
        def corrupt(job_id: str) -> None:
            service.get_table_client(table).update_entity(
                {"PartitionKey": job_id, "RowKey": STATE_ROW, "Checkpoint": "{not json"},
                mode=UpdateMode.MERGE,
            )

        return corrupt


# --- layout and ETag fencing ------------------------------------------------------------------


def test_entities_have_the_documented_layout(
    make: Callable[..., AzureTableCheckpointStore],
    service: TableServiceClient,
    table: str,
    clock: FakeClock,
) -> None:
    store = make()
    lease = store.acquire("job", "a", TTL)
    stored = store.commit(lease, advanced(None, "job", 100))
    store.record_slice(lease, slice_record("job", 1, clock()))
    store.record_slice("job", slice_record("job", 2, clock()))
    raw = service.get_table_client(table)

    state = raw.get_entity("job", STATE_ROW)
    assert state["Format"] == 1
    assert (state["Owner"], state["Token"].value, state["Version"].value) == ("a", 1, 1)
    assert state["ExpiresAt"] == lease.expires_at
    checkpoint = json.loads(state["Checkpoint"])
    assert "version" not in checkpoint
    assert checkpoint["position"] == {"commit": 100, "prepare": 100}

    keys = [e["RowKey"] for e in raw.query_entities("PartitionKey eq 'job'", select=["RowKey"])]
    assert keys == [
        HISTORY_ROW,
        "slice-9999999999999999997",  # sequence 2: inverted, so the newest sorts first
        "slice-9999999999999999998",
        STATE_ROW,
    ]
    assert raw.get_entity("job", HISTORY_ROW)["Last"].value == 2
    assert json.loads(raw.get_entity("job", keys[1])["Record"])["owner"] == "owner-2"

    store.release(lease)
    released = raw.get_entity("job", STATE_ROW)
    assert "Owner" not in released and "ExpiresAt" not in released
    assert released["Token"].value == 1  # the next acquire still gets a higher token
    assert store.load("job") == stored


def test_entities_of_the_previous_version_load_and_go_on(
    make: Callable[..., AzureTableCheckpointStore],
    service: TableServiceClient,
    table: str,
    clock: FakeClock,
) -> None:
    service.create_table(table)
    raw = service.get_table_client(table)
    for entity in (
        {
            "RowKey": STATE_ROW,
            "Owner": PREVIOUS.owner,
            "Token": EntityProperty(PREVIOUS.token, EdmType.INT64),
            "Version": EntityProperty(PREVIOUS.version, EdmType.INT64),
            "ExpiresAt": clock() + timedelta(seconds=PREVIOUS.ttl),
            "Checkpoint": PREVIOUS.checkpoint("job").model_dump_json(exclude=OLD_CHECKPOINT),
        },
        {"RowKey": HISTORY_ROW, "Last": EntityProperty(1, EdmType.INT64)},
        {
            "RowKey": "slice-9999999999999999998",
            "Sequence": EntityProperty(1, EdmType.INT64),
            "Record": PREVIOUS.slice("job").model_dump_json(exclude=OLD_SLICE),
        },
    ):
        raw.create_entity({"PartitionKey": "job", "Format": 1, **entity})
    PREVIOUS.carry_on(make(), clock, "job")
    keys = [e["RowKey"] for e in raw.query_entities("PartitionKey eq 'job'", select=["RowKey"])]
    assert keys == [
        HISTORY_ROW,
        "slice-9999999999999999997",
        "slice-9999999999999999998",
        STATE_ROW,
    ]


def test_commit_racing_a_takeover_is_fenced_by_the_etag(
    make: Callable[..., AzureTableCheckpointStore], clock: FakeClock
) -> None:
    """A reads a state in which its lease is held; B takes over before A writes: A's write
    carries a stale ETag, fails, and A's re-read finds the new token."""
    a_store, b_store = make(), make()
    a = a_store.acquire("job", "a", TTL)
    first = a_store.commit(a, advanced(None, "job", 1))
    clock.advance(TTL - 1)  # still held by a when a reads …

    real_read = a_store._read_state
    took_over: list[Lease] = []

    def read_then_takeover(job_id: str) -> Any:
        state = real_read(job_id)
        if not took_over:
            clock.advance(2)  # … and gone when b looks
            took_over.append(b_store.acquire("job", "b", TTL))
            clock.advance(-2)  # a's clock still says the lease is fine
        return state

    a_store._read_state = read_then_takeover  # type: ignore[method-assign]
    with pytest.raises(LeaseLostError, match="taken over by 'b'"):
        a_store.commit(a, advanced(first, "job", 999))
    assert b_store.load("job") == first
    clock.advance(2)
    assert b_store.commit(took_over[0], advanced(first, "job", 2)).version == 2


def test_concurrent_commits_under_one_lease_store_exactly_one(
    make: Callable[..., AzureTableCheckpointStore],
) -> None:
    stores = [make() for _ in range(6)]
    lease = stores[0].acquire("job", "a", TTL)
    barrier = threading.Barrier(len(stores))
    outcomes: list[object] = []

    def commit(i: int) -> None:
        barrier.wait()
        try:
            outcomes.append(stores[i].commit(lease, advanced(None, "job", 10 + i)))
        except BaseException as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=commit, args=(i,)) for i in range(len(stores))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    won = [o for o in outcomes if not isinstance(o, BaseException)]
    assert len(won) == 1, outcomes
    assert all(isinstance(o, LeaseLostError) for o in outcomes if o not in won), outcomes
    assert stores[0].load("job") == won[0]


@pytest.mark.parametrize("existing", ["no table yet", "expired lease"])
def test_concurrent_acquire_exactly_one_wins(
    make: Callable[..., AzureTableCheckpointStore],
    service: TableServiceClient,
    table: str,
    clock: FakeClock,
    existing: str,
) -> None:
    """The contract's race hits ``create_entity``; this one also races conditional updates of
    an existing record (an expired lease everybody may take over)."""
    if existing == "expired lease":
        make().acquire("job", "old", TTL)
        clock.advance(TTL + 1)
    stores = [make() for _ in range(8)]
    barrier = threading.Barrier(len(stores))
    won: list[Lease] = []
    lost: list[BaseException] = []

    def race(i: int) -> None:
        barrier.wait()
        try:
            won.append(stores[i].acquire("job", f"owner-{i}", TTL))
        except BaseException as exc:
            lost.append(exc)

    threads = [threading.Thread(target=race, args=(i,)) for i in range(len(stores))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(won) == 1, (won, lost)
    assert len(lost) == 7 and all(isinstance(e, LeaseLostError) for e in lost), lost
    assert {e.holder for e in lost if isinstance(e, LeaseLostError)} == {won[0].owner}
    assert won[0].token == (1 if existing == "no table yet" else 2)
    assert table in [t.name for t in service.list_tables()]


# --- history --------------------------------------------------------------------------------


def test_history_rows_are_pruned_to_the_limit(
    make: Callable[..., AzureTableCheckpointStore],
    service: TableServiceClient,
    table: str,
    clock: FakeClock,
) -> None:
    store = make(history_limit=5)
    for n in range(12):
        store.record_slice("job", slice_record("job", n, clock()))
    store.record_slice("other", slice_record("other", 1, clock()))
    raw = service.get_table_client(table)
    slices = [
        e["RowKey"]
        for e in raw.query_entities("PartitionKey eq 'job'", select=["RowKey"])
        if e["RowKey"].startswith("slice-")
    ]
    assert len(slices) == 5
    assert [r.owner for r in store.history("job", limit=100)] == [
        f"owner-{n}" for n in range(11, 6, -1)
    ]
    assert [r.owner for r in store.history("other")] == ["owner-1"]


def test_history_never_returns_more_than_the_limit_even_with_stray_rows(
    make: Callable[..., AzureTableCheckpointStore],
    service: TableServiceClient,
    table: str,
    clock: FakeClock,
) -> None:
    store = make()
    store.record_slice("job", slice_record("job", 0, clock()))
    raw = service.get_table_client(table)
    record = raw.get_entity("job", "slice-9999999999999999998")
    for seq in range(2, HISTORY_LIMIT + 30):  # rows an old or foreign writer left behind
        raw.create_entity({**record, "RowKey": f"slice-{10**19 - 1 - seq:019d}"})
    assert len(store.history("job", limit=10**6)) == HISTORY_LIMIT
    assert store.history("job", limit=0) == []


def test_lost_history_counter_continues_after_the_newest_row(
    make: Callable[..., AzureTableCheckpointStore],
    service: TableServiceClient,
    table: str,
    clock: FakeClock,
) -> None:
    store = make()
    for n in range(3):
        store.record_slice("job", slice_record("job", n, clock()))
    service.get_table_client(table).delete_entity("job", HISTORY_ROW)
    store.record_slice("job", slice_record("job", 3, clock()))
    assert [r.owner for r in store.history("job")] == ["owner-3", "owner-2", "owner-1", "owner-0"]


def test_a_stalled_history_writer_still_lands_newest(
    make: Callable[..., AzureTableCheckpointStore], clock: FakeClock
) -> None:
    """A writer reads the counter, stalls while others write and prune past it, then writes:
    the counter's ETag makes it retry with a fresh sequence instead of slotting in as old."""
    stalled, others = make(history_limit=3), make(history_limit=3)
    stalled.record_slice("job", slice_record("job", 0, clock()))
    real_get = stalled._get
    done: list[bool] = []

    def get_then_stall(job_id: str, row: str) -> Any:
        entity = real_get(job_id, row)
        if row == HISTORY_ROW and not done:
            done.append(True)
            for n in range(1, 8):
                others.record_slice("job", slice_record("job", n, clock()))
        return entity

    stalled._get = get_then_stall  # type: ignore[method-assign]
    stalled.record_slice("job", slice_record("job", 99, clock()))
    assert [r.owner for r in others.history("job")] == ["owner-99", "owner-7", "owner-6"]


def test_concurrent_slice_records_are_all_kept(
    make: Callable[..., AzureTableCheckpointStore], clock: FakeClock
) -> None:
    writers, each = 6, 4
    stores = [make() for _ in range(writers)]
    barrier = threading.Barrier(writers)
    errors: list[BaseException] = []

    def write(i: int) -> None:
        barrier.wait()
        try:
            for k in range(each):
                stores[i].record_slice("job", slice_record("job", i * 100 + k, clock()))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    owners = [r.owner for r in stores[0].history("job", limit=100)]
    assert sorted(owners) == sorted(
        f"owner-{i * 100 + k}" for i in range(writers) for k in range(each)
    )
    for i in range(writers):  # each writer's records appear in the order it wrote them
        mine = [o for o in owners if o.startswith(f"owner-{i * 100}")]
        assert mine == sorted(mine, key=lambda o: -int(o.split("-")[1]))


def test_oversize_error_text_is_truncated_to_fit_one_property(
    make: Callable[..., AzureTableCheckpointStore], clock: FakeClock
) -> None:
    store = make()
    huge = slice_record("job", 1, clock()).model_copy(update={"error": "é" * 100_000})
    store.record_slice("job", huge)
    [kept] = store.history("job")
    assert kept.error is not None and kept.error.endswith(
        "(truncated to fit Azure Table Storage's 64 KiB property limit)"
    )
    assert len(kept.model_dump_json().encode("utf-16-le")) <= PROPERTY_LIMIT
    assert kept.model_copy(update={"error": huge.error}) == huge


# --- missing table --------------------------------------------------------------------------


def test_reads_of_a_missing_table_create_nothing(
    make: Callable[..., AzureTableCheckpointStore], service: TableServiceClient, table: str
) -> None:
    store = make()
    assert store.load("job") is None
    assert store.history("job") == []
    assert store.release(Lease(job_id="job", owner="a", token=1, expires_at=FakeClock()())) is False
    assert table not in [t.name for t in service.list_tables()]


def test_missing_table_with_create_table_false_is_a_config_error(
    make: Callable[..., AzureTableCheckpointStore],
    service: TableServiceClient,
    table: str,
    clock: FakeClock,
) -> None:
    store = make(create_table=False)
    assert store.load("job") is None
    with pytest.raises(ConfigError, match="does not exist") as info:
        store.acquire("job", "a", TTL)
    assert "create_table" in str(info.value)
    with pytest.raises(ConfigError):
        store.record_slice("job", slice_record("job", 1, clock()))
    assert table not in [t.name for t in service.list_tables()]

    service.create_table(table)  # made by the infrastructure instead
    assert store.acquire("job", "a", TTL).token == 1


# --- corruption -----------------------------------------------------------------------------


def _committed(store: AzureTableCheckpointStore, job_id: str = "job") -> None:
    lease = store.acquire(job_id, "a", TTL)
    store.commit(lease, advanced(None, job_id, 100))


@pytest.mark.parametrize(
    ("changes", "detail", "operation"),
    [
        ({"Format": 2}, "format 2", "load"),
        ({"Token": "abc"}, "Token or Version", "acquire"),
        ({"Version": -1}, "Token or Version", "load"),
        ({"ExpiresAt": "yesterday"}, "ExpiresAt", "acquire"),
        ({"Owner": 7}, "Owner is not text", "acquire"),
        ({"Checkpoint": "garbage{"}, "not JSON", "load"),
        ({"Checkpoint": '"a string"'}, "not a JSON object", "load"),
        ({"Checkpoint": '{"job_id": "someone-else"}'}, "another job", "load"),
        ({"Checkpoint": '{"job_id": "job", "position": {"commit": "x"}}'}, "position", "load"),
    ],
)
def test_damaged_state_entity_is_corrupt(
    make: Callable[..., AzureTableCheckpointStore],
    service: TableServiceClient,
    table: str,
    changes: dict[str, Any],
    detail: str,
    operation: str,
) -> None:
    store = make()
    _committed(store)
    service.get_table_client(table).update_entity(
        {"PartitionKey": "job", "RowKey": STATE_ROW, **changes}, mode=UpdateMode.MERGE
    )
    with pytest.raises(CorruptCheckpointError, match=detail) as info:
        if operation == "load":
            store.load("job")
        else:
            store.acquire("job", "b", TTL)
    assert (info.value.job_id, info.value.table) == ("job", table)


def test_foreign_entity_is_corrupt_and_not_overwritten(
    make: Callable[..., AzureTableCheckpointStore], service: TableServiceClient, table: str
) -> None:
    store = make()
    store.load("job")
    service.create_table(table)
    raw = service.get_table_client(table)
    raw.create_entity({"PartitionKey": "job", "RowKey": STATE_ROW, "Data": "someone else's"})
    with pytest.raises(CorruptCheckpointError, match="not an esdb-relay record"):
        store.load("job")
    with pytest.raises(CorruptCheckpointError):
        store.acquire("job", "a", TTL)
    assert raw.get_entity("job", STATE_ROW)["Data"] == "someone else's"


def test_damaged_history_is_corrupt(
    make: Callable[..., AzureTableCheckpointStore],
    service: TableServiceClient,
    table: str,
    clock: FakeClock,
) -> None:
    store = make()
    store.record_slice("job", slice_record("job", 1, clock()))
    raw = service.get_table_client(table)
    key = "slice-9999999999999999998"
    raw.update_entity({"PartitionKey": "job", "RowKey": key, "Record": "{}"}, mode=UpdateMode.MERGE)
    with pytest.raises(CorruptCheckpointError, match=key):
        store.history("job")
    raw.update_entity(
        {"PartitionKey": "job", "RowKey": HISTORY_ROW, "Last": "x"}, mode=UpdateMode.MERGE
    )
    with pytest.raises(CorruptCheckpointError, match="slice counter"):
        store.record_slice("job", slice_record("job", 2, clock()))


# --- unavailable store ----------------------------------------------------------------------


def _every_operation(
    store: AzureTableCheckpointStore, clock: FakeClock
) -> list[Callable[[], object]]:
    lease = Lease(job_id="job", owner="a", token=1, expires_at=clock())
    return [
        lambda: store.load("job"),
        lambda: store.acquire("job", "a", TTL),
        lambda: store.renew(lease, TTL),
        lambda: store.commit(lease, advanced(None, "job", 1)),
        lambda: store.release(lease),
        lambda: store.record_slice("job", slice_record("job", 1, clock())),
        lambda: store.history("job"),
    ]


def test_unreachable_store_fails_fast_with_a_retryable_error(
    make: Callable[..., AzureTableCheckpointStore], clock: FakeClock
) -> None:
    port = closed_port()
    store = make(connection_string=connection_string("table", port))  # default retries/timeouts
    for operation in _every_operation(store, clock):
        started = time.monotonic()
        with pytest.raises(StoreUnavailableError) as info:
            operation()
        assert time.monotonic() - started < 5
        assert isinstance(info.value, TransientError)
        text = str(info.value)
        assert store.table in text and f"127.0.0.1:{port}" in text
        assert "retry_total" in text  # says how to tune the fail-fast limits
        assert ACCOUNT_KEY not in text
        assert info.value.__cause__ is None and info.value.__suppress_context__


class _Busy(http.server.BaseHTTPRequestHandler):
    def _busy(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = b'{"odata.error":{"code":"ServerBusy","message":{"value":"busy"}}}'
        self.send_response(503)
        self.send_header("x-ms-error-code", "ServerBusy")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_PUT = do_POST = do_DELETE = do_PATCH = do_MERGE = _busy

    def log_message(self, *args: object) -> None:
        pass


def test_server_errors_are_retryable(
    make: Callable[..., AzureTableCheckpointStore], clock: FakeClock
) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Busy)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        store = make(connection_string=connection_string("table", port), **FAST)
        for operation in _every_operation(store, clock):
            with pytest.raises(StoreUnavailableError, match="503 ServerBusy"):
                operation()
    finally:
        server.shutdown()
        server.server_close()


def test_a_server_that_never_answers_times_out(
    make: Callable[..., AzureTableCheckpointStore],
) -> None:
    with socket.socket() as silent:  # the kernel accepts connections; nobody ever answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        port = silent.getsockname()[1]
        store = make(
            connection_string=connection_string("table", port),
            retry_total=0,
            read_timeout=0.5,
        )
        started = time.monotonic()
        with pytest.raises(StoreUnavailableError, match="cannot be reached"):
            store.acquire("job", "a", TTL)
        assert time.monotonic() - started < 3


# --- secrets and configuration --------------------------------------------------------------


def test_the_account_key_never_shows(
    make: Callable[..., AzureTableCheckpointStore], azurite_table: str
) -> None:
    store = make()
    assert ACCOUNT_KEY not in repr(store) and ACCOUNT_KEY not in str(store)
    assert "AccountKey" not in repr(store)

    wrong_key = azurite_table.replace(ACCOUNT_KEY, "d3Jvbmcta2V5LW5vdC10aGUtb25l" * 3 + "AA==")
    denied = make(connection_string=wrong_key, **FAST)
    with pytest.raises(ConfigError) as info:
        denied.acquire("job", "a", TTL)
    assert not isinstance(info.value, TransientError)
    assert "d3Jvbmcta2V5" not in str(info.value) and "refused the credentials" in str(info.value)

    sas = (
        f"TableEndpoint=http://127.0.0.1:{closed_port()}/devstoreaccount1;"
        "SharedAccessSignature=sv=2019-02-02&ss=t&sig=TOPSECRETSIGNATURE"
    )
    with_sas = make(connection_string=sas, **FAST)
    assert "TOPSECRET" not in repr(with_sas)
    with pytest.raises(StoreUnavailableError) as unavailable:
        with_sas.load("job")
    assert "TOPSECRET" not in str(unavailable.value)

    with pytest.raises(ConfigError) as malformed:
        make(connection_string="DefaultEndpointsProtocol=http;AccountKey=TOPSECRETKEY")
    assert "TOPSECRET" not in str(malformed.value)


def test_open_store_after_register(
    azurite_table: str, table: str, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    register()
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite_table)
    store = open_store(f"azuretable://{table}", now=clock)
    try:
        assert isinstance(store, AzureTableCheckpointStore)
        assert store.table == table
        lease = store.acquire("job", "a", TTL)
        stored = store.commit(lease, advanced(None, "job", 1))
    finally:
        store.close()

    monkeypatch.delenv("AZURE_STORAGE_CONNECTION_STRING")
    monkeypatch.setenv("RELAY_STORAGE", azurite_table)
    other = open_store(
        f"azuretable://{table}/?connection_setting=RELAY_STORAGE&retry_total=1&read_timeout=4",
        now=clock,
    )
    try:
        assert other.load("job") == stored
        assert "RELAY_STORAGE" in repr(other)
    finally:
        other.close()

    # the factory takes options from the caller too (the Azure Function passes its own)
    third = open_store(f"azuretable://{table}", now=clock, connection_string=azurite_table)
    try:
        assert third.load("job") == stored
    finally:
        third.close()


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("azuretable://", "table name"),
        ("azuretable://ab", "table name"),
        ("azuretable://my-table", "table name"),
        ("azuretable://tables", "table name"),
        ("azuretable://relay/job-1", "no path"),
        ("azuretable://relay?AccountKey=TOPSECRET", "unknown azuretable store option"),
        ("azuretable://relay?account_url=https://a.table.core.windows.net/?sig=TOPSECRET", "SAS"),
        ("azuretable://relay?account_url=ftp://x", "account_url"),
        ("azuretable://relay?retry_total=lots", "retry_total"),
        ("azuretable://relay?connection_timeout=0", "connection_timeout"),
        ("azuretable://relay?create_table=maybe", "create_table"),
        ("azuretable://relay?connection_setting=a%20b", "connection_setting"),
    ],
)
def test_bad_urls_are_config_errors(url: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem) as info:
        parse_azuretable_url(url)
    assert "TOPSECRET" not in str(info.value)
    assert info.value.field == "checkpoint_store"


def test_url_options_are_parsed() -> None:
    assert parse_azuretable_url("azuretable://Relay") == ("Relay", {})
    assert parse_azuretable_url(
        "azuretable://relay1?account_url=https://acct.table.core.windows.net"
        "&retry_total=1&connection_timeout=2.5&read_timeout=9&create_table=false"
    ) == (
        "relay1",
        {
            "account_url": "https://acct.table.core.windows.net",
            "retry_total": 1,
            "connection_timeout": 2.5,
            "read_timeout": 9.0,
            "create_table": False,
        },
    )


def test_connection_settings_are_required(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="no connection settings") as info:
        AzureTableCheckpointStore("relay", environ={})
    assert "AZURE_STORAGE_CONNECTION_STRING" in str(info.value)

    with pytest.raises(ConfigError, match="app setting RELAY_STORAGE is not set"):
        AzureTableCheckpointStore("relay", connection_setting="RELAY_STORAGE", environ={})

    monkeypatch.setitem(sys.modules, "azure.identity", None)  # as if azure-identity were absent
    with pytest.raises(ConfigError, match="azure-identity"):
        azure_store.AzureTableCheckpointStore.from_url(
            "azuretable://relay?account_url=https://acct.table.core.windows.net"
        )


def test_account_url_uses_the_given_credential() -> None:
    class Token:  # a TokenCredential stand-in; never asked for a token here
        def get_token(self, *scopes: str, **kwargs: object) -> object:
            raise AssertionError("not used")

    store = AzureTableCheckpointStore(
        "relay", account_url="https://acct.table.core.windows.net", credential=Token(), environ={}
    )
    try:
        assert store.endpoint == "https://acct.table.core.windows.net"
        assert "Entra ID" in repr(store)
    finally:
        store.close()


def test_account_url_without_credential_uses_default_azure_credential(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    made: list[Any] = []

    class FakeDefaultAzureCredential:
        def __init__(self) -> None:
            self.closed = False
            made.append(self)

        def get_token(self, *scopes: str, **kwargs: object) -> object:
            raise AssertionError("not used")

        def close(self) -> None:
            self.closed = True

    fake = types.ModuleType("azure.identity")
    fake.DefaultAzureCredential = FakeDefaultAzureCredential  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "azure.identity", fake)
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", "UseDevelopmentStorage=true")
    store = azure_store.AzureTableCheckpointStore.from_url(
        "azuretable://relay?account_url=https://acct.table.core.windows.net"
    )
    assert "Entra ID at https://acct.table.core.windows.net" in repr(store)  # URL beats env
    assert len(made) == 1 and not made[0].closed
    store.close()
    assert made[0].closed


def test_job_ids_must_be_valid_table_keys(make: Callable[..., AzureTableCheckpointStore]) -> None:
    store = make()
    for bad in ("a/b", "a#b", "a?b", "a\\b", "tab\tbed", "x" * 600):
        with pytest.raises(ValueError):
            store.load(bad)


# --- the queue service, for the Azure handler -------------------------------------------------


def test_azurite_queue_fixture_serves_storage_queues(azurite_queue: str) -> None:
    from azure.storage.queue import QueueClient

    with QueueClient.from_connection_string(azurite_queue, "slices", retry_total=0) as queue:
        queue.create_queue()
        queue.send_message('{"job": "orders"}')
        [message] = list(queue.receive_messages(max_messages=5))
        assert message.content == '{"job": "orders"}'
