from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from core import checkpoint
from core.checkpoint import (
    Checkpoint,
    CheckpointStore,
    Lease,
    Position,
    known_schemes,
    open_store,
    register_store,
    store_scheme,
)
from core.config import JobConfig
from core.errors import ConfigError
from core.stores.sqlite import SqliteCheckpointStore, parse_sqlite_url

NOW = datetime(2024, 1, 1, tzinfo=UTC)


def test_position_ordering() -> None:
    a, b, c = (
        Position(commit=1, prepare=5),
        Position(commit=2, prepare=0),
        Position(commit=2, prepare=1),
    )
    assert a < b < c
    assert c > a and b <= b and b >= b
    assert sorted([c, a, b]) == [a, b, c]
    assert max(a, c) == c
    assert Position(commit=2, prepare=1) == c
    assert len({c, Position(commit=2, prepare=1)}) == 1
    with pytest.raises(TypeError):
        _ = a < (1, 5)  # type: ignore[operator]
    with pytest.raises(ValidationError):
        Position(commit=-1, prepare=0)


def test_checkpoint_defaults_and_json_round_trip() -> None:
    cp = Checkpoint(job_id="j", updated_at=NOW)
    assert (cp.position, cp.version, cp.events_written) == (None, 0, 0)
    full = cp.model_copy(
        update={
            "position": Position(commit=9, prepare=8),
        }
    )
    assert Checkpoint.model_validate_json(full.model_dump_json()) == full
    assert "target_streams" not in Checkpoint.model_fields  # memory stays bounded


def test_models_need_aware_times() -> None:
    with pytest.raises(ValidationError):
        Checkpoint(job_id="j", updated_at=datetime(2024, 1, 1))
    with pytest.raises(ValidationError):
        Lease(job_id="j", owner="o", token=1, expires_at=datetime(2024, 1, 1))
    with pytest.raises(ValidationError):
        Lease(job_id="j", owner="o", token=0, expires_at=NOW)


def test_lease_expiry_is_exclusive() -> None:
    lease = Lease(job_id="j", owner="o", token=1, expires_at=NOW)
    assert not lease.expired(NOW - timedelta(microseconds=1))
    assert lease.expired(NOW)


def test_models_are_frozen() -> None:
    with pytest.raises(ValidationError):
        Position(commit=1, prepare=1).commit = 2  # type: ignore[misc]


# --- registry -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "extra", "folder"),
    [
        ("dynamodb://relay-checkpoints", "aws", "handlers/aws"),
        ("firestore://projects/p/databases/(default)", "gcp", "handlers/gcp"),
        ("azuretable://account/table", "azure", "handlers/azure"),
    ],
)
def test_cloud_stores_say_where_they_come_from(
    url: str, extra: str, folder: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As in a process that never imported that cloud's handler (other tests register them).
    from core.stores import registry

    monkeypatch.setattr(registry, "_FACTORIES", {})
    with pytest.raises(ConfigError) as info:
        open_store(url)
    assert f"esdb-relay[{extra}]" in str(info.value)
    assert folder in str(info.value)
    assert info.value.field == "checkpoint_store"


def test_unknown_scheme_lists_valid_ones() -> None:
    with pytest.raises(ConfigError) as info:
        open_store("mongodb://user:secret@host/db")
    text = str(info.value)
    for scheme in ("sqlite://", "dynamodb://", "firestore://", "azuretable://"):
        assert scheme in text
    assert "secret" not in text
    with pytest.raises(ConfigError, match="no scheme"):
        store_scheme("relay.db")


def test_open_sqlite_store() -> None:
    store = open_store("SQLite://:memory:")
    try:
        assert isinstance(store, SqliteCheckpointStore)
        assert isinstance(store, CheckpointStore)
    finally:
        store.close()


def test_register_store(monkeypatch: pytest.MonkeyPatch) -> None:
    from core.stores import registry

    monkeypatch.setattr(registry, "_FACTORIES", dict(registry._FACTORIES))
    opened: list[tuple[str, object]] = []

    def factory(url: str, *, now: checkpoint.Clock) -> CheckpointStore:
        opened.append((url, now))
        return SqliteCheckpointStore(":memory:", now=now)

    def clock() -> datetime:
        return NOW

    register_store("DynamoDB", factory)
    store = open_store("dynamodb://table", now=clock)
    assert opened == [("dynamodb://table", clock)]
    store.close()

    register_store("memdb", factory)
    assert "memdb" in known_schemes()
    config = JobConfig.from_payload(
        {"job_id": "j", "source": "esdb://a", "target": "esdb://b", "checkpoint_store": "memdb://x"}
    )
    assert config.checkpoint_store == "memdb://x"
    with pytest.raises(ValueError):
        register_store("not a scheme", factory)


@pytest.mark.parametrize(
    ("url", "path", "options"),
    [
        ("sqlite:///esdb-relay.db", "esdb-relay.db", {}),
        ("sqlite:///state/relay.db", "state/relay.db", {}),
        ("sqlite:////var/lib/relay.db", "/var/lib/relay.db", {}),
        ("sqlite://:memory:", ":memory:", {}),
        ("sqlite:///:memory:", ":memory:", {}),
        ("sqlite:///relay.db?timeout=2.5", "relay.db", {"timeout": 2.5}),
    ],
)
def test_parse_sqlite_url(url: str, path: str, options: dict[str, float]) -> None:
    assert parse_sqlite_url(url) == (path, options)


@pytest.mark.parametrize(
    "url",
    [
        "sqlite://",
        "sqlite:///",
        "sqlite://host/relay.db",
        "sqlite:///dir/",
        "sqlite:///x.db?timeout=0",
        "sqlite:///x.db?timeout=soon",
        "sqlite:///x.db?mode=ro",
        "dynamodb://table",
    ],
)
def test_bad_sqlite_urls(url: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_sqlite_url(url)
    assert "sqlite" in str(info.value)
