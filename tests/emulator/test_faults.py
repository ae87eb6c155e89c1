"""Fault injection, each switch observed through esdbclient.

esdbclient 1.1.7 retries on its own (esdbclient/client.py): methods decorated with
`@retrygrpc @autoreconnect` (append_to_stream, get_stream, delete_stream, ...) retry once
after reconnecting on ServiceUnavailable (autoreconnect) and once more on any GrpcError
(retrygrpc), so one call can reach the server up to 4 times. `read_all`, `read_stream` and
`subscribe_to_all`'s iteration are not retried. The tests count the server-side
`faults.injected` counter to pin the exact number of attempts.

Status codes follow the real server: RpcExceptions.ServerNotReady (UNAVAILABLE "Server Is Not
Ready"), RpcExceptions.LeaderInfo (NOT_FOUND "Leader info available" + leader-endpoint-host /
-port trailers), RpcExceptions.MaxAppendSizeExceeded / Status.MaximumAppendSizeExceeded.
"""

from __future__ import annotations

import contextlib
import random
import time
import uuid

import pytest
from esdbclient import EventStoreDBClient, NewEvent, StreamState
from esdbclient.exceptions import (
    DeadlineExceeded,
    GrpcDeadlineExceeded,
    GrpcError,
    MaximumAppendSizeExceededError,
    NodeIsNotLeader,
    NotFound,
    ServiceUnavailable,
)

from esdb_emulator import Emulator, FaultConfig
from esdb_emulator.faults import DEFAULT_MAX_APPEND_SIZE


def ev(type_: str = "E", data: bytes = b"{}") -> NewEvent:
    return NewEvent(type=type_, data=data)


def new_stream() -> str:
    return f"order-{uuid.uuid4()}"


def seed_events(client: EventStoreDBClient, count: int) -> str:
    stream = new_stream()
    client.append_to_stream(
        stream, current_version=StreamState.NO_STREAM, events=[ev() for _ in range(count)]
    )
    return stream


# ------------------------------------------------------------------------- latency


def test_latency_is_added_to_each_call(emulator: Emulator, client: EventStoreDBClient) -> None:
    stream = seed_events(client, 1)
    emulator.faults.update(latency_ms=150)
    started = time.monotonic()
    client.get_stream(stream)
    assert time.monotonic() - started >= 0.15  # lower bound only, not a performance check
    started = time.monotonic()
    client.append_to_stream(stream, current_version=0, events=ev())
    assert time.monotonic() - started >= 0.15


def test_latency_with_jitter(emulator: Emulator, client: EventStoreDBClient) -> None:
    emulator.faults.update(latency_ms=50, jitter_ms=50, seed=1)
    for _ in range(3):
        started = time.monotonic()
        list(client.read_all(limit=1))
        assert time.monotonic() - started >= 0.05


def test_latency_limited_to_methods(emulator: Emulator, client: EventStoreDBClient) -> None:
    stream = seed_events(client, 1)
    emulator.faults.update(latency_ms=300, methods={"Append"})
    client.get_stream(stream)
    client.append_to_stream(stream, current_version=StreamState.ANY, events=[ev()])  # BatchAppend
    started = time.monotonic()
    client.append_to_stream(stream, current_version=StreamState.ANY, events=ev())  # Append
    assert time.monotonic() - started >= 0.3


# --------------------------------------------------------------------- unavailable


def test_unavailable_next_on_unretried_read(emulator: Emulator, client: EventStoreDBClient) -> None:
    seed_events(client, 2)
    emulator.faults.update(unavailable_next=1)
    with pytest.raises(ServiceUnavailable, match="Server Is Not Ready"):
        list(client.read_all())
    assert emulator.faults.injected == {"unavailable": 1}
    assert len(list(client.read_all())) == 2  # only the next call


