"""Catch-up subscriptions to `$all` and to streams (persistent subscriptions are tested in
test_persistent_subscriptions.py).

Reference behaviour: esdbclient tests/test_client.py (test_subscribe_to_*), and the server's
src/EventStore.Core/Services/Transport/Enumerators/Enumerator.AllSubscriptionFiltered.cs
(checkpoint interval = window (maxSearchWindow) * checkpointIntervalMultiplier considered
events, a checkpoint before going live, duplicate checkpoints suppressed, events after the
start position only).
"""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from esdbclient import EventStoreDBClient, NewEvent, StreamState
from esdbclient.events import CaughtUp, Checkpoint, RecordedEvent
from esdbclient.exceptions import GrpcDeadlineExceeded, StreamIsDeleted

TIMEOUT = 5.0  # gRPC deadline on every subscription, so a failing test cannot hang


def ev(type_: str = "OrderCreated") -> NewEvent:
    return NewEvent(type=type_, data=b"{}")


def new_stream() -> str:
    return f"order-{uuid.uuid4()}"


def take(subscription, count: int) -> list[RecordedEvent]:
    items = []
    for item in subscription:
        items.append(item)
        if len(items) == count:
            break
    return items


def take_until(subscription, predicate) -> list[RecordedEvent]:
    items = []
    for item in subscription:
        items.append(item)
        if predicate(item):
            break
    return items


# ------------------------------------------------------------------------- $all


def test_subscribe_to_all_catches_up_then_goes_live(client: EventStoreDBClient) -> None:
    # esdbclient test_subscribe_to_all_filter_exclude_system_events.
    first = [ev("OrderCreated"), ev("OrderUpdated"), ev("OrderDeleted")]
    client.append_to_stream(new_stream(), current_version=StreamState.NO_STREAM, events=first)
    subscription = client.subscribe_to_all(timeout=TIMEOUT)
    assert subscription.subscription_id
    assert [e.id for e in take(subscription, 3)] == [e.id for e in first]
    second = [ev("OrderCreated"), ev("OrderUpdated"), ev("OrderDeleted")]
    client.append_to_stream(new_stream(), current_version=StreamState.NO_STREAM, events=second)
    assert [e.id for e in take(subscription, 3)] == [e.id for e in second]
    subscription.stop()


def test_subscribe_to_all_delivers_appends_from_another_thread(client: EventStoreDBClient) -> None:
    subscription = client.subscribe_to_all(from_end=True, timeout=TIMEOUT)
    events = [ev(f"E{i}") for i in range(5)]

    def writer() -> None:
        for e in events:
            time.sleep(0.01)
            client.append_to_stream(new_stream(), current_version=StreamState.ANY, events=e)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        assert [e.id for e in take(subscription, 5)] == [e.id for e in events]
    finally:
        thread.join()
        subscription.stop()


def test_subscribe_to_all_without_filter_includes_system_events(
    client: EventStoreDBClient,
) -> None:
    # esdbclient test_subscribe_to_all_filter_exclude_nothing.
    stream = new_stream()
    client.append_to_stream(stream, current_version=StreamState.NO_STREAM, events=ev())
    client.set_stream_metadata(stream, metadata={"$maxCount": 1})
    subscription = client.subscribe_to_all(filter_exclude=[], timeout=TIMEOUT)
    items = take_until(subscription, lambda e: e.stream_name == f"$${stream}")
    assert items[0].stream_name == "$users"
    assert [e.type for e in items[-2:]] == ["OrderCreated", "$metadata"]
    subscription.stop()


def test_subscribe_to_all_filter_include_event_types(client: EventStoreDBClient) -> None:
    # esdbclient test_subscribe_to_all_filter_include_event_types.
    events = [ev("OrderCreated"), ev("OrderUpdated"), ev("OrderDeleted"), ev("OrderCreated")]
    client.append_to_stream(new_stream(), current_version=StreamState.NO_STREAM, events=events)
    subscription = client.subscribe_to_all(filter_include=["OrderCreated"], timeout=TIMEOUT)
    items = take(subscription, 2)
    assert [e.id for e in items] == [events[0].id, events[3].id]
    late = ev("OrderCreated")
    client.append_to_stream(new_stream(), current_version=StreamState.ANY, events=[ev("X"), late])
    assert [e.id for e in take(subscription, 1)] == [late.id]
    subscription.stop()


