"""Resumable verify (`verify --state FILE`): an interrupted run saves its progress, a re-run
continues where it stopped, and the finished report equals an uninterrupted run's."""

from __future__ import annotations

import json
import uuid

import pytest
import typer
from typer.testing import CliRunner

from core.config import JobConfig
from core.errors import ConfigError
from core.eventstore import EventStore
from core.tools.verify import VerifyReport, VerifyState, verify
from esdb_emulator import Emulator
from esdb_emulator.store import ANY, ProposedEvent, StreamNotFound
from esdb_emulator.workload import Workload, generate
from handlers.cli.verify_cmd import verify as verify_command
from tests.engine.helpers import make_job, run_until_caught_up

WORKLOAD = Workload(events=400, streams=30, seed=5, soft_deleted=0.1, tombstoned=0.1)
TIMING = {"seconds", "events_per_second"}


class Interrupt(Exception):
    pass


@pytest.fixture(scope="module")
def migrated(tmp_path_factory):
    """A source, and a target the relay migrated it into, then tampered with: one extra event
    and one extra stream, so the reports carry differences of both kinds."""
    tmp = tmp_path_factory.mktemp("resume")
    with Emulator() as source, Emulator() as target:
        generate(source.store, WORKLOAD)
        job = make_job(source, target, tmp)
        run_until_caught_up(job)
        live = [n for n in sorted(target.store.stream_names()) if visible(target, n)]
        target.store.append(live[len(live) // 2], ANY, [tampered()])
        target.store.append("only-on-target", ANY, [tampered()])
        yield job


def visible(db: Emulator, stream: str) -> bool:
    if stream.startswith("$") or db.store.stream_state(stream)[1]:
        return False
    try:
        return bool(db.store.visible_records(stream))
    except StreamNotFound:  # soft deleted
        return False


def tampered() -> ProposedEvent:
    return ProposedEvent(str(uuid.uuid4()), "Tampered", "application/json", b"{}", b"{}")


def run(job: JobConfig, **kwargs: object) -> VerifyReport:
    with (
        EventStore(job.source.get_secret_value(), side="source") as source,
        EventStore(job.target.get_secret_value(), side="target") as target,
    ):
        return verify(job, source, target, **kwargs)


def interrupt_after(n: int, calls: list[tuple[int, int]]):
    def progress(done: int, total: int) -> None:
        calls.append((done, total))
        if done >= n and len(calls) > 1:
            raise Interrupt

    return progress


def comparable(report: VerifyReport) -> dict:
    return report.model_dump(exclude=TIMING)


@pytest.mark.parametrize("workers", [1, 3])
def test_interrupted_run_resumes_to_the_same_report(migrated, tmp_path, workers):
    full = run(migrated, workers=workers)
    assert not full.ok and full.extra_streams == 1 and full.streams_differing == 1
    state = tmp_path / "verify.state"
    first: list[tuple[int, int]] = []
    with pytest.raises(Interrupt):
        run(migrated, workers=workers, state=state, progress=interrupt_after(7, first))
    saved = VerifyState.model_validate_json(state.read_text())
    assert saved.done == 7 and saved.report.streams_checked == 7
    assert len(saved.streams) == full.streams_in_source

    second: list[tuple[int, int]] = []
    resumed = run(
        migrated, workers=workers, state=state, progress=lambda d, t: second.append((d, t))
    )
    assert comparable(resumed) == comparable(full)
    assert second[0] == (7, full.streams_in_source)  # the first 7 streams were not re-checked
    assert len(second) == full.streams_in_source - 7 + 1
    assert not state.exists()  # a finished report leaves no state behind


def test_progress_is_saved_as_streams_are_checked(migrated, tmp_path):
    state = tmp_path / "verify.state"
    seen: list[tuple[int, int]] = []

    def progress(done: int, total: int) -> None:
        saved = VerifyState.model_validate_json(state.read_text())
        seen.append((done, saved.done))

    report = run(migrated, state=state, save_every=0, progress=progress)
    assert report.streams_checked == len(seen) - 1
    assert all(done == saved for done, saved in seen)


def test_a_sampled_run_resumes_the_same_sample(migrated, tmp_path):
    full = run(migrated, sample=12, seed=3)
    state = tmp_path / "sample.state"
    with pytest.raises(Interrupt):
        run(migrated, sample=12, seed=3, state=state, progress=interrupt_after(4, []))
    assert comparable(run(migrated, sample=12, seed=3, state=state)) == comparable(full)


def test_a_state_file_of_other_options_is_refused(migrated, tmp_path):
    state = tmp_path / "verify.state"
    with pytest.raises(Interrupt):
        run(migrated, sample=12, seed=3, state=state, progress=interrupt_after(2, []))
    with pytest.raises(ConfigError, match="another job") as error:
        run(migrated, sample=12, seed=4, state=state)
    assert "delete the file" in str(error.value)
    assert state.exists()  # kept: the original run can still be resumed
    state.write_text("{not json")
    with pytest.raises(ConfigError, match="cannot be read"):
        run(migrated, sample=12, seed=3, state=state)


def test_cli_resumes_from_the_state_file(migrated, tmp_path):
    state = tmp_path / "cli.state"
    with pytest.raises(Interrupt):
        run(migrated, state=state, progress=interrupt_after(5, []))
    config = tmp_path / "job.json"
    data = json.loads(migrated.model_dump_json())
    data["source"] = migrated.source.get_secret_value()
    data["target"] = migrated.target.get_secret_value()
    config.write_text(json.dumps(data))
    app = typer.Typer()
    app.command("verify")(verify_command)
    app.command("other")(lambda: None)
    result = CliRunner().invoke(
        app, ["verify", "--config", str(config), "--state", str(state), "--json"]
    )
    assert result.exit_code == 1, result.output  # the tampered target differs
    report = json.loads(result.stdout)
    assert report["differences_total"] == run(migrated).differences_total
    assert not state.exists()
    missing = CliRunner().invoke(
        app, ["verify", "--config", str(config), "--state", str(tmp_path / "no" / "s")]
    )
    assert missing.exit_code == 2 and "no such directory" in missing.output
