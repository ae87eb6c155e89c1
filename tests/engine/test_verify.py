"""verify (core.tools.verify and `esdb-relay verify`) against real emulators, no mocks.

A source history is migrated once with run_slice into a "golden" target; each test starts a
fresh target emulator loaded with the golden records, corrupts it in one way and checks that
verify reports exactly that, with the right kind, and that the command exits non-zero.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest
import typer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from core import rules
from core.checkpoint import open_store
from core.config import JobConfig
from core.engine import Budget, run_slice
from core.errors import RelayError
from core.eventstore import EventStore
from core.tools.verify import DifferenceKind, VerifyReport, verify
from esdb_emulator import Emulator
from esdb_emulator.security import DEFAULT_USERS
from esdb_emulator.store import (
    ANY,
    DELETED_STREAM,
    ProposedEvent,
    Record,
    Store,
    StreamDeleted,
    StreamNotFound,
    WrongExpectedVersion,
)
from esdb_emulator.workload import Workload, generate
from handlers.cli.verify_cmd import verify as verify_command

WORKLOAD = Workload(
    events=900,
    streams=40,
    seed=21,
    soft_deleted=0.1,
    tombstoned=0.1,
    with_metadata=0.2,
    non_json_metadata=0.05,
)

app = typer.Typer()
app.command("verify")(verify_command)
app.command("other")(lambda: None)  # two commands: `verify` is then invoked by name
runner = CliRunner()


# ------------------------------------------------------------------------------ helpers
def job_for(source: Emulator, target: Emulator, tmp_path: Path, **overrides: object) -> JobConfig:
    payload = {
        "job_id": "verify-test",
        "source": source.uri,
        "target": target.uri,
        "checkpoint_store": f"sqlite:///{tmp_path}/checkpoints-{uuid.uuid4().hex[:8]}.db",
        "budget": {"max_events": 5000},
        **overrides,
    }
    return JobConfig.from_payload(payload)


def migrate(job: JobConfig, *, stop_on_error: bool = False) -> None:
    """Run slices until caught up. `stop_on_error`: an engine error ends the migration early
    (the target is then whatever the engine wrote) instead of failing the test."""
    store = open_store(job.checkpoint_store)
    transform = rules.load_transform(job.transform)
    with (
        EventStore(job.source.get_secret_value(), side="source") as source,
        EventStore(job.target.get_secret_value(), side="target") as target,
    ):
        for _ in range(100):
            try:
                result = run_slice(
                    job, source, target, store, Budget.from_job(job), transform=transform
                )
            except RelayError:
                if stop_on_error:
                    return
                raise
            if result.caught_up:
                return
    raise AssertionError("migration did not catch up")


def check(job: JobConfig, **kwargs: object) -> VerifyReport:
    with (
        EventStore(job.source.get_secret_value(), side="source") as source,
        EventStore(job.target.get_secret_value(), side="target") as target,
    ):
        return verify(job, source, target, **kwargs)


def kinds(report: VerifyReport) -> dict[str, set[DifferenceKind]]:
    out: dict[str, set[DifferenceKind]] = {}
    for d in report.differences:
        out.setdefault(d.stream, set()).add(d.kind)
    return out


def write_config(tmp_path: Path, job: JobConfig) -> Path:
    path = tmp_path / f"job-{uuid.uuid4().hex[:6]}.json"
    data = json.loads(job.model_dump_json())
    data["source"] = job.source.get_secret_value()
    data["target"] = job.target.get_secret_value()
    path.write_text(json.dumps(data))
    return path


def run_cli(*args: str):
    return runner.invoke(app, ["verify", *args])


def user_streams(store: Store) -> list[str]:
    return sorted(
        {
            r.stream
            for r in store.iter_all()
            if not r.stream.startswith("$") and not r.type.startswith("$")
        }
    )


def live_streams(store: Store, *, min_events: int = 1) -> list[str]:
    """Source streams with at least `min_events` visible events, no $maxCount/$tb/deletes."""
    out = []
    for name in user_streams(store):
        meta = store.stream_metadata(name)
        if meta or store.stream_state(name)[1]:
            continue
        if len(store.visible_records(name)) >= min_events:
            out.append(name)
    return out


def deleted_streams(store: Store) -> tuple[list[str], list[str]]:
    soft, hard = [], []
    for name in user_streams(store):
        if store.stream_state(name)[1]:
            hard.append(name)
        elif store.stream_metadata(name).get("$tb") == DELETED_STREAM:
            soft.append(name)
    return soft, hard


def proposed(type_: str = "Injected", data: bytes = b'{"x":1}') -> ProposedEvent:
    return ProposedEvent(str(uuid.uuid4()), type_, "application/json", data, b"{}")


# ------------------------------------------------------------------------------ fixtures
@pytest.fixture(autouse=True)
def _no_env_config(monkeypatch):
    import os

    for name in list(os.environ):
        if name.startswith("ESDB_RELAY_"):
            monkeypatch.delenv(name)


@pytest.fixture(scope="module")
def source():
    with Emulator() as db:
        counts = generate(db.store, WORKLOAD)
        assert counts["soft_deleted"] and counts["tombstoned"] and counts["metadata"]
        yield db


@pytest.fixture(scope="module")
def golden(source, tmp_path_factory) -> tuple[list[Record], int]:
    """The records of a target the relay migrated the source into (original metadata on)."""
    with Emulator() as target:
        migrate(job_for(source, target, tmp_path_factory.mktemp("golden")))
        return target.store.export_records(), target.store.head_position


def load_target(records: list[Record], next_position: int) -> Emulator:
    """An emulator (not started yet: use it in `with`) holding these records."""
    db = Emulator()
    db.store.load_records(records, next_position)
    return db


@pytest.fixture
def target(golden):
    with load_target(*golden) as db:
        yield db


@pytest.fixture
def job(source, target, tmp_path) -> JobConfig:
    return job_for(source, target, tmp_path)


def rebuilt_target(golden: tuple[list[Record], int], change) -> Emulator:
    """A target holding the golden records as `change(records)` returns them."""
    records, next_position = golden
    return load_target(change(list(records)), next_position)


# ------------------------------------------------------------------------------ equal
def test_equal_after_migration(source, job):
    calls: list[tuple[int, int]] = []
    report = check(job, progress=lambda done, total: calls.append((done, total)))
    assert report.ok, report.differences[:5]
    names = user_streams(source.store)
    soft, hard = deleted_streams(source.store)
    assert report.streams_in_source == report.streams_checked == len(names)
    assert report.streams_equal == len(names) and report.streams_differing == 0
    assert report.extra_streams_checked and report.extra_streams == 0
    visible = sum(
        len(source.store.visible_records(n)) for n in names if n not in soft and n not in hard
    )
    assert report.events_compared == visible > 0
    assert report.seconds > 0 and report.events_per_second > 0
    assert soft and hard  # deleted states were compared too
    assert calls[0] == (0, len(names)) and calls[-1] == (len(names), len(names))
    assert len(calls) == len(names) + 1


def test_cli_exits_zero_when_equal(job, tmp_path):
    result = run_cli("--config", str(write_config(tmp_path, job)))
    assert result.exit_code == 0, result.output
    assert "OK" in result.stdout
    assert "streams checked" in result.stdout


def test_workers_give_the_same_report(source, golden, tmp_path):
    records, next_position = golden
    name = live_streams(source.store, min_events=3)[0]
    victim = next(r for r in records if r.stream == name and r.revision == 1)
    changed = [
        dataclasses.replace(r, data=b'{"tampered":true}') if r is victim else r for r in records
    ]
    with load_target(changed, next_position) as target:
        job = job_for(source, target, tmp_path)
        one = check(job)
        many = check(job, workers=6)
    assert not one.ok
    assert one.differences == many.differences
    assert one.events_compared == many.events_compared
    assert one.streams_equal == many.streams_equal


def test_small_pages(source, golden, tmp_path, monkeypatch):
    """$all scans and stream reads go page by page; a difference deep in a stream is found."""
    import core.tools.verify.streams

    monkeypatch.setattr(core.tools.verify.streams, "PAGE", 7)
    name = max(live_streams(source.store), key=lambda n: len(source.store.visible_records(n)))
    last = source.store.stream_state(name)[0]
    assert last >= 15
    records, next_position = golden
    victim = next(r for r in records if r.stream == name and r.revision == last - 1)
    changed = [dataclasses.replace(r, data=b"{}") if r is victim else r for r in records]
    with load_target(records, next_position) as same, load_target(changed, next_position) as other:
        equal = check(job_for(source, same, tmp_path))
        assert equal.ok and equal.streams_checked == len(user_streams(source.store))
        report = check(job_for(source, other, tmp_path))
    [d] = report.differences
    assert (d.stream, d.kind, d.source_revision) == (name, DifferenceKind.DIFFERENT_EVENT, last - 1)
    assert report.events_compared == equal.events_compared


# ------------------------------------------------------------------------------ corruptions
def test_extra_event_on_target(source, target, job, tmp_path):
    name = live_streams(source.store)[0]
    last = target.store.stream_state(name)[0]
    target.store.append(name, ANY, [proposed()])
    report = check(job)
    assert not report.ok
    assert kinds(report) == {name: {DifferenceKind.EXTRA_EVENT}}
    [d] = report.differences
    assert d.target_revision == last + 1 and d.source_revision is None
    assert report.streams_differing == 1
    assert run_cli("--config", str(write_config(tmp_path, job))).exit_code == 1


def test_tombstoned_target_stream(source, target, job, tmp_path):
    name = live_streams(source.store)[1]
    target.store.tombstone(name, ANY)
    report = check(job)
    assert kinds(report) == {name: {DifferenceKind.DELETED_STATE}}
    assert "source is live, target is tombstoned" in report.differences[0].detail
    result = run_cli("--config", str(write_config(tmp_path, job)))
    assert result.exit_code == 1
    assert "deleted_state" in result.stdout


def test_soft_deleted_target_stream(source, target, job):
    name = live_streams(source.store)[2]
    target.store.delete(name, ANY)
    report = check(job)
    assert kinds(report) == {name: {DifferenceKind.DELETED_STATE}}
    assert "target is soft-deleted" in report.differences[0].detail


def test_tombstone_missing_on_target(source, golden, tmp_path):
    _, hard = deleted_streams(source.store)
    name = hard[0]
    target = rebuilt_target(
        golden, lambda rs: [r for r in rs if not (r.stream == name and r.type == "$streamDeleted")]
    )
    with target:
        report = check(job_for(source, target, tmp_path))
    assert kinds(report) == {name: {DifferenceKind.DELETED_STATE}}
    assert "source is tombstoned, target is live" in report.differences[0].detail


def test_different_event_with_another_id(source, golden, tmp_path):
    name = live_streams(source.store, min_events=3)[0]
    records, _ = golden
    victim = next(r for r in records if r.stream == name and r.revision == 1)
    new_id = str(uuid.uuid4())
    target = rebuilt_target(
        golden,
        lambda rs: [dataclasses.replace(r, event_id=new_id) if r is victim else r for r in rs],
    )
    with target:
        job = job_for(source, target, tmp_path)
        report = check(job)
        result = run_cli("--config", str(write_config(tmp_path, job)))
    [d] = report.differences
    assert (d.stream, d.kind) == (name, DifferenceKind.DIFFERENT_EVENT)
    assert d.event_id == victim.event_id and new_id in d.detail
    assert d.source_revision == 1 and d.target_revision == 1
    assert result.exit_code == 1


def test_different_data_type_and_metadata(source, golden, tmp_path):
    names = live_streams(source.store, min_events=2)
    records, _ = golden
    by_name = {
        names[0]: {"data": b'{"changed":1}'},
        names[1]: {"type": "SomethingElse"},
        names[2]: {"metadata": b'{"correlationId":"forged"}'},
        names[3]: {"content_type": "application/octet-stream"},
    }
    victims = {
        next(r for r in records if r.stream == n and r.revision == 0).event_id: change
        for n, change in by_name.items()
    }

    def change(rs: list[Record]) -> list[Record]:
        return [
            dataclasses.replace(r, **victims[r.event_id])
            if r.event_id in victims and not r.stream.startswith("$")
            else r
            for r in rs
        ]

    with rebuilt_target(golden, change) as target:
        report = check(job_for(source, target, tmp_path))
    assert kinds(report) == {n: {DifferenceKind.DIFFERENT_EVENT} for n in by_name}
    details = {d.stream: d.detail for d in report.differences}
    assert details[names[0]].startswith("data sha256")
    assert details[names[1]].startswith("type ") and "'SomethingElse'" in details[names[1]]
    assert details[names[2]].startswith("metadata sha256")
    assert details[names[3]].startswith("content type")
    assert all(d.source_revision == 0 == d.target_revision for d in report.differences)


def test_metadata_a_v2_append_rebuilt_is_compared_by_value(tmp_path):
    """With multi_append, interleaved streams go to the target in v2 appends: its metadata then
    carries `$schema.*` and numbers as the server re-serialised them. That is equal; a changed
    value under the same `$schema.*` keys is not."""
    with Emulator() as source:
        for n in range(30):
            metadata = json.dumps({"n": n, "ratio": 0.5}).encode() if n % 2 else b""
            source.store.append(f"order-{n % 5}", ANY, [proposed(data=b"{}")])
            event = ProposedEvent(str(uuid.uuid4()), "Added", "application/json", b"{}", metadata)
            source.store.append(f"cart-{n % 3}", ANY, [event])
        with Emulator() as target:
            migrate(job_for(source, target, tmp_path, multi_append=True))
            assert check(job_for(source, target, tmp_path)).ok
            golden = target.store.export_records(), target.store.head_position
        synthesized = [r for r in golden[0] if b'"$schema.name"' in r.metadata]
        assert synthesized, "the target was not written by v2 appends"
        victim = synthesized[len(synthesized) // 2]
        value = json.loads(victim.metadata)
        value["$originalPosition"] += 1
        forged = json.dumps(value).encode()
        with rebuilt_target(
            golden,
            lambda rs: [dataclasses.replace(r, metadata=forged) if r is victim else r for r in rs],
        ) as target:
            report = check(job_for(source, target, tmp_path))
    (difference,) = report.differences
    assert difference.stream == victim.stream and difference.event_id == victim.event_id
    assert difference.detail.startswith("metadata sha256")


def test_events_in_another_order(source, golden, tmp_path):
    name = live_streams(source.store, min_events=3)[0]

    def swap(rs: list[Record]) -> list[Record]:
        i0 = next(i for i, r in enumerate(rs) if r.stream == name and r.revision == 0)
        i1 = next(i for i, r in enumerate(rs) if r.stream == name and r.revision == 1)
        a, b = rs[i0], rs[i1]
        fields = ("event_id", "type", "content_type", "data", "metadata")
        rs[i0] = dataclasses.replace(a, **{f: getattr(b, f) for f in fields})
        rs[i1] = dataclasses.replace(b, **{f: getattr(a, f) for f in fields})
        return rs

    with rebuilt_target(golden, swap) as target:
        job = job_for(source, target, tmp_path)
        report = check(job)
        result = run_cli("--config", str(write_config(tmp_path, job)), "--json")
    assert kinds(report) == {name: {DifferenceKind.ORDER}}
    [d] = report.differences  # one event moved, not two
    assert d.source_revision in (0, 1)
    assert result.exit_code == 1
    assert json.loads(result.stdout)["differences"][0]["kind"] == "order"


def test_dropped_stream_is_missing(source, golden, tmp_path):
    name = live_streams(source.store, min_events=2)[0]
    expected = len(source.store.visible_records(name))
    target = rebuilt_target(
        golden, lambda rs: [r for r in rs if r.stream not in (name, "$$" + name)]
    )
    with target:
        report = check(job_for(source, target, tmp_path))
    [d] = report.differences
    assert (d.stream, d.kind) == (name, DifferenceKind.MISSING_STREAM)
    assert d.source_revision == 0 and f"{expected} event(s)" in d.detail


def test_dropped_last_event_is_missing(source, golden, tmp_path):
    name = live_streams(source.store, min_events=2)[0]
    last = source.store.stream_state(name)[0]
    target = rebuilt_target(
        golden, lambda rs: [r for r in rs if not (r.stream == name and r.revision == last)]
    )
    with target:
        report = check(job_for(source, target, tmp_path))
    [d] = report.differences
    assert (d.stream, d.kind, d.source_revision) == (name, DifferenceKind.MISSING_EVENT, last)


def test_stream_metadata_differs(source, target, job):
    name = live_streams(source.store)[3]
    target.store.set_metadata(name, {"owner": "someone-else", "$maxAge": 3600})
    report = check(job)
    [d] = report.differences
    assert (d.stream, d.kind) == (name, DifferenceKind.METADATA)
    assert "owner" in d.detail and "$maxAge" in d.detail


def test_truncate_before_is_compared_by_effect(source, target, job):
    """`$tb` values differ between source and target (translated); only the effect counts."""
    tb_streams = [
        n
        for n in user_streams(source.store)
        if isinstance(source.store.stream_metadata(n).get("$tb"), int)
    ]
    assert tb_streams
    assert check(job).ok
    # Moving `$tb` on the target hides events the source shows: reported as missing events.
    name = next(n for n in live_streams(source.store, min_events=2))
    target.store.set_metadata(name, {"$tb": 1})
    report = check(job)
    assert kinds(report) == {name: {DifferenceKind.MISSING_EVENT}}
    assert report.differences[0].source_revision == 0


def test_max_age_target_events_the_source_hides_are_unverified(tmp_path):
    """Target copies are younger than the source's events: under `$maxAge` the target still
    shows events the source already hides. They are counted, not reported."""
    with Emulator() as source, Emulator() as target:
        source.store.append("aged-1", ANY, [proposed(), proposed()])
        source.store.append("aged-2", ANY, [proposed()])
        for name in ("aged-1", "aged-2"):
            source.store.set_metadata(name, {"$maxAge": 2})
        time.sleep(2.2)
        fresh = [proposed(), proposed()]
        source.store.append("aged-1", ANY, fresh)
        job = job_for(source, target, tmp_path)
        migrate(job)
        report = check(job)
        assert report.ok, report.differences
        assert report.events_unverified == 3
        assert len(report.notes) == 2
        # An extra event *after* the expected ones is still a difference.
        target.store.append("aged-1", ANY, [proposed()])
        report = check(job)
        assert kinds(report) == {"aged-1": {DifferenceKind.EXTRA_EVENT}}


def test_extra_stream_on_target(source, target, job):
    target.store.append("intruder-1", ANY, [proposed(), proposed()])
    target.store.set_metadata("intruder-2", {"x": 1})
    report = check(job)
    assert kinds(report) == {
        "intruder-1": {DifferenceKind.EXTRA_STREAM},
        "intruder-2": {DifferenceKind.EXTRA_STREAM},
    }
    assert report.extra_streams == 2
    assert report.streams_differing == 0  # every source stream is equal
    # A sample does not scan the target for extra streams.
    sampled = check(job, sample=5)
    assert sampled.ok and not sampled.extra_streams_checked


def test_the_scans_report_progress_against_a_known_total_and_a_sample_says_why(job):
    """Each scan of `$all` reports how far it got against that side's head (a known total,
    never "0/?"); a sample scans only the source, and its report says why it must."""
    calls: list[tuple[str, int, int]] = []
    full = check(job, scan_progress=lambda side, done, head: calls.append((side, done, head)))
    assert full.ok
    sides = [side for side, _, _ in calls]
    assert sides[0] == "source" and sides[-1] == "target" and len(calls) > 2
    assert all(head > 0 and 0 <= done <= head for _, done, head in calls)
    for side in ("source", "target"):
        last = [(done, head) for s, done, head in calls if s == side][-1]
        assert last[0] == last[1]  # each scan ends at its known total
    calls.clear()
    sampled = check(
        job, sample=5, scan_progress=lambda side, done, head: calls.append((side, done, head))
    )
    assert {side for side, _, _ in calls} == {"source"}  # the target's $all is not scanned
    assert any("no complete list" in note and "$all" in note for note in sampled.notes)


def test_differences_are_bounded(source, target, job):
    names = live_streams(source.store)[:6]
    for name in names:
        target.store.append(name, ANY, [proposed(), proposed()])
    report = check(job, max_differences=5)
    assert report.differences_total == 12
    assert len(report.differences) == 5 and report.differences_truncated
    assert report.streams_differing == 6
    assert not report.ok


def test_original_metadata_setting_is_checked(source, target, tmp_path):
    """The golden target carries `$original*` keys; a job without them expects none."""
    job = job_for(source, target, tmp_path, original_metadata=False)
    report = check(job)
    assert {d.kind for d in report.differences} == {DifferenceKind.DIFFERENT_EVENT}
    assert all(d.detail.startswith("metadata sha256") for d in report.differences)
    # Events with non-JSON metadata are copied byte for byte either way: not reported.
    non_json = {
        r.event_id
        for r in source.store.iter_all()
        if r.metadata.startswith(b"\x00") and not r.stream.startswith("$")
    }
    assert non_json and not non_json & {d.event_id for d in report.differences}


def test_migration_without_original_metadata_verifies(source, tmp_path):
    with Emulator() as target:
        job = job_for(source, target, tmp_path, original_metadata=False)
        migrate(job)
        assert check(job).ok


# ------------------------------------------------------------------------------ sample
def test_sample_checks_exactly_n_streams_deterministically(source, target, job, tmp_path):
    first = check(job, sample=7, seed=3)
    again = check(job, sample=7, seed=3)
    other = check(job, sample=7, seed=4)
    assert first.streams_checked == 7 and first.sample == 7
    assert first.sampled_streams == again.sampled_streams
    assert first.sampled_streams != other.sampled_streams
    assert len(set(first.sampled_streams)) == 7
    assert first.streams_in_source == len(user_streams(source.store))
    # A sample bigger than the source checks every stream once.
    assert check(job, sample=10_000).streams_checked == first.streams_in_source

    # Corrupt one sampled stream and one stream outside the sample.
    inside = next(n for n in first.sampled_streams if n in live_streams(source.store))
    outside = next(n for n in live_streams(source.store) if n not in first.sampled_streams)
    for name in (inside, outside):
        target.store.append(name, ANY, [proposed()])
    report = check(job, sample=7, seed=3)
    assert set(kinds(report)) == {inside}
    config = str(write_config(tmp_path, job))
    result = run_cli("--config", config, "--sample", "7", "--seed", "3", "--json")
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["streams_checked"] == 7 and data["sampled_streams"] == first.sampled_streams
    assert {d["stream"] for d in data["differences"]} == {inside}


# ------------------------------------------------------------------------------ filters
def test_filtered_job_does_not_report_excluded_streams(source, tmp_path):
    filters = {"include_stream_prefixes": ["order-", "cart-"], "exclude_streams": ["5$"]}
    with Emulator() as target:
        job = job_for(source, target, tmp_path, filters=filters)
        migrate(job)
        report = check(job)
        assert report.ok, report.differences[:5]
        accepted = [n for n in user_streams(source.store) if job.filters.accepts_stream(n)]
        assert report.streams_checked == len(accepted) < len(user_streams(source.store))
        # The unfiltered job sees the excluded streams missing.
        unfiltered = check(job_for(source, target, tmp_path))
        assert {d.kind for d in unfiltered.differences} <= {
            DifferenceKind.MISSING_STREAM,
            DifferenceKind.DELETED_STATE,
            DifferenceKind.METADATA,
        }
        assert not {d.stream for d in unfiltered.differences} & set(accepted)
        # A target stream the filters exclude is extra, even though the source has it.
        excluded = next(n for n in live_streams(source.store) if not job.filters.accepts_stream(n))
        target.store.append(excluded, ANY, [proposed()])
        report = check(job)
        [d] = report.differences
        assert (d.stream, d.kind) == (excluded, DifferenceKind.EXTRA_STREAM)
        assert "excluded by the filters" in d.detail


def test_event_type_filter_and_max_count(source, tmp_path):
    """Event-type filters drop events; with `$maxCount` the target's window reaches further
    back than the source's, and those older target events are counted as unverifiable."""
    filters = {"exclude_event_types": ["Updated$", "Closed$"]}
    with Emulator() as target:
        job = job_for(source, target, tmp_path, filters=filters)
        migrate(job)
        report = check(job)
        assert report.ok, report.differences[:5]
        dropped = sum(
            1
            for r in target.store.iter_all()
            if r.type.endswith(("Updated", "Closed")) and not r.stream.startswith("$")
        )
        assert dropped == 0
        # A filtered-out event that reaches the target anyway is an extra event.
        name = live_streams(source.store)[0]
        target.store.append(name, ANY, [proposed(type_="OrderUpdated")])
        report = check(job)
        assert kinds(report) == {name: {DifferenceKind.EXTRA_EVENT}}