def test_subscribe_to_all_filter_include_stream_names(client: EventStoreDBClient) -> None:
    # esdbclient test_subscribe_to_all_filter_include_stream_names.
    s1, s2, s3 = new_stream(), new_stream(), new_stream()
    e1, e2, e3 = ev(), ev(), ev()
    for stream, e in ((s1, e1), (s2, e2), (s3, e3)):
        client.append_to_stream(stream, current_version=StreamState.NO_STREAM, events=[e])
    for stream, e in ((s1, e1), (s2, e2), (s3, e3)):
        subscription = client.subscribe_to_all(
            filter_include=[stream], filter_by_stream_name=True, timeout=TIMEOUT
        )
        assert [x.id for x in take(subscription, 1)] == [e.id]
        subscription.stop()


def test_subscribe_to_all_from_commit_position_is_exclusive(client: EventStoreDBClient) -> None:
    # esdbclient test_subscribe_to_all_from_commit_position_current; the server skips
    # "eventPosition <= checkpoint" (Enumerator.AllSubscriptionFiltered.CatchUp).
    stream = new_stream()
    e1, e2, e3 = ev("A"), ev("B"), ev("C")
    position = client.append_to_stream(stream, current_version=StreamState.NO_STREAM, events=[e1])
    client.append_to_stream(stream, current_version=0, events=[e2, e3])
    subscription = client.subscribe_to_all(commit_position=position, timeout=TIMEOUT)
    assert [e.id for e in take(subscription, 2)] == [e2.id, e3.id]
    subscription.stop()
    # Unfiltered too.
    subscription = client.subscribe_to_all(
        commit_position=position, filter_exclude=[], timeout=TIMEOUT
    )
    assert [e.id for e in take(subscription, 2)] == [e2.id, e3.id]
    subscription.stop()


def test_subscribe_to_all_from_commit_position_zero(client: EventStoreDBClient) -> None:
    # Position 0 is the first record (`$users`). The server turns an explicit position, even
    # (0, 0), into a checkpoint (ReadReq.cs ToSubscriptionPosition; only `start` maps to null),
    # so the record at 0 is skipped as well.
    subscription = client.subscribe_to_all(commit_position=0, filter_exclude=[], timeout=TIMEOUT)
    assert take(subscription, 1)[0].stream_name == "$user-admin"
    subscription.stop()


def test_subscribe_to_all_from_end(client: EventStoreDBClient) -> None:
    # esdbclient test_subscribe_to_all_from_end.
    stream = new_stream()
    e1 = ev("A")
    client.append_to_stream(stream, current_version=StreamState.NO_STREAM, events=[e1])
    subscription = client.subscribe_to_all(from_end=True, timeout=TIMEOUT)
    e2, e3 = ev("B"), ev("C")
    client.append_to_stream(stream, current_version=0, events=[e2, e3])
    assert [e.id for e in take(subscription, 2)] == [e2.id, e3.id]
    subscription.stop()


def test_subscribe_to_all_include_caught_up(client: EventStoreDBClient) -> None:
    # esdbclient test_subscribe_to_all_include_caught_up.
    stream = new_stream()
    e1 = ev()
    client.append_to_stream(stream, current_version=StreamState.NO_STREAM, events=[e1])
    subscription = client.subscribe_to_all(include_caught_up=True, timeout=TIMEOUT)
    items = take(subscription, 2)
    assert items[0].id == e1.id
    assert isinstance(items[1], CaughtUp)
    e2 = ev()
    client.append_to_stream(stream, current_version=0, events=[e2])
    assert [e.id for e in take(subscription, 1)] == [e2.id]
    subscription.stop()

    # Caught up straight away from the end, and with a filter that excludes everything.
    subscription = client.subscribe_to_all(from_end=True, include_caught_up=True, timeout=TIMEOUT)
    assert isinstance(take(subscription, 1)[0], CaughtUp)
    subscription.stop()
    subscription = client.subscribe_to_all(
        filter_exclude=[".*"], include_caught_up=True, timeout=TIMEOUT
    )
    assert isinstance(take(subscription, 1)[0], CaughtUp)
    subscription.stop()


def test_subscribe_to_all_include_checkpoints(client: EventStoreDBClient) -> None:
    # esdbclient test_subscribe_to_all_include_checkpoints.
    client.append_to_stream(new_stream(), current_version=StreamState.NO_STREAM, events=[ev()])
    subscription = client.subscribe_to_all(
        filter_exclude=[".*"],
        include_checkpoints=True,
        window_size=1,
        checkpoint_interval_multiplier=1,
        timeout=TIMEOUT,
    )
    assert isinstance(take(subscription, 1)[0], Checkpoint)
    subscription.stop()