def test_unavailable_next_within_client_retries_succeeds(
    emulator: Emulator, client: EventStoreDBClient
) -> None:
    stream = new_stream()
    emulator.faults.update(unavailable_next=3, methods={"BatchAppend"})
    client.append_to_stream(stream, current_version=StreamState.NO_STREAM, events=[ev()])
    assert emulator.faults.injected == {"unavailable": 3}
    assert len(client.get_stream(stream)) == 1


def test_unavailable_next_beyond_client_retries_fails(
    emulator: Emulator, client: EventStoreDBClient
) -> None:
    stream = new_stream()
    emulator.faults.update(unavailable_next=10, methods={"BatchAppend"})
    with pytest.raises(ServiceUnavailable):
        client.append_to_stream(stream, current_version=StreamState.NO_STREAM, events=[ev()])
    # autoreconnect (2 attempts) inside retrygrpc (2 attempts).
    assert emulator.faults.injected == {"unavailable": 4}
    assert emulator.faults.config.unavailable_next == 6
    emulator.faults.update(unavailable_next=0)
    with pytest.raises(NotFound):
        client.get_stream(stream)


@pytest.mark.parametrize("seed", [3, 7, 11])
def test_unavailable_rate_is_deterministic_with_seed(
    emulator: Emulator, client: EventStoreDBClient, seed: int
) -> None:
    seed_events(client, 1)
    emulator.faults.update(unavailable_rate=0.5, seed=seed, methods={"Read"})
    outcomes = []
    for _ in range(20):
        try:
            list(client.read_all())
        except ServiceUnavailable:
            outcomes.append(True)
        else:
            outcomes.append(False)
    # One draw of random.Random(seed).random() per matching call.
    rng = random.Random(seed)
    expected = [rng.random() < 0.5 for _ in range(20)]
    assert outcomes == expected
    assert emulator.faults.injected.get("unavailable", 0) == sum(expected)
    assert 0 < sum(expected) < 20


def test_unavailable_rate_same_seed_same_outcome() -> None:
    counts = []
    for _ in range(2):
        with Emulator(faults=FaultConfig(unavailable_rate=0.3, seed=42)) as db:
            c = EventStoreDBClient(db.uri)
            try:
                for _ in range(15):
                    with contextlib.suppress(ServiceUnavailable):
                        list(c.read_all(limit=1))
            finally:
                c.close()
            counts.append(db.faults.injected.get("unavailable", 0))
    assert counts[0] == counts[1]


# ------------------------------------------------------------------------ deadline


def test_deadline_next_on_read(emulator: Emulator, client: EventStoreDBClient) -> None:
    seed_events(client, 1)
    emulator.faults.update(deadline_next=1)
    with pytest.raises(GrpcDeadlineExceeded):
        list(client.read_all())
    assert emulator.faults.injected == {"deadline": 1}
    assert len(list(client.read_all())) == 1


def test_deadline_next_on_append(emulator: Emulator, client: EventStoreDBClient) -> None:
    # retrygrpc retries a GrpcError once: one injected deadline is absorbed, two are not.
    stream = new_stream()
    emulator.faults.update(deadline_next=1, methods={"Append"})
    client.append_to_stream(stream, current_version=StreamState.NO_STREAM, events=ev())
    assert emulator.faults.injected == {"deadline": 1}
    emulator.faults.update(deadline_next=2)
    with pytest.raises(DeadlineExceeded):
        client.append_to_stream(stream, current_version=0, events=ev())
    assert emulator.faults.injected == {"deadline": 3}
    assert len(client.get_stream(stream)) == 1


def test_deadline_rate(emulator: Emulator, client: EventStoreDBClient) -> None:
    emulator.faults.update(deadline_rate=1.0, methods={"Read"})
    with pytest.raises(GrpcDeadlineExceeded):
        list(client.read_all())
    emulator.faults.update(deadline_rate=0.0)
    assert list(client.read_all()) == []


# ---------------------------------------------------------------------- not leader


