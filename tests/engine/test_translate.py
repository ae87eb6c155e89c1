"""`translate`: a catch-up subscription moved with a translated checkpoint receives exactly the
events after its old position, none twice, none missed (issue 6 acceptance)."""

from __future__ import annotations

import json
import random
import uuid

import pytest
from esdbclient import EventStoreDBClient, NewEvent, StreamState

from core.errors import NotReplicatedError, TranslateError
from core.eventstore import EventStore
from core.tools.translate import translate_file, translate_position, translate_stream
from tests.engine.helpers import make_job, run_until_caught_up

FILTERS = {"exclude_event_types": ["^Noise$"], "exclude_streams": ["^skipped-"]}


def _event(kind: str, n: int, metadata: bytes = b"") -> NewEvent:
    return NewEvent(
        type=kind, data=json.dumps({"n": n}).encode(), metadata=metadata, id=uuid.uuid4()
    )


def build_history(client: EventStoreDBClient, seed: int = 7, count: int = 300) -> None:
    """User events in several streams, with records the job skips (filtered types and
    streams, system events, links) and non-JSON metadata, so target positions differ."""
    rng = random.Random(seed)
    for n in range(count):
        stream = rng.choice(["order-1", "order-2", "cart-1", "skipped-1"])
        kind = rng.choice(["Created", "Updated", "Noise"])
        metadata = b"not json" if rng.random() < 0.15 else b'{"user":"x"}'
        client.append_to_stream(
            stream, current_version=StreamState.ANY, events=[_event(kind, n, metadata)]
        )
        if rng.random() < 0.1:
            client.append_to_stream(
                "$system-thing", current_version=StreamState.ANY, events=[_event("$Internal", n)]
            )
        if n == count // 2:
            client.set_stream_metadata("cart-1", metadata={"custom": 1})


def _user_ids(events, job) -> list[str]:
    return [
        str(e.id)
        for e in events
        if not e.stream_name.startswith("$")
        and not e.type.startswith("$")
        and job.filters.accepts(e.stream_name, e.type)
    ]


def _all_from(client: EventStoreDBClient, position: int | None) -> list:
    """What a catch-up subscription to `$all` from `position` (exclusive) receives up to now."""
    events = []
    head = client.get_commit_position(filter_exclude=[])
    if position is not None and position >= head:
        return events
    with client.subscribe_to_all(commit_position=position, filter_exclude=[], timeout=20) as sub:
        for event in sub:
            events.append(event)
            if event.commit_position >= head:
                break
    return events


@pytest.mark.parametrize("original_metadata", [True, False])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_catch_up_subscription_to_all_moves_exactly(pair, tmp_path, original_metadata, seed):
    source_db, target_db = pair
    src = EventStoreDBClient(source_db.uri)
    dst = EventStoreDBClient(target_db.uri)
    build_history(src, seed=seed)
    job = make_job(
        source_db,
        target_db,
        tmp_path,
        filters=FILTERS,
        original_metadata=original_metadata,
        budget={"max_events": 97},
    )
    run_until_caught_up(job)

    source_events = _all_from(src, None)
    rng = random.Random(seed)
    # The subscription stopped at a random record (some of them are filtered or system ones),
    # including the very first and the very last.
    unmarked = [e for e in source_events if e.metadata == b"not json"]
    stops = [source_events[0], source_events[-1], *rng.sample(source_events, 8), *unmarked[:6]]
    with (
        EventStore(source_db.uri, side="source") as source,
        EventStore(target_db.uri, side="target") as target,
    ):
        for stop in stops:
            p = stop.commit_position
            expected = _user_ids([e for e in source_events if e.commit_position > p], job)
            translated = translate_position(job, source, target, p)
            assert translated.method == ("original-metadata" if original_metadata else "event-id")
            received = _user_ids(_all_from(dst, translated.target), job)
            assert received == expected, f"stopped at {p}"
    src.close()
    dst.close()


@pytest.mark.parametrize("original_metadata", [True, False])
def test_catch_up_subscription_to_stream_moves_exactly(pair, tmp_path, original_metadata):
    source_db, target_db = pair
    src = EventStoreDBClient(source_db.uri)
    dst = EventStoreDBClient(target_db.uri)
    build_history(src, seed=11)
    job = make_job(
        source_db, target_db, tmp_path, filters=FILTERS, original_metadata=original_metadata
    )
    run_until_caught_up(job)
    with (
        EventStore(source_db.uri, side="source") as source,
        EventStore(target_db.uri, side="target") as target,
    ):
        for stream in ("order-1", "cart-1"):
            events = list(src.get_stream(stream))
            unmarked = [e for e in events if e.metadata == b"not json"]
            picks = [events[0], events[-1], *random.Random(5).sample(events, 6), *unmarked[:4]]
            for stop in picks:
                expected = _user_ids(
                    [e for e in events if e.stream_position > stop.stream_position], job
                )
                t = translate_stream(job, source, target, stream, stop.stream_position)
                with dst.subscribe_to_stream(stream, stream_position=t.target, timeout=20) as sub:
                    received = []
                    last = dst.get_current_version(stream)
                    if t.target != last:
                        for e in sub:
                            received.append(e)
                            if e.stream_position >= last:
                                break
                assert _user_ids(received, job) == expected
    src.close()
    dst.close()


