"""Finding 9: dead letters seen everywhere — counted per slice and in the checkpoint, shown by
`status`, reported by `verify` as dead-lettered (not missing); the oversize error names the
oversize event, not the first of its batch, and its hint names the options that apply."""

from __future__ import annotations

import json
import re
import uuid

import pytest
from typer.testing import CliRunner

from core.checkpoint import open_store
from core.config import JobConfig
from core.engine import Budget, run_slice
from core.errors import OversizeEventError
from core.eventstore import EventStore
from core.tools.verify import verify
from esdb_emulator import Emulator
from esdb_emulator.store import NO_STREAM, ProposedEvent
from handlers.cli.main import app
from tests.engine.helpers import make_job, run_until_caught_up


def event(data: bytes = b"{}") -> ProposedEvent:
    return ProposedEvent(str(uuid.uuid4()), "E", "application/json", data)


def seed_with_oversize(source: Emulator) -> None:
    source.store.append("small-a", NO_STREAM, [event(), event()])
    source.store.append("small-b", NO_STREAM, [event()])
    source.store.append("big", NO_STREAM, [event(), event(b"x" * 5000)])
    source.store.append("small-c", NO_STREAM, [event()])


def test_dead_letters_are_counted_shown_and_not_missing(pair, tmp_path):
    source, target = pair
    target.faults.update(max_append_size=2000)
    seed_with_oversize(source)
    job = make_job(source, target, tmp_path, dead_letter=True, multi_append=False)
    results = run_until_caught_up(job)
    assert sum(r.events_dead_lettered for r in results) == 1
    assert all(
        r.events_read
        == r.records_copied + r.events_skipped + r.events_filtered + r.events_dead_lettered
        for r in results
    )
    checkpoint = open_store(job.checkpoint_store).load(job.job_id)
    assert checkpoint is not None and checkpoint.events_dead_lettered == 1

    with (
        EventStore(source.uri, side="source") as s,
        EventStore(target.uri, side="target") as t,
    ):
        report = verify(job, s, t)
    assert report.ok, report.differences  # the dead-lettered event is not "missing"
    assert report.events_dead_lettered == 1

    env = {
        "ESDB_RELAY_JOB_ID": job.job_id,
        "ESDB_RELAY_SOURCE": source.uri,
        "ESDB_RELAY_TARGET": target.uri,
        "ESDB_RELAY_CHECKPOINT_STORE": job.checkpoint_store,
        "ESDB_RELAY_DEAD_LETTER": "true",
    }
    shown = CliRunner().invoke(app, ["status", "--json"], env=env)
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout)["dead_lettered"] == 1
    text = CliRunner().invoke(app, ["status"], env=env)
    assert text.exit_code == 0, text.output
    assert re.search(r"│ dead-lettered +│ 1 ", text.output), text.output
    assert "$esdb-relay-dead-letters-test-job" in " ".join(text.output.split())


@pytest.mark.parametrize("multi_append", [True, False])
def test_the_oversize_error_names_the_oversize_event_and_both_options(tmp_path, multi_append):
    with Emulator() as source, Emulator(multi_append=multi_append) as target:
        target.faults.update(max_append_size=2000)
        seed_with_oversize(source)
        big = next(r for r in source.store.iter_all() if r.stream == "big" and len(r.data) > 100)
        job = make_job(source, target, tmp_path, multi_append=multi_append)
        with pytest.raises(OversizeEventError) as caught:
            run_until_caught_up_raising(job)
    error = caught.value
    assert (error.stream, error.revision) == ("big", 1)
    text = str(error)
    assert f"at source position {big.position}" in text
    assert "small-a" not in text and text.count("at source position") == 1
    assert "dead_letter = true" in text and "original_metadata = false" in text


def run_until_caught_up_raising(job: JobConfig) -> None:
    with (
        EventStore(job.source.get_secret_value(), side="source") as s,
        EventStore(job.target.get_secret_value(), side="target") as t,
    ):
        run_slice(job, s, t, open_store(job.checkpoint_store), Budget.from_job(job))