def server_checkpoints(positions: list[int], window: int, multiplier: int) -> list[int]:
    """The checkpoints a filtered catch-up subscription from the start of `$all` sends when
    no record passes its filter, by KurrentDB's Enumerator.AllSubscriptionFiltered.CatchUp
    and AllReader.ReadAllEventsForwardInternal: pages of `window` records scanned; after a
    page, its checkpoint is the page's start (`CurrentPos`: (0, 0) for the first, then the
    previous page's `NextPos`, the post-position of its last record, which is where the next
    record stands); sent every `window * multiplier` records scanned, and once more when a
    page reaches the end of `$all` (one that scanned fewer than `window`, or the empty page
    after a full last one), unless not after the previous checkpoint. Never at the head
    unless the last page holds only the head's record."""
    starts = [0] + [positions[i] for i in range(window, len(positions), window)]
    full = len(positions) // window  # pages that scanned `window` records: none is the end
    sent = [starts[j] for j in range(full) if (j + 1) % multiplier == 0]
    last_page = full if len(positions) % window else full - 1
    end = starts[last_page]
    if not sent or end > sent[-1]:
        sent.append(end)
    return sent


@pytest.mark.parametrize(
    ("appended", "window", "multiplier"),
    [(25, 2, 3), (21, 2, 3), (40, 5, 2), (7, 30, 5), (24, 4, 1)],
)
def test_checkpoints_every_window_times_multiplier_considered_events(
    client: EventStoreDBClient, appended: int, window: int, multiplier: int
) -> None:
    # Enumerator.AllSubscriptionFiltered: _checkpointInterval = multiplier * maxSearchWindow;
    # during catch-up, after each page (maxSearchWindow records scanned), a checkpoint each
    # time that many records have been *considered* (matching or not), at the page's start;
    # one more when a page reaches the end before going live (not when it repeats the
    # previous one), then CaughtUp (server_checkpoints).
    client.append_to_stream(
        new_stream(),
        current_version=StreamState.NO_STREAM,
        events=[ev(f"E{i}") for i in range(appended)],
    )
    positions = [e.commit_position for e in client.read_all(filter_exclude=[])]
    subscription = client.subscribe_to_all(
        filter_include=["Nothing"],
        include_checkpoints=True,
        include_caught_up=True,
        window_size=window,
        checkpoint_interval_multiplier=multiplier,
        timeout=TIMEOUT,
    )
    items = take_until(subscription, lambda e: isinstance(e, CaughtUp))
    subscription.stop()
    checkpoints = [c.commit_position for c in items if isinstance(c, Checkpoint)]
    assert all(isinstance(c, Checkpoint) for c in items[:-1])
    assert checkpoints == server_checkpoints(positions, window, multiplier)
    assert checkpoints == sorted(set(checkpoints))
    # Never past the head (esdbclient test_extra_checkpoint_bug_is_fixed: no checkpoint at
    # the position the next append takes, fixed in EventStoreDB 23.10).
    assert checkpoints[-1] <= client.get_commit_position(filter_exclude=[])


def test_checkpoint_positions_are_safe_restart_points(client: EventStoreDBClient) -> None:
    # Every matching event at or before a checkpoint has been delivered before it, so a new
    # subscription from the checkpoint (exclusive) delivers exactly the remaining events.
    stream = new_stream()
    types = ["Keep" if i % 4 == 0 else "Skip" for i in range(30)]
    client.append_to_stream(
        stream, current_version=StreamState.NO_STREAM, events=[ev(t) for t in types]
    )
    subscription = client.subscribe_to_all(
        filter_include=["Keep"],
        include_checkpoints=True,
        include_caught_up=True,
        window_size=3,
        checkpoint_interval_multiplier=2,
        timeout=TIMEOUT,
    )
    items = take_until(subscription, lambda e: isinstance(e, CaughtUp))
    subscription.stop()
    kept = [e for e in items if type(e) is RecordedEvent]
    assert len(kept) == types.count("Keep")
    for i, item in enumerate(items):
        if not isinstance(item, Checkpoint):
            continue
        delivered = {e.id for e in items[:i] if type(e) is RecordedEvent}
        resumed = client.subscribe_to_all(
            commit_position=item.commit_position,
            filter_include=["Keep"],
            include_caught_up=True,
            timeout=TIMEOUT,
        )
        rest = [e for e in take_until(resumed, lambda e: isinstance(e, CaughtUp))]
        resumed.stop()
        rest_ids = [e.id for e in rest if type(e) is RecordedEvent]
        assert not delivered & set(rest_ids)
        assert len(delivered) + len(rest_ids) == len(kept)


