"""Reads of `$all`: positions, direction, limits and server-side filters (regex and prefix).

Reference behaviour: esdbclient tests/test_client.py (test_read_all_filter_*), the server's
AllReader (src/EventStore.Core/Services/Storage/ReaderIndex/AllReader.cs), EventFilter.cs and
Streams.Read.cs (ConvertToEventFilter).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence

import grpc
import pytest
from esdbclient import EventStoreDBClient, NewEvent, StreamState
from esdbclient.client import ESDB_SYSTEM_EVENTS_REGEX
from esdbclient.exceptions import GrpcDeadlineExceeded
from esdbclient.protos.Grpc import shared_pb2, streams_pb2, streams_pb2_grpc

from esdb_emulator import Emulator


def ev(type_: str = "OrderCreated", data: bytes = b"{}") -> NewEvent:
    return NewEvent(type=type_, data=data, metadata=b"{}")


def new_stream(prefix: str = "order") -> str:
    return f"{prefix}-{uuid.uuid4()}"


def ids(events) -> list[uuid.UUID]:
    return [e.id for e in events]


@pytest.fixture
def two_streams(client: EventStoreDBClient):
    """Six events in two streams, as in esdbclient test_read_all_filter_default."""
    s1, s2 = new_stream(), new_stream()
    e = [ev("OrderCreated"), ev("OrderUpdated"), ev("OrderDeleted")]
    f = [ev("OrderCreated"), ev("OrderUpdated"), ev("OrderDeleted")]
    p1 = client.append_to_stream(s1, current_version=StreamState.NO_STREAM, events=e)
    p2 = client.append_to_stream(s2, current_version=StreamState.NO_STREAM, events=f)
    return e + f, p1, p2


def test_read_all_forwards_and_backwards(client: EventStoreDBClient, two_streams) -> None:
    events, _, _ = two_streams
    assert ids(client.read_all()) == ids(events)
    assert ids(client.read_all(backwards=True)) == ids(reversed(events))
    assert ids(client.read_all(limit=3)) == ids(events[:3])
    assert ids(client.read_all(backwards=True, limit=3)) == ids(events[:2:-1])


def test_read_all_from_commit_position(client: EventStoreDBClient, two_streams) -> None:
    # esdbclient test_read_all_filter_default: forwards is inclusive of the position, backwards
    # exclusive (AllReader.ReadAllEventsBackwardInternal: post-position <= pos).
    events, p1, p2 = two_streams
    assert ids(client.read_all(commit_position=p1)) == ids(events[2:])
    assert ids(client.read_all(commit_position=p2)) == ids(events[5:])
    assert ids(client.read_all(commit_position=p1, backwards=True)) == ids([events[1], events[0]])
    assert ids(client.read_all(commit_position=p2, backwards=True)) == ids(events[4::-1])
    assert ids(client.read_all(commit_position=p1, limit=3)) == ids(events[2:5])
    assert ids(client.read_all(commit_position=p2, backwards=True, limit=3)) == ids(events[4:1:-1])


def test_read_all_from_every_position(client: EventStoreDBClient, two_streams) -> None:
    # Reading from each event's own commit position returns that event first (inclusive), and
    # reading backwards from it returns the previous event first (exclusive).
    everything = list(client.read_all(filter_exclude=[]))
    for i, event in enumerate(everything):
        forward = list(client.read_all(commit_position=event.commit_position, filter_exclude=[]))
        assert ids(forward) == ids(everything[i:])
        backward = list(
            client.read_all(
                commit_position=event.commit_position, backwards=True, filter_exclude=[], limit=1
            )
        )
        assert ids(backward) == ids(everything[i - 1 : i] if i else [])


def test_read_all_past_the_end(client: EventStoreDBClient, two_streams) -> None:
    _, _, p2 = two_streams
    end = client.get_commit_position(filter_exclude=[])
    assert end == p2
    assert list(client.read_all(commit_position=end + 10_000)) == []
    assert len(list(client.read_all(commit_position=end + 10_000, backwards=True))) == 6


def test_read_all_can_be_stopped(client: EventStoreDBClient, two_streams) -> None:
    # esdbclient test_read_all_can_be_stopped.
    response = client.read_all()
    response.stop()
    assert list(response) == []


def test_read_all_raises_deadline_exceeded(client: EventStoreDBClient, two_streams) -> None:
    # esdbclient test_read_all_raises_deadline_exceeded: the client's own deadline.
    response = client.read_all(timeout=0.001)
    time.sleep(0.05)
    with pytest.raises(GrpcDeadlineExceeded):
        list(response)


def test_metadata_events_in_all(client: EventStoreDBClient) -> None:
    # `$metadata` events are ordinary records of `$$stream` in `$all`: visible with no filter
    # (filter_exclude=[]), hidden by esdbclient's default exclude filter (event types `$.+`).
    stream = new_stream()
    p = client.append_to_stream(stream, current_version=StreamState.NO_STREAM, events=ev())
    client.set_stream_metadata(stream, metadata={"$maxCount": 5})
    unfiltered = list(client.read_all(commit_position=p, filter_exclude=[]))
    assert [(e.stream_name, e.type) for e in unfiltered] == [
        (stream, "OrderCreated"),
        (f"$${stream}", "$metadata"),
    ]
    assert [(e.stream_name, e.type) for e in client.read_all(commit_position=p)] == [
        (stream, "OrderCreated")
    ]
    # Excluding only `$metadata` by type, or `$$` streams by name, works the same.
    assert len(list(client.read_all(commit_position=p, filter_exclude=[r"\$metadata"]))) == 1
    assert (
        len(
            list(
                client.read_all(
                    commit_position=p, filter_exclude=[r"\$\$.*"], filter_by_stream_name=True
                )
            )
        )
        == 1
    )
    # Including them.
    only_meta = list(client.read_all(filter_include=[r"\$metadata"]))
    assert [e.stream_name for e in only_meta] == [f"$${stream}"]


def assert_filtered(
    client: EventStoreDBClient,
    position: int,
    expected: set[str],
    *,
    filter_exclude: Sequence[str] = (),
    filter_include: Sequence[str] = (),
    filter_by_stream_name: bool = False,
    backwards: bool = False,
) -> None:
    events = list(
        client.read_all(
            commit_position=None if backwards else position,
            backwards=backwards,
            filter_exclude=filter_exclude,
            filter_include=filter_include,
            filter_by_stream_name=filter_by_stream_name,
        )
    )
    if backwards:
        events = [e for e in events if e.commit_position >= position]
    actual = {e.stream_name if filter_by_stream_name else e.type for e in events}
    assert actual == expected


@pytest.fixture
def typed_events(client: EventStoreDBClient) -> int:
    """esdbclient test_read_all_filter_include_event_types' seven event types."""
    stream = new_stream()
    types = [
        "OrderCreated",
        "OrderUpdated",
        "OrderDeleted",
        "InvoiceCreated",
        "InvoiceUpdated",
        "InvoiceDeleted",
        "SomethingElse",
    ]
    position = client.append_to_stream(
        stream, current_version=StreamState.NO_STREAM, events=[ev(types[0])]
    )
    client.append_to_stream(
        stream, current_version=StreamState.EXISTS, events=[ev(t) for t in types[1:]]
    )
    return position


