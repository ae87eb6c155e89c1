"""Property-based tests of run_slice: random histories, random job settings, faults.

Each example writes a random history (interleaved appends, soft deletes and recreates,
tombstones, stream metadata with `$maxCount`/`$tb`/custom keys, links and system-stream events
that must be skipped, and event metadata as real users have it: empty, JSON objects padded with
whitespace or in any key order, JSON scalars, non-JSON bytes, and data migrated before whose
metadata already carries `$original*` keys larger, smaller or equal to the real position, or
`$schema.*` keys) straight into a fresh source emulator's store, replicates it with random
budgets, batch sizes, filters, scavenge, a transform (drops, renames, splits) and
`original_metadata`, with UNAVAILABLE faults in the
target's appends so slices fail mid-write and later ones resume, then:

- checks the target with tests/oracle.py, written from the documented rules, never from the
  engine's code;
- runs `esdb-relay verify` (core.tools.verify) and requires it to agree with the oracle: 0
  differences exactly when the oracle finds none, also after the target was tampered with
  (an extra event, changed stream metadata, a tombstone, an extra stream).

The partitioned, multi-stream-append and AppendRecords variants
(test_properties_partitioned.py, test_properties_multi_append.py,
test_properties_append_records.py) run the same examples through those modes.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from core.checkpoint import open_store
from core.config import JobConfig
from core.engine import Budget, SliceResult, run_slice
from core.errors import RelayError
from core.eventstore import EventStore
from core.rules import load_transform
from core.tools.verify import verify
from esdb_emulator import Emulator
from esdb_emulator.store import (
    ANY,
    ProposedEvent,
    Record,
    Store,
    StreamDeleted,
    WrongExpectedVersion,
)
from tests import oracle

TRANSFORM = "tests.engine.sample_transforms:reshape"
JSON_CT = "application/json"
BINARY_CT = "application/octet-stream"

EVENT_TYPES = ["Created", "Updated", "Removed", "Noise"]
EQUAL = b"<the event's own position>"  # apply_history writes the real `$originalPosition`
EVENT_METADATA = [
    b"",
    b"",
    b'{"user":"u1","n":1}',
    b'{ "a" : [1, 2], "nested": {"k": null} }\n',
    b"\xff\x00 not json",
    b"plain text",
    b"[1, 2, 3]",
    b"null",
    b"{}",
    # data migrated before (by esdb-relay or another tool): provenance already there
    b'{"$originalPosition": 1000000000000000, "$originalStreamRevision": 1000000}',
    b'{"$originalStreamRevision": 0, "$originalPosition": 1, "$originalCreated": "x"}',
    EQUAL,
    # keys a multi-stream append's server sets, with the user's values or the server's
    b'{"$schema.name": "user-set", "x": 1}',
    b'{"$schema.format": "Json", "$schema.name": "Created"}',
    # bytes the relay must not touch
    b'  {"padded": true}  \n',
    b'{"z": 1, "a": 2 }',
    b"42",
    b'"text"',
    b"  ",
    b'{"big": 9007199254740993}',
    b'{"x": NaN}',
    '{"u": 1}'.encode("utf-16"),
    b'\xef\xbb\xbf{"bom": 1}',
]
EVENT_DATA = [
    (JSON_CT, b'{"x":%d}'),
    (JSON_CT, b'{"text": "caf\xc3\xa9 %d"}'),
    (BINARY_CT, b"\x00\x01bin-%d\xff"),
    (JSON_CT, b""),
]
STREAM_METADATA = [
    {"$maxCount": 1},
    {"$maxCount": 3},
    {"$tb": 1},
    {"$tb": 2},
    {"$tb": 4},
    {"custom": "x", "owner": {"team": 7}},
    {"$maxCount": 2, "custom": "y"},
    {"$tb": 2, "$maxCount": 2},
    {"$tb": 0, "note": "no truncation"},
    {},
]
# (include_streams, exclude_streams, exclude_event_types)
FILTERS = [
    ([], [], []),
    ([], [], []),
    ([r"-s[0-2]$"], [], []),
    ([], [r"-s[34]$"], []),
    ([r"-s[0-3]$"], [r"-s1$"], []),
    ([], [], [r"^Noise$"]),
    ([], [r"-s0$"], [r"^Noise$", r"^Rem"]),
]


# ------------------------------------------------------------------------------ histories
append_op = st.tuples(
    st.just("append"),
    st.integers(0, 5),
    st.lists(
        st.tuples(
            st.sampled_from(EVENT_TYPES),
            st.integers(0, len(EVENT_DATA) - 1),
            st.sampled_from(EVENT_METADATA),
        ),
        min_size=1,
        max_size=3,
    ),
)
other_op = st.tuples(
    st.sampled_from(["link", "system", "user-link", "delete", "tombstone"]),
    st.integers(0, 5),
    st.just(None),
)
meta_op = st.tuples(st.just("meta"), st.integers(0, 5), st.sampled_from(STREAM_METADATA))
operation = st.one_of(append_op, append_op, append_op, meta_op, other_op)


@dataclass
class Case:
    streams: int
    ops: list[tuple]
    max_events: int
    batch: int
    original_metadata: bool
    filters: tuple[list[str], list[str], list[str]]
    unavailable_rate: float
    seed: int
    scavenge: bool = False
    transform: bool = False  # tests.engine.sample_transforms:reshape
    tamper: int | None = None  # what to change on the target afterwards (see tamper())


cases = st.builds(
    Case,
    streams=st.integers(1, 6),
    ops=st.lists(operation, min_size=1, max_size=60),
    max_events=st.integers(1, 50),
    batch=st.integers(1, 20),
    original_metadata=st.booleans(),
    filters=st.sampled_from(FILTERS),
    unavailable_rate=st.sampled_from([0.0, 0.0, 0.1, 0.25]),
    seed=st.integers(0, 2**16),
    scavenge=st.booleans(),
    transform=st.booleans(),
    tamper=st.one_of(st.none(), st.none(), st.integers(0, 4)),
)


@dataclass
class History:
    prefix: str
    names: list[str]
    counter: Iterator[int] = field(default_factory=itertools.count)


def apply_history(store: Store, case: Case) -> History:
    prefix = f"p{uuid.uuid4().hex[:10]}"
    history = History(prefix, [f"{prefix}-s{i}" for i in range(case.streams)])
    for kind, index, arg in case.ops:
        name = history.names[index % case.streams]
        n = next(history.counter)
        try:
            if kind == "append":
                events = []
                for type_, data_index, metadata in arg:
                    content_type, data = EVENT_DATA[data_index]
                    data = data % n if b"%d" in data else data
                    events.append(
                        ProposedEvent(str(uuid.uuid4()), type_, content_type, data, metadata)
                    )
                append(store, name, events)
            elif kind == "meta":
                store.set_metadata(name, dict(arg))
            elif kind == "delete":
                store.delete(name, ANY)
            elif kind == "tombstone":
                store.tombstone(name, ANY)
            elif kind == "link":  # what a `$ce` projection writes
                link = ProposedEvent(str(uuid.uuid4()), "$>", BINARY_CT, f"0@{name}".encode())
                store.append(f"$ce-{prefix}", ANY, [link])
            elif kind == "user-link":  # a link inside a user stream is skipped too
                link = ProposedEvent(str(uuid.uuid4()), "$>", BINARY_CT, f"0@{name}".encode())
                store.append(name, ANY, [link])
            elif kind == "system":
                event = ProposedEvent(str(uuid.uuid4()), "Created", JSON_CT, b'{"sys":%d}' % n)
                store.append(f"${prefix}-sys", ANY, [event])
        except (StreamDeleted, WrongExpectedVersion):
            pass  # the store refused the operation (tombstoned stream, delete of nothing)
    return history


def append(store: Store, name: str, events: list[ProposedEvent]) -> None:
    """Append; an event whose metadata is EQUAL goes alone, claiming its own real place."""
    if not any(e.metadata == EQUAL for e in events):
        store.append(name, ANY, events)
        return
    for event in events:
        if event.metadata == EQUAL:
            revision = store.stream_state(name)[0] + 1
            claim = b'{"$originalStreamRevision": %d, "$originalPosition": %d}' % (
                revision,
                store.head_position,
            )
            event = ProposedEvent(event.event_id, event.type, event.content_type, event.data, claim)
        store.append(name, ANY, [event])


# ------------------------------------------------------------------------------ the checks
def oracle_job(case: Case, history: History, **settings: object) -> oracle.Job:
    include, exclude, exclude_types = case.filters
    ordered = settings.get("mode", "ordered") == "ordered"
    return oracle.Job(
        include_streams=tuple(include),
        exclude_streams=tuple(exclude),
        exclude_event_types=tuple(exclude_types),
        original_metadata=case.original_metadata,
        multi_append=bool(settings.get("multi_append", True)),
        scavenge=case.scavenge,
        ordered=ordered,
        streams=lambda name: name.startswith(history.prefix),
        transform=reshape if case.transform else None,
    )


def reshape(record: Record) -> list[Record]:
    """sample_transforms.reshape, written again for the oracle's records."""
    if record.type == "Noise":
        return []
    if record.type == "Removed":
        return [dataclasses.replace(record, type="Deleted")]
    if record.type == "Updated":
        return [record, dataclasses.replace(record, type="UpdatedAudit")]
    return [record]


