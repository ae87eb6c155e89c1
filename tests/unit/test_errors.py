from __future__ import annotations

import pickle
from datetime import UTC, datetime

import pytest

from core.errors import (
    ConfigError,
    ConflictError,
    CorruptCheckpointError,
    LeaseLostError,
    OversizeEventError,
    PermanentError,
    RelayError,
    StoreUnavailableError,
    TransformError,
    TransientError,
)


def test_hint_is_shown() -> None:
    error = RelayError("it broke", hint="turn it off and on")
    assert str(error) == "it broke — turn it off and on"
    assert RelayError("no hint").hint == ""
    assert str(RelayError("no hint")) == "no hint"
    assert str(RelayError("line one\nline two", hint="fix")) == "line one\nline two\nhint: fix"


def test_hierarchy() -> None:
    assert issubclass(StoreUnavailableError, TransientError)
    for cls in (ConflictError, OversizeEventError, TransformError, CorruptCheckpointError):
        assert issubclass(cls, PermanentError)
    for cls in (ConfigError, TransientError, PermanentError, LeaseLostError):
        assert issubclass(cls, RelayError)
    assert not issubclass(LeaseLostError, TransientError | PermanentError)
    assert StoreUnavailableError("down").hint  # every class has a default hint
    assert TransformError("bad").hint


def test_conflict_names_stream_and_revisions() -> None:
    error = ConflictError("orders-1", expected=4, actual=9)
    assert (error.stream, error.expected, error.actual) == ("orders-1", 4, 9)
    assert "'orders-1'" in str(error) and "4" in str(error) and "9" in str(error)
    assert "verify" in error.hint
    assert "no stream" in str(ConflictError("s", expected=None, actual=3))


def test_oversize_names_stream_revision_size_limit() -> None:
    error = OversizeEventError("blobs-7", 12, 2_000_000, 1_048_576)
    text = str(error)
    for part in ("'blobs-7'", "12", "2000000", "1048576", "dead_letter"):
        assert part in text


def test_lease_lost_and_corrupt_fields() -> None:
    when = datetime(2024, 1, 1, tzinfo=UTC)
    lost = LeaseLostError("job", "taken over", holder="b", expires_at=when)
    assert (lost.job_id, lost.holder, lost.expires_at) == ("job", "b", when)
    assert "'job'" in str(lost) and "taken over" in str(lost)
    corrupt = CorruptCheckpointError("job", "relay_jobs", "not JSON")
    assert "'job'" in str(corrupt) and "'relay_jobs'" in str(corrupt) and "not JSON" in str(corrupt)


def test_config_error_fields() -> None:
    error = ConfigError("bad", field="budget.max_events", problems=["budget.max_events: x — y"])
    assert error.field == "budget.max_events"
    assert error.problems == ["budget.max_events: x — y"]
    assert "ESDB_RELAY_" in error.hint


@pytest.mark.parametrize(
    "error",
    [
        RelayError("m", hint="h"),
        ConfigError("m", field="f", problems=["p"]),
        ConflictError("s", 1, 2),
        OversizeEventError("s", 1, 2, 3),
        LeaseLostError("j", "r", holder="o", expires_at=datetime(2024, 1, 1, tzinfo=UTC)),
        CorruptCheckpointError("j", "t", "d"),
        StoreUnavailableError("m"),
    ],
)
def test_errors_pickle(error: RelayError) -> None:
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert str(copy) == str(error)
    assert copy.__dict__ == error.__dict__