@pytest.mark.parametrize("backwards", [False, True])
@pytest.mark.parametrize(
    ("include", "expected"),
    [
        (["OrderCreated"], {"OrderCreated"}),
        (["OrderCreated", "OrderDeleted"], {"OrderCreated", "OrderDeleted"}),
        (["Order"], set()),  # esdbclient anchors the patterns: ^(...)$
        (["Updated"], set()),
        (["Order.*"], {"OrderCreated", "OrderUpdated", "OrderDeleted"}),
        (["Invoice.*"], {"InvoiceCreated", "InvoiceUpdated", "InvoiceDeleted"}),
        ([".*Created"], {"OrderCreated", "InvoiceCreated"}),
        ([".*Updated"], {"OrderUpdated", "InvoiceUpdated"}),
    ],
)
def test_filter_include_event_types(
    client: EventStoreDBClient,
    typed_events: int,
    include: list[str],
    expected: set[str],
    backwards: bool,
) -> None:
    # esdbclient test_read_all_filter_include_event_types.
    assert_filtered(client, typed_events, expected, filter_include=include, backwards=backwards)


ALL_TYPES = {
    "OrderCreated",
    "OrderUpdated",
    "OrderDeleted",
    "InvoiceCreated",
    "InvoiceUpdated",
    "InvoiceDeleted",
    "SomethingElse",
}