def test_scavenge_filter_migration_verifies(tmp_path):
    # No non-JSON event metadata: see test_transform_is_applied_before_comparing.
    with Emulator() as source, Emulator() as target:
        generate(source.store, dataclasses.replace(WORKLOAD, non_json_metadata=0.0))
        job = job_for(source, target, tmp_path, filters={"scavenge": True})
        migrate(job)
        report = check(job)
        assert report.ok, report.differences[:5]
        copied = sum(1 for r in target.store.iter_all() if not r.stream.startswith("$"))
        assert copied < sum(1 for r in source.store.iter_all() if not r.stream.startswith("$"))


TRANSFORM = """
from dataclasses import replace


def rename(event):
    if event.type.endswith("Closed"):
        return None
    if event.type.endswith("Created"):
        return [replace(event, type="V2" + event.type), event]
    return replace(event, type="V2" + event.type)
"""


def test_transform_is_applied_before_comparing(tmp_path, monkeypatch):
    module = f"verify_transform_{uuid.uuid4().hex[:6]}"
    (tmp_path / f"{module}.py").write_text(textwrap.dedent(TRANSFORM))
    monkeypatch.syspath_prepend(str(tmp_path))
    # No non-JSON event metadata here: the engine translates `$tb` through the
    # `$originalStreamRevision` of target events and keeps the source's value when the tail
    # has an event without it, which is wrong once a transform shifts the revisions (see
    # test_truncate_before_under_filters_is_judged_by_effect).
    workload = dataclasses.replace(WORKLOAD, non_json_metadata=0.0, seed=5)
    try:
        with Emulator() as source, Emulator() as target:
            generate(source.store, workload)
            job = job_for(source, target, tmp_path, transform=f"{module}:rename")
            migrate(job)
            report = check(job)
            assert report.ok, report.differences[:5]
            assert report.transform == job.transform
            assert any("transform" in n for n in report.notes)
            created = sum(1 for r in source.store.iter_all() if r.type.endswith("Created"))
            assert len(target.store) > created  # the transform did duplicate events
            # The untransformed view of the same target differs.
            plain = check(job_for(source, target, tmp_path))
            assert not plain.ok
    finally:
        sys.modules.pop(module, None)


