"""Helpers for engine tests: build jobs, run slices until caught up, compare two stores."""

from __future__ import annotations

from pathlib import Path

from core.checkpoint import open_store
from core.config import JobConfig
from core.engine import Budget, SliceResult, run_slice
from core.engine.known_streams import KnownStreams
from core.errors import RelayError
from core.eventstore import EventStore
from core.rules import load_transform
from esdb_emulator import Emulator
from esdb_emulator.store import Store, StreamDeleted, StreamNotFound


def stream_view(store: Store, name: str) -> object:
    try:
        return [(r.event_id, r.type, r.content_type, r.data) for r in store.visible_records(name)]
    except StreamNotFound:
        return "not found"
    except StreamDeleted:
        return "deleted"


def differences(source: Store, target: Store) -> list[str]:
    diffs = []
    for name in source.stream_names():
        if name.startswith("$"):
            continue
        if stream_view(source, name) != stream_view(target, name):
            diffs.append(name)
    extra = [
        n for n in target.stream_names() if not n.startswith("$") and n not in source.stream_names()
    ]
    return diffs + [f"extra:{n}" for n in extra]


def user_event_count(store: Store) -> int:
    return sum(
        1 for r in store.iter_all() if not r.stream.startswith("$") and not r.type.startswith("$")
    )


def make_job(source: Emulator, target: Emulator, tmp_path: Path, **overrides: object) -> JobConfig:
    payload = {
        "job_id": "test-job",
        "source": source.uri,
        "target": target.uri,
        "checkpoint_store": f"sqlite:///{tmp_path}/checkpoints.db",
        "budget": {"max_events": 700},
        **overrides,
    }
    return JobConfig.load(payload=payload)


def run_until_caught_up(
    job: JobConfig, max_slices: int = 200, *, known: KnownStreams | None = None
) -> list[SliceResult]:
    """Slices one after another, as one relay process runs them: sharing what they learn of
    the target's streams (core/engine/known_streams.py) unless `known` says otherwise."""
    store = open_store(job.checkpoint_store)
    known = KnownStreams() if known is None else known
    transform = load_transform(job.transform)  # as core.relay.Relay loads it
    results = []
    with (
        EventStore(job.source.get_secret_value(), side="source") as source,
        EventStore(job.target.get_secret_value(), side="target") as target,
    ):
        for _ in range(max_slices):
            try:
                result = run_slice(
                    job,
                    source,
                    target,
                    store,
                    Budget.from_job(job),
                    known=known,
                    transform=transform,
                )
            except RelayError:
                continue  # a failed slice commits nothing; the next one resumes
            results.append(result)
            if result.caught_up:
                return results
    raise AssertionError("did not catch up")