@pytest.mark.parametrize("backwards", [False, True])
@pytest.mark.parametrize(
    ("exclude", "excluded"),
    [
        (["OrderCreated"], {"OrderCreated"}),
        (["OrderCreated", "OrderDeleted"], {"OrderCreated", "OrderDeleted"}),
        (["Order"], set()),
        (["Created"], set()),
        (["Order.*"], {"OrderCreated", "OrderUpdated", "OrderDeleted"}),
        ([r".*Created"], {"OrderCreated", "InvoiceCreated"}),
        ([r".*thing.*"], {"SomethingElse"}),
        ([r".OrderCreated.+"], set()),
    ],
)
def test_filter_exclude_event_types(
    client: EventStoreDBClient,
    typed_events: int,
    exclude: list[str],
    excluded: set[str],
    backwards: bool,
) -> None:
    # esdbclient test_read_all_filter_exclude_event_types.
    assert_filtered(
        client,
        typed_events,
        ALL_TYPES - excluded,
        filter_exclude=[ESDB_SYSTEM_EVENTS_REGEX, *exclude],
        backwards=backwards,
    )


def test_filter_include_ignores_exclude(client: EventStoreDBClient, typed_events: int) -> None:
    # esdbclient test_read_all_filter_include_ignores_filter_exclude (client side: include wins).
    assert_filtered(
        client,
        typed_events,
        {"OrderCreated"},
        filter_include=["OrderCreated"],
        filter_exclude=["OrderCreated"],
    )


@pytest.fixture
def prefixed_streams(client: EventStoreDBClient):
    prefix1, prefix2 = f"p1{uuid.uuid4().hex}", f"p2{uuid.uuid4().hex}"
    s1, s2, s3 = prefix1 + "-a", prefix1 + "-b", prefix2 + "-c"
    position = client.append_to_stream(
        s1, current_version=StreamState.NO_STREAM, events=[ev("OrderCreated")]
    )
    client.append_to_stream(s2, current_version=StreamState.NO_STREAM, events=[ev("OrderUpdated")])
    client.append_to_stream(s3, current_version=StreamState.NO_STREAM, events=[ev("OrderDeleted")])
    return position, prefix1, prefix2, s1, s2, s3


def test_filter_include_stream_names(client: EventStoreDBClient, prefixed_streams) -> None:
    # esdbclient test_read_all_filter_include_stream_identifiers.
    position, prefix1, prefix2, s1, s2, s3 = prefixed_streams
    for include, expected in (
        ([s1, s2], {s1, s2}),
        ([s2, s3], {s2, s3}),
        ([prefix1 + ".*"], {s1, s2}),
        ([prefix2 + ".*"], {s3}),
        ([prefix1], set()),
    ):
        assert_filtered(
            client, position, expected, filter_include=include, filter_by_stream_name=True
        )