def test_truncate_before_under_filters_is_judged_by_effect(tmp_path):
    """With filters the target's revisions differ from the source's: a `$tb` must be the
    translated revision to hide the same events. Targets built here by hand, one with the
    right translation and one with the source's value kept."""

    def event(type_: str, metadata: bytes = b"{}") -> ProposedEvent:
        return ProposedEvent(str(uuid.uuid4()), type_, "application/json", b"{}", metadata)

    events = [event("Noise"), event("Noise"), event("Keep"), event("Keep"), event("Keep", b"\x00")]
    with Emulator() as source, Emulator() as good, Emulator() as bad:
        source.store.append("a-1", ANY, events)
        source.store.set_metadata("a-1", {"$tb": 3, "owner": "x"})
        for target, tb in ((good, 1), (bad, 3)):
            target.store.append("a-1", ANY, events[2:])
            target.store.set_metadata("a-1", {"$tb": tb, "owner": "x"})
        filters = {"exclude_event_types": ["^Noise$"]}
        ok = check(job_for(source, good, tmp_path, filters=filters, original_metadata=False))
        report = check(job_for(source, bad, tmp_path, filters=filters, original_metadata=False))
    assert ok.ok, ok.differences
    assert {d.kind for d in report.differences} == {DifferenceKind.MISSING_EVENT}
    assert [d.source_revision for d in report.differences] == [3, 4]