def test_live_checkpoints(client: EventStoreDBClient) -> None:
    subscription = client.subscribe_to_all(
        from_end=True,
        filter_include=["Nothing"],
        include_checkpoints=True,
        include_caught_up=True,
        window_size=2,
        checkpoint_interval_multiplier=2,
        timeout=TIMEOUT,
    )
    take_until(subscription, lambda e: isinstance(e, CaughtUp))
    client.append_to_stream(
        new_stream(), current_version=StreamState.ANY, events=[ev() for _ in range(8)]
    )
    checkpoint = take(subscription, 1)[0]
    subscription.stop()
    assert isinstance(checkpoint, Checkpoint)
    assert checkpoint.commit_position <= client.get_commit_position(filter_exclude=[])


def test_unfiltered_subscription_has_no_checkpoints(client: EventStoreDBClient) -> None:
    # Checkpoints come from the filtered enumerator only (Enumerator.AllSubscription, used when
    # the request has no filter, sends events and CaughtUp but no checkpoints).
    client.append_to_stream(
        new_stream(), current_version=StreamState.NO_STREAM, events=[ev() for _ in range(10)]
    )
    subscription = client.subscribe_to_all(
        filter_exclude=[],
        include_checkpoints=True,
        include_caught_up=True,
        window_size=1,
        checkpoint_interval_multiplier=1,
        timeout=TIMEOUT,
    )
    items = take_until(subscription, lambda e: isinstance(e, CaughtUp))
    subscription.stop()
    assert not any(isinstance(e, Checkpoint) for e in items)
    assert len(items) == 3 + 10 + 1


def test_subscribe_to_all_raises_deadline_exceeded(client: EventStoreDBClient) -> None:
    # esdbclient test_subscribe_to_all_raises_deadline_exceeded.
    client.append_to_stream(new_stream(), current_version=StreamState.NO_STREAM, events=[ev()])
    subscription = client.subscribe_to_all(timeout=0.3)
    count = 0
    with pytest.raises(GrpcDeadlineExceeded):
        for _ in subscription:
            count += 1
    assert count == 1


def test_subscribe_to_all_can_be_stopped(client: EventStoreDBClient) -> None:
    # esdbclient test_subscribe_to_all_can_be_stopped.
    client.append_to_stream(new_stream(), current_version=StreamState.NO_STREAM, events=[ev()])
    subscription = client.subscribe_to_all(timeout=TIMEOUT)
    subscription.stop()
    assert list(subscription) == []


def test_subscribe_to_all_sees_deletes(client: EventStoreDBClient) -> None:
    stream = new_stream()
    subscription = client.subscribe_to_all(from_end=True, filter_exclude=[], timeout=TIMEOUT)
    client.append_to_stream(stream, current_version=StreamState.NO_STREAM, events=[ev()])
    client.delete_stream(stream, current_version=0)
    client.append_to_stream(stream, current_version=StreamState.ANY, events=[ev("Again")])
    client.tombstone_stream(stream, current_version=StreamState.ANY)
    items = take(subscription, 5)
    subscription.stop()
    assert [(e.stream_name, e.type) for e in items] == [
        (stream, "OrderCreated"),
        (f"$${stream}", "$metadata"),
        (stream, "Again"),
        (f"$${stream}", "$metadata"),
        (stream, "$streamDeleted"),
    ]


# ----------------------------------------------------------------------- streams


def test_subscribe_to_stream_from_start(client: EventStoreDBClient) -> None:
    # esdbclient test_subscribe_to_stream_from_start.
    s1, s2 = new_stream(), new_stream()
    first = [ev("A"), ev("B"), ev("C")]
    client.append_to_stream(s1, current_version=StreamState.NO_STREAM, events=first)
    subscription = client.subscribe_to_stream(s1, timeout=TIMEOUT)
    assert subscription.subscription_id
    assert [e.id for e in take(subscription, 3)] == [e.id for e in first]
    client.append_to_stream(s2, current_version=StreamState.NO_STREAM, events=[ev(), ev()])
    more = [ev("D"), ev("E")]
    client.append_to_stream(s1, current_version=2, events=more)
    items = take(subscription, 2)
    assert [e.id for e in items] == [e.id for e in more]
    assert [e.stream_position for e in items] == [3, 4]
    subscription.stop()


def test_subscribe_to_stream_from_end(client: EventStoreDBClient) -> None:
    # esdbclient test_subscribe_to_stream_from_end.
    stream = new_stream()
    client.append_to_stream(stream, current_version=StreamState.NO_STREAM, events=[ev(), ev()])
    subscription = client.subscribe_to_stream(stream, from_end=True, timeout=TIMEOUT)
    client.append_to_stream(new_stream(), current_version=StreamState.NO_STREAM, events=[ev()])
    e3 = ev()
    client.append_to_stream(stream, current_version=1, events=[e3])
    assert [e.id for e in take(subscription, 1)] == [e3.id]
    subscription.stop()