def test_position_not_replicated_yet_is_a_clear_error(pair, tmp_path):
    source_db, target_db = pair
    src = EventStoreDBClient(source_db.uri)
    build_history(src, count=50)
    job = make_job(source_db, target_db, tmp_path, filters=FILTERS)
    run_until_caught_up(job)
    relayed = src.get_commit_position(filter_exclude=[])
    build_history(src, seed=99, count=20)
    head = src.get_commit_position(filter_exclude=[])
    with (
        EventStore(source_db.uri, side="source") as source,
        EventStore(target_db.uri, side="target") as target,
    ):
        with pytest.raises(NotReplicatedError) as info:
            translate_position(job, source, target, head)
        message = str(info.value)
        assert f"is at {relayed:,}" in message and "not replicated yet" in message
        assert "run --until-caught-up" in message
        last = list(src.get_stream("order-1"))[-1].stream_position
        with pytest.raises(NotReplicatedError):
            translate_stream(job, source, target, "order-1", last)
    src.close()


def test_nothing_copied_yet_says_so(pair, tmp_path):
    source_db, target_db = pair
    src = EventStoreDBClient(source_db.uri)
    build_history(src, count=5)
    job = make_job(source_db, target_db, tmp_path)
    with (
        EventStore(source_db.uri, side="source") as source,
        EventStore(target_db.uri, side="target") as target,
        pytest.raises(NotReplicatedError, match="has not copied anything yet"),
    ):
        translate_position(job, source, target, 0)
    src.close()


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_batch_file(pair, tmp_path, suffix):
    source_db, target_db = pair
    src = EventStoreDBClient(source_db.uri)
    build_history(src, count=80)
    job = make_job(source_db, target_db, tmp_path, filters=FILTERS)
    run_until_caught_up(job)
    events = _all_from(src, None)
    rows = [
        {"name": "projector", "kind": "all", "position": events[40].commit_position},
        {"name": "orders", "kind": "stream", "stream": "order-1", "revision": 2},
        {"name": "future", "kind": "all", "position": events[-1].commit_position + 10_000},
    ]
    path = tmp_path / f"in{suffix}"
    if suffix == ".csv":
        lines = ["name,kind,stream,position,revision"]
        for r in rows:
            lines.append(
                f"{r['name']},{r['kind']},{r.get('stream', '')},{r.get('position', '')},"
                f"{r.get('revision', '')}"
            )
        path.write_text("\n".join(lines) + "\n")
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / f"out{suffix}"
    with (
        EventStore(source_db.uri, side="source") as source,
        EventStore(target_db.uri, side="target") as target,
    ):
        count, errors = translate_file(job, source, target, path, out)
        expected_all = translate_position(job, source, target, events[40].commit_position)
        expected_stream = translate_stream(job, source, target, "order-1", 2)
    assert (count, errors) == (3, 1)
    if suffix == ".csv":
        import csv

        result = list(csv.DictReader(out.read_text().splitlines()))
        assert result[0]["target_position"] == str(expected_all.target)
        assert result[1]["target_revision"] == str(expected_stream.target)
        assert "beyond the source's $all head" in result[2]["error"]
    else:
        result = [json.loads(line) for line in out.read_text().splitlines()]
        assert result[0]["target_position"] == expected_all.target
        assert result[1]["target_revision"] == expected_stream.target
        assert "beyond the source's $all head" in result[2]["error"]
    src.close()


# ------------------------------------------------------------------------------------- CLI
def cli_app():
    import typer

    from handlers.cli.subscriptions_cmd import migrate_subscriptions, translate

    app = typer.Typer()
    app.command("translate")(translate)
    app.command("migrate-subscriptions")(migrate_subscriptions)
    return app


def write_config(source_db, target_db, tmp_path, **extra) -> str:
    path = tmp_path / "job.json"
    payload = {
        "job_id": "test-job",
        "source": source_db.uri,
        "target": target_db.uri,
        "checkpoint_store": f"sqlite:///{tmp_path}/checkpoints.db",
        "filters": FILTERS,
        **extra,
    }
    path.write_text(json.dumps(payload))
    return str(path)