def test_not_leader_next(emulator: Emulator, client: EventStoreDBClient) -> None:
    # With a single-target esdb:// URI esdbclient's autoreconnect re-raises NodeIsNotLeader.
    emulator.faults.update(not_leader_next=1, methods={"BatchAppend"})
    with pytest.raises(NodeIsNotLeader) as info:
        client.append_to_stream(new_stream(), current_version=StreamState.ANY, events=[ev()])
    assert info.value.leader_grpc_target == f"{emulator.host}:{emulator.port}"
    assert emulator.faults.injected == {"not_leader": 1}


def test_not_leader_on_read(emulator: Emulator, client: EventStoreDBClient) -> None:
    emulator.faults.update(not_leader_next=1, methods={"Read"})
    with pytest.raises(NodeIsNotLeader) as info:
        list(client.read_all())
    assert info.value.leader_grpc_target == emulator.target


def test_not_leader_with_discovery_reconnects_to_leader(emulator: Emulator) -> None:
    # esdb+discover://: autoreconnect reconnects to the leader from the trailers and retries.
    c = EventStoreDBClient(emulator.connection_string(discover=True))
    try:
        stream = new_stream()
        emulator.faults.update(not_leader_next=1, methods={"BatchAppend"})
        c.append_to_stream(stream, current_version=StreamState.NO_STREAM, events=[ev()])
        assert emulator.faults.injected == {"not_leader": 1}
        assert len(c.get_stream(stream)) == 1
    finally:
        c.close()


# ------------------------------------------------------------------------- resets


def test_reset_read_after_n_events(emulator: Emulator, client: EventStoreDBClient) -> None:
    seed_events(client, 10)
    emulator.faults.update(reset_read_after=4, reset_reads_next=1)
    received = []
    with pytest.raises(ServiceUnavailable):
        for event in client.read_all():
            received.append(event)
    assert len(received) == 4
    assert emulator.faults.injected == {"reset": 1}
    # Only the next read was reset; a reader can resume after the last event it got.
    rest = list(client.read_all(commit_position=received[-1].commit_position + 1))
    assert len(rest) == 6
    assert emulator.faults.config.reset_read_after is None


def test_reset_every_read(emulator: Emulator, client: EventStoreDBClient) -> None:
    seed_events(client, 5)
    emulator.faults.update(reset_read_after=2)
    for _ in range(3):
        received = []
        with pytest.raises(ServiceUnavailable):
            for event in client.read_all():
                received.append(event)
        assert len(received) == 2
    assert emulator.faults.injected == {"reset": 3}
    # A read shorter than the reset point completes.
    assert len(list(client.read_all(limit=2))) == 2


def test_reset_counts_only_delivered_events(emulator: Emulator, client: EventStoreDBClient) -> None:
    # Records left out by a server-side filter do not count towards reset_read_after.
    client.append_to_stream(
        new_stream(),
        current_version=StreamState.NO_STREAM,
        events=[ev("A"), ev("B"), ev("B"), ev("A"), ev("B"), ev("A")],
    )
    emulator.faults.update(reset_read_after=2, reset_reads_next=1)
    received = []
    with pytest.raises(ServiceUnavailable):
        for event in client.read_all(filter_include=["A"]):
            received.append(event)
    assert [e.type for e in received] == ["A", "A"]


def test_reset_in_subscription(emulator: Emulator, client: EventStoreDBClient) -> None:
    seed_events(client, 5)
    emulator.faults.update(reset_read_after=3, reset_reads_next=1)
    subscription = client.subscribe_to_all(timeout=5)
    received = []
    with pytest.raises(ServiceUnavailable):
        for event in subscription:
            received.append(event)
    assert len(received) == 3


# ---------------------------------------------------------------- max append size


def test_max_append_size_default() -> None:
    # ClusterVNodeOptions.MaxAppendSize default: 1 MiB.
    assert DEFAULT_MAX_APPEND_SIZE == 1_048_576
    assert FaultConfig().max_append_size == DEFAULT_MAX_APPEND_SIZE