def tamper(target: Store, case: Case, history: History) -> bool:
    """Change the target behind the relay's back; True if something changed."""
    job = oracle_job(case, history)
    accepted = [n for n in history.names if job.accepts_stream(n)]
    present = [n for n in accepted if n in target.stream_names()]
    extra = ProposedEvent(str(uuid.uuid4()), "Intruder", JSON_CT, b"{}")
    try:
        if case.tamper == 0 and present:
            target.append(present[0], ANY, [extra])  # an event the source does not have
        elif case.tamper == 1 and present and not target.stream_state(present[0])[1]:
            meta = target.stream_metadata(present[0])  # (a tombstoned stream has none)
            target.set_metadata(present[0], {**meta, "intruder": True})
        elif case.tamper == 2 and present:
            target.tombstone(present[0], ANY)
        elif case.tamper == 3 or (case.tamper == 4 and len(accepted) == len(history.names)):
            target.append(f"{history.prefix}-intruder", ANY, [extra])  # a stream of its own
        elif case.tamper == 4:
            refused = next(n for n in history.names if n not in accepted)
            target.append(refused, ANY, [extra])  # a stream the filters exclude
        else:
            return False
    except StreamDeleted:
        return False
    return True


def check(
    source: Emulator,
    target: Emulator,
    job: JobConfig,
    case: Case,
    history: History,
    expected: oracle.Job,
) -> None:
    """The oracle finds the target exact, and verify agrees with it, before and after the
    target is tampered with."""
    found = oracle.compare(source.store, target.store, expected)
    assert_verify_agrees(job, source, target, found)
    assert found.clean, found
    if case.tamper is not None and tamper(target.store, case, history):
        found = oracle.compare(source.store, target.store, expected)
        assert not found.clean, "the tampering changed nothing the oracle sees"
        assert_verify_agrees(job, source, target, found)