# ------------------------------------------------------------------------------ the CLI
def test_cli_json_parses(job, tmp_path):
    result = run_cli("--config", str(write_config(tmp_path, job)), "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["ok"] is True and data["differences"] == []
    assert data["streams_checked"] == data["streams_in_source"] > 0
    VerifyReport.model_validate({k: v for k, v in data.items() if k not in ("ok",)})


def test_cli_config_errors_exit_2(tmp_path):
    result = run_cli("--config", str(tmp_path / "missing.toml"))
    assert result.exit_code == 2
    assert "does not exist" in result.output
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"job_id": "x", "source": "http://nope", "target": "esdb://h:1"}))
    result = run_cli("--config", str(bad))
    assert result.exit_code == 2
    assert "source" in result.output


def test_cli_unreachable_source_exits_2(tmp_path, target):
    path = tmp_path / "job.json"
    path.write_text(
        json.dumps(
            {
                "job_id": "x",
                "source": "esdb://admin:s3cret-pw@127.0.0.1:1?Tls=false&MaxDiscoverAttempts=1",
                "target": target.uri,
            }
        )
    )
    result = run_cli("--config", str(path))
    assert result.exit_code == 2, result.output
    assert "verify failed" in result.output
    assert "s3cret-pw" not in result.output


def test_cli_never_prints_credentials(tmp_path):
    password = next(iter(DEFAULT_USERS.values()))
    with Emulator(tls=True) as source, Emulator(tls=True) as target:
        source.store.append("order-1", ANY, [proposed(), proposed()])
        job = job_for(source, target, tmp_path)
        assert password in job.source.get_secret_value()
        migrate(job)
        target.store.append("order-1", ANY, [proposed()])
        config = str(write_config(tmp_path, job))
        for args in ((), ("--json",)):
            result = run_cli("--config", config, *args)
            assert result.exit_code == 1, result.output
            assert password not in result.output
            assert "tlsCaFile" not in result.output
        human = run_cli("--config", config)
        assert target.target in human.stdout and "extra_event" in human.stdout


