"""`migrate-subscriptions`: persistent subscriptions re-created on the target at the right
position with their settings; dry run changes nothing; a second run is a no-op."""

from __future__ import annotations

import json
import time

import pytest
from esdbclient import EventStoreDBClient

from core.eventstore import EventStore
from core.tools.subscriptions import GroupSettings, migrate_subscriptions
from tests.engine.helpers import make_job, run_until_caught_up
from tests.engine.test_translate import FILTERS, build_history

SETTINGS = {
    "message_timeout": 12.0,
    "max_retry_count": 3,
    "min_checkpoint_count": 1,
    "max_checkpoint_count": 1,
    "checkpoint_after": 0.5,
    "max_subscriber_count": 4,
    "live_buffer_size": 40,
    "read_batch_size": 7,
    "history_buffer_size": 60,
    "extra_statistics": True,
}


def _consume(client: EventStoreDBClient, group: str, stream: str | None, count: int) -> list:
    """Receive and ack `count` events, then wait until the group checkpointed the last."""
    if stream is None:
        sub = client.read_subscription_to_all(group, timeout=20)
    else:
        sub = client.read_subscription_to_stream(group, stream, timeout=20)
    received = []
    with sub:
        for event in sub:
            sub.ack(event)
            received.append(event)
            if len(received) == count:
                break
        deadline = time.monotonic() + 10
        want = str(received[-1].commit_position if stream is None else received[-1].stream_position)
        while time.monotonic() < deadline:
            info = client.get_subscription_info(group, stream)
            checkpoint = info.last_checkpointed_event_position
            if checkpoint and (checkpoint == want or checkpoint.startswith(f"C:{want}/")):
                break
            time.sleep(0.05)
        else:
            raise AssertionError(f"{group} did not checkpoint {want}: {checkpoint!r}")
    return received


def _first(client: EventStoreDBClient, group: str, stream: str | None):
    if stream is None:
        sub = client.read_subscription_to_all(group, timeout=20)
    else:
        sub = client.read_subscription_to_stream(group, stream, timeout=20)
    with sub:
        for event in sub:
            return event
    return None


def _source_next(client: EventStoreDBClient, job, after_event, stream, accepts) -> str:
    """Id of the first event after the consumed one the target group must deliver."""
    if stream is None:
        events = client.read_all(commit_position=after_event.commit_position, filter_exclude=[])
        candidates = [e for e in events if e.commit_position > after_event.commit_position]
    else:
        candidates = list(client.get_stream(stream, stream_position=after_event.stream_position))
        candidates = [e for e in candidates if e.stream_position > after_event.stream_position]
    for e in candidates:
        if (
            not e.stream_name.startswith("$")
            and not e.type.startswith("$")
            and job.filters.accepts(e.stream_name, e.type)
            and accepts(e)
        ):
            return str(e.id)
    raise AssertionError("no next event")


GROUPS = [
    # (group, stream or None for $all, create kwargs, events consumed, filter on delivery)
    ("all-default", None, {"consumer_strategy": "RoundRobin"}, 23, lambda e: True),
    (
        "all-orders",
        None,
        {"filter_include": ["order-.*"], "filter_by_stream_name": True},
        9,
        lambda e: e.stream_name.startswith("order-"),
    ),
    (
        "all-unfiltered",
        None,
        {"filter_exclude": [], "consumer_strategy": "DispatchToSingle"},
        31,
        lambda e: True,
    ),
    ("order-1-pinned", "order-1", {"consumer_strategy": "Pinned"}, 12, lambda e: True),
]


