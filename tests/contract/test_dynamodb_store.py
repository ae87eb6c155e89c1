"""The checkpoint contract and DynamoDB specifics, against a real moto server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.stub import Stubber

from core.checkpoint import HISTORY_LIMIT, CheckpointStore, Lease, open_store
from core.errors import (
    ConfigError,
    CorruptCheckpointError,
    LeaseLostError,
    PermanentError,
    StoreUnavailableError,
    TransientError,
)
from handlers.aws import checkpoint_store as dynamodb
from handlers.aws.checkpoint_store import DynamoDbCheckpointStore, create_table, register
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
from tests.services import moto

moto_endpoint = moto.moto_endpoint  # the session-scoped moto server fixture


@pytest.fixture(scope="module")
def raw(moto_endpoint: str) -> Any:
    """A plain boto3 DynamoDB client on the moto server, for setup and tampering."""
    client = moto.aws_client(moto_endpoint, "dynamodb")
    yield client
    client.close()


@pytest.fixture(scope="module")
def table(raw: Any) -> str:
    """One table for the module: every test uses its own job ids."""
    name = f"esdb-relay-{uuid.uuid4().hex[:8]}"
    create_table(raw, name)
    return name


def make_store(endpoint: str, table: str, clock: FakeClock, **options: Any) -> Any:
    settings: dict[str, Any] = {
        "session": moto.aws_session(),
        "endpoint_url": endpoint,
        "max_attempts": 2,
        "connect_timeout": 2,
        "read_timeout": 5,
    }
    return DynamoDbCheckpointStore(table, now=clock, **{**settings, **options})


class TestDynamoDbStore(CheckpointStoreContract):
    @pytest.fixture
    def store_factory(
        self, moto_endpoint: str, table: str, clock: FakeClock
    ) -> Iterator[Callable[[], CheckpointStore]]:
        opened: list[DynamoDbCheckpointStore] = []

        def make() -> CheckpointStore:
            opened.append(make_store(moto_endpoint, table, clock))
            return opened[-1]

        yield make
        for s in opened:
            s.close()

    @pytest.fixture
    def store(self, store_factory: Callable[[], CheckpointStore]) -> CheckpointStore:
        return store_factory()

    @pytest.fixture
    def corrupt_record(self, raw: Any, table: str) -> Callable[[str], None]:
        def corrupt(job_id: str) -> None:
            raw.update_item(
                TableName=table,
                Key=state_key(job_id),
                UpdateExpression="SET #c = :garbage",
                ExpressionAttributeNames={"#c": "checkpoint"},
                ExpressionAttributeValues={":garbage": {"S": "{not json"}},
            )

        return corrupt


# --- DynamoDB specifics ---------------------------------------------------------------------


def state_key(job_id: str) -> dict[str, Any]:
    return {"pk": {"S": f"job#{job_id}"}, "sk": {"S": "state"}}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def job_id() -> str:
    return f"job-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def store(moto_endpoint: str, table: str, clock: FakeClock) -> Iterator[DynamoDbCheckpointStore]:
    with make_store(moto_endpoint, table, clock) as s:
        yield s


def get_state(raw: Any, table: str, job_id: str) -> dict[str, Any] | None:
    return raw.get_item(TableName=table, Key=state_key(job_id), ConsistentRead=True).get("Item")


def slice_rows(raw: Any, table: str, job_id: str) -> list[dict[str, Any]]:
    return raw.query(
        TableName=table,
        KeyConditionExpression="pk = :pk AND begins_with(sk, :p)",
        ExpressionAttributeValues={":pk": {"S": f"job#{job_id}"}, ":p": {"S": "slice#"}},
        ConsistentRead=True,
    )["Items"]


def test_table_design(raw: Any, table: str) -> None:
    described = raw.describe_table(TableName=table)["Table"]
    assert {k["AttributeName"]: k["KeyType"] for k in described["KeySchema"]} == {
        "pk": "HASH",
        "sk": "RANGE",
    }
    assert described["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    ttl = raw.describe_time_to_live(TableName=table)["TimeToLiveDescription"]
    assert (ttl["TimeToLiveStatus"], ttl["AttributeName"]) == ("ENABLED", "ttl")
    create_table(raw, table)  # idempotent: an existing table is kept


def test_job_record_layout(
    store: DynamoDbCheckpointStore, raw: Any, table: str, clock: FakeClock, job_id: str
) -> None:
    lease = store.acquire(job_id, "a", TTL)
    stored = store.commit(lease, advanced(None, job_id, 100))
    item = get_state(raw, table, job_id)
    assert item is not None
    assert item["format"] == {"N": "1"}
    assert item["job_id"] == {"S": job_id}
    assert item["owner"] == {"S": "a"}
    assert item["token"] == {"N": str(lease.token)}
    assert item["version"] == {"N": "1"}
    expires = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(
        microseconds=int(item["lease_expires_us"]["N"])
    )
    assert expires == lease.expires_at == clock() + timedelta(seconds=TTL)
    assert json.loads(item["checkpoint"]["S"])["position"] == {"commit": 100, "prepare": 100}
    assert "version" not in json.loads(item["checkpoint"]["S"])  # the attribute is the truth
    assert store.load(job_id) == stored
    store.release(lease)
    released = get_state(raw, table, job_id)
    assert released is not None
    assert "owner" not in released and "lease_expires_us" not in released
    assert released["token"] == {"N": str(lease.token)}  # tokens keep counting up


def test_items_of_the_previous_version_load_and_go_on(
    store: DynamoDbCheckpointStore, raw: Any, table: str, clock: FakeClock, job_id: str
) -> None:
    pk, epoch = {"S": f"job#{job_id}"}, datetime(1970, 1, 1, tzinfo=UTC)
    expires = clock() + timedelta(seconds=PREVIOUS.ttl)
    common = {"pk": pk, "format": {"N": "1"}, "job_id": {"S": job_id}}
    for item in (
        {
            "sk": {"S": "state"},
            "owner": {"S": PREVIOUS.owner},
            "token": {"N": str(PREVIOUS.token)},
            "lease_expires_us": {"N": str((expires - epoch) // timedelta(microseconds=1))},
            "version": {"N": str(PREVIOUS.version)},
            "checkpoint": {
                "S": PREVIOUS.checkpoint(job_id).model_dump_json(exclude=OLD_CHECKPOINT)
            },
        },
        {"sk": {"S": "history"}, "seq": {"N": "1"}},
        {
            "sk": {"S": f"slice#{1:020d}"},
            "record": {"S": PREVIOUS.slice(job_id).model_dump_json(exclude=OLD_SLICE)},
            "ttl": {"N": str(int(time.time()) + 86400)},
        },
    ):
        raw.put_item(TableName=table, Item={**common, **item})
    PREVIOUS.carry_on(store, clock, job_id)
    assert [r["sk"]["S"] for r in slice_rows(raw, table, job_id)] == [
        f"slice#{1:020d}",
        f"slice#{2:020d}",
    ]


def test_history_rows_pruned_with_ttl(
    moto_endpoint: str, raw: Any, table: str, clock: FakeClock, job_id: str
) -> None:
    with make_store(moto_endpoint, table, clock, history_limit=5) as store:
        for n in range(12):
            store.record_slice(job_id, slice_record(job_id, n, clock()))
        assert [r.owner for r in store.history(job_id, limit=50)] == [
            f"owner-{n}" for n in range(11, 6, -1)
        ]
    rows = slice_rows(raw, table, job_id)
    assert [r["sk"]["S"] for r in rows] == [f"slice#{n:020d}" for n in range(8, 13)]
    now = time.time()
    for row in rows:  # TTL runs on real time, not the job's clock
        assert now + 29 * 86400 < int(row["ttl"]["N"]) <= now + 30 * 86400 + 5


def test_history_limit_zero_and_never_above_limit(
    store: DynamoDbCheckpointStore, raw: Any, table: str, clock: FakeClock, job_id: str
) -> None:
    store.record_slice(job_id, slice_record(job_id, 1, clock()))
    assert store.history(job_id, limit=0) == []
    # Rows a crash left behind (put, not yet pruned) never make history() exceed the limit.
    for n in range(HISTORY_LIMIT + 3):
        raw.put_item(
            TableName=table,
            Item={
                "pk": {"S": f"job#{job_id}"},
                "sk": {"S": f"slice#{1000 + n:020d}"},
                "format": {"N": "1"},
                "record": {"S": slice_record(job_id, n, clock()).model_dump_json()},
                "ttl": {"N": "0"},
            },
        )
    everything = store.history(job_id, limit=10 * HISTORY_LIMIT)
    assert len(everything) == HISTORY_LIMIT
    assert everything[0].owner == f"owner-{HISTORY_LIMIT + 2}"


def test_concurrent_acquire_rounds_exactly_one_wins(
    moto_endpoint: str, table: str, clock: FakeClock
) -> None:
    """8 threads, each with its own store handle (own HTTP connection), several rounds."""
    racers = 8
    stores = [make_store(moto_endpoint, table, clock) for _ in range(racers)]
    try:
        for _ in range(5):
            job = f"race-{uuid.uuid4().hex[:12]}"
            barrier = threading.Barrier(racers)
            results: list[Lease | BaseException] = []

            def race(
                i: int,
                job: str = job,
                barrier: threading.Barrier = barrier,
                results: list[Lease | BaseException] = results,
            ) -> None:
                barrier.wait()
                try:
                    results.append(stores[i].acquire(job, f"owner-{i}", TTL))
                except BaseException as exc:  # checked below
                    results.append(exc)

            threads = [threading.Thread(target=race, args=(i,)) for i in range(racers)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(30)
            won = [r for r in results if isinstance(r, Lease)]
            lost = [r for r in results if not isinstance(r, Lease)]
            assert len(won) == 1, results
            assert len(lost) == racers - 1 and all(isinstance(e, LeaseLostError) for e in lost)
            assert all(e.holder == won[0].owner for e in lost if isinstance(e, LeaseLostError))
            assert won[0].token == 1
    finally:
        for s in stores:
            s.close()


def test_concurrent_commits_one_version_wins(
    moto_endpoint: str, table: str, clock: FakeClock, job_id: str
) -> None:
    """Handles sharing one lease (a duplicated invocation) race to commit the same version."""
    stores = [make_store(moto_endpoint, table, clock) for _ in range(6)]
    try:
        lease = stores[0].acquire(job_id, "a", TTL)
        barrier = threading.Barrier(len(stores))
        results: list[object] = []

        def commit(i: int) -> None:
            barrier.wait()
            try:
                results.append(stores[i].commit(lease, advanced(None, job_id, 10 + i)))
            except BaseException as exc:  # checked below
                results.append(exc)

        threads = [threading.Thread(target=commit, args=(i,)) for i in range(len(stores))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        won = [r for r in results if not isinstance(r, BaseException)]
        assert len(won) == 1, results
        assert all(isinstance(r, LeaseLostError) for r in results if r not in won)
        assert "version moved" in str(next(r for r in results if r not in won))
        assert stores[0].load(job_id) == won[0]
    finally:
        for s in stores:
            s.close()


# --- errors ---------------------------------------------------------------------------------


def test_store_unavailable_is_quick_and_retryable(clock: FakeClock) -> None:
    endpoint = f"http://127.0.0.1:{moto.closed_port()}"
    with DynamoDbCheckpointStore(
        "esdb-relay-gone",
        now=clock,
        session=moto.aws_session(),
        endpoint_url=endpoint,
        max_attempts=1,
        connect_timeout=0.5,
        read_timeout=0.5,
    ) as store:
        for call in (
            lambda: store.load("job"),
            lambda: store.acquire("job", "a", TTL),
            lambda: store.history("job"),
            lambda: store.record_slice("job", slice_record("job", 1, clock())),
        ):
            started = time.monotonic()
            with pytest.raises(StoreUnavailableError) as info:
                call()
            assert time.monotonic() - started < 3
            assert isinstance(info.value, TransientError)
            text = str(info.value)
            assert "esdb-relay-gone" in text and endpoint in text
            assert "retried" in text


def test_missing_table_is_a_clear_config_error(
    moto_endpoint: str, clock: FakeClock, job_id: str
) -> None:
    with make_store(moto_endpoint, "no-such-table", clock) as store:
        for call in (lambda: store.load(job_id), lambda: store.acquire(job_id, "a", TTL)):
            with pytest.raises(ConfigError) as info:
                call()
            text = str(info.value)
            assert "'no-such-table'" in text and "does not exist" in text
            assert "create-table --table-name no-such-table" in text
            assert "docs/stores/dynamodb.md" in text
            assert info.value.field == "checkpoint_store"


def test_credentials_never_appear_in_errors(clock: FakeClock) -> None:
    import boto3

    session = boto3.session.Session(
        aws_access_key_id="AKIAEXAMPLEKEYID1234",
        aws_secret_access_key="very-secret-access-key-value",
        aws_session_token="very-secret-session-token",
        region_name=moto.REGION,
    )
    endpoint = f"http://user:password@127.0.0.1:{moto.closed_port()}/?x=1"
    with (
        DynamoDbCheckpointStore(
            "esdb-relay-gone",
            now=clock,
            session=session,
            endpoint_url=endpoint,
            max_attempts=1,
            connect_timeout=0.5,
        ) as store,
        pytest.raises(StoreUnavailableError) as info,
    ):
        store.load("job")
    text = f"{info.value} {info.value!r} {info.value.__dict__}"
    for secret in ("AKIAEXAMPLEKEYID1234", "very-secret", "password"):
        assert secret not in text


def test_no_credentials_is_a_config_error(
    moto_endpoint: str, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    import boto3

    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with (
        DynamoDbCheckpointStore(
            "t-no-creds",
            now=clock,
            session=boto3.session.Session(),
            region="us-east-1",
            endpoint_url=moto_endpoint,
            max_attempts=1,
        ) as store,
        pytest.raises(ConfigError, match="no AWS credentials"),
    ):
        store.load("job")
    with pytest.raises(ConfigError, match="AWS_REGION"):
        DynamoDbCheckpointStore("t-no-region", session=boto3.session.Session())


@pytest.mark.parametrize(
    ("code", "status", "expected"),
    [
        ("ProvisionedThroughputExceededException", 400, StoreUnavailableError),
        ("ThrottlingException", 400, StoreUnavailableError),
        ("RequestLimitExceeded", 400, StoreUnavailableError),
        ("InternalServerError", 500, StoreUnavailableError),
        ("ServiceUnavailable", 503, StoreUnavailableError),
        ("SomethingNew", 502, StoreUnavailableError),
        ("ResourceNotFoundException", 400, ConfigError),
        ("AccessDeniedException", 400, ConfigError),
        ("UnrecognizedClientException", 400, ConfigError),
        ("ValidationException", 400, PermanentError),
    ],
)
def test_service_errors_map_to_the_error_hierarchy(
    code: str, status: int, expected: type[Exception], clock: FakeClock
) -> None:
    # moto cannot throttle, so botocore's own Stubber plays the service's error responses.
    client = moto.aws_client("http://127.0.0.1:9", "dynamodb")
    store = DynamoDbCheckpointStore("esdb-relay-stubbed", now=clock, client=client)
    with Stubber(client) as stub:
        stub.add_client_error(
            "get_item",
            service_error_code=code,
            service_message="details from the service",
            http_status_code=status,
        )
        # acquire reads the job record first (core/stores/base.py: read, decide, write)
        stub.add_client_error("get_item", service_error_code=code, http_status_code=status)
        with pytest.raises(expected) as info:
            store.load("job")
        assert "esdb-relay-stubbed" in str(info.value)
        with pytest.raises(expected):
            store.acquire("job", "a", TTL)
    if code == "AccessDeniedException":
        assert "dynamodb:GetItem" in str(info.value)
    store.close()
    client.close()


# --- corruption -----------------------------------------------------------------------------


def _put_state(raw: Any, table: str, job_id: str, attributes: dict[str, Any]) -> None:
    """Replace the job record with ``attributes`` (None values left out), behind the store."""
    item = {k: v for k, v in attributes.items() if v is not None}
    raw.put_item(TableName=table, Item={**state_key(job_id), **item})


GOOD = {
    "format": {"N": "1"},
    "token": {"N": "3"},
    "version": {"N": "2"},
    "checkpoint": {"S": "CHECKPOINT"},
}


@pytest.mark.parametrize(
    ("changes", "detail"),
    [
        ({"format": None, "data": {"B": b"\x00\x01"}}, "not an esdb-relay record"),
        ({"format": {"N": "2"}}, "format '2'"),
        ({"format": {"S": "1"}}, "format"),
        ({"job_id": {"S": "someone-else"}}, "another job"),
        ({"checkpoint": {"S": "garbage{"}}, "not JSON"),
        ({"checkpoint": {"S": "[1, 2]"}}, "not a JSON object"),
        ({"checkpoint": {"N": "7"}}, "checkpoint is not a string"),
        ({"version": {"S": "two"}}, "version is not a number"),
        ({"version": {"N": "2.5"}}, "version is not an integer"),
        ({"owner": {"S": "a"}, "lease_expires_us": {"S": "soon"}}, "lease_expires_us"),
    ],
)
def test_foreign_or_damaged_records_are_corrupt(
    store: DynamoDbCheckpointStore,
    raw: Any,
    table: str,
    job_id: str,
    changes: dict[str, Any],
    detail: str,
) -> None:
    checkpoint = advanced(None, job_id, 5).model_dump_json(exclude={"version"})
    item = {**GOOD, "checkpoint": {"S": checkpoint}, **changes}
    _put_state(raw, table, job_id, item)
    with pytest.raises(CorruptCheckpointError, match=detail) as info:
        store.load(job_id)
    assert info.value.job_id == job_id and info.value.table == table
    assert table in str(info.value)


@pytest.mark.parametrize(
    "changes",
    [
        {"format": None},
        {"format": {"N": "9"}},
        {"token": {"S": "x"}},
        {"version": None},
        {"owner": {"N": "1"}, "lease_expires_us": {"N": "0"}},
        {"owner": {"S": "a"}, "lease_expires_us": {"S": "later"}},
    ],
)
def test_acquire_refuses_a_foreign_record_and_writes_nothing(
    store: DynamoDbCheckpointStore,
    raw: Any,
    table: str,
    job_id: str,
    changes: dict[str, Any],
) -> None:
    item = {**GOOD, **changes}
    _put_state(raw, table, job_id, item)
    before = get_state(raw, table, job_id)
    with pytest.raises(CorruptCheckpointError):
        store.acquire(job_id, "a", TTL)
    assert get_state(raw, table, job_id) == before


def test_garbage_item_from_raw_put_is_corrupt(
    store: DynamoDbCheckpointStore, raw: Any, table: str, job_id: str
) -> None:
    lease = store.acquire(job_id, "a", TTL)
    store.commit(lease, advanced(None, job_id, 100))
    _put_state(raw, table, job_id, {"blob": {"S": "garbage"}})
    with pytest.raises(CorruptCheckpointError) as info:
        store.load(job_id)
    assert f"{job_id!r}" in str(info.value) and "no format" in str(info.value)
    with pytest.raises(CorruptCheckpointError):
        store.commit(lease, advanced(None, job_id, 200))
    assert store.release(lease) is False
    assert get_state(raw, table, job_id) == {**state_key(job_id), "blob": {"S": "garbage"}}


def test_corrupt_history(
    store: DynamoDbCheckpointStore, raw: Any, table: str, clock: FakeClock, job_id: str
) -> None:
    store.record_slice(job_id, slice_record(job_id, 1, clock()))
    row = slice_rows(raw, table, job_id)[0]
    raw.put_item(TableName=table, Item={**row, "record": {"S": "{}"}})
    with pytest.raises(CorruptCheckpointError, match="not a valid record"):
        store.history(job_id)
    raw.put_item(
        TableName=table,
        Item={**row, "record": {"S": slice_record("other", 1, clock()).model_dump_json()}},
    )
    with pytest.raises(CorruptCheckpointError, match="another job"):
        store.history(job_id)
    raw.put_item(
        TableName=table,
        Item={**state_key(job_id), "sk": {"S": "history"}, "seq": {"S": "x"}},
    )
    with pytest.raises(CorruptCheckpointError, match="history counter"):
        store.record_slice(job_id, slice_record(job_id, 2, clock()))


# --- URL and registry -----------------------------------------------------------------------


def test_open_store_after_register(
    moto_endpoint: str, table: str, clock: FakeClock, job_id: str
) -> None:
    register()
    url = f"dynamodb://{table}?region=eu-west-1&endpoint_url={moto_endpoint}"
    with open_store(url, now=clock, session=moto.aws_session()) as store:
        assert isinstance(store, DynamoDbCheckpointStore)
        assert (store.table, store.region, store.endpoint) == (table, "eu-west-1", moto_endpoint)
    # The URL's region is used: the module's table lives in us-east-1, not in eu-west-1.
    url = f"dynamodb://{table}/?region={moto.REGION}&endpoint_url={moto_endpoint}"
    with open_store(url, now=clock, session=moto.aws_session(), max_attempts=1) as store:
        lease = store.acquire(job_id, "a", TTL)
        assert store.commit(lease, advanced(None, job_id, 1)).version == 1
        assert store.load(job_id).version == 1


def test_url_options_win_over_caller_defaults(moto_endpoint: str, table: str) -> None:
    register()
    url = f"dynamodb://{table}?region=eu-central-1&endpoint_url={moto_endpoint}"
    with open_store(
        url, session=moto.aws_session(), region="us-west-2", endpoint_url="http://127.0.0.1:9"
    ) as store:
        assert (store.region, store.endpoint) == ("eu-central-1", moto_endpoint)


def test_url_region_and_endpoint_from_environment(
    moto_endpoint: str, table: str, clock: FakeClock, monkeypatch: pytest.MonkeyPatch, job_id: str
) -> None:
    register()
    monkeypatch.setenv("AWS_REGION", moto.REGION)  # what Lambda sets; botocore alone ignores it
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", moto_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", moto.FAKE_KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", moto.FAKE_SECRET)
    with open_store(f"dynamodb://{table}", now=clock, max_attempts=1) as store:
        assert (store.region, store.endpoint) == (moto.REGION, moto_endpoint)
        assert store.acquire(job_id, "a", TTL).token == 1


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("dynamodb://", "names no table"),
        ("dynamodb://?region=eu-west-1", "names no table"),
        ("dynamodb://table/job", "path after the table"),
        ("dynamodb://ab", "not a valid DynamoDB table name"),
        ("dynamodb://bad%20name", "not a valid DynamoDB table name"),
        ("dynamodb://table?aws_secret_access_key=x", "unknown dynamodb store option"),
        ("dynamodb://table?region=", "is empty"),
    ],
)
def test_bad_urls_are_config_errors(url: str, message: str) -> None:
    register()
    with pytest.raises(ConfigError, match=message) as info:
        open_store(url)
    assert info.value.field == "checkpoint_store"
    assert "aws_secret_access_key=x" not in str(info.value)


def test_core_does_not_import_boto3() -> None:
    code = (
        "import sys, core.checkpoint, core.relay, core.engine, core.stores.sqlite; "
        "assert not [m for m in sys.modules if m.split('.')[0] in ('boto3', 'botocore')]"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=_repo_root())


def _repo_root() -> str:
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_module_names_its_scheme() -> None:
    assert dynamodb.SCHEME == "dynamodb"
    assert dynamodb.parse_dynamodb_url("dynamodb://t-1.x_y?region=eu-west-1") == (
        "t-1.x_y",
        {"region": "eu-west-1"},
    )