# ------------------------------------------------------------------------------ random histories
# verify's verdict is checked against an oracle written here from the emulator stores, so the
# property holds whether or not the engine copied a history correctly.
STREAM_METADATA = [
    {"$maxCount": 2},
    {"$tb": 1},
    {"$tb": 3, "custom": "x"},
    {"owner": {"team": 7}},
    {"$maxCount": 3, "$cacheControl": 5},
]
EVENT_METADATA = [b"", b'{"a":1}', b"\x00\xff not json", b"[1]", b' { "k" : "v" } ']
ORIGINAL_KEYS = ("$originalStreamRevision", "$originalPosition", "$originalCreated")

operation = st.one_of(
    st.tuples(
        st.just("append"), st.integers(0, 4), st.integers(1, 4), st.sampled_from(EVENT_METADATA)
    ),
    st.tuples(st.just("meta"), st.integers(0, 4), st.sampled_from(STREAM_METADATA), st.none()),
    st.tuples(
        st.sampled_from(["delete", "tombstone", "link"]), st.integers(0, 4), st.none(), st.none()
    ),
)
corruption = st.sampled_from(
    ["none", "extra", "drop-last", "retype", "remeta", "tombstone", "soft-delete", "extra-stream"]
)


def apply_ops(store: Store, names: list[str], ops: list[tuple]) -> None:
    for kind, index, arg, metadata in ops:
        name = names[index]
        try:
            if kind == "append":
                events = [
                    ProposedEvent(str(uuid.uuid4()), "E", "application/json", b"{}", metadata)
                    for _ in range(arg)
                ]
                store.append(name, ANY, events)
            elif kind == "meta":
                store.set_metadata(name, dict(arg))
            elif kind == "delete":
                store.delete(name, ANY)
            elif kind == "tombstone":
                store.tombstone(name, ANY)
            else:
                link = ProposedEvent(str(uuid.uuid4()), "$>", "text/plain", f"0@{name}".encode())
                store.append(f"$ce-{name}", ANY, [link])
        except (StreamDeleted, WrongExpectedVersion):
            pass