@pytest.mark.parametrize("original_metadata", [True, False])
def test_persistent_subscriptions_recreated_at_the_right_position(
    pair, tmp_path, original_metadata
):
    source_db, target_db = pair
    src = EventStoreDBClient(source_db.uri)
    dst = EventStoreDBClient(target_db.uri)
    build_history(src, seed=21, count=250)
    consumed = {}
    for group, stream, kwargs, count, _ in GROUPS:
        if stream is None:
            src.create_subscription_to_all(group, **SETTINGS, **kwargs)
        else:
            src.create_subscription_to_stream(group, stream, **SETTINGS, **kwargs)
        consumed[group] = _consume(src, group, stream, count)[-1]
    # Never checkpointed: an explicit stream start, and the end.
    src.create_subscription_to_stream("cart-from-5", "cart-1", stream_position=5, **SETTINGS)
    src.create_subscription_to_all("all-from-end", from_end=True, **SETTINGS)

    job = make_job(
        source_db,
        target_db,
        tmp_path,
        filters=FILTERS,
        original_metadata=original_metadata,
        budget={"max_events": 61},
    )
    run_until_caught_up(job)

    with (
        EventStore(source_db.uri, side="source") as source,
        EventStore(target_db.uri, side="target") as target,
    ):
        dry = migrate_subscriptions(job, source, target)
        assert {p.group: p.action for p in dry} == {
            "all-default": "create",
            "all-orders": "create",
            "all-unfiltered": "create",
            "order-1-pinned": "create",
            "cart-from-5": "create",
            "all-from-end": "create",
        }, [(p.group, p.reason) for p in dry]
        assert dst.list_subscriptions() == []  # the dry run changed nothing

        applied = migrate_subscriptions(job, source, target, apply=True)
        assert [p.model_dump() for p in applied] == [p.model_dump() for p in dry]

        again = migrate_subscriptions(job, source, target, apply=True)
        assert {p.action for p in again} == {"unchanged"}, [(p.group, p.changes) for p in again]

    for group, stream, _, _, accepts in GROUPS:
        src_info = src.get_subscription_info(group, stream)
        dst_info = dst.get_subscription_info(group, stream)
        assert GroupSettings.from_info(dst_info) == GroupSettings.from_info(src_info)
        assert dst_info.consumer_strategy == src_info.consumer_strategy
        expected = _source_next(src, job, consumed[group], stream, accepts)
        first = _first(dst, group, stream)
        assert first is not None and str(first.id) == expected, group

    # The never-checkpointed stream group starts at the target revision of source revision 5.
    source_events = list(src.get_stream("cart-1"))
    wanted = next(
        str(e.id)
        for e in source_events
        if e.stream_position >= 5 and job.filters.accepts("cart-1", e.type)
    )
    assert str(_first(dst, "cart-from-5", "cart-1").id) == wanted
    assert dst.get_subscription_info("all-from-end").start_from == "C:-1/P:-1"
    src.close()
    dst.close()


@pytest.mark.parametrize("stream", ["order-1", None])
def test_settings_changed_on_the_source_are_an_update(pair, tmp_path, stream):
    source_db, target_db = pair
    src = EventStoreDBClient(source_db.uri)
    dst = EventStoreDBClient(target_db.uri)
    build_history(src, seed=3, count=40)
    if stream is None:
        src.create_subscription_to_all("g", commit_position=0, **SETTINGS)
    else:
        src.create_subscription_to_stream("g", stream, **SETTINGS)
    job = make_job(source_db, target_db, tmp_path, filters=FILTERS)
    run_until_caught_up(job)
    with (
        EventStore(source_db.uri, side="source") as source,
        EventStore(target_db.uri, side="target") as target,
    ):
        migrate_subscriptions(job, source, target, apply=True)
        if stream is None:
            src.update_subscription_to_all("g", max_retry_count=9, consumer_strategy="RoundRobin")
        else:
            src.update_subscription_to_stream("g", stream, max_retry_count=9)
        plans = migrate_subscriptions(job, source, target)
        expected = ["max_retry_count: 3 → 9"]
        if stream is None:
            expected = ["consumer_strategy: DispatchToSingle → RoundRobin", *expected]
        assert [(p.action, p.changes) for p in plans] == [("update", expected)]
        migrate_subscriptions(job, source, target, apply=True)
        assert [p.action for p in migrate_subscriptions(job, source, target)] == ["unchanged"]
    info = dst.get_subscription_info("g", stream)
    assert info.max_retry_count == 9
    src.close()
    dst.close()


def test_group_not_replicated_yet_is_an_error_row(pair, tmp_path):
    source_db, target_db = pair
    src = EventStoreDBClient(source_db.uri)
    build_history(src, seed=4, count=30)
    job = make_job(source_db, target_db, tmp_path, filters=FILTERS)
    run_until_caught_up(job)
    build_history(src, seed=5, count=30)
    src.create_subscription_to_all("late", **SETTINGS)
    _consume(src, "late", None, 50)
    with (
        EventStore(source_db.uri, side="source") as source,
        EventStore(target_db.uri, side="target") as target,
    ):
        plans = migrate_subscriptions(job, source, target, apply=True)
    assert [p.action for p in plans] == ["error"]
    assert "not replicated yet" in plans[0].reason
    src.close()


