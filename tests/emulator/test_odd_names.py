"""Streams with non-ASCII names: every call answers within its deadline (issue 17, finding 7).

The wedged `ünï.strm-…` stream of the kill soak was a tombstoned stream with a non-ASCII name:
every error the real server reports with a `stream-name` trailer (StreamDeleted,
WrongExpectedVersion, the persistent subscription errors) left the emulator's grpc-python
unable to send the status, and the call hung until the client's deadline. A real node cannot
send that trailer either: Kestrel refuses it, and the client sees HTTP 500 (UNKNOWN "Received
http2 header with status: 500"), or a reset stream once messages were sent (INTERNAL).
Grpc.AspNetCore HttpResponseExtensions.ConsolidateTrailers; esdb_emulator/headers.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import grpc
import pytest
from esdbclient import EventStoreDBClient, NewEvent, StreamState
from esdbclient.exceptions import (
    EventStoreDBClientException,
    GrpcDeadlineExceeded,
    InternalError,
    StreamIsDeleted,
    UnknownError,
)

from esdb_emulator.headers import HTTP_500, RST_STREAM

# Before the fix a wedged call could also hang the test's teardown: fail instead.
pytestmark = pytest.mark.timeout(60)
TIMEOUT = 5.0  # the client's deadline: a call that reaches it hung
ODD_TYPES = ["ÉvénementNoté", "ü" * 200, "Ω-" + "ñ" * 198, "PlainOdd"]


def odd_events(count: int = 26) -> list[NewEvent]:
    return [NewEvent(type=ODD_TYPES[i % 4], data=b"{}") for i in range(count)]


def answered(call: Callable[[], object]) -> tuple[BaseException | None, object]:
    """Run a call; fail the test if it hung until the deadline."""
    started = time.monotonic()
    try:
        result: object = call()
        error: BaseException | None = None
    except GrpcDeadlineExceeded:
        pytest.fail(f"hung until the client's {TIMEOUT} s deadline")
    except EventStoreDBClientException as e:
        result, error = None, e
    assert time.monotonic() - started < TIMEOUT
    return error, result


def is_http_500(error: BaseException | None) -> bool:
    """UNKNOWN "Received http2 header with status: 500", as esdbclient raises it."""
    if not isinstance(error, UnknownError):
        return False
    call = error.args[0]  # the grpc.RpcError
    return (call.code(), call.details()) == (grpc.StatusCode.UNKNOWN, HTTP_500)


def test_a_non_ascii_stream_reads_and_writes_normally(client: EventStoreDBClient) -> None:
    name = "ünï.strm-1a2b"
    events = odd_events()
    client.append_to_stream(name, current_version=StreamState.NO_STREAM, events=events)
    got = client.get_stream(name, timeout=TIMEOUT)
    assert [e.type for e in got] == [e.type for e in events]
    assert [e.stream_name for e in got] == [name] * 26
    assert len(client.get_stream(name, backwards=True, limit=3, timeout=TIMEOUT)) == 3
    assert client.get_stream_metadata(name, timeout=TIMEOUT) == ({}, StreamState.NO_STREAM)


def test_tombstoned_non_ascii_stream_answers_every_call(client: EventStoreDBClient) -> None:
    name = "ünï.strm-c0de"
    client.append_to_stream(name, current_version=StreamState.NO_STREAM, events=odd_events())
    client.tombstone_stream(name, current_version=25)
    calls: dict[str, Callable[[], object]] = {
        "read forwards": lambda: client.get_stream(name, timeout=TIMEOUT),
        "read backwards": lambda: client.get_stream(name, backwards=True, timeout=TIMEOUT),
        "read metadata": lambda: client.get_stream_metadata(name, timeout=TIMEOUT),
        "append": lambda: client.append_to_stream(
            name, current_version=StreamState.ANY, events=NewEvent("x", b"{}"), timeout=TIMEOUT
        ),
        "delete": lambda: client.delete_stream(name, current_version=3, timeout=TIMEOUT),
    }
    for what, call in calls.items():
        error, _ = answered(call)
        assert is_http_500(error), (what, error)
    # BatchAppend reports in the response body (no trailer): the usual StreamIsDeleted.
    with pytest.raises(StreamIsDeleted):
        client.append_to_stream(
            name, current_version=StreamState.ANY, events=odd_events(2), timeout=TIMEOUT
        )
    # An ASCII name still gets the usual answer.
    client.append_to_stream("plain-1", current_version=StreamState.NO_STREAM, events=odd_events(1))
    client.tombstone_stream("plain-1", current_version=0)
    with pytest.raises(StreamIsDeleted):
        client.get_stream("plain-1", timeout=TIMEOUT)


def test_subscription_to_a_tombstoned_non_ascii_stream_ends(client: EventStoreDBClient) -> None:
    # The confirmation is sent before the read fails: Kestrel resets the stream.
    name = "ünï.strm-beef"
    client.append_to_stream(name, current_version=StreamState.NO_STREAM, events=odd_events(3))
    client.tombstone_stream(name, current_version=2)

    def consume() -> object:
        with client.subscribe_to_stream(name, timeout=TIMEOUT) as subscription:
            return list(subscription)

    error, _ = answered(consume)
    assert isinstance(error, InternalError)  # esdbclient keeps only the details of INTERNAL
    assert str(error) == RST_STREAM


def test_persistent_subscription_errors_on_non_ascii_names(client: EventStoreDBClient) -> None:
    name = "ünï.strm-f00d"
    error, _ = answered(lambda: client.get_subscription_info("grüppe", name, timeout=TIMEOUT))
    assert is_http_500(error), error