def _visible(store: Store, name: str) -> list[Record]:
    try:
        return [r for r in store.visible_records(name) if not r.type.startswith("$")]
    except (StreamDeleted, StreamNotFound):
        return []


def _state(store: Store, name: str) -> str:
    if store.stream_state(name)[1]:
        return "tombstoned"
    return "soft" if store.stream_metadata(name).get("$tb") == DELETED_STREAM else "live"


def _synthesized(target: Record) -> dict | None:
    """The properties of an event a v2 (multi-stream) append wrote: v1 reads show them as JSON
    plus `$schema.name` and `$schema.format`."""
    if b"$schema.name" not in target.metadata:
        return None
    try:
        value = json.loads(target.metadata)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(value, dict):
        return None
    if value.get("$schema.name") != target.type or "$schema.format" not in value:
        return None
    return {k: v for k, v in value.items() if k not in ("$schema.name", "$schema.format")}


def _metadata_matches(source: Record, target: Record, original: bool) -> bool:
    try:
        value = json.loads(source.metadata) if source.metadata.strip() else {}
    except (ValueError, UnicodeDecodeError):
        value = None
    synthesized = _synthesized(target)
    if not original:
        if synthesized is not None:
            return synthesized == value
        return source.metadata == target.metadata
    if not isinstance(value, dict):
        return source.metadata == target.metadata
    try:
        copied = synthesized if synthesized is not None else json.loads(target.metadata)
    except (ValueError, UnicodeDecodeError):
        return False
    if not isinstance(copied, dict):
        return False
    added = {k: copied.pop(k) for k in ORIGINAL_KEYS if k not in value and k in copied}
    return (
        copied == value
        and set(added) == set(ORIGINAL_KEYS) - set(value)
        and added.get("$originalStreamRevision", source.revision) == source.revision
        and added.get("$originalPosition", source.position) == source.position
    )


