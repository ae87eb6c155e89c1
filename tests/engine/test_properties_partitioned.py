"""Property-based tests of run_slice in partitioned mode: the random histories, job settings
and target faults of test_properties.py, replicated by 2-8 writer threads.

The oracle is test_properties.py's, except for the global order, which partitioned mode does
not keep: instead every replicated user event is on the target exactly once, and each stream's
events are in the source's order.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.checkpoint import Checkpoint, Position, open_store
from core.config import JobConfig
from core.engine import Budget, SliceResult, run_slice
from core.errors import RelayError
from core.eventstore import EventStore
from esdb_emulator import Emulator
from esdb_emulator.store import Record, Store
from tests.engine.test_properties import (
    Case,
    History,
    accepts_stream,
    accepts_type,
    apply_history,
    cases,
    check_metadata,
    expected_view,
    target_view,
)


@pytest.fixture(scope="module")
def emulators():
    with (
        Emulator() as source,
        Emulator() as target,
        EventStore(source.uri, side="source") as s,
        EventStore(target.uri, side="target") as t,
    ):
        yield source, target, s, t


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("properties-partitioned")


def replicate(emulators, workdir: Path, case: Case, history: History, **settings: object) -> None:
    source, target, s, t = emulators
    job_id = f"job-{history.prefix}"
    include, exclude, exclude_types = case.filters
    job = JobConfig.load(
        payload={
            "job_id": job_id,
            "source": source.uri,
            "target": target.uri,
            **settings,
            "checkpoint_store": f"sqlite:///{workdir}/{job_id}.db",
            "budget": {"max_events": case.max_events},
            "batch": {"max_events": case.batch},
            "original_metadata": case.original_metadata,
            "filters": {
                "include_streams": include,
                "exclude_streams": exclude,
                "exclude_event_types": exclude_types,
            },
        }
    )
    store = open_store(job.checkpoint_store)
    lease = store.acquire(job_id, "test-setup", 30)
    start = Position(commit=history.start, prepare=history.start)
    store.commit(lease, Checkpoint(job_id=job_id, position=start))
    store.release(lease)

    results: list[SliceResult] = []
    target.faults.update(
        unavailable_rate=case.unavailable_rate,
        methods={"BatchAppend", "AppendSession"},
        seed=case.seed,
    )
    try:
        for _ in range(400):
            try:
                result = run_slice(
                    job, s, t, store, Budget(case.max_events, 10**9, time.monotonic() + 60)
                )
            except RelayError as e:
                results.append(SliceResult(job_id, "failed", error=str(e)))
                continue
            results.append(result)
            if result.caught_up:
                return
    finally:
        target.faults.reset()
    raise AssertionError(f"did not catch up: {[r.error for r in results[-3:]]}")


def check(
    source: Store,
    target: Store,
    case: Case,
    history: History,
    check_metadata: Callable[[Case, Record, Record], None] = check_metadata,
) -> None:
    def user(r: Record) -> bool:
        return r.stream.startswith(history.prefix) and not r.type.startswith("$")

    def fields(records: list[Record]) -> list[tuple]:
        return [(r.event_id, r.type, r.content_type, r.data) for r in records]

    for name in history.names:
        if not accepts_stream(case, name):
            assert target_view(target, name) == "not found", name
            assert target_view(target, "$$" + name) == "not found", name
            continue
        expected = expected_view(source, case, name)
        actual = target_view(target, name)
        if isinstance(expected, list):
            if not expected and actual == "not found":
                actual = []
            assert isinstance(actual, list), (name, actual)
            assert fields(actual) == fields(expected), name
            for s, t in zip(expected, actual, strict=True):
                check_metadata(case, s, t)
            meta_source = source.stream_metadata(name)
            meta_target = target.stream_metadata(name)
            assert {k: v for k, v in meta_target.items() if k != "$tb"} == {
                k: v for k, v in meta_source.items() if k != "$tb"
            }, name
        else:
            assert actual == expected, name

    wanted = [
        r
        for r in source.iter_all()
        if r.position > history.start
        and user(r)
        and accepts_stream(case, r.stream)
        and accepts_type(case, r.type)
    ]
    written = [r for r in target.iter_all() if user(r)]
    # Every replicated user event once (hidden ones too), each stream in its source order.
    assert Counter(r.event_id for r in written) == Counter(r.event_id for r in wanted)
    for name in history.names:
        assert [r.event_id for r in written if r.stream == name] == [
            r.event_id for r in wanted if r.stream == name
        ], name
    accepted = {n for n in history.names if accepts_stream(case, n)}
    for name in target.stream_names():
        if history.prefix in name:
            assert name in accepted or (name.startswith("$$") and name[2:] in accepted), name


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=cases, partitions=st.integers(2, 8))
def test_target_equals_filtered_source_in_partitioned_mode(emulators, workdir, case, partitions):
    source = emulators[0].store
    history = apply_history(source, case)
    replicate(emulators, workdir, case, history, mode="partitioned", partitions=partitions)
    check(source, emulators[1].store, case, history)