def assert_verify_agrees(
    job: JobConfig, source: Emulator, target: Emulator, found: oracle.Report
) -> None:
    with (
        EventStore(source.uri, side="source") as s,
        EventStore(target.uri, side="target") as t,
    ):
        report = verify(job, s, t)
    assert (report.differences_total == 0) == found.clean, (report.differences, found)


# ------------------------------------------------------------------------------ running
def job_for(
    source: Emulator,
    target: Emulator,
    workdir: Path,
    case: Case,
    history: History,
    **settings: object,
) -> JobConfig:
    include, exclude, exclude_types = case.filters
    job_id = f"job-{history.prefix}"
    return JobConfig.load(
        payload={
            "job_id": job_id,
            "source": source.uri,
            "target": target.uri,
            **settings,
            "checkpoint_store": f"sqlite:///{workdir}/{job_id}.db",
            "budget": {"max_events": case.max_events},
            "batch": {"max_events": case.batch},
            "original_metadata": case.original_metadata,
            "transform": TRANSFORM if case.transform else None,
            "filters": {
                "include_streams": include,
                "exclude_streams": exclude,
                "exclude_event_types": exclude_types,
                "scavenge": case.scavenge,
            },
        }
    )


def replicate(job: JobConfig, target: Emulator, case: Case) -> list[SliceResult]:
    store = open_store(job.checkpoint_store)
    transform = load_transform(job.transform)
    results: list[SliceResult] = []
    target.faults.update(
        unavailable_rate=case.unavailable_rate,
        methods={"BatchAppend", "AppendSession", "AppendRecords"},
        seed=case.seed,
    )
    try:
        with (
            EventStore(job.source.get_secret_value(), side="source") as s,
            EventStore(job.target.get_secret_value(), side="target") as t,
        ):
            for _ in range(400):
                try:
                    budget = Budget(case.max_events, 10**9, time.monotonic() + 60)
                    result = run_slice(job, s, t, store, budget, transform=transform)
                except RelayError as e:
                    results.append(SliceResult(job.job_id, "failed", error=str(e)))
                    continue
                results.append(result)
                if result.caught_up:
                    return results
    finally:
        target.faults.reset()
        store.close()
    raise AssertionError(f"did not catch up: {[r.error for r in results[-3:]]}")


def run_case(
    workdir: Path, case: Case, *, target_version: str | None = None, **settings: object
) -> None:
    """One example: a fresh pair of emulators (the target as `target_version`, default
    25.1), the history, the relay, the checks."""
    with Emulator() as source, Emulator(server_version=target_version) as target:
        history = apply_history(source.store, case)
        job = job_for(source, target, workdir, case, history, **settings)
        replicate(job, target, case)
        check(source, target, job, case, history, oracle_job(case, history, **settings))


PROPERTY_SETTINGS = settings(
    max_examples=150,
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@PROPERTY_SETTINGS
@given(case=cases)
def test_target_equals_filtered_source(tmp_path_factory, case):
    run_case(tmp_path_factory.mktemp("ordered"), case, multi_append=False)