def oracle(source: Store, target: Store, original: bool) -> set[str]:
    """The user streams where the target differs from the source (no filters, no transform)."""
    names = set(user_streams_with_metadata(source))
    differing = set(user_streams_with_metadata(target)) - names
    for name in names:
        state = _state(source, name)
        if state != _state(target, name):
            differing.add(name)
            continue
        if state == "tombstoned":
            continue
        meta_s = {k: v for k, v in source.stream_metadata(name).items() if k != "$tb"}
        meta_t = {k: v for k, v in target.stream_metadata(name).items() if k != "$tb"}
        if meta_s != meta_t:
            differing.add(name)
        if state == "soft":
            continue
        s, t = _visible(source, name), _visible(target, name)

        def fields(r: Record) -> tuple:
            return (r.event_id, r.type, r.content_type, r.data)

        if [fields(r) for r in s] != [fields(r) for r in t] or not all(
            _metadata_matches(a, b, original) for a, b in zip(s, t, strict=True)
        ):
            differing.add(name)
    return differing


def user_streams_with_metadata(store: Store) -> list[str]:
    names = set()
    for r in store.iter_all():
        if r.stream.startswith("$$") and not r.stream.startswith("$$$"):
            names.add(r.stream[2:])
        elif not r.stream.startswith("$") and (not r.type.startswith("$") or r.revision > 2**62):
            names.add(r.stream)
    return sorted(names)