def test_filter_exclude_stream_names(client: EventStoreDBClient, prefixed_streams) -> None:
    # esdbclient test_read_all_filter_exclude_stream_identifiers.
    position, prefix1, prefix2, s1, s2, s3 = prefixed_streams
    for exclude, expected in (
        ([s1], {s2, s3}),
        ([s2, s3], {s1}),
        ([prefix1 + ".*"], {s3}),
        ([prefix2 + ".*"], {s1, s2}),
        ([prefix2], {s1, s2, s3}),
    ):
        assert_filtered(
            client,
            position,
            expected,
            filter_exclude=[ESDB_SYSTEM_EVENTS_REGEX, *exclude],
            filter_by_stream_name=True,
        )


def test_filtered_backwards_read_with_limit(client: EventStoreDBClient, typed_events: int) -> None:
    events = list(
        client.read_all(backwards=True, filter_include=["(Order|Invoice)Created"], limit=1)
    )
    assert [e.type for e in events] == ["InvoiceCreated"]
    events = list(
        client.read_all(backwards=True, filter_include=["(Order|Invoice)Created"], limit=5)
    )
    assert [e.type for e in events] == ["InvoiceCreated", "OrderCreated"]
    # Backwards from the InvoiceCreated event's own position excludes it.
    invoice = events[0].commit_position
    events = list(client.read_all(commit_position=invoice, backwards=True, filter_include=["I.*"]))
    assert events == []


def test_filtered_forward_read_with_limit(client: EventStoreDBClient, typed_events: int) -> None:
    events = list(client.read_all(filter_include=[".*Deleted"], limit=1))
    assert [e.type for e in events] == ["OrderDeleted"]


def test_get_commit_position_with_filters(client: EventStoreDBClient, typed_events: int) -> None:
    last_order = list(client.read_all(filter_include=["Order.*"]))[-1]
    assert client.get_commit_position(filter_include=["Order.*"]) == last_order.commit_position
    assert client.get_commit_position(filter_include=["Nothing"]) == 0


def test_default_all_filter_hides_persistent_subscription_checkpoints(
    client: EventStoreDBClient,
) -> None:
    # EventFilter.DefaultAllFilter (used by AllReader for every `$all` read): checkpoint and
    # parked streams of persistent subscriptions to `$all` never appear in `$all`, other
    # system streams do (including checkpoints of subscriptions to a stream).
    hidden = [
        "$persistentsubscription-$all::g1-checkpoint",
        "$persistentsubscription-$all::g1-parked",
    ]
    shown = ["$persistentsubscription-s::g1-checkpoint", "$persistentsubscription-$all::g1-other"]
    for stream in hidden + shown:
        client.append_to_stream(stream, current_version=StreamState.ANY, events=ev("Checkpoint"))
    streams = {e.stream_name for e in client.read_all(filter_exclude=[])}
    assert not streams & set(hidden)
    assert set(shown) <= streams
    streams = {e.stream_name for e in client.read_all(filter_include=[".*"], backwards=True)}
    assert not streams & set(hidden)
    # They are still ordinary streams when read directly.
    assert len(client.get_stream(hidden[0])) == 1


# -------------------------------------------------------- prefix filters (low level)


def raw_read_all(
    emulator: Emulator,
    *,
    prefixes: Sequence[str] = (),
    regex: str = "",
    by_stream: bool = False,
    backwards: bool = False,
    count: int = 1000,
) -> list[tuple[str, str]]:
    """`$all` read with a FilterOptions.Expression built by hand: esdbclient 1.1.7 has no
    API for prefix filters (BaseStreamsService._construct_read_request sets only `regex`)."""
    options = streams_pb2.ReadReq.Options(
        read_direction=(
            streams_pb2.ReadReq.Options.Backwards
            if backwards
            else streams_pb2.ReadReq.Options.Forwards
        ),
        resolve_links=False,
        count=count,
        uuid_option=streams_pb2.ReadReq.Options.UUIDOption(string=shared_pb2.Empty()),
    )
    if backwards:
        options.all.end.CopyFrom(shared_pb2.Empty())
    else:
        options.all.start.CopyFrom(shared_pb2.Empty())
    expression = streams_pb2.ReadReq.Options.FilterOptions.Expression(
        regex=regex, prefix=list(prefixes)
    )
    filter_options = streams_pb2.ReadReq.Options.FilterOptions(
        max=32, checkpointIntervalMultiplier=1
    )
    if by_stream:
        filter_options.stream_identifier.CopyFrom(expression)
    else:
        filter_options.event_type.CopyFrom(expression)
    options.filter.CopyFrom(filter_options)
    with grpc.insecure_channel(emulator.target) as channel:
        stub = streams_pb2_grpc.StreamsStub(channel)
        return [
            (
                r.event.event.stream_identifier.stream_name.decode(),
                r.event.event.metadata["type"],
            )
            for r in stub.Read(streams_pb2.ReadReq(options=options), timeout=10)
            if r.WhichOneof("content") == "event"
        ]


