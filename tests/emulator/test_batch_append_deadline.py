"""BatchAppend honours the deadline in its options (issue 17, finding 4).

Streams.BatchAppend.cs: each write's timeout is Min(GetRequestedTimeout(options), WriteTimeout
(2 s)); zero or less answers Status.Timeout at once, otherwise a timer answers Status.Timeout
(code DeadlineExceeded, message "Timeout", a packed Timeout) unless the write's final request
was read first, and a timed-out write is not written. ServerFeatures advertise the method with
`deadline_duration`. The emulator accepted 20,000 events with a 1 ms deadline after ~1 s.

Driven with esdbclient's protos on a raw channel: esdbclient puts its own call timeout into the
options' deadline and on the call, so the call itself would end first.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import grpc
import pytest
from esdbclient import EventStoreDBClient
from esdbclient.exceptions import NotFound
from esdbclient.protos.Grpc import shared_pb2, streams_pb2, streams_pb2_grpc
from google.protobuf import duration_pb2, empty_pb2, timestamp_pb2

from esdb_emulator import Emulator


def options(stream: str, **deadline: object) -> streams_pb2.BatchAppendReq.Options:
    return streams_pb2.BatchAppendReq.Options(
        stream_identifier=shared_pb2.StreamIdentifier(stream_name=stream.encode()),
        any=empty_pb2.Empty(),
        **deadline,
    )


def events(count: int) -> list[streams_pb2.BatchAppendReq.ProposedMessage]:
    return [
        streams_pb2.BatchAppendReq.ProposedMessage(
            id=shared_pb2.UUID(string=str(uuid.uuid4())),
            metadata={"type": "E", "content-type": "application/json"},
            data=b"{}",
        )
        for _ in range(count)
    ]


def batch_append(
    emulator: Emulator, requests: Iterator[streams_pb2.BatchAppendReq]
) -> list[streams_pb2.BatchAppendResp]:
    with grpc.insecure_channel(emulator.target) as channel:
        stub = streams_pb2_grpc.StreamsStub(channel)
        return list(stub.BatchAppend(requests, timeout=60))


def assert_timeout(response: streams_pb2.BatchAppendResp, correlation: str, stream: str) -> None:
    assert response.WhichOneof("result") == "error"
    assert (response.error.code, response.error.message) == (4, "Timeout")
    assert response.error.details.Is(shared_pb2.Timeout.DESCRIPTOR)
    assert response.correlation_id.string == correlation
    assert response.stream_identifier.stream_name == stream.encode()


def test_twenty_thousand_events_with_a_1_ms_deadline_time_out(
    emulator: Emulator, client: EventStoreDBClient
) -> None:
    stream, correlation = f"big-{uuid.uuid4()}", str(uuid.uuid4())
    request = streams_pb2.BatchAppendReq(
        correlation_id=shared_pb2.UUID(string=correlation),
        options=options(stream, deadline=duration_pb2.Duration(nanos=1_000_000)),
        proposed_messages=events(20_000),
        is_final=True,
    )
    (response,) = batch_append(emulator, iter([request]))
    assert_timeout(response, correlation, stream)
    with pytest.raises(NotFound):  # nothing was written
        client.get_stream(stream)


@pytest.mark.parametrize(
    "deadline",
    [
        {"deadline": duration_pb2.Duration(seconds=0)},
        {"deadline_21_10_0": timestamp_pb2.Timestamp(seconds=int(time.time()) - 60)},
    ],
    ids=["zero duration", "timestamp in the past"],
)
def test_a_deadline_already_passed_times_out_at_once(
    emulator: Emulator, client: EventStoreDBClient, deadline: dict
) -> None:
    stream, correlation = f"late-{uuid.uuid4()}", str(uuid.uuid4())
    request = streams_pb2.BatchAppendReq(
        correlation_id=shared_pb2.UUID(string=correlation),
        options=options(stream, **deadline),
        proposed_messages=events(1),
        is_final=True,
    )
    (response,) = batch_append(emulator, iter([request]))
    assert_timeout(response, correlation, stream)
    with pytest.raises(NotFound):
        client.get_stream(stream)


def test_a_write_not_finished_within_the_write_timeout_times_out(
    emulator: Emulator, client: EventStoreDBClient
) -> None:
    # The requested deadline (1 hour) is capped by WriteTimeout (2 s); the final request comes
    # later than that, so the write is answered Timeout and not written, and a second write
    # in the same call succeeds.
    stream, correlation, second = f"slow-{uuid.uuid4()}", str(uuid.uuid4()), str(uuid.uuid4())

    def requests() -> Iterator[streams_pb2.BatchAppendReq]:
        hour = duration_pb2.Duration(seconds=3600)
        yield streams_pb2.BatchAppendReq(
            correlation_id=shared_pb2.UUID(string=correlation),
            options=options(stream, deadline=hour),
            proposed_messages=events(1),
            is_final=False,
        )
        time.sleep(2.5)
        yield streams_pb2.BatchAppendReq(
            correlation_id=shared_pb2.UUID(string=correlation),
            proposed_messages=events(1),
            is_final=True,
        )
        yield streams_pb2.BatchAppendReq(
            correlation_id=shared_pb2.UUID(string=second),
            options=options(stream, deadline=hour),
            proposed_messages=events(1),
            is_final=True,
        )

    timed_out, written = batch_append(emulator, requests())
    assert_timeout(timed_out, correlation, stream)
    assert written.correlation_id.string == second
    assert written.WhichOneof("result") == "success"
    assert len(client.get_stream(stream)) == 1


def test_a_batch_within_its_deadline_is_written(
    emulator: Emulator, client: EventStoreDBClient
) -> None:
    stream = f"ok-{uuid.uuid4()}"
    request = streams_pb2.BatchAppendReq(
        correlation_id=shared_pb2.UUID(string=str(uuid.uuid4())),
        options=options(stream, deadline=duration_pb2.Duration(seconds=10)),
        proposed_messages=events(100),
        is_final=True,
    )
    (response,) = batch_append(emulator, iter([request]))
    assert response.WhichOneof("result") == "success"
    assert len(client.get_stream(stream)) == 100