def corrupt_target(target: Store, names: list[str], corrupt: str) -> str | None:
    live = [n for n in names if _state(target, n) == "live" and _visible(target, n)]
    if corrupt == "extra-stream":
        name = f"intruder-{uuid.uuid4().hex[:6]}"
        target.append(name, ANY, [proposed()])
        return name
    if not live:
        return None
    name = live[0]
    if corrupt == "extra":
        target.append(name, ANY, [proposed()])
    elif corrupt == "tombstone":
        target.tombstone(name, ANY)
    elif corrupt == "soft-delete":
        target.delete(name, ANY)
    elif corrupt in ("drop-last", "retype", "remeta"):
        victim = _visible(target, name)[-1]
        changes = {"retype": {"type": "Other"}, "remeta": {"metadata": b'{"forged":1}'}}
        records = [
            dataclasses.replace(r, **changes[corrupt]) if r is victim and corrupt in changes else r
            for r in target.export_records()
            if r is not victim or corrupt != "drop-last"
        ]
        target.load_records(records, target.head_position)
    else:
        return None
    return name


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    ops=st.lists(operation, min_size=1, max_size=30),
    original=st.booleans(),
    corrupt=corruption,
)
def test_random_histories_verdict_matches_an_oracle(tmp_path, ops, original, corrupt):
    names = [f"s{i}-{uuid.uuid4().hex[:6]}" for i in range(5)]
    with Emulator() as source, Emulator() as target:
        apply_ops(source.store, names, ops)
        job = job_for(source, target, tmp_path, original_metadata=original)
        # verify is judged against the oracle, whatever the engine made of the history.
        migrate(job, stop_on_error=True)

        def differing(report: VerifyReport) -> set[str]:
            return {d.stream for d in report.differences}

        before = check(job)
        assert differing(before) == oracle(source.store, target.store, original), before
        assert before.ok == (before.differences == [])
        victim = corrupt_target(target.store, names, corrupt)
        after = check(job)
        expected = oracle(source.store, target.store, original)
        assert differing(after) == expected, (corrupt, after.differences)
        if victim is not None:
            assert victim in expected and not after.ok