@pytest.fixture
def catalogue(client: EventStoreDBClient) -> None:
    client.append_to_stream("order-1", current_version=StreamState.ANY, events=ev("OrderPlaced"))
    client.append_to_stream("invoice-1", current_version=StreamState.ANY, events=ev("InvoiceSent"))
    client.append_to_stream("order-2", current_version=StreamState.ANY, events=ev("OrderShipped"))
    client.append_to_stream("customer-1", current_version=StreamState.ANY, events=ev("Signup"))


def test_stream_name_prefix_filter(emulator: Emulator, catalogue: None) -> None:
    # EventFilter.StreamIdPrefixStrategy: StartsWith any of the prefixes.
    assert raw_read_all(emulator, prefixes=["order-"], by_stream=True) == [
        ("order-1", "OrderPlaced"),
        ("order-2", "OrderShipped"),
    ]
    assert raw_read_all(emulator, prefixes=["order-", "cust"], by_stream=True) == [
        ("order-1", "OrderPlaced"),
        ("order-2", "OrderShipped"),
        ("customer-1", "Signup"),
    ]
    assert raw_read_all(emulator, prefixes=["order-"], by_stream=True, backwards=True) == [
        ("order-2", "OrderShipped"),
        ("order-1", "OrderPlaced"),
    ]
    assert raw_read_all(emulator, prefixes=["order-"], by_stream=True, count=1) == [
        ("order-1", "OrderPlaced")
    ]
    # System streams are matched by prefix like any other (DefaultAllFilter allows them).
    assert [s for s, _ in raw_read_all(emulator, prefixes=["$user"], by_stream=True)] == [
        "$users",
        "$user-admin",
    ]


def test_event_type_prefix_filter(emulator: Emulator, catalogue: None) -> None:
    # EventFilter.EventTypePrefixStrategy.
    assert raw_read_all(emulator, prefixes=["Order"]) == [
        ("order-1", "OrderPlaced"),
        ("order-2", "OrderShipped"),
    ]
    assert raw_read_all(emulator, prefixes=["Invoice", "Sign"]) == [
        ("invoice-1", "InvoiceSent"),
        ("customer-1", "Signup"),
    ]
    assert raw_read_all(emulator, prefixes=["Nope"]) == []


def test_regex_takes_precedence_over_prefixes(emulator: Emulator, catalogue: None) -> None:
    # Streams.Read ConvertToEventFilter: string.IsNullOrEmpty(Regex) ? Prefixes(...) : Regex(...).
    assert raw_read_all(emulator, regex="^invoice", prefixes=["order-"], by_stream=True) == [
        ("invoice-1", "InvoiceSent")
    ]


def test_regex_filter_is_a_search(emulator: Emulator, catalogue: None) -> None:
    # EventTypeRegexStrategy uses Regex.Match(...).Success: unanchored patterns match anywhere.
    assert raw_read_all(emulator, regex="Ship") == [("order-2", "OrderShipped")]
    assert raw_read_all(emulator, regex="-1$", by_stream=True) == [
        ("order-1", "OrderPlaced"),
        ("invoice-1", "InvoiceSent"),
        ("customer-1", "Signup"),
    ]