def test_cli_migrate_subscriptions(pair, tmp_path):
    from typer.testing import CliRunner

    from tests.engine.test_translate import cli_app, write_config

    source_db, target_db = pair
    src = EventStoreDBClient(source_db.uri)
    dst = EventStoreDBClient(target_db.uri)
    build_history(src, seed=8, count=40)
    src.create_subscription_to_all("projector", **SETTINGS)
    _consume(src, "projector", None, 5)
    src.create_subscription_to_stream("orders", "order-1", **SETTINGS)
    config = write_config(source_db, target_db, tmp_path)
    run_until_caught_up(make_job(source_db, target_db, tmp_path, filters=FILTERS))
    runner = CliRunner()
    app = cli_app()

    result = runner.invoke(app, ["migrate-subscriptions", "-c", config])
    assert result.exit_code == 0, result.output
    assert "dry run" in result.output and "create" in result.output and "--apply" in result.output
    assert dst.list_subscriptions() == []

    result = runner.invoke(app, ["migrate-subscriptions", "-c", config, "--apply", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["applied"] is True
    assert sorted(g["action"] for g in payload["groups"]) == ["create", "create"]
    assert len(dst.list_subscriptions()) == 2

    result = runner.invoke(app, ["migrate-subscriptions", "-c", config])
    assert result.exit_code == 0
    assert "2 unchanged" in result.output
    assert source_db.uri not in result.output and target_db.uri not in result.output
    src.close()
    dst.close()


def test_group_in_use_on_the_target_is_never_moved(pair, tmp_path):
    source_db, target_db = pair
    src = EventStoreDBClient(source_db.uri)
    dst = EventStoreDBClient(target_db.uri)
    build_history(src, seed=6, count=60)
    src.create_subscription_to_stream("g", "order-1", **SETTINGS)
    _consume(src, "g", "order-1", 3)
    job = make_job(source_db, target_db, tmp_path, filters=FILTERS)
    run_until_caught_up(job)
    with (
        EventStore(source_db.uri, side="source") as source,
        EventStore(target_db.uri, side="target") as target,
    ):
        [created] = migrate_subscriptions(job, source, target, apply=True)
        # Consumers start on the target; then the source group moves on and changes settings.
        used = _consume(dst, "g", "order-1", 2)[-1]
        _consume(src, "g", "order-1", 4)
        src.update_subscription_to_stream("g", "order-1", max_retry_count=8)
        [plan] = migrate_subscriptions(job, source, target, apply=True)
        assert plan.action == "update"
        assert plan.changes == ["max_retry_count: 3 → 8"]
        assert plan.start == created.start and "in use on the target" in plan.reason
    info = dst.get_subscription_info("g", "order-1")
    assert info.max_retry_count == 8 and info.start_from == str(created.start)
    following = next(
        e for e in dst.get_stream("order-1") if e.stream_position > used.stream_position
    )
    assert _first(dst, "g", "order-1").id == following.id
    src.close()
    dst.close()


def test_system_and_unreplicated_streams_are_manual(pair, tmp_path):
    source_db, target_db = pair
    src = EventStoreDBClient(source_db.uri)
    dst = EventStoreDBClient(target_db.uri)
    build_history(src, seed=9, count=30)
    src.create_subscription_to_stream("by-category", "$ce-order", resolve_links=True)
    src.create_subscription_to_stream("skipped", "skipped-1")
    job = make_job(source_db, target_db, tmp_path, filters=FILTERS)
    run_until_caught_up(job)
    with (
        EventStore(source_db.uri, side="source") as source,
        EventStore(target_db.uri, side="target") as target,
    ):
        plans = migrate_subscriptions(job, source, target, apply=True)
    reasons = {p.group: (p.action, p.reason) for p in plans}
    assert reasons["by-category"][0] == "manual" and "projections" in reasons["by-category"][1]
    assert reasons["skipped"][0] == "manual" and "does not replicate" in reasons["skipped"][1]
    assert dst.list_subscriptions() == []
    src.close()
    dst.close()