def test_max_append_size_batch(emulator: Emulator, client: EventStoreDBClient) -> None:
    # Size as Event.SizeOnDisk: data + metadata + 2 * len(type). "E" + 48 bytes = 50 each.
    emulator.faults.update(max_append_size=100)
    stream = new_stream()
    client.append_to_stream(  # exactly the limit is allowed ("size > max" is refused)
        stream,
        current_version=StreamState.NO_STREAM,
        events=[NewEvent(type="E", data=b"x" * 48), NewEvent(type="E", data=b"x" * 48)],
    )
    with pytest.raises(MaximumAppendSizeExceededError, match="Max size is 100"):
        client.append_to_stream(
            stream,
            current_version=1,
            events=[NewEvent(type="E", data=b"x" * 48), NewEvent(type="E", data=b"x" * 49)],
        )
    assert len(client.get_stream(stream)) == 2


def test_max_append_size_single_append(emulator: Emulator, client: EventStoreDBClient) -> None:
    # Append answers INVALID_ARGUMENT "Maximum Append Size of N Exceeded." which esdbclient
    # 1.1.7 has no mapping for: a GrpcError (after retrygrpc's single retry).
    emulator.faults.update(max_append_size=10)
    stream = new_stream()
    with pytest.raises(GrpcError, match="Maximum Append Size of 10 Exceeded"):
        client.append_to_stream(stream, current_version=StreamState.ANY, events=ev(data=b"x" * 9))
    client.append_to_stream(stream, current_version=StreamState.ANY, events=ev(data=b"x" * 8))
    assert len(client.get_stream(stream)) == 1


# ------------------------------------------------------------- methods / runtime


def test_methods_filter_limits_faults(emulator: Emulator, client: EventStoreDBClient) -> None:
    stream = seed_events(client, 1)
    emulator.faults.update(unavailable_next=1, methods={"Delete"})
    assert len(client.get_stream(stream)) == 1
    assert len(list(client.read_all())) == 1
    client.append_to_stream(stream, current_version=0, events=[ev()])
    client.append_to_stream(stream, current_version=1, events=ev())
    assert emulator.faults.injected == {}
    client.delete_stream(stream, current_version=2)  # absorbed by the client's retry
    assert emulator.faults.injected == {"unavailable": 1}
    # Tombstone is a method of its own.
    emulator.faults.update(unavailable_next=10)
    client.tombstone_stream(stream, current_version=StreamState.ANY)
    assert emulator.faults.injected == {"unavailable": 1}


def test_gossip_method_name(emulator: Emulator, client: EventStoreDBClient) -> None:
    emulator.faults.update(unavailable_next=4, methods={"Gossip.Read"})
    list(client.read_all())
    with pytest.raises(ServiceUnavailable):
        client.read_gossip()  # retried like the other @retrygrpc @autoreconnect methods
    assert emulator.faults.injected == {"unavailable": 4}
    assert len(client.read_gossip()) == 1


def test_faults_set_at_start() -> None:
    config = FaultConfig(unavailable_next=1, methods=frozenset({"Read"}))
    with Emulator(faults=config) as db:
        c = EventStoreDBClient(db.uri)
        try:
            with pytest.raises(ServiceUnavailable):
                list(c.read_all())
            assert list(c.read_all()) == []
        finally:
            c.close()


def test_runtime_update_and_reset(emulator: Emulator, client: EventStoreDBClient) -> None:
    config = emulator.faults.update(unavailable_next=1, latency_ms=5, seed=9)
    assert config.unavailable_next == 1
    assert config.latency_ms == 5
    with pytest.raises(ServiceUnavailable):
        list(client.read_all())
    assert emulator.faults.injected == {"unavailable": 1}
    with pytest.raises(ValueError, match="unknown fault setting"):
        emulator.faults.update(no_such_fault=1)
    emulator.faults.update(unavailable_next=5)
    emulator.faults.reset()
    assert emulator.faults.injected == {}
    assert emulator.faults.config == FaultConfig(seed=9)  # the seed survives a reset
    assert list(client.read_all()) == []