def test_cli_translate(pair, tmp_path):
    from typer.testing import CliRunner

    source_db, target_db = pair
    src = EventStoreDBClient(source_db.uri)
    build_history(src, count=60)
    config = write_config(source_db, target_db, tmp_path)
    runner = CliRunner()
    app = cli_app()
    events = _all_from(src, None)
    position = events[30].commit_position

    result = runner.invoke(app, ["translate", str(position), "-c", config])
    assert result.exit_code == 1
    assert "not replicated yet" in result.output and "has not copied anything yet" in result.output

    run_until_caught_up(make_job(source_db, target_db, tmp_path, filters=FILTERS))
    result = runner.invoke(app, ["translate", str(position), "-c", config, "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    with (
        EventStore(source_db.uri, side="source") as source,
        EventStore(target_db.uri, side="target") as target,
    ):
        job = make_job(source_db, target_db, tmp_path, filters=FILTERS)
        assert payload["target"] == translate_position(job, source, target, position).target
    result = runner.invoke(
        app, ["translate", "-c", config, "--stream", "order-1", "--revision", "1"]
    )
    assert result.exit_code == 0, result.output
    assert "target revision" in result.output and "subscribe_to_stream" in result.output
    assert source_db.uri not in result.output and target_db.uri not in result.output

    assert runner.invoke(app, ["translate", "-c", config]).exit_code == 2
    assert runner.invoke(app, ["translate", "-c", config, "--stream", "x"]).exit_code == 2
    rows = tmp_path / "in.jsonl"
    rows.write_text(json.dumps({"name": "p", "kind": "all", "position": position}) + "\n")
    out = tmp_path / "out.jsonl"
    result = runner.invoke(app, ["translate", "-c", config, "--file", str(rows), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["target_position"] == payload["target"]
    bad = runner.invoke(app, ["translate", "1", "-c", str(tmp_path / "missing.json")])
    assert bad.exit_code == 2

    # "start" (the help offers it): nothing processed yet, so the start on the target too
    start = runner.invoke(app, ["translate", "start", "-c", config])
    assert start.exit_code == 0, start.output
    assert "subscribe_to_all(commit_position=None)" in start.output
    start_json = runner.invoke(app, ["translate", "start", "-c", config, "--json"])
    assert json.loads(start_json.stdout)["target"] is None, start_json.output
    stream_start = runner.invoke(
        app, ["translate", "-c", config, "--stream", "order-1", "--revision", "start"]
    )
    assert stream_start.exit_code == 0, stream_start.output
    assert "stream_position=None" in stream_start.output
    nonsense = runner.invoke(app, ["translate", "soon", "-c", config])
    assert nonsense.exit_code == 2 and "neither a non-negative integer nor 'start'" in (
        nonsense.output
    )
    rows.write_text(json.dumps({"name": "new", "kind": "all", "position": "start"}) + "\n")
    result = runner.invoke(app, ["translate", "-c", config, "--file", str(rows), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["target_position"] is None

    # beyond the source's head: said so, not "not replicated yet ... 0 bytes behind"
    beyond = runner.invoke(
        app, ["translate", str(events[-1].commit_position + 10**6), "-c", config]
    )
    assert beyond.exit_code == 1
    assert "beyond the source's $all head" in beyond.output
    assert "not replicated yet" not in beyond.output and "0 bytes" not in beyond.output
    src.close()


def test_partitioned_mode_refuses_all_positions(pair, tmp_path):
    source_db, target_db = pair
    job = make_job(source_db, target_db, tmp_path, mode="partitioned", partitions=4)
    with (
        EventStore(source_db.uri, side="source") as source,
        EventStore(target_db.uri, side="target") as target,
        pytest.raises(TranslateError, match="partitioned mode"),
    ):
        translate_position(job, source, target, 0)


@pytest.mark.parametrize("seed", [4, 5])
def test_user_provenance_keys_never_steer_a_translation(pair, tmp_path, seed):
    """Data migrated before (issue 13): source events whose metadata already holds
    `$originalPosition` / `$originalStreamRevision` (larger, smaller, or another record's);
    the relay adds none to them, and translate confirms every claim it uses in the source."""
    source_db, target_db = pair
    src = EventStoreDBClient(source_db.uri)
    dst = EventStoreDBClient(target_db.uri)
    rng = random.Random(seed)
    for n in range(200):
        stream = rng.choice(["order-1", "order-2", "cart-1"])
        claim = rng.choice([10**15, 1, rng.randrange(0, 40_000), None])
        metadata = (
            b'{"user":"x"}'
            if claim is None
            else json.dumps(
                {"$originalPosition": claim, "$originalStreamRevision": claim % 50}
            ).encode()
        )
        src.append_to_stream(
            stream, current_version=StreamState.ANY, events=[_event("Created", n, metadata)]
        )
    job = make_job(source_db, target_db, tmp_path, budget={"max_events": 37})
    run_until_caught_up(job)
    source_events = _all_from(src, None)
    with (
        EventStore(source_db.uri, side="source") as source,
        EventStore(target_db.uri, side="target") as target,
    ):
        for stop in [source_events[0], source_events[-1], *rng.sample(source_events, 10)]:
            p = stop.commit_position
            expected = _user_ids([e for e in source_events if e.commit_position > p], job)
            translated = translate_position(job, source, target, p)
            assert _user_ids(_all_from(dst, translated.target), job) == expected, p
        events = list(src.get_stream("order-1"))
        for stop in [events[0], events[-1], *rng.sample(events, 6)]:
            t = translate_stream(job, source, target, "order-1", stop.stream_position)
            expected = [str(e.id) for e in events if e.stream_position > stop.stream_position]
            received = [
                str(e.id)
                for e in dst.get_stream("order-1")
                if t.target is None or e.stream_position > t.target
            ]
            assert received == expected, stop.stream_position
    src.close()
    dst.close()