def test_subscribe_to_stream_from_position_is_exclusive(client: EventStoreDBClient) -> None:
    # esdbclient test_subscribe_to_stream_from_stream_position.
    stream = new_stream()
    events = [ev("A"), ev("B"), ev("C")]
    client.append_to_stream(stream, current_version=StreamState.NO_STREAM, events=events)
    subscription = client.subscribe_to_stream(stream, stream_position=1, timeout=TIMEOUT)
    assert [e.id for e in take(subscription, 1)] == [events[2].id]
    e4 = ev("D")
    client.append_to_stream(stream, current_version=2, events=[e4])
    assert [e.id for e in take(subscription, 1)] == [e4.id]
    subscription.stop()


def test_subscribe_to_stream_before_it_exists(client: EventStoreDBClient) -> None:
    # No NotFound from a stream subscription (esdbclient test_stream_read_raises_not_found note).
    stream = new_stream()
    subscription = client.subscribe_to_stream(stream, include_caught_up=True, timeout=TIMEOUT)
    assert isinstance(take(subscription, 1)[0], CaughtUp)
    e1 = ev()
    client.append_to_stream(stream, current_version=StreamState.NO_STREAM, events=[e1])
    assert [e.id for e in take(subscription, 1)] == [e1.id]
    subscription.stop()


def test_subscribe_to_stream_include_caught_up(client: EventStoreDBClient) -> None:
    # esdbclient test_subscribe_to_stream_include_caught_up.
    stream = new_stream()
    e1 = ev()
    client.append_to_stream(stream, current_version=StreamState.NO_STREAM, events=[e1])
    subscription = client.subscribe_to_stream(stream, include_caught_up=True, timeout=TIMEOUT)
    items = take(subscription, 2)
    assert items[0].id == e1.id
    assert isinstance(items[1], CaughtUp)
    subscription.stop()


def test_subscribe_to_stream_can_be_stopped(client: EventStoreDBClient) -> None:
    # esdbclient test_subscribe_to_stream_can_be_stopped.
    stream = new_stream()
    subscription = client.subscribe_to_stream(stream, timeout=TIMEOUT)
    client.append_to_stream(stream, current_version=StreamState.NO_STREAM, events=[ev()])
    subscription.stop()
    assert list(subscription) == []


def test_subscribe_to_tombstoned_stream(client: EventStoreDBClient) -> None:
    # The catch-up read of a tombstoned stream fails like a read: RpcExceptions.StreamDeleted
    # (FAILED_PRECONDITION "... is deleted."), which esdbclient raises as StreamIsDeleted.
    stream = new_stream()
    client.append_to_stream(stream, current_version=StreamState.NO_STREAM, events=[ev()])
    client.tombstone_stream(stream, current_version=0)
    subscription = client.subscribe_to_stream(stream, timeout=TIMEOUT)
    with pytest.raises(StreamIsDeleted):
        list(subscription)


def test_live_stream_subscription_ends_when_stream_is_tombstoned(
    client: EventStoreDBClient,
) -> None:
    # Enumerator.StreamSubscription: a `$streamDeleted` event on the stream throws
    # ReadResponseException.StreamDeleted.
    stream = new_stream()
    client.append_to_stream(stream, current_version=StreamState.NO_STREAM, events=[ev()])
    subscription = client.subscribe_to_stream(stream, timeout=TIMEOUT)
    assert len(take(subscription, 1)) == 1
    client.tombstone_stream(stream, current_version=0)
    with pytest.raises(StreamIsDeleted):
        next(iter(subscription))


def test_subscribe_to_stream_resolves_links(client: EventStoreDBClient) -> None:
    target, links = new_stream(), f"links-{uuid.uuid4()}"
    e1 = ev()
    client.append_to_stream(target, current_version=StreamState.NO_STREAM, events=[e1])
    client.append_to_stream(
        links,
        current_version=StreamState.NO_STREAM,
        events=NewEvent(type="$>", data=f"0@{target}".encode(), content_type="text/plain"),
    )
    subscription = client.subscribe_to_stream(links, resolve_links=True, timeout=TIMEOUT)
    item = take(subscription, 1)[0]
    subscription.stop()
    assert item.id == e1.id
    assert item.stream_name == target
    assert item.link is not None and item.link.stream_name == links
